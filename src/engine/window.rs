//! CROWN back-substitution of intermediate neurons of `[C, H, W]` nodes with local-window
//! ("patches") functionals: the rows for the neurons at one spatial position only cover that
//! position's receptive field at every earlier layer, so each pass costs the receptive field, not
//! the whole feature map. Same relaxation and arithmetic as the dense path in `cpu.rs`
//! (coefficients outside the window are exactly zero there).
//!
//! Rows keep only the neurons whose coefficient can matter (each node's [`Support`]): a ReLU's
//! rows drop its dead neurons (relaxed to zero), and a node feeding only ReLUs, additions or
//! channel maps gets nothing else from them. They are stored neuron-major (`[neurons, rows]`,
//! neurons position-major, channels ascending), so a window row of positions is one contiguous
//! block and a conv transpose is, per kept input position and kernel row, one small GEMM
//! `W[kept inputs, kept outputs reached] · rows[kept outputs reached]` ([`gemm_rows`]); with
//! half the neurons of each layer dead this is a quarter of the dense work.

use super::cpu::{finish_bound, relu_relaxation, Interval};
use super::linop::{
    conv_window, count_gemm, gemm_rows, packed_at, packed_len, simd_rows, tap_matrix, Rect,
    TILE_ROWS,
};
use super::DeltaBox;
use crate::ir::{Graph, Node, Op};
use ndarray::linalg::general_mat_mul;
use ndarray::{Array1, Array2, ArrayView1, Axis};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Outputs `(oy, ox_lo, ox_hi)` of a conv: one row, a run of columns.
type OutputRun = (usize, usize, usize);

/// All channels, rows `y0..y0+hh`, columns `x0..x0+ww` of a `[C, H, W]` node.
type Win = Rect;

/// Rows over a window, neuron-major: `a` is `[kept neurons of the window, rows]`, the neurons
/// position-major (see [`Support`]), so a run of positions is one contiguous block.
struct WinRows {
    win: Win,
    a: Array2<f64>,
}

impl Drop for WinRows {
    fn drop(&mut self) {
        recycle(std::mem::take(&mut self.a));
    }
}

/// Freed row buffers, kept per thread for the next rows: fresh multi-megabyte allocations are
/// page-faulted in and zeroed by the kernel every time (15–40% of the time otherwise).
struct Pool {
    buffers: Vec<Vec<f64>>,
    bytes: usize,
}

/// Free buffers kept per thread: 1 GiB split among the threads (but at least 64 MiB), so a
/// many-core machine does not hoard a large pool per core.
const POOL_TOTAL_BYTES: usize = 1 << 30;

fn pool_bytes() -> usize {
    (POOL_TOTAL_BYTES / rayon::current_num_threads().max(1)).max(64 << 20)
}

thread_local! {
    static POOL: std::cell::RefCell<Pool> =
        const { std::cell::RefCell::new(Pool { buffers: Vec::new(), bytes: 0 }) };
}

/// A `[rows, cols]` array from the pool: zeros, or (`zero` false) values the caller overwrites.
fn pooled(rows: usize, cols: usize, zero: bool) -> Array2<f64> {
    let len = rows * cols;
    let reused = POOL.with_borrow_mut(|pool| {
        let best = (0..pool.buffers.len())
            .filter(|&i| pool.buffers[i].capacity() >= len)
            .min_by_key(|&i| pool.buffers[i].capacity())?;
        let v = pool.buffers.swap_remove(best);
        pool.bytes -= v.capacity() * 8;
        Some(v)
    });
    let mut v = reused.unwrap_or_default();
    if zero {
        v.clear();
    } else {
        v.truncate(len);
    }
    v.resize(len, 0.0);
    Array2::from_shape_vec((rows, cols), v).expect("rows × cols")
}

/// Returns `a`'s buffer to the pool, evicting the smallest buffers past [`pool_bytes`].
fn recycle(a: Array2<f64>) {
    let (v, _) = a.into_raw_vec_and_offset();
    let bytes = v.capacity() * 8;
    let limit = pool_bytes();
    if !((64 << 10)..=limit).contains(&bytes) {
        return;
    }
    POOL.with_borrow_mut(|pool| {
        pool.bytes += bytes;
        pool.buffers.push(v);
        while pool.bytes > limit {
            let smallest = (0..pool.buffers.len())
                .min_by_key(|&i| pool.buffers[i].capacity())
                .expect("nonempty");
            pool.bytes -= pool.buffers.swap_remove(smallest).capacity() * 8;
        }
    });
}

/// Which nodes the window path handles: `[C, H, W]` nodes built from the input by convolutions,
/// ReLUs, per-channel affine maps and additions only.
pub(crate) fn window_nodes(graph: &Graph) -> Vec<bool> {
    let mut ok = vec![false; graph.nodes.len()];
    for (k, node) in graph.nodes.iter().enumerate() {
        let spatial = node.shape.len() == 3;
        let inputs_ok = node.inputs.iter().all(|i| ok[i.index()]);
        ok[k] = spatial
            && match &node.op {
                Op::Input => true,
                Op::Relu | Op::Conv2d { .. } | Op::Add => inputs_ok,
                Op::ChannelAffine { scale, shift } => {
                    inputs_ok && scale.len() == node.shape[0] && shift.len() == node.shape[0]
                }
                _ => false,
            };
    }
    ok
}

fn dims(shape: &[usize]) -> (usize, usize, usize) {
    (shape[0], shape[1], shape[2])
}

/// Which neurons of a `[C, H, W]` node its window rows keep, position-major: the kept channels
/// of position `p = y·W + x` are `channels[offsets[p]..offsets[p + 1]]`, ascending. A row's
/// coefficients on the other neurons are zero or never matter (a dead ReLU multiplies them by
/// zero), so rows carry one column per kept neuron of their window.
pub(crate) struct Support {
    w: usize,
    offsets: Vec<usize>,
    channels: Vec<u32>,
}

impl Support {
    /// The neurons where `keep` (channels-last flags) holds, of a node of `shape`.
    fn from_flags(shape: &[usize], keep: &[bool]) -> Self {
        let (c, h, w) = dims(shape);
        let mut offsets = Vec::with_capacity(h * w + 1);
        let mut channels = Vec::new();
        offsets.push(0);
        for flags in keep.chunks_exact(c.max(1)).take(h * w) {
            channels.extend((0..c as u32).filter(|&ch| flags[ch as usize]));
            offsets.push(channels.len());
        }
        offsets.resize(h * w + 1, channels.len());
        Support {
            w,
            offsets,
            channels,
        }
    }

    /// Kept neurons (their indices in `channels`) of row `y`, columns `x0..x0 + ww`.
    #[inline]
    fn run(&self, y: usize, x0: usize, ww: usize) -> std::ops::Range<usize> {
        let p = y * self.w + x0;
        self.offsets[p]..self.offsets[p + ww]
    }

    /// Column where each window row `yy` starts in rows over `win`, and the total width last.
    fn col_starts(&self, win: Win) -> Vec<usize> {
        let mut starts = Vec::with_capacity(win.hh + 1);
        let mut at = 0;
        starts.push(0);
        for yy in 0..win.hh {
            at += self.run(win.y0 + yy, win.x0, win.ww).len();
            starts.push(at);
        }
        starts
    }

    /// Column of position `(y, x)`'s first kept neuron in rows over `win`, given `starts`
    /// (`col_starts(win)`).
    #[inline]
    fn column(&self, starts: &[usize], win: Win, y: usize, x: usize) -> usize {
        starts[y - win.y0] + self.run(y, x, 1).start - self.run(y, win.x0, 1).start
    }

    /// The kept-neuron index of each column of rows over `win`.
    fn columns(&self, win: Win) -> impl Iterator<Item = usize> + '_ {
        (0..win.hh).flat_map(move |yy| self.run(win.y0 + yy, win.x0, win.ww))
    }
}

/// Copies `wr` (rows in `support`) into the larger window `to`.
fn widen_to(wr: WinRows, support: &Support, to: Win) -> WinRows {
    if wr.win == to {
        return wr;
    }
    let a = pooled(
        *support.col_starts(to).last().expect("starts"),
        wr.a.ncols(),
        true,
    );
    let mut big = WinRows { win: to, a };
    add_into(&mut big, &wr, support);
    big
}

fn accumulate(slot: &mut Option<WinRows>, value: WinRows, support: &Support) {
    *slot = Some(match slot.take() {
        None => value,
        Some(acc) => {
            let to = acc.win.union(value.win);
            // Add the smaller into the one whose window holds both, if any.
            let (mut big, small) = if acc.win == to {
                (acc, value)
            } else if value.win == to {
                (value, acc)
            } else {
                (widen_to(acc, support, to), value)
            };
            add_into(&mut big, &small, support);
            big
        }
    });
}

/// `big += small`, both rows in `support`, where `big`'s window holds `small`'s.
fn add_into(big: &mut WinRows, small: &WinRows, support: &Support) {
    let (small_cols, big_cols) = (support.col_starts(small.win), support.col_starts(big.win));
    // (source column, destination column, length) of each window row of `small`.
    let runs: Vec<(usize, usize, usize)> = (0..small.win.hh)
        .map(|yy| {
            let y = small.win.y0 + yy;
            let len = support.run(y, small.win.x0, small.win.ww).len();
            let at = support.column(&big_cols, big.win, y, small.win.x0);
            (small_cols[yy], at, len)
        })
        .filter(|r| r.2 > 0)
        .collect();
    let rows = small.a.ncols();
    let src = small.a.as_slice().expect("standard layout");
    let dst = big.a.as_slice_mut().expect("standard layout");
    for &(from, to, len) in &runs {
        let (src, dst) = (
            &src[from * rows..][..len * rows],
            &mut dst[to * rows..][..len * rows],
        );
        for (d, v) in dst.iter_mut().zip(src) {
            *d += v;
        }
    }
}

/// Rows `wr` kept on `from` re-expressed on `to`, the same node's support of another consumer:
/// columns `to` lacks are dropped (their neurons never matter there), missing ones are zero.
fn convert(wr: WinRows, from: &Arc<Support>, to: &Arc<Support>, c: usize) -> WinRows {
    if Arc::ptr_eq(from, to) {
        return wr;
    }
    let (win, rows) = (wr.win, wr.a.ncols());
    let mut slot = vec![usize::MAX; c];
    let mut pairs: Vec<(usize, usize)> = Vec::new();
    let (mut src, mut dst) = (0, 0);
    for yy in 0..win.hh {
        for xx in 0..win.ww {
            let (y, x) = (win.y0 + yy, win.x0 + xx);
            let target = to.run(y, x, 1);
            for (k, &ch) in to.channels[target.clone()].iter().enumerate() {
                slot[ch as usize] = dst + k;
            }
            let source = from.run(y, x, 1);
            for (k, &ch) in from.channels[source.clone()].iter().enumerate() {
                if slot[ch as usize] != usize::MAX {
                    pairs.push((src + k, slot[ch as usize]));
                }
            }
            for &ch in &to.channels[target.clone()] {
                slot[ch as usize] = usize::MAX;
            }
            src += source.len();
            dst += target.len();
        }
    }
    let mut a = pooled(dst, rows, true);
    for &(i, j) in &pairs {
        a.row_mut(j).assign(&wr.a.row(i));
    }
    WinRows { win, a }
}

/// Per row, `Σ a·weight` and `Σ |a|·|weight|` over the kept neurons, added to `bias` and `mag`.
fn add_column_terms(
    a: &Array2<f64>,
    weights: &[f64],
    bias: &mut Array1<f64>,
    mag: &mut Array1<f64>,
) {
    let bias = bias.as_slice_mut().expect("contiguous");
    let mag = mag.as_slice_mut().expect("contiguous");
    for (coefs, &w) in a.rows().into_iter().zip(weights) {
        if w == 0.0 {
            continue;
        }
        add_terms_row(coefs.as_slice().expect("standard layout"), w, bias, mag);
    }
}

/// `per_channel[ch]` for each column of rows over `win` kept on `support`.
fn column_values(support: &Support, win: Win, per_channel: &[f64]) -> Vec<f64> {
    support
        .columns(win)
        .map(|k| per_channel[support.channels[k] as usize])
        .collect()
}

/// Conv weights as the transpose of [`tap_matrix`], `[kh·kw·cin, cout]` (one row of output
/// channels per tap and input channel), per conv node (`None` elsewhere), built once per graph.
pub(crate) struct TapMatrices(Vec<Option<Array2<f64>>>);

impl TapMatrices {
    pub(crate) fn new(graph: &Graph) -> Self {
        TapMatrices(
            graph
                .nodes
                .iter()
                .map(|node| match &node.op {
                    Op::Conv2d { weight, .. } => Some(
                        tap_matrix(weight)
                            .reversed_axes()
                            .as_standard_layout()
                            .into_owned(),
                    ),
                    _ => None,
                })
                .collect(),
        )
    }
}

/// One ReLU's CROWN relaxation per kept neuron of its support: lower slope, chord slope, chord
/// intercept (stable neurons exact).
struct Relaxation {
    lower: Vec<f64>,
    upper: Vec<f64>,
    intercept: Vec<f64>,
}

/// What the window path reads at every position of one sample: the support of every window-path
/// node's rows, the relaxation of each window-path ReLU whose input bounds are known, and the
/// input point and box, all per kept neuron.
pub(crate) struct SampleTables {
    support: Vec<Option<Arc<Support>>>,
    relu: Vec<Option<Relaxation>>,
    x0: Vec<f64>,
    lo: Vec<f64>,
    hi: Vec<f64>,
    /// `|x0| + max(|lo|, |hi|)`: the rounding-margin scale per input coordinate.
    scale: Vec<f64>,
}

/// `v` (`[C, H, W]` order) reordered channels-last.
fn channels_last(v: ArrayView1<f64>, shape: &[usize]) -> Vec<f64> {
    let (c, h, w) = dims(shape);
    let mut out = vec![0.0; v.len()];
    for (ch, values) in v.exact_chunks(h * w).into_iter().enumerate() {
        for (at, &value) in values.iter().enumerate() {
            out[at * c + ch] = value;
        }
    }
    out
}

/// `values` (channels-last) at the kept neurons of `support`.
fn kept(support: &Support, c: usize, values: &[f64]) -> Vec<f64> {
    let mut out = Vec::with_capacity(support.channels.len());
    for (p, pair) in support.offsets.windows(2).enumerate() {
        out.extend(
            support.channels[pair[0]..pair[1]]
                .iter()
                .map(|&ch| values[p * c + ch as usize]),
        );
    }
    out
}

/// The support of each window-path node's rows for bounding node `open` (whose ReLUs are not
/// relaxed yet): a ReLU's rows keep its live neurons (upper bound > 0); any other node's keep
/// what its consumers can put there (a ReLU, add or channel affine passes its own support; a conv
/// transpose writes every neuron; rows from off the window path are dense).
fn supports(
    graph: &Graph,
    window: &[bool],
    bounds: &[Option<Interval>],
    open: usize,
) -> Vec<Option<Arc<Support>>> {
    let n = graph.nodes.len();
    let mut consumers: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (k, node) in graph.nodes.iter().enumerate() {
        for i in &node.inputs {
            consumers[i.index()].push(k);
        }
    }
    let mut flags: Vec<Vec<bool>> = vec![Vec::new(); n];
    let mut out: Vec<Option<Arc<Support>>> = vec![None; n];
    for k in (0..n).rev() {
        if !window[k] {
            continue;
        }
        let node = &graph.nodes[k];
        let size = node.numel();
        let live = match (&node.op, node.inputs.first()) {
            (Op::Relu, Some(p)) if p.index() != open => bounds[p.index()].as_ref().map(|(_, u)| {
                channels_last(u.view(), &node.shape)
                    .iter()
                    .map(|&u| u > 0.0)
                    .collect::<Vec<bool>>()
            }),
            _ => None,
        };
        let mut keep = vec![false; size];
        let mut share = None;
        for &c in &consumers[k] {
            let passes = window[c]
                && matches!(
                    graph.nodes[c].op,
                    Op::Relu | Op::Add | Op::ChannelAffine { .. }
                );
            if passes {
                for (f, &g) in keep.iter_mut().zip(&flags[c]) {
                    *f |= g;
                }
                share.get_or_insert(c);
            } else {
                keep.fill(true);
            }
        }
        if consumers[k].is_empty() || k == open {
            keep.fill(true);
        }
        if let Some(live) = live {
            for (f, l) in keep.iter_mut().zip(live) {
                *f &= l;
            }
        }
        out[k] = Some(match share {
            Some(c) if flags[c] == keep => out[c].clone().expect("consumer support"),
            _ => Arc::new(Support::from_flags(&node.shape, &keep)),
        });
        flags[k] = keep;
    }
    out
}

impl SampleTables {
    /// The tables for bounding node `open`.
    pub(crate) fn new(
        graph: &Graph,
        window: &[bool],
        bounds: &[Option<Interval>],
        open: usize,
        x0: ArrayView1<f64>,
        delta: &DeltaBox,
    ) -> Self {
        if !window[0] {
            // Not a `[C, H, W]` input: no window path.
            return SampleTables {
                support: Vec::new(),
                relu: Vec::new(),
                x0: Vec::new(),
                lo: Vec::new(),
                hi: Vec::new(),
                scale: Vec::new(),
            };
        }
        let support = supports(graph, window, bounds, open);
        let relu = graph
            .nodes
            .iter()
            .enumerate()
            .map(|(k, node)| {
                let p = node.inputs.first()?.index();
                let (l, u) = bounds[p].as_ref()?;
                if !(matches!(node.op, Op::Relu) && window[k]) || p == open {
                    return None;
                }
                let s = support[k].as_ref().expect("window node");
                let c = node.shape[0];
                let l = kept(s, c, &channels_last(l.view(), &node.shape));
                let u = kept(s, c, &channels_last(u.view(), &node.shape));
                let count = l.len();
                let mut r = Relaxation {
                    lower: vec![0.0; count],
                    upper: vec![0.0; count],
                    intercept: vec![0.0; count],
                };
                for n in 0..count {
                    (r.lower[n], r.upper[n], r.intercept[n], _) = relu_relaxation(l[n], u[n]);
                }
                Some(r)
            })
            .collect();
        let shape = &graph.nodes[0].shape;
        let s = support[0].as_ref().expect("window input");
        let table = |v: ArrayView1<f64>| kept(s, shape[0], &channels_last(v, shape));
        let (x0, lo, hi) = (table(x0), table(delta.lo.view()), table(delta.hi.view()));
        let scale = (0..x0.len())
            .map(|n| x0[n].abs() + lo[n].abs().max(hi[n].abs()))
            .collect();
        SampleTables {
            support,
            relu,
            x0,
            lo,
            hi,
            scale,
        }
    }

    fn support(&self, k: usize) -> &Arc<Support> {
        self.support[k].as_ref().expect("window-path node")
    }
}

/// CROWN bounds of neurons of node `id` at one spatial position (`window_nodes(graph)[id]` must
/// hold), one per `(neuron, upper)`: the lower bound, or the upper bound where `upper`.
/// `tables` must be those for bounding `id`.
pub(crate) fn crown_window_sided(
    graph: &Graph,
    taps: &TapMatrices,
    tables: &SampleTables,
    id: usize,
    sides: &[(usize, bool)],
) -> Array1<f64> {
    let (c, h, w) = dims(&graph.nodes[id].shape);
    let plane = h * w;
    let m = sides.len();
    let pos = sides[0].0 % plane;
    let support = tables.support(id);
    let run = support.run(pos / w, pos % w, 1);
    debug_assert_eq!(run.len(), c, "the bounded node keeps every neuron");
    // An upper bound is minus the lower bound of the negated neuron.
    let mut seed = Array2::zeros((run.len(), padded(m)));
    for (r, &(i, upper)) in sides.iter().enumerate() {
        debug_assert_eq!(i % plane, pos);
        let ch = (i / plane) as u32;
        let col = support.channels[run.clone()]
            .iter()
            .position(|&k| k == ch)
            .expect("the bounded node keeps every neuron");
        seed[[col, r]] = if upper { -1.0 } else { 1.0 };
    }
    let mut pending: Vec<Option<WinRows>> = (0..graph.nodes.len()).map(|_| None).collect();
    pending[id] = Some(WinRows {
        win: Win {
            y0: pos / w,
            x0: pos % w,
            hh: 1,
            ww: 1,
        },
        a: seed,
    });
    let (bias, mag) = (Array1::zeros(m), Array1::zeros(m));
    let mut lower = pull_back_windows(graph, taps, tables, pending, bias, mag);
    for (r, &(_, upper)) in sides.iter().enumerate() {
        if upper {
            lower[r] = -lower[r];
        }
    }
    lower
}

/// Functionals a dense back-substitution leaves for the window path: `rows`, `[m, ·]`, are
/// functionals of window-path node `node` in the IR's order (`C·H·W`), or, `through` a linear
/// op reading it (by way of reshapes), functionals of that op's output with its bias terms
/// already counted.
pub(crate) struct Handoff {
    pub node: usize,
    pub rows: Array2<f64>,
    pub through: Option<usize>,
}

/// Finishes a dense back-substitution (`cpu::crown_sided`) on the window path: `handoffs` are
/// the functionals it left there, `bias` and `mag` its constant terms so far. Returns each
/// row's lower bound over the box.
pub(crate) fn finish_dense_rows(
    graph: &Graph,
    taps: &TapMatrices,
    tables: &SampleTables,
    handoffs: Vec<Handoff>,
    bias: Array1<f64>,
    mag: Array1<f64>,
) -> Array1<f64> {
    let m = bias.len();
    let mut pending: Vec<Option<WinRows>> = (0..graph.nodes.len()).map(|_| None).collect();
    for Handoff {
        node: k,
        rows: a,
        through,
    } in handoffs
    {
        let (_, h, w) = dims(&graph.nodes[k].shape);
        let win = Win {
            y0: 0,
            x0: 0,
            hh: h,
            ww: w,
        };
        let support = tables.support(k);
        // The IR index (c·H·W + position) of each kept column.
        let mut source = Vec::with_capacity(support.channels.len());
        for (p, pair) in support.offsets.windows(2).enumerate() {
            let channels = &support.channels[pair[0]..pair[1]];
            source.extend(channels.iter().map(|&ch| ch as usize * h * w + p));
        }
        let mut kept_rows = pooled(source.len(), padded(m), padded(m) != m);
        match through.map(|id| &graph.nodes[id].op) {
            Some(Op::Linear { weight, .. }) => {
                // Kept neurons' rows `W[:, kept]ᵀ · aᵀ`: the product for those columns only.
                let kept_weight = weight.select(Axis(1), &source);
                count_gemm(source.len(), weight.nrows(), m);
                let mut dst = kept_rows.slice_mut(ndarray::s![.., ..m]);
                general_mat_mul(1.0, &kept_weight.t(), &a.t(), 0.0, &mut dst);
            }
            Some(_) => unreachable!("rows hand off through linear ops only"),
            None => {
                for (mut dst, &i) in kept_rows.rows_mut().into_iter().zip(&source) {
                    dst.slice_mut(ndarray::s![..m]).assign(&a.column(i));
                }
            }
        }
        accumulate(&mut pending[k], WinRows { win, a: kept_rows }, support);
    }
    pull_back_windows(graph, taps, tables, pending, bias, mag)
}

/// `m` rows rounded up to whole 8-wide tiles of [`gemm_rows`]: windowed arrays carry this many
/// rows, the last ones zero (a partial tile costs as much as several full ones). Never a
/// multiple of 64: a neuron's rows would then start 512 bytes apart times a power of two, and
/// the lines of a column strip crowd into a few L1 sets (256 rows ran 20% slower than 264).
fn padded(m: usize) -> usize {
    let r = m.next_multiple_of(8);
    if r.is_multiple_of(64) {
        r + 8
    } else {
        r
    }
}

/// Pulls the windowed rows in `pending` (at window-path nodes, each on its node's support,
/// `padded(m)` rows for the `m` of `bias`) back to the input, adding their constant terms to
/// `bias` and `mag`, and returns each row's lower bound over the box.
fn pull_back_windows(
    graph: &Graph,
    taps: &TapMatrices,
    tables: &SampleTables,
    mut pending: Vec<Option<WinRows>>,
    bias: Array1<f64>,
    mag: Array1<f64>,
) -> Array1<f64> {
    let m = bias.len();
    debug_assert!(pending.iter().flatten().all(|wr| wr.a.ncols() == padded(m)));
    let pad = |v: Array1<f64>| -> Array1<f64> {
        v.into_iter()
            .chain(std::iter::repeat(0.0))
            .take(padded(m))
            .collect()
    };
    let (mut bias, mut mag) = (pad(bias), pad(mag));
    let consumers = graph.consumer_counts();
    let mut bias_added = vec![false; graph.nodes.len()];
    for k in (1..pending.len()).rev() {
        let Some(wr) = pending[k].take() else {
            continue;
        };
        let node = &graph.nodes[k];
        let support = tables.support(k);
        let pass_on = |wr: WinRows, p: usize, pending: &mut Vec<Option<WinRows>>| {
            let to = tables.support(p);
            let wr = convert(wr, support, to, graph.nodes[p].shape[0]);
            accumulate(&mut pending[p], wr, to);
        };
        match &node.op {
            Op::Relu => {
                let relaxation = tables.relu[k]
                    .as_ref()
                    .expect("pre-activation bounds computed");
                let p = node.inputs[0].index();
                // A conv feeding only this ReLU gets its bias terms here, while the rows are in
                // cache, rather than in a pass of its own.
                let shift = match &graph.nodes[p].op {
                    Op::Conv2d { bias: cb, .. } if consumers[p] == 1 => {
                        bias_added[p] = true;
                        Some(column_values(
                            support,
                            wr.win,
                            cb.as_slice().expect("contiguous"),
                        ))
                    }
                    _ => None,
                };
                let terms = (&mut bias, &mut mag);
                let out = relax_relu(wr, support, relaxation, shift.as_deref(), terms);
                pass_on(out, p, &mut pending);
            }
            Op::ChannelAffine { scale, shift } => {
                let mut wr = wr;
                let shift = column_values(support, wr.win, shift.as_slice().expect("contiguous"));
                add_column_terms(&wr.a, &shift, &mut bias, &mut mag);
                let scale = column_values(support, wr.win, scale.as_slice().expect("contiguous"));
                for (mut coefs, s) in wr.a.rows_mut().into_iter().zip(&scale) {
                    coefs *= *s;
                }
                pass_on(wr, node.inputs[0].index(), &mut pending);
            }
            Op::Conv2d { .. } => {
                let p = node.inputs[0].index();
                let tap = taps.0[k].as_ref().expect("tap matrix of a conv node");
                let to = tables.support(p);
                if !bias_added[k] {
                    let Op::Conv2d { bias: cb, .. } = &node.op else {
                        unreachable!("a conv node")
                    };
                    let cb = column_values(support, wr.win, cb.as_slice().expect("contiguous"));
                    add_column_terms(&wr.a, &cb, &mut bias, &mut mag);
                }
                let out = conv_pullback_window(wr, graph, node, tap, support, to);
                accumulate(&mut pending[p], out, to);
            }
            Op::Add => {
                let (last, rest) = node.inputs.split_last().expect("add has inputs");
                for input in rest {
                    let mut a = pooled(wr.a.nrows(), wr.a.ncols(), false);
                    a.assign(&wr.a);
                    let copy = WinRows { win: wr.win, a };
                    pass_on(copy, input.index(), &mut pending);
                }
                pass_on(wr, last.index(), &mut pending);
            }
            _ => unreachable!("window_nodes admits only conv, relu, channel affine and add"),
        }
    }
    concretize_window(pending[0].take(), tables, &bias, &mag).slice_move(ndarray::s![..m])
}

/// CROWN's ReLU relaxation (chord above, slope 0 or 1 below) applied to windowed rows; with
/// `shift` (a constant per column added to the ReLU's input), also that constant's terms.
fn relax_relu(
    mut wr: WinRows,
    support: &Support,
    relaxation: &Relaxation,
    shift: Option<&[f64]>,
    (bias, mag): (&mut Array1<f64>, &mut Array1<f64>),
) -> WinRows {
    // Σ per row of the chord intercepts the negative coefficients pick up (≤ 0).
    let mut picked = vec![0.0; wr.a.ncols()];
    let (b, m) = (
        bias.as_slice_mut().expect("contiguous"),
        mag.as_slice_mut().expect("contiguous"),
    );
    for (j, (mut coefs, n)) in
        wr.a.rows_mut()
            .into_iter()
            .zip(support.columns(wr.win))
            .enumerate()
    {
        let (lo, up, t) = (
            relaxation.lower[n],
            relaxation.upper[n],
            relaxation.intercept[n],
        );
        let coefs = coefs.as_slice_mut().expect("standard layout");
        if lo == up && t == 0.0 {
            // Stable: exact.
            if lo != 1.0 {
                coefs.iter_mut().for_each(|c| *c *= lo);
            }
        } else {
            relax_row(coefs, (lo, up, t), &mut picked);
        }
        if let Some(w) = shift
            .map(|s| s[j])
            .filter(|&w| w != 0.0 && (lo, up) != (0.0, 0.0))
        {
            add_terms_row(coefs, w, b, m);
        }
    }
    for ((b, m), p) in bias.iter_mut().zip(mag.iter_mut()).zip(&picked) {
        *b += p;
        *m -= p;
    }
    wr
}

/// Pulls windowed rows of a conv output (kept on `from`) back to the conv input (its receptive
/// field, clipped to the image; kept on `to`); the caller adds the bias terms. Gather form: each kept
/// input position's rows are `Σ_ki W_ki · rows[outputs reached by kernel row ki]`, over kept
/// neurons only, so dead ReLUs on either side cost nothing; one GEMM per run of outputs serves
/// every (position, kernel row) reading it.
fn conv_pullback_window(
    wr: WinRows,
    graph: &Graph,
    node: &Node,
    taps: &Array2<f64>,
    from: &Support,
    to: &Support,
) -> WinRows {
    let g = conv_window(graph, node);
    let win = wr.win;
    let rows = wr.a.ncols();
    if win.hh * win.ww == 0 {
        return WinRows {
            win,
            a: Array2::zeros((0, rows)),
        };
    }
    // Input rows touched: (y0·sh − ph) ..= ((y0+hh−1)·sh − ph + kh − 1), clipped.
    let span = |o0: usize, n: usize, s: usize, p: usize, k: usize, size: usize| {
        let lo = (o0 * s).saturating_sub(p);
        let hi = ((o0 + n - 1) * s + k).saturating_sub(p).min(size);
        (lo, hi.max(lo) - lo)
    };
    let (iy0, ih) = span(win.y0, win.hh, g.sh, g.ph, g.kh, g.h);
    let (ix0, iw) = span(win.x0, win.ww, g.sw, g.pw, g.kw, g.w);
    let in_win = Win {
        y0: iy0,
        x0: ix0,
        hh: ih,
        ww: iw,
    };
    let (from_cols, to_cols) = (from.col_starts(win), to.col_starts(in_win));
    let a_all = wr.a.as_slice().expect("standard layout");
    let (cin, kw) = (g.cin, g.kw);
    let mut out = pooled(*to_cols.last().expect("starts"), rows, false);
    let out_all = out.as_slice_mut().expect("standard layout");
    // The (input position, kernel row) pairs reading each run of outputs `(oy, ox_lo, ox_hi)`:
    // one GEMM per run, its rows those of every pair (stride 2 shares a run among 4 positions,
    // stride 1 among 3). Runs in a fixed order, so a row's sums do not depend on the batch.
    let mut runs: BTreeMap<OutputRun, Vec<(usize, usize, usize)>> = BTreeMap::new();
    for qy in iy0..iy0 + ih {
        for qx in ix0..ix0 + iw {
            if to.run(qy, qx, 1).is_empty() {
                continue;
            }
            for ki in 0..g.kh {
                // Output row oy with oy·sh − ph + ki = qy, inside the window.
                let Some(t) = (qy + g.ph).checked_sub(ki) else {
                    continue;
                };
                if t % g.sh != 0 || t / g.sh < win.y0 || t / g.sh >= win.y0 + win.hh {
                    continue;
                }
                let oy = t / g.sh;
                // Output columns ox with kj = qx + pw − ox·sw in 0..kw, inside the window.
                let reach = qx + g.pw;
                let ox_hi = (reach / g.sw).min(win.x0 + win.ww - 1);
                let ox_lo = (reach + 1).saturating_sub(kw).div_ceil(g.sw).max(win.x0);
                if ox_lo > ox_hi || from.run(oy, ox_lo, ox_hi - ox_lo + 1).is_empty() {
                    continue;
                }
                runs.entry((oy, ox_lo, ox_hi))
                    .or_default()
                    .push((qy, qx, ki));
            }
        }
    }
    // Whether each input position's rows hold a sum yet (else the GEMM overwrites them).
    let mut written = vec![false; ih * iw];
    let (mut wg, mut dest, mut add): (Vec<f64>, Vec<usize>, Vec<bool>) = Default::default();
    for ((oy, ox_lo, ox_hi), readers) in &runs {
        let p_run = from.run(*oy, *ox_lo, ox_hi - ox_lo + 1);
        let p_col = from.column(&from_cols, win, *oy, *ox_lo);
        let k = p_run.len();
        // Rows `[kept input channel at q, kept outputs of the run]` of W at each pair's taps,
        // packed for `gemm_rows`.
        let n: usize = readers
            .iter()
            .map(|&(qy, qx, _)| to.run(qy, qx, 1).len())
            .sum();
        // Every entry the kernel reads is written below (it never reads a last tile's padding).
        wg.resize(wg.len().max(packed_len(n, k)), 0.0);
        dest.clear();
        add.clear();
        for &(qy, qx, ki) in readers {
            let q_run = to.run(qy, qx, 1);
            let q_col = to.column(&to_cols, in_win, qy, qx);
            let slot = &mut written[(qy - iy0) * iw + qx - ix0];
            for (j, &ci) in to.channels[q_run].iter().enumerate() {
                // Row `i`'s weights, one per `TILE_ROWS` entries from its first.
                let mut row = wg[packed_at(dest.len(), 0, k)..]
                    .iter_mut()
                    .step_by(TILE_ROWS);
                dest.push((q_col + j) * rows);
                add.push(*slot);
                for ox in *ox_lo..=*ox_hi {
                    let tap = (ki * kw + qx + g.pw - ox * g.sw) * cin + ci as usize;
                    let outputs = &from.channels[from.run(*oy, ox, 1)];
                    let weights = taps.row(tap);
                    let weights = weights.as_slice().expect("standard layout");
                    // `outputs` first: a zip stops on it without taking a slot.
                    for (&co, slot) in outputs.iter().zip(row.by_ref()) {
                        *slot = weights[co as usize];
                    }
                }
            }
            *slot = true;
        }
        let a = &a_all[p_col * rows..(p_col + k) * rows];
        gemm_rows(&wg, a, out_all, (&dest, &add), (k, rows));
    }
    for qy in iy0..iy0 + ih {
        for qx in ix0..ix0 + iw {
            if !written[(qy - iy0) * iw + qx - ix0] {
                let q_run = to.run(qy, qx, 1);
                let q_col = to.column(&to_cols, in_win, qy, qx);
                out_all[q_col * rows..(q_col + q_run.len()) * rows].fill(0.0);
            }
        }
    }
    WinRows {
        win: in_win,
        a: out,
    }
}

/// Minimum over the box of each row (windowed at the input node) plus its constant, made safe
/// by the rounding margin exactly as `cpu::concretize` does.
fn concretize_window(
    wr: Option<WinRows>,
    tables: &SampleTables,
    bias: &Array1<f64>,
    mag: &Array1<f64>,
) -> Array1<f64> {
    let mut value = bias.to_vec();
    let mut slack = vec![0.0; value.len()];
    let mut m = mag.to_vec();
    if let Some(wr) = &wr {
        let support = tables.support(0);
        for (coefs, n) in wr.a.rows().into_iter().zip(support.columns(wr.win)) {
            let coefs = coefs.as_slice().expect("standard layout");
            let box_n = (tables.x0[n], tables.lo[n], tables.hi[n], tables.scale[n]);
            concretize_row(coefs, box_n, (&mut value, &mut slack, &mut m));
        }
    }
    (0..value.len())
        .map(|r| finish_bound(value[r], slack[r], m[r]).1)
        .collect()
}

simd_rows! {
    /// `bias += w·coefs`, `mag += |w|·|coefs|` (one neuron's coefficient in every row).
    fn add_terms_row(coefs: &[f64], w: f64, bias: &mut [f64], mag: &mut [f64]) {
        let wa = w.abs();
        for ((b, m), &c) in bias.iter_mut().zip(mag.iter_mut()).zip(coefs) {
            *b += c * w;
            *m += c.abs() * wa;
        }
    }
}

simd_rows! {
    /// One neuron's CROWN relaxation `(lower slope, chord slope, chord intercept)` applied to
    /// its coefficient in every row, the picked intercepts added to `picked`.
    fn relax_row(coefs: &mut [f64], relaxation: (f64, f64, f64), picked: &mut [f64]) {
        let (lo, up, t) = relaxation;
        for (c, p) in coefs.iter_mut().zip(picked.iter_mut()) {
            let (pos, neg) = (c.max(0.0), c.min(0.0));
            *c = pos * lo + neg * up;
            *p += neg * t;
        }
    }
}

simd_rows! {
    /// One input coordinate `(x, lo, hi, scale)` concretised in every row: `Σ c·x`,
    /// `Σ min(c·lo, c·hi)` and the margin scale `Σ |c|·scale`.
    fn concretize_row(
        coefs: &[f64],
        coordinate: (f64, f64, f64, f64),
        sums: (&mut [f64], &mut [f64], &mut [f64]),
    ) {
        let (x, lo, hi, scale) = coordinate;
        let (value, slack, m) = sums;
        for (((v, s), mm), &c) in value.iter_mut().zip(slack.iter_mut()).zip(m.iter_mut()).zip(coefs) {
            *v += c * x;
            *s += (c * lo).min(c * hi);
            *mm += c.abs() * scale;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::cpu::{crown_sided, sample_intermediate, GraphInfo};
    use crate::ir::build::{random_cnn, random_cnn_dense_head, random_resnet, Rng};
    use ndarray::Array1;

    /// The window path gives the dense path's bounds (up to summation order) for every neuron of
    /// every spatial ReLU input, on random CNNs (padding, channel affine) and ResNets (add); so
    /// do dense rows (of the flat ReLU inputs) finished on the window path, also through a
    /// linear layer (the second layer of a dense head).
    #[test]
    fn window_rows_match_dense_rows() {
        let mut checked = 0;
        let mut hybrid_checked = 0;
        for seed in 0..3 {
            let mut rng = Rng::new(100 + seed);
            let graphs = [
                random_cnn(&mut rng, [2, 7, 7], 3, 4),
                random_resnet(&mut rng, [3, 6, 6], 4, 3),
                random_cnn_dense_head(&mut rng, [2, 6, 6], 3, 3),
            ];
            for graph in graphs {
                let info = GraphInfo::new(&graph);
                let d: usize = graph.input_shape().iter().product();
                let x0 = Array1::from_shape_fn(d, |_| rng.uniform());
                let delta = DeltaBox::linf(d, 0.05);
                let inter = sample_intermediate(&graph, &info, x0.view(), &delta, false).unwrap();
                for id in 1..graph.nodes.len() {
                    let (bounds, x) = (&inter.bounds, x0.view());
                    let tables = SampleTables::new(&graph, &info.window, bounds, id, x, &delta);
                    if info.relu_input[id] && !info.window[id] {
                        // Dense rows finished on the window path.
                        let sides: Vec<(usize, bool)> = (0..graph.nodes[id].numel())
                            .flat_map(|i| [(i, false), (i, true)])
                            .collect();
                        let bounds = &inter.bounds;
                        let dense =
                            crown_sided(&graph, bounds, None, id, &sides, x0.view(), &delta);
                        let windows = Some((&info.window[..], &info.taps, &tables));
                        let hybrid =
                            crown_sided(&graph, bounds, windows, id, &sides, x0.view(), &delta);
                        for (d, w) in dense.iter().zip(&hybrid) {
                            assert!((d - w).abs() <= 1e-9 * (1.0 + d.abs()), "{d} vs {w}");
                            hybrid_checked += 1;
                        }
                    }
                    if !(info.window[id] && info.relu_input[id]) {
                        continue;
                    }
                    let shape = &graph.nodes[id].shape;
                    let plane = shape[1] * shape[2];
                    for pos in 0..plane {
                        let sides: Vec<(usize, bool)> = (0..shape[0])
                            .flat_map(|c| [(c * plane + pos, false), (c * plane + pos, true)])
                            .collect();
                        let dense =
                            crown_sided(&graph, &inter.bounds, None, id, &sides, x0.view(), &delta);
                        let window = crown_window_sided(&graph, &info.taps, &tables, id, &sides);
                        for (pair_d, pair_w) in dense
                            .exact_chunks(2)
                            .into_iter()
                            .zip(window.exact_chunks(2))
                        {
                            let tol = 1e-9 * (1.0 + pair_d[0].abs() + pair_d[1].abs());
                            for (d, w) in pair_d.iter().zip(&pair_w) {
                                assert!((d - w).abs() <= tol, "{d} vs {w}");
                            }
                            checked += 1;
                        }
                    }
                }
            }
        }
        assert!(checked > 100, "only {checked} neurons compared");
        assert!(
            hybrid_checked > 20,
            "only {hybrid_checked} dense bounds compared"
        );
    }
}
