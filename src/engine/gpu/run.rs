//! The kernel engine's driver: the same algorithm as the CPU engine, as launches on a device.

use super::codegen;
use super::plan;
use super::window;
use super::{DeviceBuffer, KernelDevice, LaunchArgs};
use crate::engine::cache::{graph_hash, BoundCache, CacheKey, Intermediate};
use crate::engine::cpu::{check_request, sample_margins, GraphInfo};
use crate::engine::{BoundMethod, DeltaBox, EngineError, MarginBounds, SampleBounds};
use crate::ir::{Graph, Op};
use ndarray::{Array1, Array2, ArrayView2};
use rayon::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;

/// One graph's kernels and parameters, loaded on the device.
struct Program {
    module: usize,
    /// Per node: (weight or scale, bias or shift) addresses; 0 where absent.
    params: Vec<(u64, u64)>,
    /// Nodes whose kernel source has a `bias_k`.
    has_bias: Vec<bool>,
    /// Nodes whose kernel source has a `jac_k`.
    has_jacobian: Vec<bool>,
    /// Nodes on a windowable chain (see [`window`]).
    chain: Vec<bool>,
}

/// A device plus the programs loaded on it, one per distinct graph.
pub struct KernelEngine<D: KernelDevice> {
    pub device: D,
    programs: HashMap<CacheKey, Program>,
    buffers: Vec<DeviceBuffer>,
}

impl<D: KernelDevice> KernelEngine<D> {
    pub fn new(device: D) -> Self {
        KernelEngine {
            device,
            programs: HashMap::new(),
            buffers: Vec::new(),
        }
    }

    /// Compiles the graph's kernels and uploads its parameters, once per graph.
    fn program(&mut self, graph: &Graph) -> Result<CacheKey, EngineError> {
        let key = graph_hash(graph);
        if self.programs.contains_key(&key) {
            return Ok(key);
        }
        let source = codegen::emit(graph);
        let module = self.device.load(&source)?;
        let mut params = Vec::with_capacity(graph.nodes.len());
        let mut has_bias = Vec::with_capacity(graph.nodes.len());
        let mut has_jacobian = Vec::with_capacity(graph.nodes.len());
        for (id, node) in graph.nodes.iter().enumerate() {
            let (w, b): (Vec<f64>, Vec<f64>) = match &node.op {
                Op::Linear { weight, bias } => (weight.iter().copied().collect(), bias.to_vec()),
                Op::Conv2d { weight, bias, .. } => {
                    (weight.iter().copied().collect(), bias.to_vec())
                }
                Op::ChannelAffine { scale, shift } => (scale.to_vec(), shift.to_vec()),
                _ => (Vec::new(), Vec::new()),
            };
            let mut addr = |v: Vec<f64>| -> Result<u64, EngineError> {
                if v.is_empty() {
                    return Ok(0);
                }
                let buffer = self.device.upload(&v)?;
                let a = buffer.addr;
                self.buffers.push(buffer);
                Ok(a)
            };
            params.push((addr(w)?, addr(b)?));
            has_bias.push(source.kernels.contains(&format!("bias_{id}")));
            has_jacobian.push(source.kernels.contains(&format!("jac_{id}")));
        }
        self.programs.insert(
            key,
            Program {
                module,
                params,
                has_bias,
                has_jacobian,
                chain: window::chain_nodes(graph),
            },
        );
        Ok(key)
    }
}

impl<D: KernelDevice> Drop for KernelEngine<D> {
    fn drop(&mut self) {
        for b in self.buffers.drain(..) {
            self.device.free(b);
        }
    }
}

/// [`crate::engine::cpu::margin_bounds_cached`] on a kernel device: the same contract and, up to
/// rounding, the same numbers.
pub fn margin_bounds_on<D: KernelDevice>(
    engine: &mut KernelEngine<D>,
    graph: &Graph,
    inputs: ArrayView2<f64>,
    labels: &[usize],
    delta: &DeltaBox,
    method: &BoundMethod,
    cache: &BoundCache,
) -> Result<MarginBounds, EngineError> {
    check_request(graph, inputs, labels, delta)?;
    let info = GraphInfo::new(graph);
    let crown = !matches!(method, BoundMethod::Ibp);
    let key = engine.program(graph)?;
    let program = &engine.programs[&key];
    let n = inputs.nrows();
    // The kernels' rows are f64.
    let keys = cache.keys(graph, inputs, delta, crown, super::super::RowPrecision::F64);
    let mut inter: Vec<Option<Arc<Intermediate>>> = (0..n)
        .map(|i| keys.as_ref().and_then(|k| cache.lookup(&k[i], graph)))
        .collect();
    let missing: Vec<usize> = (0..n).filter(|&i| inter[i].is_none()).collect();
    let chunks = plan::chunks(graph, &info, n, engine.device.memory_budget());
    let mut run = Run {
        device: &mut engine.device,
        graph,
        info: &info,
        program,
        live: Vec::new(),
    };
    for chunk in missing.chunks(chunks.samples) {
        let computed = run.intermediate(inputs, chunk, delta, crown, chunks.rows);
        run.free_all();
        for (&i, value) in chunk.iter().zip(computed?) {
            inter[i] = Some(match &keys {
                Some(k) => cache.store(&k[i], value),
                None => Arc::new(value),
            });
        }
    }
    let inter: Vec<Arc<Intermediate>> = inter.into_iter().map(|v| v.expect("filled")).collect();
    let samples = if let BoundMethod::Crown = method {
        let mut samples = Vec::with_capacity(n);
        for chunk in (0..n).collect::<Vec<_>>().chunks(chunks.samples) {
            let done = run.final_crown(inputs, labels, chunk, &inter, delta, chunks.rows);
            run.free_all();
            samples.extend(done?);
        }
        samples
    } else {
        (0..n)
            .into_par_iter()
            .map(|i| {
                sample_margins(
                    graph,
                    &info,
                    &inter[i],
                    inputs.row(i),
                    labels[i],
                    delta,
                    method,
                )
            })
            .collect::<Result<Vec<_>, _>>()?
    };
    Ok(MarginBounds { samples })
}

/// One batch's launches; every buffer it allocates is freed by [`Run::free_all`].
struct Run<'a, D: KernelDevice> {
    device: &'a mut D,
    graph: &'a Graph,
    info: &'a GraphInfo,
    program: &'a Program,
    live: Vec<DeviceBuffer>,
}

/// Handle of a buffer owned by the run (index into `live`), with its address.
#[derive(Clone, Copy, Debug)]
struct Buf {
    slot: usize,
    addr: u64,
}

type Bounds = Vec<Option<(Buf, Buf)>>;

impl<D: KernelDevice> Run<'_, D> {
    fn keep(&mut self, b: DeviceBuffer) -> Buf {
        let addr = b.addr;
        self.live.push(b);
        Buf {
            slot: self.live.len() - 1,
            addr,
        }
    }

    fn alloc(&mut self, len: usize) -> Result<Buf, EngineError> {
        let b = self.device.alloc(len.max(1))?;
        Ok(self.keep(b))
    }

    /// A buffer the next kernel writes in full (not zero-filled).
    fn alloc_output(&mut self, len: usize) -> Result<Buf, EngineError> {
        let b = self.device.alloc_output(len.max(1))?;
        Ok(self.keep(b))
    }

    fn upload(&mut self, data: &[f64]) -> Result<Buf, EngineError> {
        let b = self.device.upload(data)?;
        Ok(self.keep(b))
    }

    fn upload_index(&mut self, data: &[i64]) -> Result<Buf, EngineError> {
        let b = self.device.upload_index(data)?;
        Ok(self.keep(b))
    }

    fn download(&mut self, b: Buf) -> Result<Vec<f64>, EngineError> {
        self.device.download(&self.live[b.slot])
    }

    /// Frees one buffer early (its slot stays, empty).
    fn release(&mut self, b: Buf) {
        let placeholder = DeviceBuffer {
            addr: 0,
            len: 0,
            slot: usize::MAX,
        };
        let owned = std::mem::replace(&mut self.live[b.slot], placeholder);
        if owned.slot != usize::MAX {
            self.device.free(owned);
        }
    }

    fn free_all(&mut self) {
        for b in std::mem::take(&mut self.live) {
            if b.slot != usize::MAX {
                self.device.free(b);
            }
        }
    }

    fn launch(
        &mut self,
        kernel: &str,
        pointers: &[u64],
        idx: u64,
        cols: usize,
        total: usize,
    ) -> Result<(), EngineError> {
        if total == 0 {
            return Ok(());
        }
        let mut args = LaunchArgs {
            idx,
            cols: cols as i64,
            total: total as i64,
            ..LaunchArgs::default()
        };
        args.pointers[..pointers.len()].copy_from_slice(pointers);
        self.device.launch(self.program.module, kernel, args)
    }

    /// Feature-major copy `[d][cols]` of the chosen rows of `inputs`.
    fn columns(inputs: ArrayView2<f64>, chunk: &[usize]) -> Vec<f64> {
        let d = inputs.ncols();
        let cols = chunk.len();
        let mut out = vec![0.0; d * cols];
        for (c, &i) in chunk.iter().enumerate() {
            for (f, v) in inputs.row(i).iter().enumerate() {
                out[f * cols + c] = *v;
            }
        }
        out
    }

    /// Intermediate bounds of samples `chunk`: IBP everywhere, refined by CROWN for the
    /// IBP-unstable neurons of ReLU inputs that IBP does not bound exactly.
    fn intermediate(
        &mut self,
        inputs: ArrayView2<f64>,
        chunk: &[usize],
        delta: &DeltaBox,
        crown: bool,
        rows: usize,
    ) -> Result<Vec<Intermediate>, EngineError> {
        let graph = self.graph;
        let ns = chunk.len();
        let d = inputs.ncols();
        let x0 = self.upload(&Self::columns(inputs, chunk))?;
        let lo = self.upload(&delta.lo.to_vec())?;
        let hi = self.upload(&delta.hi.to_vec())?;
        let mut bounds: Bounds = vec![None; graph.nodes.len()];
        let (l, u) = (self.alloc(d * ns)?, self.alloc(d * ns)?);
        self.launch(
            "ibp_input",
            &[x0.addr, lo.addr, hi.addr, l.addr, u.addr],
            0,
            ns,
            d * ns,
        )?;
        bounds[0] = Some((l, u));
        for id in 1..graph.nodes.len() {
            if !self.info.live[id] {
                continue;
            }
            let node = &graph.nodes[id];
            let total = node.numel() * ns;
            let (l, u) = (self.alloc(total)?, self.alloc(total)?);
            let input = |k: usize| bounds[node.inputs[k].index()].expect("inputs bounded first");
            match node.op {
                Op::Relu => {
                    let (li, ui) = input(0);
                    self.launch(
                        "ibp_relu",
                        &[li.addr, ui.addr, l.addr, u.addr],
                        0,
                        ns,
                        total,
                    )?;
                }
                Op::Reshape => {
                    let (li, ui) = input(0);
                    self.launch("acc", &[l.addr, li.addr], 0, ns, total)?;
                    self.launch("acc", &[u.addr, ui.addr], 0, ns, total)?;
                }
                _ => {
                    let mut parts = Vec::new();
                    for k in 0..node.inputs.len() {
                        let (li, ui) = input(k);
                        let len = graph.nodes[node.inputs[k].index()].numel() * ns;
                        let (m, r, a) = (self.alloc(len)?, self.alloc(len)?, self.alloc(len)?);
                        self.launch(
                            "ibp_split",
                            &[li.addr, ui.addr, m.addr, r.addr, a.addr],
                            0,
                            ns,
                            len,
                        )?;
                        parts.push((m, r, a));
                    }
                    let second =
                        |f: fn(&(Buf, Buf, Buf)) -> Buf| parts.get(1).map_or(0, |p| f(p).addr);
                    let (w, b) = self.program.params[id];
                    let (mid, rad, scale) =
                        (self.alloc(total)?, self.alloc(total)?, self.alloc(total)?);
                    let (m1, r1, a1) = (second(|p| p.0), second(|p| p.1), second(|p| p.2));
                    self.launch(
                        &format!("fwd_{id}"),
                        &[parts[0].0.addr, m1, mid.addr, w, b],
                        0,
                        ns,
                        total,
                    )?;
                    let abs = format!("fwdabs_{id}");
                    self.launch(&abs, &[parts[0].1.addr, r1, rad.addr, w], 0, ns, total)?;
                    self.launch(&abs, &[parts[0].2.addr, a1, scale.addr, w], 0, ns, total)?;
                    self.launch(
                        "ibp_join",
                        &[mid.addr, rad.addr, scale.addr, l.addr, u.addr],
                        0,
                        ns,
                        total,
                    )?;
                    for (m, r, a) in parts {
                        self.release(m);
                        self.release(r);
                        self.release(a);
                    }
                    for t in [mid, rad, scale] {
                        self.release(t);
                    }
                }
            }
            bounds[id] = Some((l, u));
            if crown && self.info.relu_input[id] && !self.info.exact_ibp[id] {
                self.refine(id, &bounds, (x0, lo, hi), ns, rows)?;
            }
        }
        // Bring back what the final pass needs, per sample.
        let mut out: Vec<Intermediate> = (0..ns)
            .map(|_| Intermediate {
                bounds: vec![None; graph.nodes.len()],
            })
            .collect();
        for (id, bound) in bounds.iter().enumerate() {
            if !(self.info.relu_input[id] || id == graph.output.index()) {
                continue;
            }
            let (l, u) = bound.expect("live node bounded");
            let (lv, uv) = (self.download(l)?, self.download(u)?);
            let name = &graph.nodes[id].name;
            if lv.iter().chain(&uv).any(|v| !v.is_finite()) {
                return Err(EngineError::NonFinite(format!("bound at layer `{name}`")));
            }
            let f = graph.nodes[id].numel();
            for (s, sample) in out.iter_mut().enumerate() {
                let pick = |v: &[f64]| Array1::from_iter((0..f).map(|k| v[k * ns + s]));
                sample.bounds[id] = Some((pick(&lv), pick(&uv)));
            }
        }
        Ok(out)
    }

    /// CROWN bounds of the IBP-unstable neurons of node `id`, intersected into its interval.
    fn refine(
        &mut self,
        id: usize,
        bounds: &Bounds,
        (x0, lo, hi): (Buf, Buf, Buf),
        ns: usize,
        rows: usize,
    ) -> Result<(), EngineError> {
        let (l, u) = bounds[id].expect("bounded");
        let (lv, uv) = (self.download(l)?, self.download(u)?);
        let f = self.graph.nodes[id].numel();
        let unstable: Vec<(i64, i64)> = (0..f)
            .flat_map(|k| (0..ns).map(move |s| (s, k)))
            .filter(|&(s, k)| lv[k * ns + s] < 0.0 && uv[k * ns + s] > 0.0)
            .map(|(s, k)| (s as i64, k as i64))
            .collect();
        let mark = self.live.len();
        if window::windowed_seed(self.graph, &self.program.chain, id) {
            // One pass per spatial position, over that position's receptive fields only.
            let plane = self.graph.nodes[id].shape[1] * self.graph.nodes[id].shape[2];
            let mut by_position: Vec<Vec<(i64, i64)>> = vec![Vec::new(); plane];
            for &(s, k) in &unstable {
                by_position[k as usize % plane].push((s, k));
            }
            for (pos, pairs) in by_position.iter().enumerate() {
                for group in pairs.chunks((rows / 2).max(1)) {
                    self.refine_window(id, pos, group, bounds, (x0, lo, hi), ns)?;
                    for slot in mark..self.live.len() {
                        self.release(Buf { slot, addr: 0 });
                    }
                }
            }
            return Ok(());
        }
        for group in unstable.chunks((rows / 2).max(1)) {
            let r = 2 * group.len();
            let (idx, sign) = self.upload_signed_rows(Vec::new(), group)?;
            let (bias, mag) = (self.alloc(r)?, self.alloc(r)?);
            let node = &self.graph.nodes[id];
            let (seed, a) = if self.program.has_jacobian[id] {
                // Start from the Jacobian rows at the node's input.
                let input = node.inputs[0].index();
                let a = self.alloc_output(self.graph.nodes[input].numel() * r)?;
                let (w, b) = self.program.params[id];
                self.launch(
                    &format!("jac_{id}"),
                    &[a.addr, sign.addr, b, w, bias.addr, mag.addr],
                    idx.addr,
                    r,
                    self.graph.nodes[input].numel() * r,
                )?;
                (input, a)
            } else {
                let a = self.alloc(f * r)?;
                self.launch("seed", &[a.addr, sign.addr], idx.addr + 8 * r as u64, 0, r)?;
                (id, a)
            };
            let a_in = self.back_substitute(seed, a, (bias, mag), r, idx.addr, bounds, ns)?;
            let (_, lower) = self.concretize(
                "concretize",
                (a_in, bias, mag),
                (x0, lo, hi),
                idx.addr,
                ns,
                r,
            )?;
            self.launch(
                "tighten",
                &[lower.addr, l.addr, u.addr, sign.addr],
                idx.addr,
                ns,
                r,
            )?;
            for slot in mark..self.live.len() {
                self.release(Buf { slot, addr: 0 });
            }
        }
        Ok(())
    }

    /// Uploads the rows of CROWN bounds for the (sample, neuron) pairs `group`: rows 0..m bound
    /// each neuron from below, rows m..2m its negation. The index buffer is `prefix`, then the
    /// row → sample list, then the row → neuron list; the sign buffer holds ±1 per row.
    fn upload_signed_rows(
        &mut self,
        mut prefix: Vec<i64>,
        group: &[(i64, i64)],
    ) -> Result<(Buf, Buf), EngineError> {
        prefix.extend(group.iter().chain(group).map(|p| p.0));
        prefix.extend(group.iter().chain(group).map(|p| p.1));
        let sign: Vec<f64> = (0..2 * group.len())
            .map(|t| if t < group.len() { 1.0 } else { -1.0 })
            .collect();
        Ok((self.upload_index(&prefix)?, self.upload(&sign)?))
    }

    /// [`Run::refine`] for the neurons `group` (sample, neuron) at spatial position `pos` of the
    /// conv node `id`, over windows (see [`window`]).
    fn refine_window(
        &mut self,
        id: usize,
        pos: usize,
        group: &[(i64, i64)],
        bounds: &Bounds,
        (x0, lo, hi): (Buf, Buf, Buf),
        ns: usize,
    ) -> Result<(), EngineError> {
        let graph = self.graph;
        let r = 2 * group.len();
        let geometry = window::geometry(graph, id, pos);
        let table = geometry.len();
        let mut prefix = geometry.clone();
        prefix.push(ns as i64);
        let (idx, sign) = self.upload_signed_rows(prefix, group)?;
        let (bias, mag) = (self.alloc(r)?, self.alloc(r)?);
        let positions = |k: usize| (geometry[4 * k + 2] * geometry[4 * k + 3]) as usize;
        let window_len = |k: usize| graph.nodes[k].shape[0] * positions(k);
        let input = graph.nodes[id].inputs[0].index();
        let (w, b) = self.program.params[id];
        let mut a = self.alloc_output(window_len(input) * r)?;
        self.launch(
            &format!("wjac_{id}"),
            &[a.addr, sign.addr, b, w, bias.addr, mag.addr],
            idx.addr,
            r,
            window_len(input) * r,
        )?;
        let mut k = input;
        while k != 0 {
            let node = &graph.nodes[k];
            let below = node.inputs[0].index();
            if let Op::Relu = node.op {
                let (l, u) = bounds[below].expect("pre-activation bounds");
                self.launch(
                    &format!("wrelu_{k}"),
                    &[a.addr, l.addr, u.addr, bias.addr, mag.addr],
                    idx.addr,
                    r,
                    r,
                )?;
            } else {
                let (w, b) = self.program.params[k];
                self.launch(
                    &format!("wbias_{k}"),
                    &[a.addr, bias.addr, mag.addr, b],
                    idx.addr,
                    r,
                    r,
                )?;
                let a_in = self.alloc_output(window_len(below) * r)?;
                let threads = match node.op {
                    Op::Conv2d { .. } => codegen::conv_transpose_threads(
                        graph.nodes[below].shape[0],
                        positions(below),
                        r,
                    ),
                    _ => window_len(below) * r,
                };
                self.launch(
                    &format!("wbwd_{k}"),
                    &[a.addr, a_in.addr, 0, w],
                    idx.addr,
                    r,
                    threads,
                )?;
                self.release(a);
                a = a_in;
            }
            k = below;
        }
        let (_, lower) =
            self.concretize("wconcretize", (a, bias, mag), (x0, lo, hi), idx.addr, r, r)?;
        let (l, u) = bounds[id].expect("bounded");
        self.launch(
            "tighten",
            &[lower.addr, l.addr, u.addr, sign.addr],
            idx.addr + 8 * (table as u64 + 1),
            ns,
            r,
        )
    }

    /// Pulls functionals `a` (`[numel(seed)][r]`) back to the input through relaxed ReLUs
    /// (bounds per row's sample `idx[t]`), adding constants and their magnitudes into
    /// `(bias, mag)`; returns the input coefficients `[d][r]`.
    #[allow(clippy::too_many_arguments)]
    fn back_substitute(
        &mut self,
        seed: usize,
        a: Buf,
        (bias, mag): (Buf, Buf),
        r: usize,
        idx: u64,
        bounds: &Bounds,
        ns: usize,
    ) -> Result<Buf, EngineError> {
        let graph = self.graph;
        let mut pending: Vec<Option<Buf>> = vec![None; graph.nodes.len()];
        pending[seed] = Some(a);
        for id in (1..=seed).rev() {
            let Some(a) = pending[id].take() else {
                continue;
            };
            let node = &graph.nodes[id];
            let input = node.inputs[0].index();
            match node.op {
                Op::Relu => {
                    let (l, u) = bounds[input].expect("pre-activation bounds");
                    self.launch(
                        &format!("relu_{id}"),
                        &[a.addr, l.addr, u.addr, bias.addr, mag.addr],
                        idx,
                        ns,
                        r,
                    )?;
                    self.settle(&mut pending, input, a, node.numel() * r)?;
                }
                Op::Reshape => self.settle(&mut pending, input, a, node.numel() * r)?,
                Op::Add => {
                    let len = node.numel() * r;
                    let copy = self.alloc(len)?;
                    self.launch("acc", &[copy.addr, a.addr], 0, r, len)?;
                    self.settle(&mut pending, input, a, len)?;
                    self.settle(&mut pending, node.inputs[1].index(), copy, len)?;
                }
                _ => {
                    let (w, b) = self.program.params[id];
                    if self.program.has_bias[id] {
                        self.launch(
                            &format!("bias_{id}"),
                            &[a.addr, bias.addr, mag.addr, b],
                            0,
                            0,
                            r,
                        )?;
                    }
                    let in_len = graph.nodes[input].numel();
                    let a_in = self.alloc_output(in_len * r)?;
                    let by_blas = match &node.op {
                        Op::Linear { weight, .. } => self.device.gemm_nt(
                            r,
                            weight.ncols(),
                            weight.nrows(),
                            a.addr,
                            r,
                            w,
                            weight.ncols(),
                            a_in.addr,
                            r,
                        )?,
                        _ => false,
                    };
                    if !by_blas {
                        self.launch(
                            &format!("bwd_{id}"),
                            &[a.addr, a_in.addr, 0, w],
                            0,
                            r,
                            codegen::backward_threads(graph, node, r),
                        )?;
                    }
                    self.release(a);
                    self.settle(&mut pending, input, a_in, in_len * r)?;
                }
            }
        }
        match pending[0].take() {
            Some(a0) => Ok(a0),
            None => self.alloc(graph.input_shape().iter().product::<usize>() * r),
        }
    }

    /// Per row: the value at δ = 0 and the minimum over the box of `a·δ + a·x0 + bias`, each
    /// moved down by the rounding margin; `kernel` is `concretize` (dense rows, `cols` = samples)
    /// or `wconcretize` (windowed rows, `cols` = rows).
    #[allow(clippy::too_many_arguments)]
    fn concretize(
        &mut self,
        kernel: &str,
        (a, bias, mag): (Buf, Buf, Buf),
        (x0, lo, hi): (Buf, Buf, Buf),
        idx: u64,
        cols: usize,
        r: usize,
    ) -> Result<(Buf, Buf), EngineError> {
        let (at_zero, lower) = (self.alloc(r)?, self.alloc(r)?);
        self.launch(
            kernel,
            &[
                a.addr,
                bias.addr,
                mag.addr,
                x0.addr,
                lo.addr,
                hi.addr,
                at_zero.addr,
                lower.addr,
            ],
            idx,
            cols,
            r,
        )?;
        Ok((at_zero, lower))
    }

    /// Adds functionals `a` into the pending slot of node `input`.
    fn settle(
        &mut self,
        pending: &mut [Option<Buf>],
        input: usize,
        a: Buf,
        len: usize,
    ) -> Result<(), EngineError> {
        match pending[input] {
            Some(existing) => {
                self.launch("acc", &[existing.addr, a.addr], 0, 0, len)?;
                self.release(a);
            }
            None => pending[input] = Some(a),
        }
        Ok(())
    }

    /// The final CROWN pass of samples `chunk`: per sample and class j ≠ y, the margin
    /// `f_y − f_j` pulled back to the input and concretised.
    fn final_crown(
        &mut self,
        inputs: ArrayView2<f64>,
        labels: &[usize],
        chunk: &[usize],
        inter: &[Arc<Intermediate>],
        delta: &DeltaBox,
        rows: usize,
    ) -> Result<Vec<SampleBounds>, EngineError> {
        let graph = self.graph;
        let ns = chunk.len();
        let d = inputs.ncols();
        let k = graph.node(graph.output).numel();
        let x0 = self.upload(&Self::columns(inputs, chunk))?;
        let lo = self.upload(&delta.lo.to_vec())?;
        let hi = self.upload(&delta.hi.to_vec())?;
        let mut bounds: Bounds = vec![None; graph.nodes.len()];
        for (id, bound) in bounds.iter_mut().enumerate() {
            if !self.info.relu_input[id] {
                continue;
            }
            let f = graph.nodes[id].numel();
            let (mut lv, mut uv) = (vec![0.0; f * ns], vec![0.0; f * ns]);
            for (c, &i) in chunk.iter().enumerate() {
                let (l, u) = inter[i].bounds[id].as_ref().expect("ReLU input bounded");
                for n in 0..f {
                    lv[n * ns + c] = l[n];
                    uv[n * ns + c] = u[n];
                }
            }
            *bound = Some((self.upload(&lv)?, self.upload(&uv)?));
        }
        // Rows: (sample column, label, other class).
        let all: Vec<(usize, usize, usize)> = chunk
            .iter()
            .enumerate()
            .flat_map(|(c, &i)| {
                let y = labels[i];
                (0..k).filter(move |&j| j != y).map(move |j| (c, y, j))
            })
            .collect();
        let per_group = (rows / (k - 1)).max(1) * (k - 1);
        let mut a_rows = Array2::<f64>::zeros((all.len(), d));
        let (mut b_rows, mut lower_rows) = (vec![0.0; all.len()], vec![0.0; all.len()]);
        let mark = self.live.len();
        for (g, group) in all.chunks(per_group).enumerate() {
            let r = group.len();
            let mut index: Vec<i64> = group.iter().map(|p| p.0 as i64).collect();
            index.extend(group.iter().map(|p| p.1 as i64));
            index.extend(group.iter().map(|p| p.2 as i64));
            let idx = self.upload_index(&index)?;
            let plus = self.upload(&vec![1.0; r])?;
            let minus = self.upload(&vec![-1.0; r])?;
            let a = self.alloc(k * r)?;
            self.launch("seed", &[a.addr, plus.addr], idx.addr + 8 * r as u64, 0, r)?;
            self.launch(
                "seed",
                &[a.addr, minus.addr],
                idx.addr + 16 * r as u64,
                0,
                r,
            )?;
            let (bias, mag) = (self.alloc(r)?, self.alloc(r)?);
            let a_in = self.back_substitute(
                graph.output.index(),
                a,
                (bias, mag),
                r,
                idx.addr,
                &bounds,
                ns,
            )?;
            let (at_zero, lower) = self.concretize(
                "concretize",
                (a_in, bias, mag),
                (x0, lo, hi),
                idx.addr,
                ns,
                r,
            )?;
            let (av, bv, lv) = (
                self.download(a_in)?,
                self.download(at_zero)?,
                self.download(lower)?,
            );
            let base = g * per_group;
            for t in 0..r {
                for n in 0..d {
                    a_rows[[base + t, n]] = av[n * r + t];
                }
                b_rows[base + t] = bv[t];
                lower_rows[base + t] = lv[t];
            }
            for slot in mark..self.live.len() {
                self.release(Buf { slot, addr: 0 });
            }
        }
        let out_name = &graph.node(graph.output).name;
        if a_rows
            .iter()
            .chain(&b_rows)
            .chain(&lower_rows)
            .any(|v| !v.is_finite())
        {
            return Err(EngineError::NonFinite(format!(
                "margin bound at `{out_name}`"
            )));
        }
        Ok(chunk
            .iter()
            .enumerate()
            .map(|(c, &i)| {
                let span = c * (k - 1)..(c + 1) * (k - 1);
                SampleBounds {
                    label: labels[i],
                    others: (0..k).filter(|&j| j != labels[i]).collect(),
                    a: a_rows.slice(ndarray::s![span.clone(), ..]).to_owned(),
                    b: Array1::from(b_rows[span.clone()].to_vec()),
                    samplewise_lower: Array1::from(lower_rows[span].to_vec()),
                }
            })
            .collect())
    }
}
