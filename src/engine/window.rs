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
//! half the neurons of each layer dead this is a quarter of the dense work. A conv's own neurons
//! start as one-hot seed rows at its output; their first pull-back is a signed copy of the
//! neurons' weights ([`conv_pullback_seed`]), no product.
//!
//! # Row scalar and rounding charges
//! Rows are `f64` or `f32` ([`RowPrecision`]); constant terms always sum in `f64`. Every rounding
//! of a row entry is charged to its row's bound: a stored entry `ã` of a node whose true
//! coefficient is `a` changes the bound by `(a − ã)·z ≥ −|a − ã|·ẑ`, where `ẑ ≥ |z|` is the
//! neuron's magnitude from its interval. With `u` the scalar's unit roundoff and
//! `γₙ = n·u/(1 − n·u)` (times 1.01 for the charges' own rounding):
//! - a conv transpose's entry is a sum of products `w·a` whose every product passes through at
//!   most `D` roundings (a fused sum over one run of outputs, then an addition per kernel row,
//!   and the weight's rounding to the scalar; see [`transpose_sum_depth`]), so
//!   `|error| ≤ γ_D·Σ|w|·|a|`, charged per row as `γ_D·Σₒ |aₒ|·vₒ` with `v = |W|·ẑ` (the conv
//!   of the magnitudes of its input), beside the conv's bias terms;
//! - a ReLU's chord slope and the product with it round twice: `3u·|a|·slope·ẑ`, charged by
//!   raising the chord's intercept by `3u·slope·ẑ` (a looser chord); the lower slopes (0 or 1)
//!   and stable neurons are exact;
//! - a channel affine map's scale likewise: `3u·|a|·|s|·ẑ`, beside its shift terms;
//! - adding rows into others rounds once: `2u·|sum|·ẑ`; dense rows handed off in `f64` and
//!   rounded to `f32`: `2u·|ã|·ẑ`.
//!
//! Copies and the concretisation (in `f64`, with the engine's margin) are exact. In `f64` the
//! charges are about `1e-13` relative; in `f32` about `1e-4` of the rows' magnitudes.

use super::cpu::{finish_bound, relu_relaxation, Interval};
use super::linop::{
    self, conv_window, count_gemm, gemm_rows, packed_at, packed_len, simd_rows, tap_matrix, Rect,
    RowScalar, Window, TILE_ROWS,
};
use super::{DeltaBox, RowPrecision};
use crate::ir::{Graph, Node, Op};
use ndarray::linalg::general_mat_mul;
use ndarray::{Array1, Array2, ArrayView1, Axis};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::thread::LocalKey;

/// Outputs `(oy, ox_lo, ox_hi)` of a conv: one row, a run of columns.
type OutputRun = (usize, usize, usize);

/// All channels, rows `y0..y0+hh`, columns `x0..x0+ww` of a `[C, H, W]` node.
type Win = Rect;

/// Rows over a window, neuron-major: `a` is `[kept neurons of the window, rows]`, the neurons
/// position-major (see [`Support`]), so a run of positions is one contiguous block.
struct WinRows<T: Scalar> {
    win: Win,
    a: Array2<T>,
}

impl<T: Scalar> Drop for WinRows<T> {
    fn drop(&mut self) {
        recycle(std::mem::take(&mut self.a));
    }
}

/// A row scalar as the window path uses it: its buffer pool, its copy of the conv weights and
/// its elementwise row loops (compiled per scalar by [`row_loops`]).
trait Scalar: RowScalar {
    fn pool() -> &'static LocalKey<RefCell<Pool<Self>>>;
    fn taps(taps: &TapMatrices, k: usize) -> Option<&Array2<Self>>;
    /// `f64` rows in this scalar, rounded to nearest.
    fn from_f64_rows(a: Array2<f64>) -> Array2<Self>;
    fn add_terms_row(coefs: &[Self], terms: (f64, f64), bias: &mut [f64], mag: &mut [f64]);
    fn relax_row(coefs: &mut [Self], relaxation: (f64, f64, f64), picked: &mut [f64]);
    fn add_charged_row(dst: &mut [Self], src: &[Self], unit: f64, charge: &mut [f64]);
    fn concretize_row(coefs: &[Self], coordinate: Coordinate, sums: Sums<'_>);
}

/// One input coordinate `(x, lo, hi, scale)`.
type Coordinate = (f64, f64, f64, f64);
/// Per row: value at x, slack over the box, margin scale.
type Sums<'a> = (&'a mut [f64], &'a mut [f64], &'a mut [f64]);

/// Freed row buffers, kept per thread for the next rows: fresh multi-megabyte allocations are
/// page-faulted in and zeroed by the kernel every time (15–40% of the time otherwise).
struct Pool<T> {
    buffers: Vec<Vec<T>>,
    bytes: usize,
}

/// Free buffers kept per thread and scalar: 128 MiB split among the threads (but at least
/// 64 MiB). A larger pool only grows the process: with 1 GiB, 20 Conv-big digits on two threads
/// peaked at 1.07 GB against 0.58 GB, and clearing the extra fresh pages cost 1.2–2.5 s of system
/// time against 0.1–0.2 s, for the same user time.
const POOL_TOTAL_BYTES: usize = 1 << 27;

fn pool_bytes() -> usize {
    (POOL_TOTAL_BYTES / rayon::current_num_threads().max(1)).max(64 << 20)
}

thread_local! {
    static POOL_F64: RefCell<Pool<f64>> =
        const { RefCell::new(Pool { buffers: Vec::new(), bytes: 0 }) };
    static POOL_F32: RefCell<Pool<f32>> =
        const { RefCell::new(Pool { buffers: Vec::new(), bytes: 0 }) };
}

/// A `[rows, cols]` array from the pool: zeros, or (`zero` false) values the caller overwrites.
fn pooled<T: Scalar>(rows: usize, cols: usize, zero: bool) -> Array2<T> {
    let len = rows * cols;
    let size = std::mem::size_of::<T>();
    let reused = T::pool().with_borrow_mut(|pool| {
        let best = (0..pool.buffers.len())
            .filter(|&i| pool.buffers[i].capacity() >= len)
            .min_by_key(|&i| pool.buffers[i].capacity())?;
        let v = pool.buffers.swap_remove(best);
        pool.bytes -= v.capacity() * size;
        Some(v)
    });
    let mut v = reused.unwrap_or_default();
    if zero {
        v.clear();
    } else {
        v.truncate(len);
    }
    v.resize(len, T::zero());
    Array2::from_shape_vec((rows, cols), v).expect("rows × cols")
}

/// Returns `a`'s buffer to the pool, evicting the smallest buffers past [`pool_bytes`].
fn recycle<T: Scalar>(a: Array2<T>) {
    let (v, _) = a.into_raw_vec_and_offset();
    let size = std::mem::size_of::<T>();
    let bytes = v.capacity() * size;
    let limit = pool_bytes();
    if !((64 << 10)..=limit).contains(&bytes) {
        return;
    }
    T::pool().with_borrow_mut(|pool| {
        pool.bytes += bytes;
        pool.buffers.push(v);
        while pool.bytes > limit {
            let smallest = (0..pool.buffers.len())
                .min_by_key(|&i| pool.buffers[i].capacity())
                .expect("nonempty");
            pool.bytes -= pool.buffers.swap_remove(smallest).capacity() * size;
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

/// Per row (`padded(m)` of them), the constant terms `Σ` and the rounding-margin scale
/// `Σ|·|` so far; charges for rounding go into both.
struct Terms {
    bias: Vec<f64>,
    mag: Vec<f64>,
}

impl Terms {
    /// Lowers each row's bound by `charge` (≥ 0).
    fn charge(&mut self, charge: &[f64]) {
        for ((b, m), &c) in self.bias.iter_mut().zip(&mut self.mag).zip(charge) {
            *b -= c;
            *m += c;
        }
    }
}

/// Copies `wr` (rows in `support`) into the larger window `to`.
fn widen_to<T: Scalar>(wr: WinRows<T>, support: &Support, to: Win) -> WinRows<T> {
    if wr.win == to {
        return wr;
    }
    let a = pooled(
        *support.col_starts(to).last().expect("starts"),
        wr.a.ncols(),
        true,
    );
    let mut big = WinRows { win: to, a };
    // Into zeros: exact, nothing to charge.
    add_into(&mut big, &wr, support, None);
    big
}

/// Adds `value` into `slot` (rows of one node, on `support`, whose magnitudes per kept neuron
/// are `magnitude`), charging the rounding of the sums to `terms`.
fn accumulate<T: Scalar>(
    slot: &mut Option<WinRows<T>>,
    value: WinRows<T>,
    support: &Support,
    (magnitude, terms): (&[f64], &mut Terms),
) {
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
            add_into(&mut big, &small, support, Some((magnitude, terms)));
            big
        }
    });
}

/// `big += small`, both rows in `support`, where `big`'s window holds `small`'s; with
/// `charged`, each sum's rounding (`2u·|sum|·ẑ`) is charged to its row.
fn add_into<T: Scalar>(
    big: &mut WinRows<T>,
    small: &WinRows<T>,
    support: &Support,
    charged: Option<(&[f64], &mut Terms)>,
) {
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
    // The kept-neuron index of each column of `big`.
    let neurons: Option<Vec<usize>> = charged.as_ref().map(|_| support.columns(big.win).collect());
    let mut charge = vec![0.0; rows];
    let dst = big.a.as_slice_mut().expect("standard layout");
    for &(from, to, len) in &runs {
        for j in 0..len {
            let (src, dst) = (
                &src[(from + j) * rows..][..rows],
                &mut dst[(to + j) * rows..][..rows],
            );
            let unit = match (&charged, &neurons) {
                (Some((magnitude, _)), Some(neurons)) => {
                    2.0 * T::UNIT_ROUNDOFF * magnitude[neurons[to + j]]
                }
                _ => 0.0,
            };
            T::add_charged_row(dst, src, unit, &mut charge);
        }
    }
    if let Some((_, terms)) = charged {
        terms.charge(&charge);
    }
}

/// Rows `wr` kept on `from` re-expressed on `to`, the same node's support of another consumer:
/// columns `to` lacks are dropped (their neurons never matter there), missing ones are zero.
fn convert<T: Scalar>(
    wr: WinRows<T>,
    from: &Arc<Support>,
    to: &Arc<Support>,
    c: usize,
) -> WinRows<T> {
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

/// Per row, the terms of a constant and a charge per column (`Σ a·constant − Σ |a|·charge`,
/// scale `Σ |a|·(|constant| + charge)`), added to `terms`.
fn add_column_terms<T: Scalar>(
    a: &Array2<T>,
    constants: &[f64],
    charges: &[f64],
    terms: &mut Terms,
) {
    for ((coefs, &w), &charge) in a.rows().into_iter().zip(constants).zip(charges) {
        if w == 0.0 && charge == 0.0 {
            continue;
        }
        let coefs = coefs.as_slice().expect("standard layout");
        T::add_terms_row(coefs, (w, charge), &mut terms.bias, &mut terms.mag);
    }
}

/// `per_channel[ch]` for each column of rows over `win` kept on `support`.
fn column_values(support: &Support, win: Win, per_channel: &[f64]) -> Vec<f64> {
    support
        .columns(win)
        .map(|k| per_channel[support.channels[k] as usize])
        .collect()
}

/// `per_neuron[k]` (indexed by kept neuron) for each column of rows over `win` kept on
/// `support`.
fn column_neurons(support: &Support, win: Win, per_neuron: &[f64]) -> Vec<f64> {
    support.columns(win).map(|k| per_neuron[k]).collect()
}

/// Conv weights as the transpose of [`tap_matrix`], `[kh·kw·cin, cout]` (one row of output
/// channels per tap and input channel), per conv node (`None` elsewhere), built once per graph,
/// in both row scalars; and linear weights transposed, `[in, out]`, in `f64`, built on first use
/// (dense rows hand off through them, taking the rows of their kept inputs).
pub(crate) struct TapMatrices {
    f64s: Vec<Option<Array2<f64>>>,
    f32s: Vec<Option<Array2<f32>>>,
    linear_transposes: Vec<OnceLock<Array2<f64>>>,
}

impl TapMatrices {
    pub(crate) fn new(graph: &Graph) -> Self {
        let f64s: Vec<Option<Array2<f64>>> = graph
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
            .collect();
        let f32s = f64s
            .iter()
            .map(|t| t.as_ref().map(|t| t.mapv(|w| w as f32)))
            .collect();
        let linear_transposes = graph.nodes.iter().map(|_| OnceLock::new()).collect();
        TapMatrices {
            f64s,
            f32s,
            linear_transposes,
        }
    }
}

/// One ReLU's CROWN relaxation per kept neuron of its support: lower slope, chord slope, chord
/// intercept (stable neurons exact; the intercept raised by the rounding charge).
struct Relaxation {
    lower: Vec<f64>,
    upper: Vec<f64>,
    intercept: Vec<f64>,
}

/// What the window path reads at every position of one sample: the support of every window-path
/// node's rows, the relaxation of each window-path ReLU whose input bounds are known, the input
/// point and box, and the rounding charges, all per kept neuron.
pub(crate) struct SampleTables {
    rows: RowPrecision,
    support: Vec<Option<Arc<Support>>>,
    relu: Vec<Option<Relaxation>>,
    /// Per node with bounds, `ẑ ≥ |value|` per kept neuron.
    magnitude: Vec<Option<Vec<f64>>>,
    /// Per conv and channel affine node, the rounding charge per unit of `|row|` per kept
    /// output neuron of its transpose (see the module doc).
    charge: Vec<Option<Vec<f64>>>,
    x0: Vec<f64>,
    lo: Vec<f64>,
    hi: Vec<f64>,
    /// `|x0| + max(|lo|, |hi|)`: the rounding-margin scale per input coordinate.
    scale: Vec<f64>,
}

/// How many roundings any product passes through in an entry of [`conv_pullback_window`]'s
/// result: a fused sum over the kept outputs of one run (at most `⌈kw/sw⌉` positions of `cout`
/// channels), then one addition per further kernel row reaching the entry (at most `⌈kh/sh⌉`
/// in all), plus the weight's own rounding to the row scalar and one to spare.
fn transpose_sum_depth(cout: usize, (kh, kw): (usize, usize), [sh, sw]: [usize; 2]) -> usize {
    kw.div_ceil(sw) * cout + kh.div_ceil(sh) + 2
}

/// `γₙ = n·u/(1 − n·u)`, the bound on the relative rounding error of an `n`-term sum, raised by
/// 1% to cover the rounding of the charges computed from it.
fn gamma(n: usize, unit: f64) -> f64 {
    let nu = n as f64 * unit;
    assert!(nu < 0.5, "sums too long for the row scalar");
    1.01 * nu / (1.0 - nu)
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

/// `v` (a node's values in the IR's order) at the kept neurons of node `k`.
fn on_support(
    support: &[Option<Arc<Support>>],
    graph: &Graph,
    k: usize,
    v: ArrayView1<f64>,
) -> Vec<f64> {
    let node = &graph.nodes[k];
    let s = support[k].as_ref().expect("window node");
    kept(s, node.shape[0], &channels_last(v, &node.shape))
}

/// For the window nodes up to `open`, in the IR's order: `ẑ ≥ |value|` per neuron, propagated
/// from the box (`|x0| + max(|lo|, |hi|)`) through `|W|·ẑ + |b|` and tightened by each known
/// interval; and for each conv and channel affine node, the rounding charge per unit of `|row|`
/// of its transpose (see the module doc), for rows of scalar `rows`.
#[allow(clippy::type_complexity)]
fn magnitudes_and_charges(
    graph: &Graph,
    window: &[bool],
    bounds: &[Option<Interval>],
    open: usize,
    (x0, delta): (ArrayView1<f64>, &DeltaBox),
    rows: RowPrecision,
) -> (Vec<Option<Array1<f64>>>, Vec<Option<Array1<f64>>>) {
    let unit = rows.unit_roundoff();
    let n = graph.nodes.len();
    let mut magnitude: Vec<Option<Array1<f64>>> = vec![None; n];
    let mut charge: Vec<Option<Array1<f64>>> = vec![None; n];
    for k in 0..=open.min(n - 1) {
        if !window[k] {
            continue;
        }
        let node = &graph.nodes[k];
        let plane = node.numel() / node.shape[0].max(1);
        let input = |i: usize| magnitude[node.inputs[i].index()].as_ref();
        let propagated = match &node.op {
            Op::Input => Some(
                ndarray::Zip::from(&x0)
                    .and(&delta.lo)
                    .and(&delta.hi)
                    .map_collect(|x, lo, hi| x.abs() + lo.abs().max(hi.abs())),
            ),
            Op::Relu => match &bounds[node.inputs[0].index()] {
                Some((_, u)) => Some(u.mapv(|u| u.max(0.0))),
                None => input(0).cloned(),
            },
            Op::Conv2d {
                weight,
                bias,
                stride,
                ..
            } => input(0).map(|z| {
                let v = linop::forward(graph, node, &[z.view().insert_axis(Axis(0))], true)
                    .remove_axis(Axis(0));
                let (cout, _, kh, kw) = weight.dim();
                let rate = gamma(transpose_sum_depth(cout, (kh, kw), *stride), unit);
                charge[k] = Some(v.mapv(|v| rate * v));
                Array1::from_shape_fn(v.len(), |i| v[i] + bias[i / plane].abs())
            }),
            Op::ChannelAffine { scale, shift } => input(0).map(|z| {
                charge[k] = Some(Array1::from_shape_fn(z.len(), |i| {
                    1.01 * 3.0 * unit * scale[i / plane].abs() * z[i]
                }));
                Array1::from_shape_fn(z.len(), |i| {
                    scale[i / plane].abs() * z[i] + shift[i / plane].abs()
                })
            }),
            Op::Add => (0..node.inputs.len())
                .map(input)
                .try_fold(Array1::zeros(node.numel()), |sum, z| z.map(|z| sum + z)),
            _ => None,
        };
        // Sums above round: widen by far more than their rounding before tightening.
        let propagated = propagated.map(|z| z.mapv(|z| z * (1.0 + 1e-12)));
        magnitude[k] = match (propagated, &bounds[k]) {
            (Some(z), Some((l, u))) => Some(
                ndarray::Zip::from(&z)
                    .and(l)
                    .and(u)
                    .map_collect(|&z, l, u| z.min(l.abs().max(u.abs()))),
            ),
            (z, _) => z,
        };
    }
    (magnitude, charge)
}

impl SampleTables {
    /// The tables for bounding node `open` with rows in `rows`.
    pub(crate) fn new(
        graph: &Graph,
        window: &[bool],
        bounds: &[Option<Interval>],
        open: usize,
        (x0, delta): (ArrayView1<f64>, &DeltaBox),
        rows: RowPrecision,
    ) -> Self {
        if !window[0] {
            // Not a `[C, H, W]` input: no window path.
            return SampleTables {
                rows,
                support: Vec::new(),
                relu: Vec::new(),
                magnitude: Vec::new(),
                charge: Vec::new(),
                x0: Vec::new(),
                lo: Vec::new(),
                hi: Vec::new(),
                scale: Vec::new(),
            };
        }
        let unit = rows.unit_roundoff();
        let support = supports(graph, window, bounds, open);
        let (magnitude, charge) =
            magnitudes_and_charges(graph, window, bounds, open, (x0, delta), rows);
        let magnitude = magnitude
            .iter()
            .enumerate()
            .map(|(k, z)| Some(on_support(&support, graph, k, z.as_ref()?.view())))
            .collect();
        let charge = charge
            .iter()
            .enumerate()
            .map(|(k, c)| Some(on_support(&support, graph, k, c.as_ref()?.view())))
            .collect();
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
                    let (lower, upper, intercept, unstable) = relu_relaxation(l[n], u[n]);
                    debug_assert!(lower == 0.0 || lower == 1.0, "exact lower slopes");
                    // The chord slope and the product with it round: a looser chord.
                    let charge = if unstable {
                        1.01 * 3.0 * unit * upper * l[n].abs().max(u[n].abs())
                    } else {
                        0.0
                    };
                    (r.lower[n], r.upper[n], r.intercept[n]) = (lower, upper, intercept + charge);
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
            rows,
            support,
            relu,
            magnitude,
            charge,
            x0,
            lo,
            hi,
            scale,
        }
    }

    fn support(&self, k: usize) -> &Arc<Support> {
        self.support[k].as_ref().expect("window-path node")
    }

    /// `ẑ` per kept neuron of node `k` (below the bounded node).
    fn magnitude(&self, k: usize) -> &[f64] {
        self.magnitude[k].as_ref().expect("bounded before")
    }

    /// Rounding charge per unit of `|row|` per kept output neuron of conv or channel affine `k`.
    fn charge(&self, k: usize) -> &[f64] {
        self.charge[k].as_ref().expect("input bounded before")
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
    match tables.rows {
        RowPrecision::F64 => window_sided::<f64>(graph, taps, tables, id, sides),
        RowPrecision::F32 => window_sided::<f32>(graph, taps, tables, id, sides),
    }
}

fn window_sided<T: Scalar>(
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
    let mut seed = Array2::zeros((run.len(), padded::<T>(m)));
    for (r, &(i, upper)) in sides.iter().enumerate() {
        debug_assert_eq!(i % plane, pos);
        let ch = (i / plane) as u32;
        let col = support.channels[run.clone()]
            .iter()
            .position(|&k| k == ch)
            .expect("the bounded node keeps every neuron");
        seed[[col, r]] = if upper { -T::one() } else { T::one() };
    }
    let seed = WinRows {
        win: Win {
            y0: pos / w,
            x0: pos % w,
            hh: 1,
            ww: 1,
        },
        a: seed,
    };
    let mut terms = Terms {
        bias: vec![0.0; padded::<T>(m)],
        mag: vec![0.0; padded::<T>(m)],
    };
    let mut pending: Vec<Option<WinRows<T>>> = (0..graph.nodes.len()).map(|_| None).collect();
    let node = &graph.nodes[id];
    match &node.op {
        // A conv's seed rows are its weights: placed at its input without a product. The bias
        // terms and rounding charge are those `pull_back_windows` adds (the charge is kept,
        // though these entries are exact, so the bounds are the product's).
        Op::Conv2d { bias: cb, .. } => {
            let p = node.inputs[0].index();
            let cb = column_values(support, seed.win, cb.as_slice().expect("contiguous"));
            let charges = column_neurons(support, seed.win, tables.charge(id));
            add_column_terms(&seed.a, &cb, &charges, &mut terms);
            let tap = T::taps(taps, id).expect("tap matrix of a conv node");
            let to = tables.support(p);
            let out = conv_pullback_seed(&seed, graph, node, tap, (support, to));
            accumulate(&mut pending[p], out, to, (tables.magnitude(p), &mut terms));
        }
        _ => pending[id] = Some(seed),
    }
    let mut lower = pull_back_windows(graph, taps, tables, pending, terms, m);
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
    match tables.rows {
        RowPrecision::F64 => finish_dense::<f64>(graph, taps, tables, handoffs, bias, mag),
        RowPrecision::F32 => finish_dense::<f32>(graph, taps, tables, handoffs, bias, mag),
    }
}

fn finish_dense<T: Scalar>(
    graph: &Graph,
    taps: &TapMatrices,
    tables: &SampleTables,
    handoffs: Vec<Handoff>,
    bias: Array1<f64>,
    mag: Array1<f64>,
) -> Array1<f64> {
    let m = bias.len();
    let r = padded::<T>(m);
    let pad = |v: Array1<f64>| -> Vec<f64> {
        v.into_iter()
            .chain(std::iter::repeat(0.0))
            .take(r)
            .collect()
    };
    let mut terms = Terms {
        bias: pad(bias),
        mag: pad(mag),
    };
    let mut pending: Vec<Option<WinRows<T>>> = (0..graph.nodes.len()).map(|_| None).collect();
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
        let mut kept_rows = pooled::<f64>(source.len(), r, r != m);
        match through.map(|id| &graph.nodes[id].op) {
            Some(Op::Linear { weight, .. }) => {
                // Kept neurons' rows `W[:, kept]ᵀ · aᵀ`: the product for those columns only.
                let id = through.expect("a linear node");
                let transposed = taps.linear_transposes[id]
                    .get_or_init(|| weight.t().as_standard_layout().into_owned());
                let outputs = transposed.ncols();
                let mut kept_weight = pooled::<f64>(source.len(), outputs, false);
                for (mut dst, &i) in kept_weight.rows_mut().into_iter().zip(&source) {
                    dst.assign(&transposed.row(i));
                }
                count_gemm(source.len(), outputs, m);
                let mut dst = kept_rows.slice_mut(ndarray::s![.., ..m]);
                general_mat_mul(1.0, &kept_weight, &a.t(), 0.0, &mut dst);
                recycle(kept_weight);
            }
            Some(_) => unreachable!("rows hand off through linear ops only"),
            None => {
                for (mut dst, &i) in kept_rows.rows_mut().into_iter().zip(&source) {
                    dst.slice_mut(ndarray::s![..m]).assign(&a.column(i));
                }
            }
        }
        let kept_rows = T::from_f64_rows(kept_rows);
        let magnitude = tables.magnitude(k);
        if T::UNIT_ROUNDOFF > f64::EPSILON {
            // Rounded from f64: `2u·|ã|·ẑ` per entry.
            let charges: Vec<f64> = magnitude
                .iter()
                .map(|z| 2.0 * T::UNIT_ROUNDOFF * z)
                .collect();
            add_column_terms(&kept_rows, &vec![0.0; charges.len()], &charges, &mut terms);
        }
        let rows = WinRows { win, a: kept_rows };
        accumulate(&mut pending[k], rows, support, (magnitude, &mut terms));
    }
    pull_back_windows(graph, taps, tables, pending, terms, m)
}

/// `m` rows rounded up to whole register tiles of [`gemm_rows`] (of scalar `T`): windowed arrays
/// carry this many rows, the last ones zero (a partial tile costs as much as several full ones).
/// Never a multiple of 1024 bytes: a neuron's rows would then start 1 KB apart times a power of
/// two, and the lines of a column strip crowd into a few L1 sets (256 `f64` rows ran 20% slower
/// than 264). Rows 512 bytes apart (128 `f32`) spread over enough sets: padding them to 144 cost
/// more than it saved.
fn padded<T>(m: usize) -> usize {
    let tile = linop::tile_columns::<T>();
    let r = m.next_multiple_of(tile);
    if (r * std::mem::size_of::<T>()).is_multiple_of(1024) {
        r + tile
    } else {
        r
    }
}

/// How many rows `m` occupy in `rows`' scalar once padded (see [`padded`]): a batch of that
/// many rows wastes no padding.
pub(crate) fn padded_rows(rows: RowPrecision, m: usize) -> usize {
    match rows {
        RowPrecision::F64 => padded::<f64>(m),
        RowPrecision::F32 => padded::<f32>(m),
    }
}

/// Pulls the windowed rows in `pending` (at window-path nodes, each on its node's support,
/// `padded(m)` rows) back to the input, adding their constant terms to `terms`, and returns the
/// lower bound over the box of each of the first `m` rows.
fn pull_back_windows<T: Scalar>(
    graph: &Graph,
    taps: &TapMatrices,
    tables: &SampleTables,
    mut pending: Vec<Option<WinRows<T>>>,
    mut terms: Terms,
    m: usize,
) -> Array1<f64> {
    debug_assert!(pending
        .iter()
        .flatten()
        .all(|wr| wr.a.ncols() == padded::<T>(m)));
    let consumers = graph.consumer_counts();
    let mut bias_added = vec![false; graph.nodes.len()];
    for k in (1..pending.len()).rev() {
        let Some(wr) = pending[k].take() else {
            continue;
        };
        let node = &graph.nodes[k];
        let support = tables.support(k);
        let pass_on =
            |wr: WinRows<T>, p: usize, pending: &mut Vec<Option<WinRows<T>>>, terms: &mut Terms| {
                let to = tables.support(p);
                let wr = convert(wr, support, to, graph.nodes[p].shape[0]);
                accumulate(&mut pending[p], wr, to, (tables.magnitude(p), terms));
            };
        match &node.op {
            Op::Relu => {
                let relaxation = tables.relu[k]
                    .as_ref()
                    .expect("pre-activation bounds computed");
                let p = node.inputs[0].index();
                // A conv feeding only this ReLU gets its bias terms and rounding charges here,
                // while the rows are in cache, rather than in a pass of its own.
                let conv_terms = match &graph.nodes[p].op {
                    Op::Conv2d { bias: cb, .. } if consumers[p] == 1 => {
                        bias_added[p] = true;
                        let cb = cb.as_slice().expect("contiguous");
                        Some((
                            column_values(support, wr.win, cb),
                            column_neurons(support, wr.win, tables.charge(p)),
                        ))
                    }
                    _ => None,
                };
                let out = relax_relu(wr, support, relaxation, conv_terms, &mut terms);
                pass_on(out, p, &mut pending, &mut terms);
            }
            Op::ChannelAffine { scale, shift } => {
                let mut wr = wr;
                let shift = column_values(support, wr.win, shift.as_slice().expect("contiguous"));
                let charges = column_neurons(support, wr.win, tables.charge(k));
                add_column_terms(&wr.a, &shift, &charges, &mut terms);
                let scale = column_values(support, wr.win, scale.as_slice().expect("contiguous"));
                for (mut coefs, &s) in wr.a.rows_mut().into_iter().zip(&scale) {
                    coefs *= T::from_f64(s);
                }
                pass_on(wr, node.inputs[0].index(), &mut pending, &mut terms);
            }
            Op::Conv2d { .. } => {
                let p = node.inputs[0].index();
                let tap = T::taps(taps, k).expect("tap matrix of a conv node");
                let to = tables.support(p);
                if !bias_added[k] {
                    let Op::Conv2d { bias: cb, .. } = &node.op else {
                        unreachable!("a conv node")
                    };
                    let cb = column_values(support, wr.win, cb.as_slice().expect("contiguous"));
                    let charges = column_neurons(support, wr.win, tables.charge(k));
                    add_column_terms(&wr.a, &cb, &charges, &mut terms);
                }
                let out = conv_pullback_window(wr, graph, node, tap, support, to);
                accumulate(&mut pending[p], out, to, (tables.magnitude(p), &mut terms));
            }
            Op::Add => {
                let (last, rest) = node.inputs.split_last().expect("add has inputs");
                for input in rest {
                    let mut a = pooled(wr.a.nrows(), wr.a.ncols(), false);
                    a.assign(&wr.a);
                    let copy = WinRows { win: wr.win, a };
                    pass_on(copy, input.index(), &mut pending, &mut terms);
                }
                pass_on(wr, last.index(), &mut pending, &mut terms);
            }
            _ => unreachable!("window_nodes admits only conv, relu, channel affine and add"),
        }
    }
    concretize_window(pending[0].take(), tables, &terms).slice_move(ndarray::s![..m])
}

/// CROWN's ReLU relaxation (chord above, slope 0 or 1 below) applied to windowed rows; with
/// `conv_terms` (a constant and a rounding charge per column of the ReLU's input, a conv's), also
/// their terms.
fn relax_relu<T: Scalar>(
    mut wr: WinRows<T>,
    support: &Support,
    relaxation: &Relaxation,
    conv_terms: Option<(Vec<f64>, Vec<f64>)>,
    terms: &mut Terms,
) -> WinRows<T> {
    // Σ per row of the chord intercepts the negative coefficients pick up (≤ 0).
    let mut picked = vec![0.0; wr.a.ncols()];
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
                coefs.iter_mut().for_each(|c| *c *= T::from_f64(lo));
            }
        } else {
            T::relax_row(coefs, (lo, up, t), &mut picked);
        }
        if let Some((constants, charges)) = &conv_terms {
            let (w, charge) = (constants[j], charges[j]);
            if (w != 0.0 || charge != 0.0) && (lo, up) != (0.0, 0.0) {
                T::add_terms_row(coefs, (w, charge), &mut terms.bias, &mut terms.mag);
            }
        }
    }
    for ((b, m), p) in terms.bias.iter_mut().zip(terms.mag.iter_mut()).zip(&picked) {
        *b += p;
        *m -= p;
    }
    wr
}

/// The rectangle of a conv's input that its outputs over `win` read (`win` non-empty): rows
/// `(y0·sh − ph) ..= ((y0+hh−1)·sh − ph + kh − 1)`, and likewise columns, clipped to the image.
fn receptive_field(g: &Window, win: Win) -> Win {
    let span = |o0: usize, n: usize, s: usize, p: usize, k: usize, size: usize| {
        let lo = (o0 * s).saturating_sub(p);
        let hi = ((o0 + n - 1) * s + k).saturating_sub(p).min(size);
        (lo, hi.max(lo) - lo)
    };
    let (y0, hh) = span(win.y0, win.hh, g.sh, g.ph, g.kh, g.h);
    let (x0, ww) = span(win.x0, win.ww, g.sw, g.pw, g.kw, g.w);
    Win { y0, x0, hh, ww }
}

/// Pulls the seed rows of conv neurons at one output position (`seed`, over the 1 × 1 window
/// `win`, a `±1` per row in its neuron's column) back to the conv input: each row is its
/// neuron's weights, signed, so no product is needed. The entries are those the GEMM of
/// [`conv_pullback_window`] gives (`±w` exactly); the caller adds the bias terms.
fn conv_pullback_seed<T: Scalar>(
    seed: &WinRows<T>,
    graph: &Graph,
    node: &Node,
    taps: &Array2<T>,
    (from, to): (&Support, &Support),
) -> WinRows<T> {
    let g = conv_window(graph, node);
    let (win, rows) = (seed.win, seed.a.ncols());
    debug_assert!(win.hh == 1 && win.ww == 1);
    // Each row's (output channel, sign), from its one nonzero seed entry.
    let mut sides: Vec<Option<(usize, T)>> = vec![None; rows];
    for (co, coefs) in from.channels[from.run(win.y0, win.x0, 1)]
        .iter()
        .zip(seed.a.rows())
    {
        for (side, &c) in sides.iter_mut().zip(coefs) {
            if c != T::zero() {
                debug_assert!(side.is_none(), "one seed entry per row");
                *side = Some((*co as usize, c));
            }
        }
    }
    let in_win = receptive_field(&g, win);
    let to_cols = to.col_starts(in_win);
    let mut out = pooled(*to_cols.last().expect("starts"), rows, true);
    for qy in in_win.y0..in_win.y0 + in_win.hh {
        for qx in in_win.x0..in_win.x0 + in_win.ww {
            // The tap reading input `q` for the output at `win`, if inside the kernel.
            let (ki, kj) = (qy + g.ph - win.y0 * g.sh, qx + g.pw - win.x0 * g.sw);
            if ki >= g.kh || kj >= g.kw {
                continue;
            }
            let q_col = to.column(&to_cols, in_win, qy, qx);
            for (j, &ci) in to.channels[to.run(qy, qx, 1)].iter().enumerate() {
                let weights = taps.row((ki * g.kw + kj) * g.cin + ci as usize);
                let mut row = out.row_mut(q_col + j);
                for (o, side) in row.iter_mut().zip(&sides) {
                    if let Some((co, sign)) = *side {
                        *o = sign * weights[co];
                    }
                }
            }
        }
    }
    WinRows {
        win: in_win,
        a: out,
    }
}

/// Pulls windowed rows of a conv output (kept on `from`) back to the conv input (its receptive
/// field, clipped to the image; kept on `to`); the caller adds the bias terms. Gather form: each kept
/// input position's rows are `Σ_ki W_ki · rows[outputs reached by kernel row ki]`, over kept
/// neurons only, so dead ReLUs on either side cost nothing; one GEMM per run of outputs serves
/// every (position, kernel row) reading it.
fn conv_pullback_window<T: Scalar>(
    wr: WinRows<T>,
    graph: &Graph,
    node: &Node,
    taps: &Array2<T>,
    from: &Support,
    to: &Support,
) -> WinRows<T> {
    let g = conv_window(graph, node);
    let win = wr.win;
    let rows = wr.a.ncols();
    if win.hh * win.ww == 0 {
        return WinRows {
            win,
            a: Array2::zeros((0, rows)),
        };
    }
    let in_win = receptive_field(&g, win);
    let (iy0, ih, ix0, iw) = (in_win.y0, in_win.hh, in_win.x0, in_win.ww);
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
    let (mut wg, mut dest, mut add): (Vec<T>, Vec<usize>, Vec<bool>) = Default::default();
    for ((oy, ox_lo, ox_hi), readers) in &runs {
        let p_run = from.run(*oy, *ox_lo, ox_hi - ox_lo + 1);
        let p_col = from.column(&from_cols, win, *oy, *ox_lo);
        let k = p_run.len();
        debug_assert!(
            k <= g.kw.div_ceil(g.sw) * taps.ncols(),
            "see transpose_sum_depth"
        );
        // Rows `[kept input channel at q, kept outputs of the run]` of W at each pair's taps,
        // packed for `gemm_rows`.
        let n: usize = readers
            .iter()
            .map(|&(qy, qx, _)| to.run(qy, qx, 1).len())
            .sum();
        // Every entry the kernel reads is written below (it never reads a last tile's padding).
        wg.resize(wg.len().max(packed_len(n, k)), T::zero());
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
                out_all[q_col * rows..(q_col + q_run.len()) * rows].fill(T::zero());
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
fn concretize_window<T: Scalar>(
    wr: Option<WinRows<T>>,
    tables: &SampleTables,
    terms: &Terms,
) -> Array1<f64> {
    let mut value = terms.bias.clone();
    let mut slack = vec![0.0; value.len()];
    let mut m = terms.mag.clone();
    if let Some(wr) = &wr {
        let support = tables.support(0);
        for (coefs, n) in wr.a.rows().into_iter().zip(support.columns(wr.win)) {
            let coefs = coefs.as_slice().expect("standard layout");
            let box_n = (tables.x0[n], tables.lo[n], tables.hi[n], tables.scale[n]);
            T::concretize_row(coefs, box_n, (&mut value, &mut slack, &mut m));
        }
    }
    (0..value.len())
        .map(|r| finish_bound(value[r], slack[r], m[r]).1)
        .collect()
}

/// The elementwise row loops of [`Scalar`] for one scalar type, each compiled plainly, with AVX2
/// and with AVX-512 by [`simd_rows`]; sums in `f64`.
macro_rules! row_loops {
    ($t:ident, $pool:ident, $taps:ident, $add_terms:ident, $relax:ident, $add_charged:ident,
     $concretize:ident) => {
        simd_rows! {
            /// `bias += c·w − |c|·charge`, `mag += |c|·(|w| + charge)` over one neuron's
            /// coefficient `c` in every row.
            fn $add_terms(coefs: &[$t], terms: (f64, f64), bias: &mut [f64], mag: &mut [f64]) {
                let (w, charge) = terms;
                let wa = w.abs() + charge;
                for ((b, m), &c) in bias.iter_mut().zip(mag.iter_mut()).zip(coefs) {
                    let c = c as f64;
                    *b += c * w - c.abs() * charge;
                    *m += c.abs() * wa;
                }
            }
        }

        simd_rows! {
            /// One neuron's CROWN relaxation `(lower slope, chord slope, chord intercept)` applied
            /// to its coefficient in every row, the picked intercepts added to `picked`.
            fn $relax(coefs: &mut [$t], relaxation: (f64, f64, f64), picked: &mut [f64]) {
                let (lo, up, t) = relaxation;
                let (lo_t, up_t) = (lo as $t, up as $t);
                for (c, p) in coefs.iter_mut().zip(picked.iter_mut()) {
                    let (pos, neg) = (c.max(0.0), c.min(0.0));
                    *c = pos * lo_t + neg * up_t;
                    *p += neg as f64 * t;
                }
            }
        }

        simd_rows! {
            /// `dst += src` in every row, `charge += unit·|dst|` (the sums' rounding charge).
            fn $add_charged(dst: &mut [$t], src: &[$t], unit: f64, charge: &mut [f64]) {
                for ((d, &v), ch) in dst.iter_mut().zip(src).zip(charge.iter_mut()) {
                    *d += v;
                    *ch += unit * (*d as f64).abs();
                }
            }
        }

        simd_rows! {
            /// One input coordinate `(x, lo, hi, scale)` concretised in every row: `Σ c·x`,
            /// `Σ min(c·lo, c·hi)` and the margin scale `Σ |c|·scale`.
            fn $concretize(coefs: &[$t], coordinate: Coordinate, sums: Sums<'_>) {
                let (x, lo, hi, scale) = coordinate;
                let (value, slack, m) = sums;
                for (((v, s), mm), &c) in
                    value.iter_mut().zip(slack.iter_mut()).zip(m.iter_mut()).zip(coefs)
                {
                    let c = c as f64;
                    *v += c * x;
                    *s += (c * lo).min(c * hi);
                    *mm += c.abs() * scale;
                }
            }
        }

        impl Scalar for $t {
            fn pool() -> &'static LocalKey<RefCell<Pool<Self>>> {
                &$pool
            }
            fn taps(taps: &TapMatrices, k: usize) -> Option<&Array2<Self>> {
                taps.$taps[k].as_ref()
            }
            fn from_f64_rows(a: Array2<f64>) -> Array2<Self> {
                row_loops!(@from $t, a)
            }
            fn add_terms_row(coefs: &[Self], terms: (f64, f64), bias: &mut [f64], mag: &mut [f64]) {
                $add_terms(coefs, terms, bias, mag)
            }
            fn relax_row(coefs: &mut [Self], relaxation: (f64, f64, f64), picked: &mut [f64]) {
                $relax(coefs, relaxation, picked)
            }
            fn add_charged_row(dst: &mut [Self], src: &[Self], unit: f64, charge: &mut [f64]) {
                $add_charged(dst, src, unit, charge)
            }
            fn concretize_row(coefs: &[Self], coordinate: Coordinate, sums: Sums<'_>) {
                $concretize(coefs, coordinate, sums)
            }
        }
    };
    (@from f64, $a:ident) => {
        $a
    };
    (@from f32, $a:ident) => {{
        let mut out = pooled::<f32>($a.nrows(), $a.ncols(), false);
        out.zip_mut_with(&$a, |o, &v| *o = v as f32);
        recycle($a);
        out
    }};
}

row_loops!(
    f64,
    POOL_F64,
    f64s,
    add_terms_row_f64,
    relax_row_f64,
    add_charged_row_f64,
    concretize_row_f64
);
row_loops!(
    f32,
    POOL_F32,
    f32s,
    add_terms_row_f32,
    relax_row_f32,
    add_charged_row_f32,
    concretize_row_f32
);

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
        compare_window_rows(RowPrecision::F64, |dense, window, _| {
            assert!(
                (dense - window).abs() <= 1e-9 * (1.0 + dense.abs()),
                "{dense} vs {window}"
            );
        });
    }

    /// In `f32` the window path's bounds are never tighter than the `f64` dense path's (its
    /// rounding is charged; without the charges about half of them are) and stay within `1e-3`.
    #[test]
    fn f32_window_rows_are_charged_for_rounding() {
        let mut tightest: f64 = f64::INFINITY;
        let mut loosest: f64 = 0.0;
        compare_window_rows(RowPrecision::F32, |dense, window, upper| {
            // How much looser the window bound is, relative to the bound.
            let looser = if upper {
                window - dense
            } else {
                dense - window
            } / (1.0 + dense.abs());
            assert!(
                looser >= -1e-9,
                "f32 bound tighter than f64: {dense} vs {window}"
            );
            assert!(looser <= 1e-3, "f32 bound too loose: {dense} vs {window}");
            tightest = tightest.min(looser);
            loosest = loosest.max(looser);
        });
        assert!(loosest > 0.0 && tightest < 1e-5, "{tightest} … {loosest}");
    }

    /// Every window-path bound (in `rows`) against the dense path's, as `check(dense, window,
    /// upper)`.
    fn compare_window_rows(rows: RowPrecision, mut check: impl FnMut(f64, f64, bool)) {
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
                    let tables =
                        SampleTables::new(&graph, &info.window, bounds, id, (x, &delta), rows);
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
                        for ((d, w), side) in dense.iter().zip(&hybrid).zip(&sides) {
                            check(*d, *w, side.1);
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
                        for ((d, w), side) in dense.iter().zip(&window).zip(&sides) {
                            check(*d, *w, side.1);
                        }
                        checked += shape[0];
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
