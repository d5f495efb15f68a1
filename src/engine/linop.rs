//! Batched affine kernels: the forward map of each affine op applied to rows (points) and its
//! transpose applied to rows (linear functionals, CROWN back-substitution). Sequential: callers
//! parallelise across samples. Convolutions use im2col + GEMM in both directions; no dense conv
//! matrix is ever built.

use crate::ir::{Graph, Node, Op};
use ndarray::{s, Array1, Array2, ArrayView2, ArrayViewMut2, Axis, NdFloat};
use std::sync::atomic::{AtomicU64, Ordering};

/// Geometry of a conv or pooling window op.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub ph: usize,
    pub pw: usize,
    pub ho: usize,
    pub wo: usize,
}

impl Window {
    pub fn new(
        in_shape: &[usize],
        out_shape: &[usize],
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> Self {
        Window {
            cin: in_shape[0],
            h: in_shape[1],
            w: in_shape[2],
            kh: kernel[0],
            kw: kernel[1],
            sh: stride[0],
            sw: stride[1],
            ph: padding[0],
            pw: padding[1],
            ho: out_shape[1],
            wo: out_shape[2],
        }
    }

    pub fn positions(&self) -> usize {
        self.ho * self.wo
    }

    /// All output positions.
    pub(crate) fn output_rect(&self) -> Rect {
        Rect {
            y0: 0,
            x0: 0,
            hh: self.ho,
            ww: self.wo,
        }
    }

    /// All input positions.
    pub(crate) fn input_rect(&self) -> Rect {
        Rect {
            y0: 0,
            x0: 0,
            hh: self.h,
            ww: self.w,
        }
    }

    /// Kernel rows `ki` whose input row for output row `oh` lies inside the image.
    #[inline]
    pub(crate) fn rows_inside(&self, oh: usize) -> std::ops::Range<usize> {
        tap_range(oh * self.sh, self.ph, self.kh, self.h)
    }

    /// Kernel columns `kj` whose input column for output column `ow` lies inside the image.
    #[inline]
    pub(crate) fn cols_inside(&self, ow: usize) -> std::ops::Range<usize> {
        tap_range(ow * self.sw, self.pw, self.kw, self.w)
    }

    /// Input coordinate of output position (oh, ow) and kernel tap (ki, kj), if inside.
    #[inline]
    pub fn tap(&self, oh: usize, ow: usize, ki: usize, kj: usize) -> Option<(usize, usize)> {
        let ih = (oh * self.sh + ki).checked_sub(self.ph)?;
        let iw = (ow * self.sw + kj).checked_sub(self.pw)?;
        (ih < self.h && iw < self.w).then_some((ih, iw))
    }
}

/// Taps k in 0..kernel with `start + k − pad` in `0..size`.
#[inline]
fn tap_range(start: usize, pad: usize, kernel: usize, size: usize) -> std::ops::Range<usize> {
    let lo = pad.saturating_sub(start);
    let hi = (size + pad).saturating_sub(start).min(kernel);
    lo..hi.max(lo)
}

/// Floating-point operations done in GEMMs so far (for benchmarks' GFLOP/s).
pub static GEMM_FLOPS: AtomicU64 = AtomicU64::new(0);

pub(crate) fn count_gemm(m: usize, k: usize, n: usize) {
    GEMM_FLOPS.fetch_add(2 * (m * k * n) as u64, Ordering::Relaxed);
}

/// Max elements of one im2col buffer; bounds memory for big layers.
const COLS_BUDGET: usize = 1 << 21;

/// Max elements of one conv transpose's GEMM result (2 MB): small enough to stay in cache for
/// the pass that adds it into the rows (16 MB chunks made that pass stream from memory, costing
/// Conv-big a third of its time).
const TRANSPOSE_BUDGET: usize = 1 << 18;

pub(crate) fn conv_window(graph: &Graph, node: &Node) -> Window {
    let input = graph.node(node.inputs[0]);
    match &node.op {
        Op::Conv2d {
            weight,
            stride,
            padding,
            ..
        } => {
            let (_, _, kh, kw) = weight.dim();
            Window::new(&input.shape, &node.shape, [kh, kw], *stride, *padding)
        }
        Op::AvgPool {
            kernel,
            stride,
            padding,
            ..
        }
        | Op::MaxPool {
            kernel,
            stride,
            padding,
            ..
        } => Window::new(&input.shape, &node.shape, *kernel, *stride, *padding),
        _ => unreachable!("not a window op"),
    }
}

/// Conv weight as `[cout, cin*kh*kw]`, optionally elementwise absolute.
fn conv_matrix(weight: &ndarray::Array4<f64>, abs: bool) -> Array2<f64> {
    let (cout, cin, kh, kw) = weight.dim();
    let m = weight
        .to_shape((cout, cin * kh * kw))
        .expect("contiguous conv weight")
        .to_owned();
    if abs {
        m.mapv(f64::abs)
    } else {
        m
    }
}

/// Output positions `o` in `0..out_len` whose input coordinate `o·stride + k − pad` lies in
/// `0..size`, for kernel tap `k`.
#[inline]
fn outputs_inside(
    k: usize,
    stride: usize,
    pad: usize,
    size: usize,
    out_len: usize,
) -> std::ops::Range<usize> {
    let lo = pad.saturating_sub(k).div_ceil(stride);
    let hi = if size + pad > k {
        ((size + pad - k - 1) / stride + 1).min(out_len)
    } else {
        0
    };
    lo..hi.max(lo)
}

/// im2col of rows `x` `[n, cin*h*w]`, transposed: `[cin*kh*kw, n*P]`, column `s*P + pos`.
fn im2col_t(g: &Window, x: ArrayView2<f64>) -> Array2<f64> {
    let n = x.nrows();
    let p = g.positions();
    let plane = g.h * g.w;
    let image = g.cin * plane;
    let x = x.as_standard_layout();
    let xs = x.as_slice().expect("contiguous");
    let mut cols = Array2::<f64>::zeros((g.cin * g.kh * g.kw, n * p));
    let width = n * p;
    let cs = cols.as_slice_mut().expect("contiguous");
    for ci in 0..g.cin {
        for ki in 0..g.kh {
            let oh_range = outputs_inside(ki, g.sh, g.ph, g.h, g.ho);
            for kj in 0..g.kw {
                let ow_range = outputs_inside(kj, g.sw, g.pw, g.w, g.wo);
                let row = (ci * g.kh + ki) * g.kw + kj;
                let dst = &mut cs[row * width..][..width];
                for s in 0..n {
                    for oh in oh_range.clone() {
                        let ih = oh * g.sh + ki - g.ph;
                        let src = s * image + ci * plane + ih * g.w + kj;
                        let d = &mut dst[s * p + oh * g.wo..][..g.wo];
                        for ow in ow_range.clone() {
                            d[ow] = xs[src + ow * g.sw - g.pw];
                        }
                    }
                }
            }
        }
    }
    cols
}

fn chunk_rows(per_row: usize) -> usize {
    (COLS_BUDGET / per_row.max(1)).max(1)
}

/// Conv forward on rows: `[n, cin*h*w] -> [n, cout*P]` (bias added when given), one GEMM per
/// chunk of rows: `W [cout, cin*kk] · cols [cin*kk, n*P]`.
fn conv_forward(
    g: &Window,
    wmat: &Array2<f64>,
    bias: Option<&Array1<f64>>,
    x: ArrayView2<f64>,
) -> Array2<f64> {
    let n = x.nrows();
    let cout = wmat.nrows();
    let p = g.positions();
    let mut out = Array2::<f64>::zeros((n, cout * p));
    let step = chunk_rows(p * wmat.ncols().max(cout));
    for start in (0..n).step_by(step) {
        let end = (start + step).min(n);
        let cols = im2col_t(g, x.slice(s![start..end, ..]));
        count_gemm(cout, cols.nrows(), cols.ncols());
        let res = wmat.dot(&cols); // [cout, m*P]
        let rs = res.as_slice().expect("contiguous");
        let m = end - start;
        for (local, s) in (start..end).enumerate() {
            let mut o = out.row_mut(s);
            let o = o.as_slice_mut().expect("contiguous rows");
            for co in 0..cout {
                let b = bias.map_or(0.0, |b| b[co]);
                let src = &rs[co * m * p + local * p..][..p];
                for (d, v) in o[co * p..(co + 1) * p].iter_mut().zip(src) {
                    *d = v + b;
                }
            }
        }
    }
    out
}

/// Conv transpose on rows: `[rows, cout*P] -> [rows, cin*h*w]`, with the bias terms. Very sparse
/// rows (e.g. the local functionals of intermediate neurons) are scattered directly from their
/// nonzeros; the others go through [`conv_transpose_add`].
fn conv_pullback(
    g: &Window,
    weight: &ndarray::Array4<f64>,
    bias: &Array1<f64>,
    a: ArrayView2<f64>,
) -> Pullback {
    let rows = a.nrows();
    let cols_n = a.ncols();
    let p = g.positions();
    let mut out = Array2::<f64>::zeros((rows, g.cin * g.h * g.w));
    let mut bias_term = Array1::<f64>::zeros(rows);
    let mut bias_mag = Array1::<f64>::zeros(rows);
    let mut dense = Vec::new();
    let wflat = weight.as_slice().expect("contiguous conv weight");
    let mut nonzeros = Vec::with_capacity(cols_n);
    for r in 0..rows {
        let row = a.row(r);
        let row = row.as_slice().expect("contiguous rows");
        let count: usize = row.iter().map(|v| (*v != 0.0) as usize).sum();
        if count * 16 < cols_n {
            // Branch-free compaction of the nonzero positions.
            nonzeros.resize(cols_n + 1, 0);
            let mut at = 0;
            for (i, v) in row.iter().enumerate() {
                nonzeros[at] = i;
                at += (*v != 0.0) as usize;
            }
            nonzeros.truncate(at);
            let (mut b, mut m) = (0.0, 0.0);
            for &i in &nonzeros {
                let t = row[i] * bias[i / p];
                b += t;
                m += t.abs();
            }
            bias_term[r] = b;
            bias_mag[r] = m;
            scatter_row(g, wflat, row, &nonzeros, out.row_mut(r));
        } else {
            let (mut b, mut m) = (0.0, 0.0);
            for (co, seg) in row.chunks_exact(p).enumerate() {
                let sum: f64 = seg.iter().sum();
                let abs: f64 = seg.iter().map(|v| v.abs()).sum();
                b += sum * bias[co];
                m += abs * bias[co].abs();
            }
            bias_term[r] = b;
            bias_mag[r] = m;
            dense.push(r);
        }
    }
    if dense.is_empty() {
        return Pullback {
            a: vec![out],
            bias: bias_term,
            bias_mag,
        };
    }
    let (from, to) = (g.output_rect(), g.input_rect());
    let taps = tap_matrix(weight);
    if dense.len() == rows {
        conv_transpose_add(g, &taps, a, from, to, out.view_mut());
    } else {
        let mut block = Array2::<f64>::zeros((dense.len(), out.ncols()));
        conv_transpose_add(
            g,
            &taps,
            a.select(Axis(0), &dense).view(),
            from,
            to,
            block.view_mut(),
        );
        for (local, &r) in dense.iter().enumerate() {
            out.row_mut(r).assign(&block.row(local));
        }
    }
    Pullback {
        a: vec![out],
        bias: bias_term,
        bias_mag,
    }
}

/// A rectangle of positions `y0..y0+hh`, `x0..x0+ww` of a `[C, H, W]` map (all channels).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Rect {
    pub y0: usize,
    pub x0: usize,
    pub hh: usize,
    pub ww: usize,
}

impl Rect {
    /// The smallest rectangle holding both.
    pub(crate) fn union(self, o: Rect) -> Rect {
        let y0 = self.y0.min(o.y0);
        let x0 = self.x0.min(o.x0);
        let y1 = (self.y0 + self.hh).max(o.y0 + o.hh);
        let x1 = (self.x0 + self.ww).max(o.x0 + o.ww);
        Rect {
            y0,
            x0,
            hh: y1 - y0,
            ww: x1 - x0,
        }
    }
}

/// Conv weight `[cout, cin, kh, kw]` as the matrix `[cout, kh·kw·cin]` with columns in
/// `(ki, kj, ci)` order: one row per output channel, taps channels-last.
pub(crate) fn tap_matrix(weight: &ndarray::Array4<f64>) -> Array2<f64> {
    let (cout, cin, kh, kw) = weight.dim();
    weight
        .view()
        .permuted_axes([0, 2, 3, 1])
        .as_standard_layout()
        .into_shape_with_order((cout, kh * kw * cin))
        .expect("contiguous")
        .into_owned()
}

/// Adds the conv transpose of rows `a` (`[m, cout·hh·ww]` over the rectangle `from` of the conv
/// output) to `out` (`[m, cin·hh'·ww']` over the rectangle `to` of the conv input, which must
/// cover the receptive field of `from`), both channels-first; `taps` is [`tap_matrix`] of the
/// weight. The (row, position) pairs with a nonzero coefficient (dead ReLUs zero many) go through
/// one GEMM `[pairs, cout] · taps[cout, kh·kw·cin]`; each pair's columns are then added as
/// contiguous runs of `taps·cin` into a channels-last buffer, transposed into `out`.
fn conv_transpose_add(
    g: &Window,
    taps: &Array2<f64>,
    a: ArrayView2<f64>,
    from: Rect,
    to: Rect,
    mut out: ArrayViewMut2<f64>,
) {
    SCRATCH.with_borrow_mut(|Scratch { pairs, t, cols }| {
        let step = (TRANSPOSE_BUDGET / (from.hh * from.ww * taps.ncols()).max(1)).max(1);
        let (cout, n) = taps.dim();
        let cin = g.cin;
        let npos = from.hh * from.ww;
        let plane = to.hh * to.ww;
        let mut buffer = vec![0.0; plane * cin];
        for start in (0..a.nrows()).step_by(step) {
            pairs.clear();
            t.clear();
            for r in start..(start + step).min(a.nrows()) {
                let row = a.row(r);
                let row = row.as_slice().expect("contiguous rows");
                for q in 0..npos {
                    let before = t.len();
                    t.extend((0..cout).map(|co| row[co * npos + q]));
                    if t[before..].iter().any(|v| *v != 0.0) {
                        pairs.push((r, q));
                    } else {
                        t.truncate(before);
                    }
                }
            }
            if pairs.is_empty() {
                continue;
            }
            let t_view = ArrayView2::from_shape((pairs.len(), cout), &t[..]).expect("pairs × cout");
            count_gemm(pairs.len(), cout, n);
            cols.resize(pairs.len() * n, 0.0);
            let mut cols_view =
                ArrayViewMut2::from_shape((pairs.len(), n), &mut cols[..]).expect("pairs × taps");
            ndarray::linalg::general_mat_mul(1.0, &t_view, taps, 0.0, &mut cols_view);
            let cols = &cols[..];
            // Pairs are grouped by row.
            let mut first = 0;
            while first < pairs.len() {
                let r = pairs[first].0;
                let last = first + pairs[first..].iter().take_while(|p| p.0 == r).count();
                buffer.fill(0.0);
                let row_pairs = &pairs[first..last];
                let row_cols = &cols[first * n..last * n];
                add_columns(g, row_pairs, row_cols, from, to, &mut buffer);
                let mut o = out.row_mut(r);
                let o = o.as_slice_mut().expect("contiguous rows");
                // Blocks of 8 positions: the reads stay within 8 cache-resident runs.
                for p0 in (0..plane).step_by(8) {
                    let block = &buffer[p0 * cin..(p0 + 8).min(plane) * cin];
                    for (ci, o) in o.chunks_exact_mut(plane).enumerate() {
                        for (d, src) in o[p0..].iter_mut().zip(block.chunks_exact(cin)) {
                            *d += src[ci];
                        }
                    }
                }
                first = last;
            }
        }
    });
}

/// Buffers of [`conv_transpose_add`], kept per thread: a fresh multi-megabyte GEMM result per
/// call would be page-faulted in (and zeroed by the kernel) every time.
#[derive(Default)]
struct Scratch {
    pairs: Vec<(usize, usize)>,
    t: Vec<f64>,
    cols: Vec<f64>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// Adds each pair's GEMM columns (`[kh·kw·cin]`, taps channels-last) over the pair's receptive
/// field into the channels-last map `acc` of the rectangle `to`.
fn add_columns(
    g: &Window,
    pairs: &[(usize, usize)],
    cols: &[f64],
    from: Rect,
    to: Rect,
    acc: &mut [f64],
) {
    let cin = g.cin;
    let n = g.kh * g.kw * cin;
    for (&(_, q), col) in pairs.iter().zip(cols.chunks_exact(n)) {
        let (oy, ox) = (from.y0 + q / from.ww, from.x0 + q % from.ww);
        let kx = g.cols_inside(ox);
        if kx.is_empty() {
            continue;
        }
        let run = kx.len() * cin;
        let x = ox * g.sw + kx.start - g.pw - to.x0;
        for ki in g.rows_inside(oy) {
            let y = oy * g.sh + ki - g.ph - to.y0;
            let dst = &mut acc[(y * to.ww + x) * cin..][..run];
            let src = &col[(ki * g.kw + kx.start) * cin..][..run];
            for (d, v) in dst.iter_mut().zip(src) {
                *d += v;
            }
        }
    }
}

fn scatter_row(
    g: &Window,
    weight: &[f64],
    row: &[f64],
    nonzeros: &[usize],
    mut out: ndarray::ArrayViewMut1<f64>,
) {
    let p = g.positions();
    let plane = g.h * g.w;
    let out = out.as_slice_mut().expect("contiguous rows");
    for &i in nonzeros {
        let v = row[i];
        let (co, pos) = (i / p, i % p);
        let (oh, ow) = (pos / g.wo, pos % g.wo);
        let jrange = g.cols_inside(ow);
        let len = jrange.len();
        for ci in 0..g.cin {
            for ki in g.rows_inside(oh) {
                let ih = oh * g.sh + ki - g.ph;
                let o = ci * plane + ih * g.w + ow * g.sw + jrange.start - g.pw;
                let w = ((co * g.cin + ci) * g.kh + ki) * g.kw + jrange.start;
                for (dst, src) in out[o..o + len].iter_mut().zip(&weight[w..w + len]) {
                    *dst += v * src;
                }
            }
        }
    }
}

/// Per-row channel sums of `a` and of `|a|`: `[rows, c*P] -> ([rows, c], [rows, c])`.
fn channel_sums_with_abs(a: ArrayView2<f64>, c: usize) -> (Array2<f64>, Array2<f64>) {
    let rows = a.nrows();
    let p = a.ncols() / c;
    let mut sums = Array2::zeros((rows, c));
    let mut abs = Array2::zeros((rows, c));
    let a = a.as_standard_layout();
    let flat = a.as_slice().expect("contiguous");
    for r in 0..rows {
        for ch in 0..c {
            let seg = &flat[(r * c + ch) * p..][..p];
            sums[[r, ch]] = seg.iter().sum::<f64>();
            abs[[r, ch]] = seg.iter().map(|v| v.abs()).sum::<f64>();
        }
    }
    (sums, abs)
}

/// Applies an affine op to rows. `inputs[i]` are the op inputs `[n, in_numel]`.
/// With `abs`, weights are replaced by absolute values and biases dropped (IBP radius).
pub fn forward(graph: &Graph, node: &Node, inputs: &[ArrayView2<f64>], abs: bool) -> Array2<f64> {
    let x = inputs[0];
    match &node.op {
        Op::Input | Op::Relu | Op::MaxPool { .. } => unreachable!("not an affine op"),
        Op::Linear { weight, bias } => {
            if abs {
                x.dot(&weight.mapv(f64::abs).t())
            } else {
                x.dot(&weight.t()) + bias
            }
        }
        Op::Conv2d { weight, bias, .. } => {
            let g = conv_window(graph, node);
            conv_forward(&g, &conv_matrix(weight, abs), (!abs).then_some(bias), x)
        }
        Op::ChannelAffine { scale, shift } => {
            let c = scale.len();
            let n = x.nrows();
            let p = x.ncols() / c;
            let mut out = x
                .to_owned()
                .into_shape_with_order((n, c, p))
                .expect("contiguous");
            for ch in 0..c {
                let mut v = out.slice_mut(s![.., ch, ..]);
                if abs {
                    v.mapv_inplace(|t| t * scale[ch].abs());
                } else {
                    v.mapv_inplace(|t| t * scale[ch] + shift[ch]);
                }
            }
            out.into_shape_with_order((n, c * p)).expect("contiguous")
        }
        Op::Add => &x + &inputs[1],
        Op::Reshape => x.to_owned(),
        Op::AvgPool { .. } => {
            let g = conv_window(graph, node);
            let n = x.nrows();
            let p = g.positions();
            let div = (g.kh * g.kw) as f64;
            let mut out = Array2::<f64>::zeros((n, g.cin * p));
            for s in 0..n {
                for c in 0..g.cin {
                    for oh in 0..g.ho {
                        for ow in 0..g.wo {
                            let mut acc = 0.0;
                            for ki in 0..g.kh {
                                for kj in 0..g.kw {
                                    if let Some((ih, iw)) = g.tap(oh, ow, ki, kj) {
                                        acc += x[[s, c * g.h * g.w + ih * g.w + iw]];
                                    }
                                }
                            }
                            out[[s, c * p + oh * g.wo + ow]] = acc / div;
                        }
                    }
                }
            }
            out
        }
    }
}

/// Result of pulling linear functionals back through one affine op.
pub struct Pullback {
    /// One `[rows, in_numel]` per op input.
    pub a: Vec<Array2<f64>>,
    /// `A · const_term` per row.
    pub bias: Array1<f64>,
    /// `|A| · |const_term|` per row (rounding-error scale).
    pub bias_mag: Array1<f64>,
}

/// Transpose of an affine op on rows: functionals `a` `[rows, out_numel]` of the op output become
/// functionals of its inputs plus a constant.
pub fn backward(graph: &Graph, node: &Node, a: Array2<f64>) -> Pullback {
    let rows = a.nrows();
    let zeros = || Array1::<f64>::zeros(rows);
    match &node.op {
        Op::Input | Op::Relu | Op::MaxPool { .. } => unreachable!("not an affine op"),
        Op::Linear { weight, bias } => Pullback {
            bias: {
                count_gemm(rows, weight.nrows(), weight.ncols());
                a.dot(bias)
            },
            bias_mag: a.mapv(f64::abs).dot(&bias.mapv(f64::abs)),
            a: vec![a.dot(weight)],
        },
        Op::Conv2d { weight, bias, .. } => {
            let a = a.as_standard_layout();
            conv_pullback(&conv_window(graph, node), weight, bias, a.view())
        }
        Op::ChannelAffine { scale, shift } => {
            let c = scale.len();
            let (sums, abs_sums) = channel_sums_with_abs(a.view(), c);
            let p = a.ncols() / c;
            let mut out = a.into_shape_with_order((rows, c, p)).expect("contiguous");
            for ch in 0..c {
                out.slice_mut(s![.., ch, ..])
                    .mapv_inplace(|t| t * scale[ch]);
            }
            Pullback {
                bias: sums.dot(shift),
                bias_mag: abs_sums.dot(&shift.mapv(f64::abs)),
                a: vec![out
                    .into_shape_with_order((rows, c * p))
                    .expect("contiguous")],
            }
        }
        Op::Add => Pullback {
            a: vec![a.clone(), a],
            bias: zeros(),
            bias_mag: zeros(),
        },
        Op::Reshape => Pullback {
            a: vec![a],
            bias: zeros(),
            bias_mag: zeros(),
        },
        Op::AvgPool { .. } => {
            let g = conv_window(graph, node);
            let p = g.positions();
            let div = (g.kh * g.kw) as f64;
            let mut out = Array2::<f64>::zeros((rows, g.cin * g.h * g.w));
            for r in 0..rows {
                for c in 0..g.cin {
                    for oh in 0..g.ho {
                        for ow in 0..g.wo {
                            let v = a[[r, c * p + oh * g.wo + ow]] / div;
                            for ki in 0..g.kh {
                                for kj in 0..g.kw {
                                    if let Some((ih, iw)) = g.tap(oh, ow, ki, kj) {
                                        out[[r, c * g.h * g.w + ih * g.w + iw]] += v;
                                    }
                                }
                            }
                        }
                    }
                }
            }
            Pullback {
                a: vec![out],
                bias: zeros(),
                bias_mag: zeros(),
            }
        }
    }
}

/// Rows of the op's Jacobian for output coordinates `idx` (only linear and conv; `None` otherwise),
/// together with the matching bias entries. Avoids pulling one-hot rows through the first op.
pub fn jacobian_rows(
    graph: &Graph,
    node: &Node,
    idx: &[usize],
) -> Option<(Array2<f64>, Array1<f64>)> {
    match &node.op {
        Op::Linear { weight, bias } => {
            let a = weight.select(Axis(0), idx);
            let b = idx.iter().map(|&i| bias[i]).collect();
            Some((a, b))
        }
        Op::Conv2d { weight, bias, .. } => {
            let g = conv_window(graph, node);
            let p = g.positions();
            let mut a = Array2::<f64>::zeros((idx.len(), g.cin * g.h * g.w));
            let mut b = Array1::<f64>::zeros(idx.len());
            for (r, &i) in idx.iter().enumerate() {
                let (co, pos) = (i / p, i % p);
                let (oh, ow) = (pos / g.wo, pos % g.wo);
                b[r] = bias[co];
                for ki in 0..g.kh {
                    for kj in 0..g.kw {
                        if let Some((ih, iw)) = g.tap(oh, ow, ki, kj) {
                            for ci in 0..g.cin {
                                a[[r, ci * g.h * g.w + ih * g.w + iw]] = weight[[co, ci, ki, kj]];
                            }
                        }
                    }
                }
            }
            Some((a, b))
        }
        _ => None,
    }
}

/// The widest vector instructions the row kernels (`gemm_rows` and the window path's elementwise
/// loops) use on this CPU. Every level computes the same sums in the same order, so the results
/// are bit-identical; only the speed differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SimdLevel {
    /// Plain loops (`mul_add`).
    Portable,
    /// 256-bit AVX2 with FMA.
    Avx2,
    /// 512-bit AVX-512 (F, VL and DQ): twice the FMA width, so about twice AVX2's throughput on
    /// CPUs with two 512-bit FMA units (Intel's Xeons since Skylake-SP).
    Avx512,
}

impl SimdLevel {
    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Portable => "portable",
            SimdLevel::Avx2 => "avx2",
            SimdLevel::Avx512 => "avx512",
        }
    }

    /// The widest level this CPU has (detected once).
    pub fn detected() -> SimdLevel {
        static DETECTED: std::sync::OnceLock<SimdLevel> = std::sync::OnceLock::new();
        *DETECTED.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                use std::arch::is_x86_feature_detected as has;
                let avx2 = has!("avx2") && has!("fma");
                if avx2 && has!("avx512f") && has!("avx512vl") && has!("avx512dq") {
                    return SimdLevel::Avx512;
                }
                if avx2 {
                    return SimdLevel::Avx2;
                }
            }
            SimdLevel::Portable
        })
    }
}

/// The level the row kernels run at: the CPU's widest, capped by `$UPCC_SIMD` (`portable`,
/// `avx2` or `avx512`) where set, to compare kernels on one machine. Read once.
pub fn simd_level() -> SimdLevel {
    static LEVEL: std::sync::OnceLock<SimdLevel> = std::sync::OnceLock::new();
    *LEVEL.get_or_init(|| {
        let cap = match std::env::var("UPCC_SIMD").as_deref() {
            Ok("portable") => SimdLevel::Portable,
            Ok("avx2") => SimdLevel::Avx2,
            _ => SimdLevel::Avx512,
        };
        SimdLevel::detected().min(cap)
    })
}

/// Defines `fn $name(args)` whose body is compiled three times, plainly, with AVX2 and with
/// AVX-512 (chosen at run time by [`simd_level`]), for elementwise loops over rows. Without fused
/// multiply-adds (Rust never contracts `a * b + c`), so all give the same bits.
macro_rules! simd_rows {
    ($(#[$meta:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                unsafe fn wide($($arg: $ty),*) {
                    body($($arg),*)
                }
                #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx2")]
                unsafe fn widest($($arg: $ty),*) {
                    body($($arg),*)
                }
                // SAFETY (both): the level's features are present.
                match $crate::engine::linop::simd_level() {
                    $crate::engine::linop::SimdLevel::Avx512 => {
                        return unsafe { widest($($arg),*) }
                    }
                    $crate::engine::linop::SimdLevel::Avx2 => return unsafe { wide($($arg),*) },
                    $crate::engine::linop::SimdLevel::Portable => {}
                }
            }
            body($($arg),*)
        }
    };
}
pub(crate) use simd_rows;

/// Scalar of the window path's rows: `f64`, or `f32` for twice the GEMM throughput (and half
/// the memory traffic). Every rounding the window path does in it is charged to the bound (see
/// the module doc of `window`), so either is sound.
pub(crate) trait RowScalar: NdFloat + Default + Send + Sync {
    /// Unit roundoff `u` of round to nearest: a rounded result is within `u·|exact|`.
    const UNIT_ROUNDOFF: f64;
    /// Rounded to nearest.
    fn from_f64(v: f64) -> Self;
    /// [`gemm_rows`] after its checks, at `level` or the detected level if lower.
    fn gemm_kernel(
        level: SimdLevel,
        w: &[Self],
        a: &[Self],
        c: &mut [Self],
        to: (&[usize], &[bool]),
        kr: Shape,
    );
}

/// `(k, r)` of a [`gemm_rows`] product.
type Shape = (usize, usize);

macro_rules! row_scalar {
    ($t:ty, $kernel:ident) => {
        impl RowScalar for $t {
            const UNIT_ROUNDOFF: f64 = <$t>::EPSILON as f64 / 2.0;
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            fn gemm_kernel(
                level: SimdLevel,
                w: &[Self],
                a: &[Self],
                c: &mut [Self],
                to: (&[usize], &[bool]),
                kr: Shape,
            ) {
                // SAFETY (each arm): the level's features are present (capped at the detected
                // level) and every row read or written is in bounds (asserted by `gemm_rows`).
                match level.min(SimdLevel::detected()) {
                    #[cfg(target_arch = "x86_64")]
                    SimdLevel::Avx512 => unsafe { avx512::$kernel(w, a, c, to, kr) },
                    #[cfg(target_arch = "x86_64")]
                    SimdLevel::Avx2 => unsafe { avx2::$kernel(w, a, c, to, kr) },
                    _ => gemm_rows_portable(w, a, c, to, kr),
                }
            }
        }
    };
}
row_scalar!(f64, gemm_rows_f64);
row_scalar!(f32, gemm_rows_f32);

/// `w · a` into rows of `c`: `w` is `[n, k]` packed by [`packed_at`] and `a` is `[k, r]`,
/// row-major and contiguous; row `i` of the product is written to `c[dest[i]..dest[i] + r]`,
/// or added there where `add[i]`. The window path's conv transposes are many such products with
/// small `n` and `k` and `r` in the hundreds; reading `a`'s rows in place (only the small `w` is
/// packed, by the caller) keeps them at the FMA units' pace. Each entry is summed over `k` in
/// order with fused multiply-adds, then added, so a column's result does not depend on `r`.
pub(crate) fn gemm_rows<T: RowScalar>(
    w: &[T],
    a: &[T],
    c: &mut [T],
    (dest, add): (&[usize], &[bool]),
    (k, r): Shape,
) {
    let n = dest.len();
    assert!(add.len() == n && w.len() >= packed_len(n, k) && a.len() >= k * r);
    assert!(dest.iter().all(|&d| d + r <= c.len()));
    count_gemm(n, k, r);
    T::gemm_kernel(simd_level(), w, a, c, (dest, add), (k, r));
}

/// Rows of `w` go in tiles of [`TILE_ROWS`], each stored `[k][TILE_ROWS]`, so that the kernel
/// broadcasts a tile's weights from one contiguous stream: entry `(i, kk)` of an `[n, k]`
/// matrix is at `packed_at(i, kk, k)`.
pub(crate) fn packed_at(i: usize, kk: usize, k: usize) -> usize {
    (i / TILE_ROWS * k + kk) * TILE_ROWS + i % TILE_ROWS
}

/// Length of an `[n, k]` matrix packed by [`packed_at`] (the last tile padded).
pub(crate) fn packed_len(n: usize, k: usize) -> usize {
    n.div_ceil(TILE_ROWS) * k * TILE_ROWS
}

/// Rows per register tile of [`gemm_rows`].
pub(crate) const TILE_ROWS: usize = 6;

/// Columns that [`gemm_rows`] computes without a scalar tail, for scalar `T`: 64 bytes, two AVX2
/// vectors or one AVX-512 vector (whose kernel takes 4-vector tiles, then one of fewer vectors).
pub(crate) const fn tile_columns<T>() -> usize {
    64 / std::mem::size_of::<T>()
}

/// [`gemm_rows`] in plain loops, for CPUs without AVX2 and FMA: the same fused sums, so the same
/// bits.
fn gemm_rows_portable<T: RowScalar>(
    w: &[T],
    a: &[T],
    c: &mut [T],
    (dest, add): (&[usize], &[bool]),
    (k, r): Shape,
) {
    let mut row = vec![T::zero(); r];
    for (i, (&d, &add)) in dest.iter().zip(add).enumerate() {
        row.fill(T::zero());
        for kk in 0..k {
            let wv = w[packed_at(i, kk, k)];
            for (o, v) in row.iter_mut().zip(&a[kk * r..(kk + 1) * r]) {
                *o = wv.mul_add(*v, *o);
            }
        }
        for (o, &v) in c[d..d + r].iter_mut().zip(&row) {
            *o = if add { v + *o } else { v };
        }
    }
}

/// The x86-64 kernel of [`gemm_rows`] for one scalar type and vector width: `TILE_ROWS` × two
/// vectors register tiles (12 accumulators) over column strips that stay in L1, a `TILE_ROWS` ×
/// one vector tile for a last odd vector, then scalar column tails. Each column's entry is one
/// chain of fused multiply-adds over `k` in order, whatever the width.
#[cfg(target_arch = "x86_64")]
macro_rules! gemm_rows_kernel {
    ($feature:literal, $name:ident, $t:ty, $lanes:expr, $vectors:expr, $zero:ident,
     $load:ident, $store:ident, $splat:ident, $fma:ident, $add:ident) => {
        #[target_feature(enable = $feature)]
        pub(super) unsafe fn $name(
            w: &[$t],
            a: &[$t],
            c: &mut [$t],
            (dest, add): (&[usize], &[bool]),
            (k, r): Shape,
        ) {
            const LANES: usize = $lanes;
            const VECTORS: usize = $vectors;
            const WIDE: usize = VECTORS * LANES;
            let n = dest.len();
            let (w, a, c) = (w.as_ptr(), a.as_ptr(), c.as_mut_ptr());
            let rn = r / LANES * LANES;
            // Column strips whose `k` rows of `a` (about 8 KB, at least one wide tile) stay in L1
            // across all row tiles.
            let strip = (8192 / std::mem::size_of::<$t>() / k.max(1)).max(WIDE) / WIDE * WIDE;
            let tiles = n.div_ceil(TILE_ROWS);
            // Entries per line of 64 bytes.
            const LINE: usize = 64 / std::mem::size_of::<$t>();
            for j0 in (0..rn).step_by(strip) {
                let j1 = (j0 + strip).min(rn);
                // Prefetches hide the latency of rows not in cache: the next row tile's lines
                // of `c`, and the next strip's lines of `a`, spread over this strip's row tiles.
                let next_lines = if tiles > 1 {
                    k * (j1..(j1 + strip).min(rn)).step_by(LINE).len()
                } else {
                    0
                };
                let per_tile = next_lines.div_ceil(tiles);
                let mut fetched = 0;
                let mut i0 = 0;
                while i0 < n {
                    let m = (n - i0).min(TILE_ROWS);
                    // Tile `i0 / TILE_ROWS` starts at `i0 · k` (see `packed_at`).
                    let wi = w.add(i0 * k);
                    for &d in &dest[(i0 + TILE_ROWS).min(n)..(i0 + 2 * TILE_ROWS).min(n)] {
                        for j in (j0..j1).step_by(LINE) {
                            _mm_prefetch::<_MM_HINT_T0>(c.add(d + j) as *const i8);
                        }
                    }
                    let stop = (fetched + per_tile).min(next_lines);
                    for line in fetched..stop {
                        let (kk, t) = (line % k, line / k);
                        _mm_prefetch::<_MM_HINT_T0>(a.add(kk * r + j1 + LINE * t) as *const i8);
                    }
                    fetched = stop;
                    let (dest, add) = (&dest[i0..i0 + m], &add[i0..i0 + m]);
                    for j in (j0..j1).step_by(WIDE) {
                        let (aj, cj) = (a.add(j), c.add(j));
                        let v = ((j1 - j) / LANES).min(VECTORS);
                        match v {
                            4 => row_tile::<4>(m, wi, aj, cj, dest, add, k, r),
                            3 => row_tile::<3>(m, wi, aj, cj, dest, add, k, r),
                            2 => row_tile::<2>(m, wi, aj, cj, dest, add, k, r),
                            _ => row_tile::<1>(m, wi, aj, cj, dest, add, k, r),
                        }
                    }
                    i0 += m;
                }
            }
            for i in 0..n {
                let out = c.add(dest[i]);
                // Row `i`'s weights, `TILE_ROWS` apart.
                let wr = w.add(super::packed_at(i, 0, k));
                for jj in rn..r {
                    let mut s: $t = 0.0;
                    for kk in 0..k {
                        s = <$t>::mul_add(*wr.add(kk * TILE_ROWS), *a.add(kk * r + jj), s);
                    }
                    let o = out.add(jj);
                    *o = if add[i] { s + *o } else { s };
                }
            }

            /// A tile of `m` rows, `V` vectors of columns.
            #[target_feature(enable = $feature)]
            #[inline]
            #[allow(clippy::too_many_arguments)]
            unsafe fn row_tile<const V: usize>(
                m: usize,
                w: *const $t,
                a: *const $t,
                c: *mut $t,
                dest: &[usize],
                add: &[bool],
                k: usize,
                r: usize,
            ) {
                match m {
                    6 => tile::<6, V>(w, a, c, dest, add, k, r),
                    5 => tile::<5, V>(w, a, c, dest, add, k, r),
                    4 => tile::<4, V>(w, a, c, dest, add, k, r),
                    3 => tile::<3, V>(w, a, c, dest, add, k, r),
                    2 => tile::<2, V>(w, a, c, dest, add, k, r),
                    _ => tile::<1, V>(w, a, c, dest, add, k, r),
                }
            }

            /// Rows `M` of a tile, `V` vectors of columns.
            #[target_feature(enable = $feature)]
            #[inline]
            unsafe fn tile<const M: usize, const V: usize>(
                w: *const $t,
                a: *const $t,
                c: *mut $t,
                dest: &[usize],
                add: &[bool],
                k: usize,
                r: usize,
            ) {
                let mut acc = [[$zero(); V]; M];
                for kk in 0..k {
                    let mut av = [$zero(); V];
                    for (v, av) in av.iter_mut().enumerate() {
                        *av = $load(a.add(kk * r + v * LANES));
                    }
                    for (i, acc) in acc.iter_mut().enumerate() {
                        let wv = $splat(&*w.add(kk * TILE_ROWS + i));
                        for (acc, &av) in acc.iter_mut().zip(&av) {
                            *acc = $fma(wv, av, *acc);
                        }
                    }
                }
                for (i, acc) in acc.iter().enumerate() {
                    let out = c.add(dest[i]);
                    for (v, &sum) in acc.iter().enumerate() {
                        let at = out.add(v * LANES);
                        let sum = if add[i] { $add(sum, $load(at)) } else { sum };
                        $store(at, sum);
                    }
                }
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Shape, TILE_ROWS};
    use std::arch::x86_64::*;

    gemm_rows_kernel!(
        "avx2,fma",
        gemm_rows_f64,
        f64,
        4,
        2,
        _mm256_setzero_pd,
        _mm256_loadu_pd,
        _mm256_storeu_pd,
        _mm256_broadcast_sd,
        _mm256_fmadd_pd,
        _mm256_add_pd
    );
    gemm_rows_kernel!(
        "avx2,fma",
        gemm_rows_f32,
        f32,
        8,
        2,
        _mm256_setzero_ps,
        _mm256_loadu_ps,
        _mm256_storeu_ps,
        _mm256_broadcast_ss,
        _mm256_fmadd_ps,
        _mm256_add_ps
    );
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{Shape, TILE_ROWS};
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f")]
    #[inline]
    fn splat_pd(x: &f64) -> __m512d {
        _mm512_set1_pd(*x)
    }

    #[target_feature(enable = "avx512f")]
    #[inline]
    fn splat_ps(x: &f32) -> __m512 {
        _mm512_set1_ps(*x)
    }

    gemm_rows_kernel!(
        "avx512f",
        gemm_rows_f64,
        f64,
        8,
        4,
        _mm512_setzero_pd,
        _mm512_loadu_pd,
        _mm512_storeu_pd,
        splat_pd,
        _mm512_fmadd_pd,
        _mm512_add_pd
    );
    gemm_rows_kernel!(
        "avx512f",
        gemm_rows_f32,
        f32,
        16,
        4,
        _mm512_setzero_ps,
        _mm512_loadu_ps,
        _mm512_storeu_ps,
        splat_ps,
        _mm512_fmadd_ps,
        _mm512_add_ps
    );
}

/// Throughput probes for benchmarks: the FMA peak of one core at a [`SimdLevel`], and the row
/// kernel's rate on one shape, so the engine's GFLOP/s can be set against the machine's peak.
pub mod probe {
    use super::{packed_len, RowScalar, SimdLevel};
    use crate::engine::RowPrecision;
    use std::time::Instant;

    /// GFLOP/s of one core doing only independent fused multiply-adds (12 chains, in registers)
    /// at `level` in the `rows` scalar, for about `seconds`. `None` for a level this CPU lacks.
    pub fn fma_peak(level: SimdLevel, rows: RowPrecision, seconds: f64) -> Option<f64> {
        match rows {
            RowPrecision::F64 => fma_peak_in::<f64>(level, seconds),
            RowPrecision::F32 => fma_peak_in::<f32>(level, seconds),
        }
    }

    fn fma_peak_in<T: RowScalar>(level: SimdLevel, seconds: f64) -> Option<f64> {
        if level > SimdLevel::detected() {
            return None;
        }
        let lanes: usize = match level {
            SimdLevel::Portable => 1,
            SimdLevel::Avx2 => 32 / std::mem::size_of::<T>(),
            SimdLevel::Avx512 => 64 / std::mem::size_of::<T>(),
        };
        let (mut iters, mut elapsed) = (1usize << 16, 0.0);
        while elapsed < seconds {
            iters *= 2;
            let start = Instant::now();
            // SAFETY: the level's features are present.
            unsafe { fma_chains::<T>(level, iters) };
            elapsed = start.elapsed().as_secs_f64();
        }
        Some((iters * 12 * lanes * 2) as f64 / elapsed / 1e9)
    }

    /// `iters` rounds of 12 independent FMA chains of full vectors.
    unsafe fn fma_chains<T: RowScalar>(level: SimdLevel, iters: usize) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::*;
            let is_f64 = std::mem::size_of::<T>() == 8;
            match (level, is_f64) {
                (SimdLevel::Avx512, true) => avx512_pd(iters),
                (SimdLevel::Avx512, false) => avx512_ps(iters),
                (SimdLevel::Avx2, true) => avx2_pd(iters),
                (SimdLevel::Avx2, false) => avx2_ps(iters),
                _ => portable::<T>(iters),
            };
            macro_rules! chains {
                ($name:ident, $feature:literal, $splat:ident, $fma:ident) => {
                    #[target_feature(enable = $feature)]
                    fn $name(iters: usize) {
                        let (a, b) = ($splat(0.999_999), $splat(1e-7));
                        let mut acc = [$splat(1.0); 12];
                        for _ in 0..iters {
                            for v in acc.iter_mut() {
                                *v = $fma(*v, a, b);
                            }
                        }
                        std::hint::black_box(acc);
                    }
                };
            }
            chains!(avx512_pd, "avx512f", _mm512_set1_pd, _mm512_fmadd_pd);
            chains!(avx512_ps, "avx512f", _mm512_set1_ps, _mm512_fmadd_ps);
            chains!(avx2_pd, "avx2,fma", _mm256_set1_pd, _mm256_fmadd_pd);
            chains!(avx2_ps, "avx2,fma", _mm256_set1_ps, _mm256_fmadd_ps);
        }
        #[cfg(not(target_arch = "x86_64"))]
        portable::<T>(iters)
    }

    fn portable<T: RowScalar>(iters: usize) {
        let (a, b) = (T::from_f64(0.999_999), T::from_f64(1e-7));
        let mut acc = [T::one(); 12];
        for _ in 0..iters {
            for v in acc.iter_mut() {
                *v = v.mul_add(a, b);
            }
        }
        std::hint::black_box(acc);
    }

    /// GFLOP/s of the row kernel at `level` on one core in the `rows` scalar, on a
    /// `[n, k] · [k, r]` product with operands in cache, over about `seconds`. `None` for a level
    /// this CPU lacks.
    pub fn row_kernel(
        level: SimdLevel,
        rows: RowPrecision,
        shape: (usize, usize, usize),
        seconds: f64,
    ) -> Option<f64> {
        match rows {
            RowPrecision::F64 => row_kernel_in::<f64>(level, shape, seconds),
            RowPrecision::F32 => row_kernel_in::<f32>(level, shape, seconds),
        }
    }

    fn row_kernel_in<T: RowScalar>(
        level: SimdLevel,
        (n, k, r): (usize, usize, usize),
        seconds: f64,
    ) -> Option<f64> {
        if level > SimdLevel::detected() {
            return None;
        }
        let w: Vec<T> = (0..packed_len(n, k))
            .map(|i| T::from_f64((i % 7) as f64 * 0.1))
            .collect();
        let a: Vec<T> = (0..k * r)
            .map(|i| T::from_f64((i % 5) as f64 * 0.1))
            .collect();
        let mut c = vec![T::zero(); n * r];
        let dest: Vec<usize> = (0..n).map(|i| i * r).collect();
        let add = vec![false; n];
        let (mut reps, mut elapsed) = (1usize, 0.0);
        while elapsed < seconds {
            reps *= 2;
            let start = Instant::now();
            for _ in 0..reps {
                T::gemm_kernel(level, &w, &a, &mut c, (&dest, &add), (k, r));
            }
            elapsed = start.elapsed().as_secs_f64();
        }
        std::hint::black_box(&c);
        Some(2.0 * (n * k * r * reps) as f64 / elapsed / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::build::Rng;

    /// The kernel at every SIMD level this CPU has (portable, AVX2, AVX-512) against plain sums,
    /// in both row scalars, on shapes that hit every tile height, both tile widths and each
    /// column tail, writing and adding rows in a scattered order; the levels agree bit for bit.
    #[test]
    fn gemm_rows_matches_plain_sums() {
        gemm_rows_matches_plain_sums_in::<f64>(1e-12);
        gemm_rows_matches_plain_sums_in::<f32>(1e-4);
    }

    fn gemm_rows_matches_plain_sums_in<T: RowScalar>(tol: f64) {
        let mut rng = Rng::new(7);
        for (n, k, r) in [
            (1, 1, 1),
            (6, 3, 8),
            (6, 3, 16),
            (7, 5, 13),
            (7, 5, 25),
            (13, 17, 29),
            (5, 0, 9),
            (18, 32, 477),
            (12, 9, 48),
            (9, 7, 40),
            (6, 40, 264),
            (11, 130, 272),
        ] {
            let mut draw = |len: usize, offset: f64| -> Vec<T> {
                (0..len)
                    .map(|_| T::from_f64(rng.uniform() - offset))
                    .collect()
            };
            let w = draw(n * k, 0.5);
            let a = draw(k * r, 0.5);
            let start = draw((n + 1) * r, 0.0);
            let mut packed = vec![T::nan(); packed_len(n, k)];
            for i in 0..n {
                for kk in 0..k {
                    packed[packed_at(i, kk, k)] = w[i * k + kk];
                }
            }
            // Rows go to slots in reverse order (slot 0 untouched), every third one added.
            let dest: Vec<usize> = (0..n).map(|i| (n - i) * r).collect();
            let add: Vec<bool> = (0..n).map(|i| i % 3 == 1).collect();
            let mut c = start.clone();
            gemm_rows(&packed, &a, &mut c, (&dest, &add), (k, r));
            let levels = [SimdLevel::Portable, SimdLevel::Avx2, SimdLevel::Avx512];
            for level in levels.into_iter().filter(|&l| l <= SimdLevel::detected()) {
                let mut other = start.clone();
                T::gemm_kernel(level, &packed, &a, &mut other, (&dest, &add), (k, r));
                assert!(c == other, "{} differs at {:?}", level.name(), (n, k, r));
            }
            assert!(c[..r] == start[..r]);
            for i in 0..n {
                for j in 0..r {
                    let at = dest[i] + j;
                    let mut want = if add[i] {
                        start[at].to_f64().expect("finite")
                    } else {
                        0.0
                    };
                    for kk in 0..k {
                        want += w[i * k + kk].to_f64().expect("finite")
                            * a[kk * r + j].to_f64().expect("finite");
                    }
                    let got = c[at].to_f64().expect("finite");
                    assert!(
                        (got - want).abs() <= tol * (1.0 + want.abs()),
                        "{got} vs {want}"
                    );
                }
            }
        }
    }
}
