//! CROWN back-substitution of intermediate neurons of `[C, H, W]` nodes with local-window
//! ("patches") functionals: the rows for the neurons at one spatial position only cover that
//! position's receptive field at every earlier layer, so each pass costs the receptive field, not
//! the whole feature map. Same relaxation and arithmetic as the dense path in `cpu.rs`
//! (coefficients outside the window are exactly zero there). Windowed rows are channels-last
//! (`(y·ww + x)·C + c`), so a conv transpose reads and writes each position's channels as one
//! contiguous run; only the input node's concretisation maps back to the IR's `[C, H, W]` order.

use super::cpu::{finish_bound, relu_relaxation, Interval};
use super::linop::{conv_transpose_add, conv_window, tap_matrix, Layout, Rect};
use super::DeltaBox;
use crate::ir::{Graph, Node, Op};
use ndarray::{Array1, Array2, ArrayView1};

/// All channels, rows `y0..y0+hh`, columns `x0..x0+ww` of a `[C, H, W]` node.
type Win = Rect;

/// Rows over a window: `a` is `[rows, hh·ww·C]`, channels-last.
struct WinRows {
    win: Win,
    a: Array2<f64>,
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

/// Copies `wr` (of a node with `c` channels) into the larger window `to`.
fn widen_to(wr: WinRows, c: usize, to: Win) -> WinRows {
    if wr.win == to {
        return wr;
    }
    let rows = wr.a.nrows();
    let mut a = Array2::zeros((rows, c * to.hh * to.ww));
    let (dy, dx) = (wr.win.y0 - to.y0, wr.win.x0 - to.x0);
    let run = wr.win.ww * c;
    for (src, mut dst) in wr.a.rows().into_iter().zip(a.rows_mut()) {
        let src = src.as_slice().expect("contiguous rows");
        let dst = dst.as_slice_mut().expect("contiguous rows");
        for yy in 0..wr.win.hh {
            let at = ((yy + dy) * to.ww + dx) * c;
            dst[at..at + run].copy_from_slice(&src[yy * run..][..run]);
        }
    }
    WinRows { win: to, a }
}

/// Per-row sums of `a` and of `|a|` per channel of channels-last rows with `c` channels, each
/// times `weights[ch]` (resp. `|weights[ch]|`), added to `bias` and `mag`.
fn add_channel_terms(
    a: &Array2<f64>,
    c: usize,
    weights: &Array1<f64>,
    bias: &mut Array1<f64>,
    mag: &mut Array1<f64>,
) {
    let (mut sums, mut abs) = (vec![0.0; c], vec![0.0; c]);
    for (r, row) in a.rows().into_iter().enumerate() {
        let row = row.as_slice().expect("contiguous rows");
        sums.fill(0.0);
        abs.fill(0.0);
        for position in row.chunks_exact(c) {
            for ((s, m), v) in sums.iter_mut().zip(abs.iter_mut()).zip(position) {
                *s += v;
                *m += v.abs();
            }
        }
        for ch in 0..c {
            bias[r] += sums[ch] * weights[ch];
            mag[r] += abs[ch] * weights[ch].abs();
        }
    }
}

fn accumulate(slot: &mut Option<WinRows>, value: WinRows, c: usize) {
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
                (widen_to(acc, c, to), value)
            };
            add_into(&mut big, &small, c);
            big
        }
    });
}

/// `big += small` where `big`'s window holds `small`'s.
fn add_into(big: &mut WinRows, small: &WinRows, c: usize) {
    let (dy, dx) = (small.win.y0 - big.win.y0, small.win.x0 - big.win.x0);
    let run = small.win.ww * c;
    if run == 0 {
        return;
    }
    for (src, mut dst) in small.a.rows().into_iter().zip(big.a.rows_mut()) {
        let src = src.as_slice().expect("contiguous rows");
        let dst = dst.as_slice_mut().expect("contiguous rows");
        for (yy, src) in src.chunks_exact(run).enumerate() {
            let at = ((yy + dy) * big.win.ww + dx) * c;
            for (d, v) in dst[at..at + run].iter_mut().zip(src) {
                *d += v;
            }
        }
    }
}

/// Conv weights as [`tap_matrix`], per conv node (`None` elsewhere), built once per graph.
pub(crate) struct TapMatrices(Vec<Option<Array2<f64>>>);

impl TapMatrices {
    pub(crate) fn new(graph: &Graph) -> Self {
        TapMatrices(
            graph
                .nodes
                .iter()
                .map(|node| match &node.op {
                    Op::Conv2d { weight, .. } => Some(tap_matrix(weight)),
                    _ => None,
                })
                .collect(),
        )
    }
}

/// One ReLU's CROWN relaxation per neuron, channels-last: lower slope, chord slope, chord
/// intercept (stable neurons exact).
struct Relaxation {
    lower: Vec<f64>,
    upper: Vec<f64>,
    intercept: Vec<f64>,
}

/// What the window path reads at every position of one sample, channels-last: the relaxation of
/// each window-path ReLU whose input bounds are known, and the input point and box.
pub(crate) struct SampleTables {
    relu: Vec<Option<Relaxation>>,
    x0: Vec<f64>,
    lo: Vec<f64>,
    hi: Vec<f64>,
    /// `|x0| + max(|lo|, |hi|)`: the rounding-margin scale per input coordinate.
    scale: Vec<f64>,
}

/// `v` (`[C, H, W]` order) reordered channels-last.
fn channels_last(v: ArrayView1<f64>, shape: &[usize]) -> Vec<f64> {
    let mut out = vec![0.0; v.len()];
    write_channels_last(v, shape, &mut out);
    out
}

/// Writes `v` (`[C, H, W]` order) into `out` channels-last.
fn write_channels_last(v: ArrayView1<f64>, shape: &[usize], out: &mut [f64]) {
    let (c, h, w) = dims(shape);
    for (ch, values) in v.exact_chunks(h * w).into_iter().enumerate() {
        for (at, &value) in values.iter().enumerate() {
            out[at * c + ch] = value;
        }
    }
}

impl SampleTables {
    pub(crate) fn new(
        graph: &Graph,
        window: &[bool],
        bounds: &[Option<Interval>],
        x0: ArrayView1<f64>,
        delta: &DeltaBox,
    ) -> Self {
        if !window[0] {
            // Not a `[C, H, W]` input: no window path.
            let empty = Vec::new();
            return SampleTables {
                relu: Vec::new(),
                x0: empty.clone(),
                lo: empty.clone(),
                hi: empty.clone(),
                scale: empty,
            };
        }
        let shape = &graph.nodes[0].shape;
        let relu = graph
            .nodes
            .iter()
            .enumerate()
            .map(|(k, node)| {
                let p = node.inputs.first()?.index();
                let (l, u) = bounds[p].as_ref()?;
                if !(matches!(node.op, Op::Relu) && window[k]) {
                    return None;
                }
                let (l, u) = (
                    channels_last(l.view(), &node.shape),
                    channels_last(u.view(), &node.shape),
                );
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
        let (x0, lo, hi) = (
            channels_last(x0, shape),
            channels_last(delta.lo.view(), shape),
            channels_last(delta.hi.view(), shape),
        );
        let scale = (0..x0.len())
            .map(|n| x0[n].abs() + lo[n].abs().max(hi[n].abs()))
            .collect();
        SampleTables {
            relu,
            x0,
            lo,
            hi,
            scale,
        }
    }
}

/// CROWN bounds of neurons of node `id` at one spatial position (`window_nodes(graph)[id]` must
/// hold), one per `(neuron, upper)`: the lower bound, or the upper bound where `upper`.
/// `tables` must hold the relaxation of every ReLU before `id`.
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
    // An upper bound is minus the lower bound of the negated neuron.
    let mut seed = Array2::zeros((m, c));
    for (r, &(i, upper)) in sides.iter().enumerate() {
        debug_assert_eq!(i % plane, pos);
        seed[[r, i / plane]] = if upper { -1.0 } else { 1.0 };
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

/// Finishes a dense back-substitution (`cpu::crown_sided`) on the window path: `rows` are the
/// functionals it left at window-path nodes, `[m, C·H·W]` in the IR's order; `bias` and `mag`
/// its constant terms so far. Returns each row's lower bound over the box.
pub(crate) fn finish_dense_rows(
    graph: &Graph,
    taps: &TapMatrices,
    tables: &SampleTables,
    rows: Vec<(usize, Array2<f64>)>,
    bias: Array1<f64>,
    mag: Array1<f64>,
) -> Array1<f64> {
    let mut pending: Vec<Option<WinRows>> = (0..graph.nodes.len()).map(|_| None).collect();
    for (k, a) in rows {
        let shape = &graph.nodes[k].shape;
        let (c, h, w) = dims(shape);
        let mut hwc = Array2::zeros(a.dim());
        for (src, mut dst) in a.rows().into_iter().zip(hwc.rows_mut()) {
            let dst = dst.as_slice_mut().expect("contiguous rows");
            write_channels_last(src, shape, dst);
        }
        let win = Win {
            y0: 0,
            x0: 0,
            hh: h,
            ww: w,
        };
        accumulate(&mut pending[k], WinRows { win, a: hwc }, c);
    }
    pull_back_windows(graph, taps, tables, pending, bias, mag)
}

/// Pulls the windowed rows in `pending` (at window-path nodes) back to the input, adding their
/// constant terms to `bias` and `mag`, and returns each row's lower bound over the box.
fn pull_back_windows(
    graph: &Graph,
    taps: &TapMatrices,
    tables: &SampleTables,
    mut pending: Vec<Option<WinRows>>,
    mut bias: Array1<f64>,
    mut mag: Array1<f64>,
) -> Array1<f64> {
    for k in (1..pending.len()).rev() {
        let Some(wr) = pending[k].take() else {
            continue;
        };
        let node = &graph.nodes[k];
        match &node.op {
            Op::Relu => {
                let p = node.inputs[0].index();
                let relaxation = tables.relu[k]
                    .as_ref()
                    .expect("pre-activation bounds computed");
                let out = relax_relu(wr, &node.shape, relaxation, &mut bias, &mut mag);
                accumulate(&mut pending[p], out, c_of(graph, p));
            }
            Op::ChannelAffine { scale, shift } => {
                let mut wr = wr;
                let c = scale.len();
                add_channel_terms(&wr.a, c, shift, &mut bias, &mut mag);
                for mut row in wr.a.rows_mut() {
                    let row = row.as_slice_mut().expect("contiguous rows");
                    for position in row.chunks_exact_mut(c) {
                        for (v, s) in position.iter_mut().zip(scale) {
                            *v *= s;
                        }
                    }
                }
                let p = node.inputs[0].index();
                accumulate(&mut pending[p], wr, c_of(graph, p));
            }
            Op::Conv2d { .. } => {
                let p = node.inputs[0].index();
                let tap = taps.0[k].as_ref().expect("tap matrix of a conv node");
                let out = conv_pullback_window(wr, graph, node, tap, &mut bias, &mut mag);
                accumulate(&mut pending[p], out, c_of(graph, p));
            }
            Op::Add => {
                let (last, rest) = node.inputs.split_last().expect("add has inputs");
                for input in rest {
                    let copy = WinRows {
                        win: wr.win,
                        a: wr.a.clone(),
                    };
                    accumulate(
                        &mut pending[input.index()],
                        copy,
                        c_of(graph, input.index()),
                    );
                }
                accumulate(&mut pending[last.index()], wr, c_of(graph, last.index()));
            }
            _ => unreachable!("window_nodes admits only conv, relu, channel affine and add"),
        }
    }
    concretize_window(
        pending[0].take(),
        &graph.nodes[0].shape,
        &bias,
        &mag,
        tables,
    )
}

fn c_of(graph: &Graph, id: usize) -> usize {
    graph.nodes[id].shape[0]
}

/// CROWN's ReLU relaxation (chord above, slope 0 or 1 below) applied to windowed rows.
fn relax_relu(
    mut wr: WinRows,
    shape: &[usize],
    relaxation: &Relaxation,
    bias: &mut Array1<f64>,
    mag: &mut Array1<f64>,
) -> WinRows {
    let (c, _, w) = dims(shape);
    let win = wr.win;
    let run = win.ww * c;
    for (r, mut row) in wr.a.rows_mut().into_iter().enumerate() {
        let row = row.as_slice_mut().expect("contiguous rows");
        // Σ of the chord intercepts the negative coefficients pick up (≤ 0).
        let mut picked = 0.0;
        for (yy, row) in row.chunks_exact_mut(run.max(1)).enumerate() {
            let at = ((win.y0 + yy) * w + win.x0) * c;
            picked += relax_run(
                row,
                &relaxation.lower[at..at + run],
                &relaxation.upper[at..at + run],
                &relaxation.intercept[at..at + run],
            );
        }
        bias[r] += picked;
        mag[r] -= picked;
    }
    wr
}

/// Relaxes one run of coefficients in place; returns `Σ min(c, 0)·intercept`. Four partial sums,
/// so the loop vectorises.
#[inline]
fn relax_run(row: &mut [f64], lower: &[f64], upper: &[f64], intercept: &[f64]) -> f64 {
    let relax = |c: &mut f64, lo: f64, up: f64, t: f64| {
        let (pos, neg) = (c.max(0.0), c.min(0.0));
        *c = pos * lo + neg * up;
        neg * t
    };
    let mut partial = [0.0; 4];
    let mut rows = row.chunks_exact_mut(4);
    let (mut lo4, mut up4, mut t4) = (
        lower.chunks_exact(4),
        upper.chunks_exact(4),
        intercept.chunks_exact(4),
    );
    for (((c, lo), up), t) in (&mut rows).zip(&mut lo4).zip(&mut up4).zip(&mut t4) {
        for j in 0..4 {
            partial[j] += relax(&mut c[j], lo[j], up[j], t[j]);
        }
    }
    let mut sum = (partial[0] + partial[1]) + (partial[2] + partial[3]);
    let tails = lo4
        .remainder()
        .iter()
        .zip(up4.remainder())
        .zip(t4.remainder());
    for (c, ((&lo, &up), &t)) in rows.into_remainder().iter_mut().zip(tails) {
        sum += relax(c, lo, up, t);
    }
    sum
}

/// Pulls windowed rows of a conv output back to the conv input (its receptive field, clipped to
/// the image), adding the bias terms.
fn conv_pullback_window(
    wr: WinRows,
    graph: &Graph,
    node: &Node,
    taps: &Array2<f64>,
    bias: &mut Array1<f64>,
    mag: &mut Array1<f64>,
) -> WinRows {
    let Op::Conv2d { bias: cb, .. } = &node.op else {
        unreachable!("a conv node")
    };
    let g = conv_window(graph, node);
    let win = wr.win;
    let rows = wr.a.nrows();
    let npos = win.hh * win.ww;
    if npos == 0 {
        return WinRows {
            win,
            a: Array2::zeros((rows, 0)),
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
    add_channel_terms(&wr.a, cb.len(), cb, bias, mag);
    let mut out = Array2::<f64>::zeros((rows, g.cin * ih * iw));
    let layout = Layout::ChannelsLast;
    conv_transpose_add(&g, taps, layout, wr.a.view(), win, in_win, out.view_mut());
    WinRows {
        win: in_win,
        a: out,
    }
}

/// Minimum over the box of each row (windowed at the input node) plus its constant, made safe
/// by the rounding margin exactly as `cpu::concretize` does.
fn concretize_window(
    wr: Option<WinRows>,
    in_shape: &[usize],
    bias: &Array1<f64>,
    mag: &Array1<f64>,
    tables: &SampleTables,
) -> Array1<f64> {
    let rows = bias.len();
    let mut lower = Array1::zeros(rows);
    let (c, _, w) = dims(in_shape);
    for r in 0..rows {
        let mut value = bias[r];
        let mut slack = 0.0;
        let mut m = mag[r];
        if let Some(wr) = &wr {
            let win = wr.win;
            let run = win.ww * c;
            let a = wr.a.row(r);
            let a = a.as_slice().expect("contiguous rows");
            for (yy, coefs) in a.chunks_exact(run.max(1)).enumerate() {
                let at = ((win.y0 + yy) * w + win.x0) * c;
                let [v, s, mm] = concretize_run(coefs, tables, at);
                value += v;
                slack += s;
                m += mm;
            }
        }
        lower[r] = finish_bound(value, slack, m).1;
    }
    lower
}

/// One run's `[Σ c·x, Σ min(c·lo, c·hi), Σ |c|·scale]` from table offset `at`, in four partial
/// sums so the loop vectorises.
#[inline]
fn concretize_run(coefs: &[f64], tables: &SampleTables, at: usize) -> [f64; 3] {
    let run = coefs.len();
    let (xs, los) = (&tables.x0[at..at + run], &tables.lo[at..at + run]);
    let (his, scales) = (&tables.hi[at..at + run], &tables.scale[at..at + run]);
    let term = |c: f64, x: f64, l: f64, u: f64, sc: f64| [c * x, (c * l).min(c * u), c.abs() * sc];
    let mut partial = [[0.0; 3]; 4];
    let body = run / 4 * 4;
    for k in (0..body).step_by(4) {
        for (j, p) in partial.iter_mut().enumerate() {
            let n = k + j;
            let t = term(coefs[n], xs[n], los[n], his[n], scales[n]);
            for (p, t) in p.iter_mut().zip(t) {
                *p += t;
            }
        }
    }
    let mut sum = [0.0; 3];
    for (i, s) in sum.iter_mut().enumerate() {
        *s = (partial[0][i] + partial[1][i]) + (partial[2][i] + partial[3][i]);
    }
    for n in body..run {
        let t = term(coefs[n], xs[n], los[n], his[n], scales[n]);
        for (s, t) in sum.iter_mut().zip(t) {
            *s += t;
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::cpu::{crown_sided, sample_intermediate, GraphInfo};
    use crate::ir::build::{random_cnn, random_resnet, Rng};
    use ndarray::Array1;

    /// The window path gives the dense path's bounds (up to summation order) for every neuron of
    /// every spatial ReLU input, on random CNNs (padding, channel affine) and ResNets (add); so
    /// do dense rows (of the flat ReLU inputs) finished on the window path.
    #[test]
    fn window_rows_match_dense_rows() {
        let mut checked = 0;
        let mut hybrid_checked = 0;
        for seed in 0..3 {
            let mut rng = Rng::new(100 + seed);
            let graphs = [
                random_cnn(&mut rng, [2, 7, 7], 3, 4),
                random_resnet(&mut rng, [3, 6, 6], 4, 3),
            ];
            for graph in graphs {
                let info = GraphInfo::new(&graph);
                let d: usize = graph.input_shape().iter().product();
                let x0 = Array1::from_shape_fn(d, |_| rng.uniform());
                let delta = DeltaBox::linf(d, 0.05);
                let inter = sample_intermediate(&graph, &info, x0.view(), &delta, false).unwrap();
                let tables =
                    SampleTables::new(&graph, &info.window, &inter.bounds, x0.view(), &delta);
                for id in 1..graph.nodes.len() {
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
