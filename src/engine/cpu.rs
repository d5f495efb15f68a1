//! The CPU bound engine: concrete evaluation, its input gradient, IBP, CROWN (auto_LiRPA
//! `method='backward'`) and α-CROWN, batched over samples with rayon.

use super::cache::{BoundCache, Intermediate};
use super::linop;
use super::window;
use super::{BoundMethod, DeltaBox, MarginBounds, RowPrecision, SampleBounds};
use crate::diagnostics::Diagnostic;
use crate::ir::{Graph, NodeId, Op};
use crate::source::Span;
use ndarray::{s, Array1, Array2, ArrayView1, ArrayView2, Axis, Zip};
use rayon::prelude::*;
use std::fmt;

/// Relative outward rounding applied to every bound (see the module doc of [`crate::engine`]).
pub const SAFETY_REL: f64 = 1e-9;

/// Intermediate-bound neurons back-substituted together (both sides: `2 ·` this many rows, raised
/// to a whole padded batch): bounds memory and the rows' working set on big maps (Conv-big's
/// first ReLU: 15k live neurons × 256 rows is 31 MB, half of 512's).
const NEURON_CHUNK: usize = 128;

/// Samples per rayon task in concrete evaluation.
const FORWARD_CHUNK: usize = 32;

#[derive(Clone, Debug, PartialEq)]
pub enum EngineError {
    /// An op the bound engines do not handle (e.g. max pooling).
    Unsupported {
        node: String,
        op: &'static str,
        origin: Option<Span>,
    },
    /// Inputs inconsistent with the graph (shapes, labels, box).
    InvalidInput(String),
    /// A bound or value became NaN or infinite.
    NonFinite(String),
    /// The kernel device failed (driver, compiler, memory).
    Device(String),
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::Unsupported { node, op, .. } => {
                write!(
                    f,
                    "layer `{node}`: operation `{op}` is not supported by the bound engine"
                )
            }
            EngineError::InvalidInput(m) => write!(f, "invalid engine input: {m}"),
            EngineError::NonFinite(m) => write!(f, "non-finite value: {m}"),
            EngineError::Device(m) => write!(f, "device error: {m}"),
        }
    }
}

impl std::error::Error for EngineError {}

impl EngineError {
    /// Stable codes: E0402 unsupported op, E0403 invalid request, E0404 non-finite value,
    /// E0405 device failure.
    pub fn code(&self) -> &'static str {
        match self {
            EngineError::Unsupported { .. } => "E0402",
            EngineError::InvalidInput(_) => "E0403",
            EngineError::NonFinite(_) => "E0404",
            EngineError::Device(_) => "E0405",
        }
    }

    pub fn to_diagnostic(&self) -> Diagnostic {
        let d = Diagnostic::error(self.code(), self.to_string());
        match self {
            EngineError::Unsupported { origin: Some(span), op, .. } => d
                .with_primary(*span, format!("`{op}` declared here"))
                .with_help("max pooling has no sound linear relaxation in upcc; use average pooling or a strided conv"),
            _ => d,
        }
    }
}

fn unsupported(graph: &Graph) -> Result<(), EngineError> {
    for node in &graph.nodes {
        if let Op::MaxPool { .. } = node.op {
            return Err(EngineError::Unsupported {
                node: node.name.clone(),
                op: node.op.kind(),
                origin: node.origin,
            });
        }
    }
    Ok(())
}

fn check_inputs(graph: &Graph, inputs: ArrayView2<f64>) -> Result<(), EngineError> {
    let d: usize = graph.input_shape().iter().product();
    if inputs.ncols() != d {
        return Err(EngineError::InvalidInput(format!(
            "inputs have {} features, the network expects {d}",
            inputs.ncols()
        )));
    }
    if inputs.iter().any(|v| !v.is_finite()) {
        return Err(EngineError::NonFinite("input value".into()));
    }
    Ok(())
}

/// All node values for rows `x` (n samples), in node order.
fn forward_all(graph: &Graph, x: ArrayView2<f64>) -> Vec<Array2<f64>> {
    let mut values: Vec<Array2<f64>> = Vec::with_capacity(graph.nodes.len());
    for node in &graph.nodes {
        let v = match node.op {
            Op::Input => x.to_owned(),
            Op::Relu => values[node.inputs[0].index()].mapv(|t| t.max(0.0)),
            _ => {
                let ins: Vec<ArrayView2<f64>> = node
                    .inputs
                    .iter()
                    .map(|i| values[i.index()].view())
                    .collect();
                linop::forward(graph, node, &ins, false)
            }
        };
        values.push(v);
    }
    values
}

/// Concrete evaluation: `inputs` `[n, d]` (flattened row-major) to logits `[n, K]`.
pub fn forward(graph: &Graph, inputs: ArrayView2<f64>) -> Result<Array2<f64>, EngineError> {
    unsupported(graph)?;
    check_inputs(graph, inputs)?;
    let k = graph.node(graph.output).numel();
    let chunks: Vec<Array2<f64>> = inputs
        .axis_chunks_iter(Axis(0), FORWARD_CHUNK)
        .into_par_iter()
        .map(|x| forward_all(graph, x).swap_remove(graph.output.index()))
        .collect();
    Ok(stack_rows(chunks, k))
}

fn stack_rows(pieces: Vec<Array2<f64>>, width: usize) -> Array2<f64> {
    let rows = pieces.iter().map(|p| p.nrows()).sum();
    let mut out = Array2::zeros((rows, width));
    let mut at = 0;
    for p in pieces {
        out.slice_mut(s![at..at + p.nrows(), ..]).assign(&p);
        at += p.nrows();
    }
    out
}

/// Every node value of a batch, kept by [`forward_tape`] for a later [`vjp_tape`].
pub struct Tape {
    /// Per chunk of `FORWARD_CHUNK` samples, the values of all nodes.
    chunks: Vec<Vec<Array2<f64>>>,
    rows: usize,
}

/// Concrete evaluation that keeps the activations: logits `[n, K]` and the tape for
/// [`vjp_tape`], so that an attack step pays for one forward pass instead of two.
pub fn forward_tape(
    graph: &Graph,
    inputs: ArrayView2<f64>,
) -> Result<(Array2<f64>, Tape), EngineError> {
    unsupported(graph)?;
    check_inputs(graph, inputs)?;
    let k = graph.node(graph.output).numel();
    let chunks: Vec<Vec<Array2<f64>>> = inputs
        .axis_chunks_iter(Axis(0), FORWARD_CHUNK)
        .into_par_iter()
        .map(|x| forward_all(graph, x))
        .collect();
    let out = chunks
        .iter()
        .map(|values| values[graph.output.index()].clone())
        .collect();
    let tape = Tape {
        chunks,
        rows: inputs.nrows(),
    };
    Ok((stack_rows(out, k), tape))
}

/// Input gradient of `Σᵢ grad_logits[i] · logits(inputs[i])`, i.e. the vector-Jacobian product;
/// for a loss L(logits) pass `grad_logits = ∂L/∂logits`. ReLU'(0) is taken as 0.
pub fn vjp(
    graph: &Graph,
    inputs: ArrayView2<f64>,
    grad_logits: ArrayView2<f64>,
) -> Result<Array2<f64>, EngineError> {
    let (_, tape) = forward_tape(graph, inputs)?;
    vjp_tape(graph, &tape, grad_logits)
}

/// [`vjp`] at the inputs recorded in `tape` (by [`forward_tape`] on the same graph).
pub fn vjp_tape(
    graph: &Graph,
    tape: &Tape,
    grad_logits: ArrayView2<f64>,
) -> Result<Array2<f64>, EngineError> {
    let k = graph.node(graph.output).numel();
    let d: usize = graph.input_shape().iter().product();
    let shapes_match = tape.chunks.iter().all(|values| {
        values.len() == graph.nodes.len()
            && values
                .iter()
                .zip(&graph.nodes)
                .all(|(v, node)| v.ncols() == node.numel())
    });
    if !shapes_match {
        return Err(EngineError::InvalidInput(
            "the tape was recorded on another graph".into(),
        ));
    }
    if grad_logits.dim() != (tape.rows, k) {
        return Err(EngineError::InvalidInput(format!(
            "grad_logits must be [{}, {k}]",
            tape.rows
        )));
    }
    let pieces: Vec<Array2<f64>> = tape
        .chunks
        .par_iter()
        .zip(grad_logits.axis_chunks_iter(Axis(0), FORWARD_CHUNK))
        .map(|(values, g)| {
            let mut adj: Vec<Option<Array2<f64>>> = vec![None; graph.nodes.len()];
            adj[graph.output.index()] = Some(g.to_owned());
            for id in (1..graph.nodes.len()).rev() {
                let Some(a) = adj[id].take() else { continue };
                let node = &graph.nodes[id];
                let contributions = match node.op {
                    Op::Relu => {
                        let pre = &values[node.inputs[0].index()];
                        vec![Zip::from(&a)
                            .and(pre)
                            .map_collect(|&g, &p| if p > 0.0 { g } else { 0.0 })]
                    }
                    _ => linop::backward(graph, node, a).a,
                };
                for (input, c) in node.inputs.iter().zip(contributions) {
                    accumulate(&mut adj[input.index()], c);
                }
            }
            adj[0]
                .take()
                .unwrap_or_else(|| Array2::zeros((g.nrows(), d)))
        })
        .collect();
    Ok(stack_rows(pieces, d))
}

fn accumulate(slot: &mut Option<Array2<f64>>, value: Array2<f64>) {
    match slot {
        Some(acc) => *acc += &value,
        None => *slot = Some(value),
    }
}

/// Static facts about a graph the bound engine needs.
pub(crate) struct GraphInfo {
    /// Nodes whose value the output depends on.
    pub live: Vec<bool>,
    /// Inputs of ReLUs (pre-activations) needing bounds.
    pub relu_input: Vec<bool>,
    /// Whether IBP is exact at this node (at most one mixing affine op after the input).
    pub exact_ibp: Vec<bool>,
    /// Whether the local-window back-substitution handles this node's neurons.
    pub window: Vec<bool>,
    /// ReLU inputs with no ReLU downstream of any of their consumers: once CROWN proves a neuron
    /// here stable from one side, its other bound can change nothing (see [`sample_intermediate`]).
    pub last_relu_input: Vec<bool>,
    /// Where far-side CROWN bounds may be skipped (tests compare against `Always`).
    pub far_sides: FarSides,
    /// Conv weights laid out for the window path's conv transposes.
    pub(crate) taps: window::TapMatrices,
    /// The scalar of the window path's rows.
    pub rows: RowPrecision,
}

impl GraphInfo {
    pub fn new(graph: &Graph) -> Self {
        let n = graph.nodes.len();
        let mut live = vec![false; n];
        live[graph.output.index()] = true;
        for k in (0..n).rev() {
            if live[k] {
                for i in &graph.nodes[k].inputs {
                    live[i.index()] = true;
                }
            }
        }
        let mut relu_input = vec![false; n];
        // 0: elementwise function of the input, 1: one mixing affine op after that, 2: other.
        let mut class = vec![2u8; n];
        for (k, node) in graph.nodes.iter().enumerate() {
            if matches!(node.op, Op::Relu) && live[k] {
                relu_input[node.inputs[0].index()] = true;
            }
            class[k] = match node.op {
                Op::Input => 0,
                Op::ChannelAffine { .. } | Op::Reshape => class[node.inputs[0].index()],
                Op::Linear { .. } | Op::Conv2d { .. } | Op::AvgPool { .. }
                    if class[node.inputs[0].index()] == 0 =>
                {
                    1
                }
                _ => 2,
            };
        }
        // Whether some live ReLU lies strictly downstream of each node.
        let mut consumers: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (k, node) in graph.nodes.iter().enumerate() {
            for i in &node.inputs {
                consumers[i.index()].push(k);
            }
        }
        let mut relu_below = vec![false; n];
        for k in (0..n).rev() {
            relu_below[k] = consumers[k]
                .iter()
                .any(|&c| (matches!(graph.nodes[c].op, Op::Relu) && live[c]) || relu_below[c]);
        }
        let last_relu_input = (0..n)
            .map(|k| relu_input[k] && consumers[k].iter().all(|&c| !relu_below[c]))
            .collect();
        GraphInfo {
            live,
            relu_input,
            exact_ibp: class.iter().map(|&c| c <= 1).collect(),
            window: super::window::window_nodes(graph),
            last_relu_input,
            far_sides: FarSides::DenseLayers,
            rows: RowPrecision::default(),
            taps: window::TapMatrices::new(graph),
        }
    }
}

pub(crate) type Interval = (Array1<f64>, Array1<f64>);

fn widen(l: &mut Array1<f64>, u: &mut Array1<f64>, mag: &Array1<f64>) {
    Zip::from(l).and(u).and(mag).for_each(|l, u, &m| {
        let t = SAFETY_REL * (1.0 + m);
        *l -= t;
        *u += t;
    });
}

fn check_finite(v: &Array1<f64>, what: &str, node: &str) -> Result<(), EngineError> {
    if v.iter().all(|t| t.is_finite()) {
        Ok(())
    } else {
        Err(EngineError::NonFinite(format!("{what} at layer `{node}`")))
    }
}

/// Lower ReLU slopes per (spec row, neuron), for α-CROWN; absent means CROWN's choice.
type Alphas = Vec<Option<Array2<f64>>>;

/// Result of a back-substitution to the input.
struct Backsub {
    /// `[rows, d]` coefficients with respect to the input.
    a: Array2<f64>,
    bias: Array1<f64>,
    /// Σ of absolute constant terms (rounding scale).
    mag: Array1<f64>,
    /// Functionals at each ReLU output before relaxation (only when requested).
    relu_a: Vec<Option<Array2<f64>>>,
    /// Functionals left for the window path (see [`back_substitute`]), in node order.
    handed_off: Vec<window::Handoff>,
}

pub(crate) fn crown_lower_slope(l: f64, u: f64) -> f64 {
    if u > -l {
        1.0
    } else {
        0.0
    }
}

/// The CROWN relaxation of one ReLU with pre-activation bounds [l, u]:
/// (lower slope, upper slope, upper intercept, unstable). Stable neurons are exact.
pub(crate) fn relu_relaxation(l: f64, u: f64) -> (f64, f64, f64, bool) {
    if u <= 0.0 {
        (0.0, 0.0, 0.0, false)
    } else if l >= 0.0 {
        (1.0, 1.0, 0.0, false)
    } else {
        let slope = u / (u - l);
        (crown_lower_slope(l, u), slope, -l * slope, true)
    }
}

/// Pulls the functionals seeded at `seed` back to the input, relaxing each ReLU with the
/// pre-activation bounds in `bounds` (chord above, slope `alpha` or CROWN's choice below).
/// Functionals reaching a node marked in `handoff` stop there (in `handed_off`; `a` is then
/// empty): the window path finishes them. Those about to cross a linear op into such a node
/// stop before it (bias terms counted), so the window path does its product on kept neurons.
#[allow(clippy::too_many_arguments)]
fn back_substitute(
    graph: &Graph,
    bounds: &[Option<Interval>],
    seed: NodeId,
    a: Array2<f64>,
    bias: Array1<f64>,
    alphas: Option<&Alphas>,
    keep_relu_a: bool,
    handoff: Option<&[bool]>,
) -> Backsub {
    let handed = |id: usize| handoff.is_some_and(|h| h[id]);
    let consumers = graph.consumer_counts();
    // The handed-off node a linear op reads, through reshapes, when nothing else reads them:
    // the window path then takes the op's rows and does its product on kept neurons only.
    let handed_below = |id: usize| {
        let mut p = graph.nodes[id].inputs[0].index();
        while matches!(graph.nodes[p].op, Op::Reshape) && consumers[p] == 1 {
            p = graph.nodes[p].inputs[0].index();
        }
        (handed(p) && consumers[p] == 1).then_some(p)
    };
    let mut handed_off = Vec::new();
    let rows = a.nrows();
    let d: usize = graph.input_shape().iter().product();
    let mut pending: Vec<Option<Array2<f64>>> = vec![None; graph.nodes.len()];
    let mut relu_a: Vec<Option<Array2<f64>>> = vec![None; graph.nodes.len()];
    pending[seed.index()] = Some(a);
    let mut bias = bias;
    let mut mag = bias.mapv(f64::abs);
    for id in (1..=seed.index()).rev() {
        let Some(a) = pending[id].take() else {
            continue;
        };
        if handed(id) {
            handed_off.push(window::Handoff {
                node: id,
                rows: a,
                through: None,
            });
            continue;
        }
        let node = &graph.nodes[id];
        if let (Op::Linear { bias: b, .. }, Some(p)) = (&node.op, handed_below(id)) {
            bias += &a.dot(b);
            mag += &a.mapv(f64::abs).dot(&b.mapv(f64::abs));
            handed_off.push(window::Handoff {
                node: p,
                rows: a,
                through: Some(id),
            });
            continue;
        }
        if let Op::Relu = node.op {
            let p = node.inputs[0].index();
            let (l, u) = bounds[p].as_ref().expect("pre-activation bounds computed");
            let alpha = alphas.and_then(|al| al[id].as_ref());
            // Per neuron: lower slope, upper slope, upper intercept; stable neurons are exact.
            let count = l.len();
            let (mut lower, mut upper, mut intercept) =
                (vec![0.0; count], vec![0.0; count], vec![0.0; count]);
            let mut unstable = vec![false; count];
            for n in 0..count {
                (lower[n], upper[n], intercept[n], unstable[n]) = relu_relaxation(l[n], u[n]);
            }
            if keep_relu_a {
                relu_a[id] = Some(a.clone());
            }
            let mut a_in = a;
            for (r, mut row) in a_in.axis_iter_mut(Axis(0)).enumerate() {
                let row = row.as_slice_mut().expect("contiguous rows");
                let mut brow = 0.0;
                let mut mrow = 0.0;
                match alpha {
                    None => {
                        for (((c, &lo), &up), &t) in
                            row.iter_mut().zip(&lower).zip(&upper).zip(&intercept)
                        {
                            let (pos, neg) = (c.max(0.0), c.min(0.0));
                            brow += neg * t;
                            mrow -= neg * t;
                            *c = pos * lo + neg * up;
                        }
                    }
                    Some(al) => {
                        let al = al.row(r);
                        for n in 0..count {
                            let c = row[n];
                            let (pos, neg) = (c.max(0.0), c.min(0.0));
                            let lo = if unstable[n] { al[n] } else { lower[n] };
                            brow += neg * intercept[n];
                            mrow -= neg * intercept[n];
                            row[n] = pos * lo + neg * upper[n];
                        }
                    }
                }
                bias[r] += brow;
                mag[r] += mrow;
            }
            accumulate(&mut pending[p], a_in);
        } else {
            let pb = linop::backward(graph, node, a);
            bias += &pb.bias;
            mag += &pb.bias_mag;
            for (input, c) in node.inputs.iter().zip(pb.a) {
                accumulate(&mut pending[input.index()], c);
            }
        }
    }
    let a = match pending[0].take() {
        Some(a) if handed(0) => {
            handed_off.push(window::Handoff {
                node: 0,
                rows: a,
                through: None,
            });
            Array2::zeros((rows, 0))
        }
        Some(a) => a,
        None if handed(0) => Array2::zeros((rows, 0)),
        None => Array2::zeros((rows, d)),
    };
    handed_off.reverse();
    Backsub {
        a,
        bias,
        mag,
        relu_a,
        handed_off,
    }
}

/// Value at δ = 0 and min over the box, each made safe by the rounding margin; and the margin.
fn concretize(bs: &Backsub, x0: ArrayView1<f64>, delta: &DeltaBox) -> (Array1<f64>, Array1<f64>) {
    let rows = bs.a.nrows();
    let mut at_zero = Array1::zeros(rows);
    let mut lower = Array1::zeros(rows);
    for r in 0..rows {
        let a = bs.a.row(r);
        let mut value = bs.bias[r];
        let mut slack = 0.0;
        let mut mag = bs.mag[r];
        for n in 0..a.len() {
            let c = a[n];
            value += c * x0[n];
            slack += (c * delta.lo[n]).min(c * delta.hi[n]);
            mag += c.abs() * (x0[n].abs() + delta.lo[n].abs().max(delta.hi[n].abs()));
        }
        (at_zero[r], lower[r]) = finish_bound(value, slack, mag);
    }
    (at_zero, lower)
}

/// A row's value at δ = 0 and its minimum over the box, each moved down by the rounding margin
/// for the magnitude `mag` of its terms.
pub(crate) fn finish_bound(value: f64, slack: f64, mag: f64) -> (f64, f64) {
    let safety = SAFETY_REL * (1.0 + mag + value.abs());
    (value - safety, value - safety + slack)
}

fn views(v: &[Array2<f64>]) -> Vec<ArrayView2<'_, f64>> {
    v.iter().map(|a| a.view()).collect()
}

/// IBP through one affine node, from the bounds of its inputs (widened for rounding), with the
/// magnitude its rounding margin was scaled by.
fn ibp_node(graph: &Graph, id: usize, bounds: &[Option<Interval>]) -> (Interval, Array1<f64>) {
    let node = &graph.nodes[id];
    let mut mids = Vec::new();
    let mut rads = Vec::new();
    let mut abs_mids = Vec::new();
    for i in &node.inputs {
        let (l, u) = bounds[i.index()].as_ref().expect("inputs bounded first");
        let mid = (l + u) * 0.5;
        let rad = (u - l) * 0.5;
        abs_mids.push(mid.mapv(f64::abs).insert_axis(Axis(0)));
        mids.push(mid.insert_axis(Axis(0)));
        rads.push(rad.insert_axis(Axis(0)));
    }
    let mid = linop::forward(graph, node, &views(&mids), false).remove_axis(Axis(0));
    let rad = linop::forward(graph, node, &views(&rads), true).remove_axis(Axis(0));
    let scale = linop::forward(graph, node, &views(&abs_mids), true).remove_axis(Axis(0));
    let mut l = &mid - &rad;
    let mut u = &mid + &rad;
    let mag = &scale + &rad + mid.mapv(f64::abs);
    widen(&mut l, &mut u, &mag);
    ((l, u), mag)
}

/// Which IBP-unstable neurons may go without their far-side CROWN bound once the bound on the
/// side of zero their value at x lies on proves them stable. A stable neuron's far-side bound
/// enters no relaxation; it only feeds the IBP of later nodes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum FarSides {
    /// Both sides of every IBP-unstable neuron (the reference the tests compare with).
    #[cfg_attr(not(test), allow(dead_code))]
    Always,
    /// Skipped only at the last ReLU layer, where no later IBP is read: exact by structure.
    LastLayer,
    /// Also skipped at dense ReLU layers where the near side proved at least half the neurons
    /// stable, then certified per later neuron not to change any relaxation (see
    /// [`intermediate_pass`]); a sample that fails the certificate is redone `LastLayer`.
    /// (Window layers keep both sides: there the looser IBP below cost more rows than it saved.)
    DenseLayers,
    /// At every layer, however few neurons the near side proved stable, with the same
    /// certificate: slower on ResNets, kept because the certificate is needed most there, so the
    /// tests exercise it there.
    #[cfg_attr(not(test), allow(dead_code))]
    Everywhere,
}

/// Intermediate bounds of one sample: pre-activation intervals of every ReLU and the output
/// interval. CROWN bounds are computed only for IBP-unstable neurons and intersected with IBP.
/// Every relaxation, hence every margin bound, is that of the two-sided pass (`FarSides::Always`).
pub(crate) fn sample_intermediate(
    graph: &Graph,
    info: &GraphInfo,
    x0: ArrayView1<f64>,
    delta: &DeltaBox,
    crown: bool,
) -> Result<Intermediate, EngineError> {
    if let Some(inter) = intermediate_pass(graph, info, x0, delta, crown, info.far_sides)? {
        return Ok(inter);
    }
    Ok(
        intermediate_pass(graph, info, x0, delta, crown, FarSides::LastLayer)?
            .expect("`LastLayer` needs no certificate"),
    )
}

/// One intermediate pass; `None` when the certificate below cannot show its result equal to
/// the two-sided pass's.
///
/// The certificate. Write S for this pass and F for the two-sided one, and assume both agree on
/// every relaxation so far. S's intervals contain F's, so S's IBP contains F's and S treats a
/// superset of F's neurons with CROWN, getting the same CROWN bounds. To bound F's IBP from the
/// inside, S carries inner intervals, contained in F's: a skipped side becomes the value at x
/// (inside every sound interval), and an IBP from inner intervals is shrunk by a margin that
/// covers the rounding margins of both. A neuron then gets the same relaxation in S and F if
/// S proves it stable from one side (F, computing that side too or finding it IBP-stable, agrees
/// on the sign), or if S leaves it unstable with CROWN tighter than both S's IBP and the inner
/// IBP on each side, and the inner IBP unstable (so F computes CROWN too, and it binds in both).
fn intermediate_pass(
    graph: &Graph,
    info: &GraphInfo,
    x0: ArrayView1<f64>,
    delta: &DeltaBox,
    crown: bool,
    far_sides: FarSides,
) -> Result<Option<Intermediate>, EngineError> {
    let n = graph.nodes.len();
    let mut bounds: Vec<Option<Interval>> = vec![None; n];
    // x0 + lo may round up (x0 + hi down): widen so the interval holds the real sums.
    let (mut lo, mut hi) = (&x0 + &delta.lo, &x0 + &delta.hi);
    let scale = x0.mapv(f64::abs) + delta.lo.mapv(f64::abs) + delta.hi.mapv(f64::abs);
    widen(&mut lo, &mut hi, &scale);
    bounds[0] = Some((lo, hi));
    let mut center: Option<Vec<Array1<f64>>> = None;
    // Inside F's intervals; a copy of `bounds` (equal to F's so far) at the first skipped far
    // side, then tracked per node.
    let track = matches!(far_sides, FarSides::DenseLayers | FarSides::Everywhere);
    let mut inner: Vec<Option<Interval>> = Vec::new();
    let mut diverged = false;
    for id in 1..n {
        if !info.live[id] {
            continue;
        }
        let node = &graph.nodes[id];
        let (ibp, ibp_mag) = match node.op {
            Op::Relu => {
                let (l, u) = bounds[node.inputs[0].index()].as_ref().expect("bounded");
                ((l.mapv(|t| t.max(0.0)), u.mapv(|t| t.max(0.0))), None)
            }
            _ => {
                let (interval, mag) = ibp_node(graph, id, &bounds);
                (interval, Some(mag))
            }
        };
        let (mut l, mut u) = ibp.clone();
        check_finite(&l, "lower bound", &node.name)?;
        check_finite(&u, "upper bound", &node.name)?;
        // The inner IBP and its margin, once S and F may differ.
        let inner_ibp = diverged.then(|| match node.op {
            Op::Relu => {
                let (l, u) = inner[node.inputs[0].index()].as_ref().expect("bounded");
                let relu = (l.mapv(|t| t.max(0.0)), u.mapv(|t| t.max(0.0)));
                let zero = Array1::zeros(relu.0.len());
                (relu, zero)
            }
            _ => {
                let (interval, mag) = ibp_node(graph, id, &inner);
                let outer = ibp_mag.as_ref().expect("affine node");
                let margin = (&mag + outer + 1.0) * (4.0 * SAFETY_REL);
                (interval, margin)
            }
        });
        let mut computed: Vec<(usize, Option<f64>, Option<f64>)> = Vec::new();
        let mut skipped_here = false;
        if crown && info.relu_input[id] && !info.exact_ibp[id] {
            let unstable: Vec<usize> = (0..l.len()).filter(|&i| l[i] < 0.0 && u[i] > 0.0).collect();
            let skip = match far_sides {
                FarSides::Always => false,
                FarSides::LastLayer => info.last_relu_input[id],
                FarSides::DenseLayers => info.last_relu_input[id] || !info.window[id],
                FarSides::Everywhere => true,
            };
            let first: Vec<(usize, bool)> = if skip {
                let center = center.get_or_insert_with(|| center_values(graph, x0));
                unstable.iter().map(|&i| (i, center[id][i] < 0.0)).collect()
            } else {
                unstable
                    .iter()
                    .flat_map(|&i| [(i, false), (i, true)])
                    .collect()
            };
            let mut slot = vec![usize::MAX; l.len()];
            for (k, &i) in unstable.iter().enumerate() {
                slot[i] = k;
            }
            computed = unstable.iter().map(|&i| (i, None, None)).collect();
            let mut apply = |sides: &[(usize, bool)], l: &mut Array1<f64>, u: &mut Array1<f64>| {
                let values = crown_sides(graph, info, &bounds, id, sides, x0, delta);
                for (&(i, upper), &v) in sides.iter().zip(&values) {
                    let entry = &mut computed[slot[i]];
                    if upper {
                        u[i] = u[i].min(v);
                        entry.2 = Some(v);
                    } else {
                        l[i] = l[i].max(v);
                        entry.1 = Some(v);
                    }
                }
            };
            apply(&first, &mut l, &mut u);
            if skip {
                // Skipping loosens later IBP, which can cost CROWN rows there: only worth it where
                // the near side proved many neurons stable (always, at the last layer).
                let still = |&&(i, _): &&(usize, bool)| l[i] < 0.0 && u[i] > 0.0;
                let open = first.iter().filter(still).count();
                let worth = info.last_relu_input[id]
                    || far_sides == FarSides::Everywhere
                    || (first.len() - open) * 2 >= first.len();
                let second: Vec<(usize, bool)> = first
                    .iter()
                    .filter(|side| !worth || still(side))
                    .map(|&(i, upper)| (i, !upper))
                    .collect();
                skipped_here = second.len() < first.len();
                apply(&second, &mut l, &mut u);
            }
            check_finite(&l, "lower bound", &node.name)?;
            check_finite(&u, "upper bound", &node.name)?;
        }
        if let Some(((li, ui), margin)) = &inner_ibp {
            if info.relu_input[id] && !certified(&ibp, (&l, &u), (li, ui), margin, &computed) {
                return Ok(None);
            }
        }
        if track && (diverged || skipped_here) {
            if !diverged {
                inner = bounds.clone();
            }
            let center = center.get_or_insert_with(|| center_values(graph, x0));
            inner[id] = Some(inner_interval(
                &ibp,
                inner_ibp.as_ref(),
                &computed,
                &center[id],
            ));
            diverged = true;
        }
        bounds[id] = Some((l, u));
    }
    // Keep only what the final pass needs.
    for (id, b) in bounds.iter_mut().enumerate() {
        if !info.relu_input[id] && id != graph.output.index() {
            *b = None;
        }
    }
    Ok(Some(Intermediate { bounds }))
}

/// Every node's value at x.
fn center_values(graph: &Graph, x0: ArrayView1<f64>) -> Vec<Array1<f64>> {
    forward_all(graph, x0.insert_axis(Axis(0)))
        .into_iter()
        .map(|v| v.remove_axis(Axis(0)))
        .collect()
}

/// CROWN bounds of `sides` of node `id` (see [`crown_sided`]), windowed per spatial position
/// where the window path applies, else in chunks of dense rows.
fn crown_sides(
    graph: &Graph,
    info: &GraphInfo,
    bounds: &[Option<Interval>],
    id: usize,
    sides: &[(usize, bool)],
    x0: ArrayView1<f64>,
    delta: &DeltaBox,
) -> Array1<f64> {
    let mut out = Array1::zeros(sides.len());
    if sides.is_empty() {
        return out;
    }
    let tables = window::SampleTables::new(graph, &info.window, bounds, id, (x0, delta), info.rows);
    if info.window[id] {
        let shape = &graph.nodes[id].shape;
        let plane = shape[1] * shape[2];
        let mut by_position: Vec<Vec<usize>> = vec![Vec::new(); plane];
        for (k, &(i, _)) in sides.iter().enumerate() {
            by_position[i % plane].push(k);
        }
        for group in by_position.iter().filter(|g| !g.is_empty()) {
            let local: Vec<(usize, bool)> = group.iter().map(|&k| sides[k]).collect();
            let values = window::crown_window_sided(graph, &info.taps, &tables, id, &local);
            for (&k, &v) in group.iter().zip(&values) {
                out[k] = v;
            }
        }
    } else {
        // Whole padded batches: the padding rows of a full chunk would be computed for nothing.
        let chunk_sides = window::padded_rows(info.rows, 2 * NEURON_CHUNK);
        for (c, chunk) in sides.chunks(chunk_sides).enumerate() {
            let windows = Some((&info.window[..], &info.taps, &tables));
            let values = crown_sided(graph, bounds, windows, id, chunk, x0, delta);
            let at = c * chunk_sides;
            out.slice_mut(s![at..at + chunk.len()]).assign(&values);
        }
    }
    out
}

/// Whether every neuron of a ReLU input gets the same relaxation in this pass as in the
/// two-sided one (see [`intermediate_pass`]): `ibp` is this pass's IBP, `(l, u)` its final
/// bounds, `inner` the inner IBP with its `margin`, `computed` the CROWN sides per IBP-unstable
/// neuron.
fn certified(
    ibp: &Interval,
    (l, u): (&Array1<f64>, &Array1<f64>),
    inner: (&Array1<f64>, &Array1<f64>),
    margin: &Array1<f64>,
    computed: &[(usize, Option<f64>, Option<f64>)],
) -> bool {
    let (li, ui) = inner;
    // IBP-stable here: F's IBP, inside this one, is stable with the same sign (with margin).
    let mut crown = vec![false; l.len()];
    for &(i, _, _) in computed {
        crown[i] = true;
    }
    let ibp_stable_ok = (0..l.len())
        .filter(|&i| !crown[i])
        .all(|i| ibp.0[i] >= margin[i] || ibp.1[i] <= -margin[i]);
    ibp_stable_ok
        && computed.iter().all(|&(i, cl, cu)| {
            if l[i] >= 0.0 || u[i] <= 0.0 {
                return true;
            }
            let (Some(cl), Some(cu)) = (cl, cu) else {
                return false;
            };
            li[i] + margin[i] < 0.0
                && ui[i] - margin[i] > 0.0
                && cl >= ibp.0[i]
                && cl >= li[i] + margin[i]
                && cu <= ibp.1[i]
                && cu <= ui[i] - margin[i]
        })
}

/// An interval inside the two-sided pass's interval for this node: the inner IBP shrunk by its
/// margin (or this pass's IBP, when the inputs still agree), tightened by the CROWN sides
/// computed, a skipped side collapsed to the value at x, and always holding the value at x.
fn inner_interval(
    ibp: &Interval,
    inner_ibp: Option<&(Interval, Array1<f64>)>,
    computed: &[(usize, Option<f64>, Option<f64>)],
    center: &Array1<f64>,
) -> Interval {
    let (mut lo, mut hi) = match inner_ibp {
        Some(((li, ui), margin)) => (li + margin, ui - margin),
        None => ibp.clone(),
    };
    for &(i, cl, cu) in computed {
        lo[i] = cl.map_or(f64::INFINITY, |v| lo[i].max(v));
        hi[i] = cu.map_or(f64::NEG_INFINITY, |v| hi[i].min(v));
    }
    Zip::from(&mut lo)
        .and(&mut hi)
        .and(center)
        .for_each(|lo, hi, &z| {
            *lo = lo.min(z);
            *hi = hi.max(z);
        });
    (lo, hi)
}

/// CROWN bounds of neurons of node `id`, one per `(neuron, upper)`: the lower bound, or the
/// upper bound where `upper`. With `windows` (the graph's window-path nodes, its tap matrices
/// and this sample's tables), dense rows continue on the window path once they reach it.
pub(crate) fn crown_sided(
    graph: &Graph,
    bounds: &[Option<Interval>],
    windows: Option<(&[bool], &window::TapMatrices, &window::SampleTables)>,
    id: usize,
    sides: &[(usize, bool)],
    x0: ArrayView1<f64>,
    delta: &DeltaBox,
) -> Array1<f64> {
    let node = &graph.nodes[id];
    let m = sides.len();
    let idx: Vec<usize> = sides.iter().map(|&(i, _)| i).collect();
    let (seed, mut a, mut b) = match linop::jacobian_rows(graph, node, &idx) {
        Some((a, b)) => (node.inputs[0], a, b),
        None => {
            let mut a = Array2::zeros((m, node.numel()));
            for (r, &i) in idx.iter().enumerate() {
                a[[r, i]] = 1.0;
            }
            (NodeId(id as u32), a, Array1::zeros(m))
        }
    };
    // An upper bound is minus the lower bound of the negated neuron.
    for (r, &(_, upper)) in sides.iter().enumerate() {
        if upper {
            a.row_mut(r).mapv_inplace(|t| -t);
            b[r] = -b[r];
        }
    }
    let handoff = windows.map(|(window, _, _)| window);
    let bs = back_substitute(graph, bounds, seed, a, b, None, false, handoff);
    let mut lower = match windows {
        Some((_, taps, tables)) if !bs.handed_off.is_empty() => {
            window::finish_dense_rows(graph, taps, tables, bs.handed_off, bs.bias, bs.mag)
        }
        _ => concretize(&bs, x0, delta).1,
    };
    for (r, &(_, upper)) in sides.iter().enumerate() {
        if upper {
            lower[r] = -lower[r];
        }
    }
    lower
}

fn spec_rows(k: usize, label: usize) -> (Vec<usize>, Array2<f64>) {
    let others: Vec<usize> = (0..k).filter(|&j| j != label).collect();
    let mut c = Array2::zeros((others.len(), k));
    for (r, &j) in others.iter().enumerate() {
        c[[r, label]] = 1.0;
        c[[r, j]] = -1.0;
    }
    (others, c)
}

/// Final bounds of one sample given its intermediate bounds.
pub(crate) fn sample_margins(
    graph: &Graph,
    info: &GraphInfo,
    inter: &Intermediate,
    x0: ArrayView1<f64>,
    label: usize,
    delta: &DeltaBox,
    method: &BoundMethod,
) -> Result<SampleBounds, EngineError> {
    let k = graph.node(graph.output).numel();
    let d = x0.len();
    let (others, c) = spec_rows(k, label);
    let out_name = &graph.node(graph.output).name;
    let result = match method {
        BoundMethod::Ibp => {
            let (l, u) = inter.bounds[graph.output.index()]
                .as_ref()
                .expect("output bounded");
            let b: Array1<f64> = others.iter().map(|&j| l[label] - u[j]).collect();
            SampleBounds {
                label,
                others,
                a: Array2::zeros((k - 1, d)),
                samplewise_lower: b.clone(),
                b,
            }
        }
        BoundMethod::Crown => {
            let bs = back_substitute(
                graph,
                &inter.bounds,
                graph.output,
                c,
                Array1::zeros(k - 1),
                None,
                false,
                None,
            );
            let (b, lower) = concretize(&bs, x0, delta);
            SampleBounds {
                label,
                others,
                a: bs.a,
                b,
                samplewise_lower: lower,
            }
        }
        BoundMethod::AlphaCrown {
            iterations,
            learning_rate,
        } => alpha_crown(
            graph,
            info,
            inter,
            x0,
            label,
            delta,
            c,
            others,
            *iterations,
            *learning_rate,
        ),
    };
    check_finite(&result.b, "margin bound", out_name)?;
    check_finite(&result.samplewise_lower, "margin bound", out_name)?;
    if result.a.iter().any(|v| !v.is_finite()) {
        return Err(EngineError::NonFinite(format!(
            "margin coefficients at `{out_name}`"
        )));
    }
    Ok(result)
}

/// α-CROWN on the final spec: per spec row, the lower slopes of unstable ReLUs are optimised by
/// projected Adam ascent on the sample-wise lower bound (intermediate bounds stay CROWN's). The
/// best bound seen per row is kept, and the first iterate is CROWN itself, so the result is
/// never looser than CROWN.
#[allow(clippy::too_many_arguments)]
fn alpha_crown(
    graph: &Graph,
    info: &GraphInfo,
    inter: &Intermediate,
    x0: ArrayView1<f64>,
    label: usize,
    delta: &DeltaBox,
    c: Array2<f64>,
    others: Vec<usize>,
    iterations: usize,
    learning_rate: f64,
) -> SampleBounds {
    let rows = c.nrows();
    let n_nodes = graph.nodes.len();
    let mut alphas: Alphas = vec![None; n_nodes];
    let mut unstable: Vec<Option<Array1<bool>>> = vec![None; n_nodes];
    for (id, node) in graph.nodes.iter().enumerate() {
        if let (Op::Relu, true) = (&node.op, info.live[id]) {
            let (l, u) = inter.bounds[node.inputs[0].index()]
                .as_ref()
                .expect("bounded");
            let init = Zip::from(l)
                .and(u)
                .map_collect(|&l, &u| crown_lower_slope(l, u));
            alphas[id] = Some(
                init.broadcast((rows, l.len()))
                    .expect("broadcast")
                    .to_owned(),
            );
            unstable[id] = Some(Zip::from(l).and(u).map_collect(|&l, &u| l < 0.0 && u > 0.0));
        }
    }
    let mut adam_m: Vec<Option<Array2<f64>>> = alphas
        .iter()
        .map(|a| a.as_ref().map(|a| Array2::zeros(a.dim())))
        .collect();
    let mut adam_v = adam_m.clone();
    let d = x0.len();
    let mut best_a = Array2::zeros((rows, d));
    let mut best_b = Array1::from_elem(rows, f64::NEG_INFINITY);
    let mut best_lower = Array1::from_elem(rows, f64::NEG_INFINITY);
    for step in 0..=iterations {
        let bs = back_substitute(
            graph,
            &inter.bounds,
            graph.output,
            c.clone(),
            Array1::zeros(rows),
            Some(&alphas),
            true,
            None,
        );
        let (b, lower) = concretize(&bs, x0, delta);
        for r in 0..rows {
            if lower[r].is_finite() && (lower[r] > best_lower[r] || !best_lower[r].is_finite()) {
                best_lower[r] = lower[r];
                best_b[r] = b[r];
                best_a.row_mut(r).assign(&bs.a.row(r));
            }
        }
        if step == iterations {
            break;
        }
        // Adjoint: evaluate the relaxed linear network at each row's minimising input point.
        let mut g: Vec<Option<Array2<f64>>> = vec![None; n_nodes];
        let mut point = Array2::zeros((rows, d));
        for r in 0..rows {
            for n in 0..d {
                let a = bs.a[[r, n]];
                point[[r, n]] = x0[n] + if a > 0.0 { delta.lo[n] } else { delta.hi[n] };
            }
        }
        g[0] = Some(point);
        let t = (step + 1) as i32;
        for id in 1..n_nodes {
            if !info.live[id] {
                continue;
            }
            let node = &graph.nodes[id];
            let value = match node.op {
                Op::Relu => {
                    let p = node.inputs[0].index();
                    let (l, u) = inter.bounds[p].as_ref().expect("bounded");
                    let gp = g[p].as_ref().expect("forward order");
                    let Some(ra) = bs.relu_a[id].as_ref() else {
                        g[id] = Some(gp.mapv(|v| v.max(0.0)));
                        continue;
                    };
                    let alpha = alphas[id].as_mut().expect("relu alphas");
                    let mut out = Array2::zeros(gp.dim());
                    let mut grad = Array2::zeros(gp.dim());
                    for r in 0..rows {
                        for n in 0..l.len() {
                            let (ln, un, x) = (l[n], u[n], gp[[r, n]]);
                            out[[r, n]] = if un <= 0.0 {
                                0.0
                            } else if ln >= 0.0 {
                                x
                            } else if ra[[r, n]] >= 0.0 {
                                grad[[r, n]] = ra[[r, n]] * x;
                                alpha[[r, n]] * x
                            } else {
                                let slope = un / (un - ln);
                                slope * (x - ln)
                            };
                        }
                    }
                    let m = adam_m[id].as_mut().expect("adam state");
                    let v = adam_v[id].as_mut().expect("adam state");
                    let mask = unstable[id].as_ref().expect("mask");
                    for r in 0..rows {
                        for n in 0..l.len() {
                            if !mask[n] {
                                continue;
                            }
                            let gr = grad[[r, n]];
                            m[[r, n]] = 0.9 * m[[r, n]] + 0.1 * gr;
                            v[[r, n]] = 0.999 * v[[r, n]] + 0.001 * gr * gr;
                            let mh = m[[r, n]] / (1.0 - 0.9f64.powi(t));
                            let vh = v[[r, n]] / (1.0 - 0.999f64.powi(t));
                            alpha[[r, n]] = (alpha[[r, n]]
                                + learning_rate * mh / (vh.sqrt() + 1e-8))
                                .clamp(0.0, 1.0);
                        }
                    }
                    out
                }
                _ => {
                    let ins: Vec<ArrayView2<f64>> = node
                        .inputs
                        .iter()
                        .map(|i| g[i.index()].as_ref().expect("forward order").view())
                        .collect();
                    linop::forward(graph, node, &ins, false)
                }
            };
            g[id] = Some(value);
        }
    }
    let samplewise_lower = best_lower;
    SampleBounds {
        label,
        others,
        a: best_a,
        b: best_b,
        samplewise_lower,
    }
}

pub(crate) fn check_request(
    graph: &Graph,
    inputs: ArrayView2<f64>,
    labels: &[usize],
    delta: &DeltaBox,
) -> Result<(), EngineError> {
    unsupported(graph)?;
    check_inputs(graph, inputs)?;
    let k = graph.node(graph.output).numel();
    if graph.output_shape().len() != 1 || k < 2 {
        return Err(EngineError::InvalidInput(
            "the network output must be a vector of ≥ 2 logits".into(),
        ));
    }
    if labels.len() != inputs.nrows() {
        return Err(EngineError::InvalidInput(format!(
            "{} labels for {} samples",
            labels.len(),
            inputs.nrows()
        )));
    }
    if let Some(&y) = labels.iter().find(|&&y| y >= k) {
        return Err(EngineError::InvalidInput(format!(
            "label {y} out of range for {k} classes"
        )));
    }
    if delta.dim() != inputs.ncols() || delta.hi.len() != delta.lo.len() {
        return Err(EngineError::InvalidInput(
            "the δ box dimension differs from the input".into(),
        ));
    }
    if delta
        .lo
        .iter()
        .chain(delta.hi.iter())
        .any(|v| !v.is_finite())
        || Zip::from(&delta.lo).and(&delta.hi).any(|l, h| l > h)
    {
        return Err(EngineError::InvalidInput(
            "the δ box must be finite with lo ≤ hi".into(),
        ));
    }
    Ok(())
}

/// Per-sample linear margin bounds `m_{y,j}(xᵢ+δ) ≥ a·δ + b` over the box, for every j ≠ yᵢ.
pub fn margin_bounds(
    graph: &Graph,
    inputs: ArrayView2<f64>,
    labels: &[usize],
    delta: &DeltaBox,
    method: &BoundMethod,
) -> Result<MarginBounds, EngineError> {
    margin_bounds_cached(
        graph,
        inputs,
        labels,
        delta,
        method,
        (&BoundCache::disabled(), RowPrecision::default()),
    )
}

/// [`margin_bounds`] reusing (and filling) the intermediate bounds held by `cache`, with the
/// window path's rows in `rows`.
pub fn margin_bounds_cached(
    graph: &Graph,
    inputs: ArrayView2<f64>,
    labels: &[usize],
    delta: &DeltaBox,
    method: &BoundMethod,
    (cache, rows): (&BoundCache, RowPrecision),
) -> Result<MarginBounds, EngineError> {
    check_request(graph, inputs, labels, delta)?;
    let mut info = GraphInfo::new(graph);
    info.rows = rows;
    let crown = !matches!(method, BoundMethod::Ibp);
    let keys = cache.keys(graph, inputs, delta, crown, rows);
    let samples = (0..inputs.nrows())
        .into_par_iter()
        .map(|i| {
            let x0 = inputs.row(i);
            let inter = cache.get_or_compute(keys.as_ref().map(|k| &k[i]), graph, || {
                sample_intermediate(graph, &info, x0, delta, crown)
            })?;
            sample_margins(graph, &info, &inter, x0, labels[i], delta, method)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(MarginBounds { samples })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::build::{random_cnn, random_cnn_dense_head, random_mlp, random_resnet, Rng};

    /// Skipping far sides changes no relaxation: every neuron keeps its stability and sign,
    /// unstable neurons keep their bounds bit for bit, and CROWN and α-CROWN
    /// margin bounds are identical to the two-sided pass's, skipping at the last layer only, at
    /// dense layers too, or everywhere (both certified, with fallback; without the certificate
    /// the last mode fails here).
    #[test]
    fn skipped_far_sides_match_two_sided() {
        let mut rng = Rng::new(21);
        let mut graphs: Vec<Graph> = (0..6)
            .map(|_| random_mlp(&mut rng, 12, &[16, 14, 12, 10], 4))
            .collect();
        graphs.push(random_cnn(&mut rng, [2, 7, 7], 3, 4));
        graphs.push(random_resnet(&mut rng, [3, 6, 6], 4, 3));
        graphs.push(random_cnn_dense_head(&mut rng, [2, 6, 6], 3, 3));
        let methods = [
            BoundMethod::Crown,
            BoundMethod::AlphaCrown {
                iterations: 5,
                learning_rate: 0.1,
            },
        ];
        let (mut skipped, mut certified_passes, mut passes) = (0, 0, 0);
        for graph in &graphs {
            let mut two_sided = GraphInfo::new(graph);
            two_sided.far_sides = FarSides::Always;
            // These graphs end in one dense ReLU layer: only its input is a last ReLU input.
            let relu_inputs: Vec<usize> = (0..graph.nodes.len())
                .filter(|&k| two_sided.relu_input[k])
                .collect();
            let last: Vec<usize> = (0..graph.nodes.len())
                .filter(|&k| two_sided.last_relu_input[k])
                .collect();
            assert!(relu_inputs.len() >= 2);
            assert_eq!(last, [*relu_inputs.last().unwrap()]);
            let d: usize = graph.input_shape().iter().product();
            for eps in [0.01, 0.05, 0.2] {
                for label in 0..2 {
                    let x0 = Array1::from_shape_fn(d, |_| rng.uniform());
                    let delta = DeltaBox::linf(d, eps);
                    let two = sample_intermediate(graph, &two_sided, x0.view(), &delta, true);
                    let two = two.unwrap();
                    let modes = [
                        FarSides::LastLayer,
                        FarSides::DenseLayers,
                        FarSides::Everywhere,
                    ];
                    for far_sides in modes {
                        let mut one_sided = GraphInfo::new(graph);
                        one_sided.far_sides = far_sides;
                        let pass = intermediate_pass(
                            graph,
                            &one_sided,
                            x0.view(),
                            &delta,
                            true,
                            far_sides,
                        );
                        passes += 1;
                        certified_passes += pass.unwrap().is_some() as usize;
                        let one = sample_intermediate(graph, &one_sided, x0.view(), &delta, true);
                        let one = one.unwrap();
                        for (id, pair) in one.bounds.iter().zip(&two.bounds).enumerate() {
                            let (Some((l1, u1)), Some((l2, u2))) = pair else {
                                continue;
                            };
                            for i in 0..l1.len() {
                                let at = format!("{far_sides:?} node {id} #{i}");
                                if !one_sided.relu_input[id] {
                                    continue;
                                }
                                let unstable = l2[i] < 0.0 && u2[i] > 0.0;
                                assert_eq!(unstable, l1[i] < 0.0 && u1[i] > 0.0, "{at}");
                                assert_eq!(l1[i] >= 0.0, l2[i] >= 0.0, "{at}");
                                if unstable {
                                    assert_eq!((l1[i], u1[i]), (l2[i], u2[i]), "{at}");
                                }
                                skipped += (l1[i] != l2[i] || u1[i] != u2[i]) as usize;
                            }
                        }
                        for method in &methods {
                            let m1 = sample_margins(
                                graph,
                                &one_sided,
                                &one,
                                x0.view(),
                                label,
                                &delta,
                                method,
                            );
                            let m2 = sample_margins(
                                graph,
                                &two_sided,
                                &two,
                                x0.view(),
                                label,
                                &delta,
                                method,
                            );
                            let (m1, m2) = (m1.unwrap(), m2.unwrap());
                            assert_eq!(m1.a, m2.a);
                            assert_eq!(m1.b, m2.b);
                            assert_eq!(m1.samplewise_lower, m2.samplewise_lower);
                        }
                    }
                }
            }
        }
        assert!(skipped > 0, "no far-side bound was skipped");
        assert!(
            certified_passes * 4 >= passes * 3,
            "only {certified_passes} of {passes} passes certified"
        );
    }

    /// The tape-based pair gives exactly what `forward` and `vjp` give, across chunk borders,
    /// and a tape from another graph is refused.
    #[test]
    fn tape_matches_forward_and_vjp() {
        let mut rng = Rng::new(9);
        let cnn = random_cnn(&mut rng, [2, 7, 7], 3, 4);
        let resnet = random_resnet(&mut rng, [3, 6, 6], 4, 3);
        for graph in [&cnn, &resnet] {
            let d: usize = graph.input_shape().iter().product();
            let k = graph.node(graph.output).numel();
            let n = FORWARD_CHUNK + 7;
            let x = Array2::from_shape_fn((n, d), |_| rng.uniform());
            let g = Array2::from_shape_fn((n, k), |_| rng.range(-1.0, 1.0));
            let (logits, tape) = forward_tape(graph, x.view()).unwrap();
            assert_eq!(logits, forward(graph, x.view()).unwrap());
            assert_eq!(
                vjp_tape(graph, &tape, g.view()).unwrap(),
                vjp(graph, x.view(), g.view()).unwrap()
            );
            assert!(vjp_tape(graph, &tape, g.slice(s![1.., ..])).is_err());
        }
        let (_, tape) = forward_tape(&cnn, Array2::zeros((2, 98)).view()).unwrap();
        let g = Array2::zeros((2, 3));
        assert!(vjp_tape(&resnet, &tape, g.view()).is_err());
    }
}
