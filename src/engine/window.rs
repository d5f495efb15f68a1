//! CROWN back-substitution of intermediate neurons of `[C, H, W]` nodes with local-window
//! ("patches") functionals: the rows for the neurons at one spatial position only cover that
//! position's receptive field at every earlier layer, so each pass costs the receptive field, not
//! the whole feature map. Same relaxation and arithmetic as the dense path in `cpu.rs`
//! (coefficients outside the window are exactly zero there).

use super::cpu::{finish_bound, relu_relaxation, Interval};
use super::linop::{conv_transpose_add, conv_window, Rect};
use super::DeltaBox;
use crate::ir::{Graph, Node, Op};
use ndarray::{Array1, Array2, ArrayView1};

/// All channels, rows `y0..y0+hh`, columns `x0..x0+ww` of a `[C, H, W]` node.
type Win = Rect;

/// Rows over a window: `a` is `[rows, C*hh*ww]`.
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
    for r in 0..rows {
        for ch in 0..c {
            for yy in 0..wr.win.hh {
                for xx in 0..wr.win.ww {
                    a[[r, (ch * to.hh + yy + dy) * to.ww + xx + dx]] =
                        wr.a[[r, (ch * wr.win.hh + yy) * wr.win.ww + xx]];
                }
            }
        }
    }
    WinRows { win: to, a }
}

fn accumulate(slot: &mut Option<WinRows>, value: WinRows, c: usize) {
    *slot = Some(match slot.take() {
        None => value,
        Some(acc) => {
            let to = acc.win.union(value.win);
            let mut acc = widen_to(acc, c, to);
            acc.a += &widen_to(value, c, to).a;
            acc
        }
    });
}

/// CROWN bounds of neurons of node `id` at one spatial position (`window_nodes(graph)[id]` must
/// hold), one per `(neuron, upper)`: the lower bound, or the upper bound where `upper`.
pub(crate) fn crown_window_sided(
    graph: &Graph,
    bounds: &[Option<Interval>],
    id: usize,
    sides: &[(usize, bool)],
    x0: ArrayView1<f64>,
    delta: &DeltaBox,
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
    let mut bias = Array1::<f64>::zeros(m);
    let mut mag = Array1::<f64>::zeros(m);
    for k in (1..=id).rev() {
        let Some(wr) = pending[k].take() else {
            continue;
        };
        let node = &graph.nodes[k];
        match &node.op {
            Op::Relu => {
                let p = node.inputs[0].index();
                let (l, u) = bounds[p].as_ref().expect("pre-activation bounds computed");
                let out = relax_relu(wr, &node.shape, l, u, &mut bias, &mut mag);
                accumulate(&mut pending[p], out, c_of(graph, p));
            }
            Op::ChannelAffine { scale, shift } => {
                let mut wr = wr;
                let per = wr.win.hh * wr.win.ww;
                for (r, mut row) in wr.a.rows_mut().into_iter().enumerate() {
                    let row = row.as_slice_mut().expect("contiguous rows");
                    for (ch, seg) in row.chunks_exact_mut(per.max(1)).enumerate() {
                        let sum: f64 = seg.iter().sum();
                        let abs: f64 = seg.iter().map(|v| v.abs()).sum();
                        bias[r] += sum * shift[ch];
                        mag[r] += abs * shift[ch].abs();
                        for v in seg.iter_mut() {
                            *v *= scale[ch];
                        }
                    }
                }
                let p = node.inputs[0].index();
                accumulate(&mut pending[p], wr, c_of(graph, p));
            }
            Op::Conv2d { .. } => {
                let p = node.inputs[0].index();
                let out = conv_pullback_window(wr, graph, node, &mut bias, &mut mag);
                accumulate(&mut pending[p], out, c_of(graph, p));
            }
            Op::Add => {
                for input in &node.inputs {
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
            }
            _ => unreachable!("window_nodes admits only conv, relu, channel affine and add"),
        }
    }
    let mut lower = concretize_window(
        pending[0].take(),
        &graph.nodes[0].shape,
        &bias,
        &mag,
        x0,
        delta,
    );
    for (r, &(_, upper)) in sides.iter().enumerate() {
        if upper {
            lower[r] = -lower[r];
        }
    }
    lower
}

fn c_of(graph: &Graph, id: usize) -> usize {
    graph.nodes[id].shape[0]
}

/// CROWN's ReLU relaxation (chord above, slope 0 or 1 below) applied to windowed rows.
fn relax_relu(
    mut wr: WinRows,
    shape: &[usize],
    l: &Array1<f64>,
    u: &Array1<f64>,
    bias: &mut Array1<f64>,
    mag: &mut Array1<f64>,
) -> WinRows {
    let (c, h, w) = dims(shape);
    let win = wr.win;
    let count = c * win.hh * win.ww;
    let (mut lower, mut upper, mut intercept) =
        (vec![0.0; count], vec![0.0; count], vec![0.0; count]);
    for ch in 0..c {
        for yy in 0..win.hh {
            for xx in 0..win.ww {
                let j = (ch * win.hh + yy) * win.ww + xx;
                let n = ch * h * w + (win.y0 + yy) * w + win.x0 + xx;
                (lower[j], upper[j], intercept[j], _) = relu_relaxation(l[n], u[n]);
            }
        }
    }
    for (r, mut row) in wr.a.rows_mut().into_iter().enumerate() {
        let row = row.as_slice_mut().expect("contiguous rows");
        let mut brow = 0.0;
        let mut mrow = 0.0;
        for (((c, &lo), &up), &t) in row.iter_mut().zip(&lower).zip(&upper).zip(&intercept) {
            let (pos, neg) = (c.max(0.0), c.min(0.0));
            brow += neg * t;
            mrow -= neg * t;
            *c = pos * lo + neg * up;
        }
        bias[r] += brow;
        mag[r] += mrow;
    }
    wr
}

/// Pulls windowed rows of a conv output back to the conv input (its receptive field, clipped to
/// the image), adding the bias terms.
fn conv_pullback_window(
    wr: WinRows,
    graph: &Graph,
    node: &Node,
    bias: &mut Array1<f64>,
    mag: &mut Array1<f64>,
) -> WinRows {
    let Op::Conv2d {
        weight, bias: cb, ..
    } = &node.op
    else {
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
    for (r, row) in wr.a.rows().into_iter().enumerate() {
        let row = row.as_slice().expect("contiguous rows");
        for (co, seg) in row.chunks_exact(npos).enumerate() {
            let sum: f64 = seg.iter().sum();
            let abs: f64 = seg.iter().map(|v| v.abs()).sum();
            bias[r] += sum * cb[co];
            mag[r] += abs * cb[co].abs();
        }
    }
    let mut out = Array2::<f64>::zeros((rows, g.cin * ih * iw));
    conv_transpose_add(&g, weight, wr.a.view(), win, in_win, out.view_mut());
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
    x0: ArrayView1<f64>,
    delta: &DeltaBox,
) -> Array1<f64> {
    let rows = bias.len();
    let mut lower = Array1::zeros(rows);
    let (c, h, w) = dims(in_shape);
    let x0 = x0.as_standard_layout();
    let x0 = x0.as_slice().expect("contiguous");
    let lo = delta.lo.as_slice().expect("contiguous");
    let hi = delta.hi.as_slice().expect("contiguous");
    for r in 0..rows {
        let mut value = bias[r];
        let mut slack = 0.0;
        let mut m = mag[r];
        if let Some(wr) = &wr {
            let win = wr.win;
            let a = wr.a.row(r);
            let a = a.as_slice().expect("contiguous rows");
            for ch in 0..c {
                for yy in 0..win.hh {
                    let at = (ch * win.hh + yy) * win.ww;
                    let n = ch * h * w + (win.y0 + yy) * w + win.x0;
                    let coefs = &a[at..at + win.ww];
                    let xs = &x0[n..n + win.ww];
                    let los = &lo[n..n + win.ww];
                    let his = &hi[n..n + win.ww];
                    for (((&coef, &x), &l), &u) in coefs.iter().zip(xs).zip(los).zip(his) {
                        value += coef * x;
                        slack += (coef * l).min(coef * u);
                        m += coef.abs() * (x.abs() + l.abs().max(u.abs()));
                    }
                }
            }
        }
        lower[r] = finish_bound(value, slack, m).1;
    }
    lower
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::cpu::{crown_sided, sample_intermediate, GraphInfo};
    use crate::ir::build::{random_cnn, random_resnet, Rng};
    use ndarray::Array1;

    /// The window path gives the dense path's bounds (up to summation order) for every neuron of
    /// every spatial ReLU input, on random CNNs (padding, channel affine) and ResNets (add).
    #[test]
    fn window_rows_match_dense_rows() {
        let mut checked = 0;
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
                for id in 1..graph.nodes.len() {
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
                            crown_sided(&graph, &inter.bounds, id, &sides, x0.view(), &delta);
                        let window = crown_window_sided(
                            &graph,
                            &inter.bounds,
                            id,
                            &sides,
                            x0.view(),
                            &delta,
                        );
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
    }
}
