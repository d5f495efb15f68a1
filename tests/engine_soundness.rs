//! Soundness of the bound engine: sampled δ (corners included) never beat the bounds, exact
//! enumeration on tiny nets, α-CROWN ≥ CROWN, hand-computed CROWN values, and error paths.

use ndarray::{arr1, arr2, Array1, Array2, Axis};
use proptest::prelude::*;
use upcc::engine::cpu::{margin_bounds, margin_bounds_cached};
use upcc::engine::{
    forward, vjp, BoundCache, BoundMethod, DeltaBox, EngineError, MarginBounds, RowPrecision,
};
use upcc::ir::build::{random_cnn, random_mlp, random_resnet, GraphBuilder, Rng};
use upcc::ir::{validate, Graph, Op};

const ALPHA: BoundMethod = BoundMethod::AlphaCrown {
    iterations: 10,
    learning_rate: 0.1,
};

fn random_inputs(rng: &mut Rng, n: usize, d: usize) -> Array2<f64> {
    Array2::from_shape_fn((n, d), |_| rng.uniform())
}

/// Sampled δ: both box corners, zero, random corners and random interior points.
fn sample_deltas(rng: &mut Rng, delta: &DeltaBox, count: usize) -> Array2<f64> {
    let d = delta.dim();
    let mut out = Array2::zeros((count + 3, d));
    out.row_mut(0).assign(&delta.lo);
    out.row_mut(1).assign(&delta.hi);
    for n in 0..d {
        out[[2, n]] = 0.0f64.clamp(delta.lo[n], delta.hi[n]);
    }
    for k in 0..count {
        let corner = k % 2 == 0;
        for n in 0..d {
            let t = if corner {
                (rng.uniform() < 0.5) as u8 as f64
            } else {
                rng.uniform()
            };
            out[[k + 3, n]] = delta.lo[n] + t * (delta.hi[n] - delta.lo[n]);
        }
    }
    out
}

/// margin(x+δ) ≥ a·δ + b − tol and ≥ samplewise − tol for every sampled δ.
fn assert_sound(
    graph: &Graph,
    x: &Array2<f64>,
    bounds: &MarginBounds,
    delta: &DeltaBox,
    rng: &mut Rng,
    count: usize,
) {
    for (i, sb) in bounds.samples.iter().enumerate() {
        let deltas = sample_deltas(rng, delta, count);
        let points = &deltas + &x.row(i);
        let logits = forward(graph, points.view()).unwrap();
        let lin = deltas.dot(&sb.a.t()); // [samples, K-1]
        for (r, &j) in sb.others.iter().enumerate() {
            assert!(sb.samplewise_lower[r] <= sb.b[r] + 1e-12);
            for s in 0..deltas.nrows() {
                let margin = logits[[s, sb.label]] - logits[[s, j]];
                let tol = 1e-9 * (1.0 + margin.abs());
                let linear = lin[[s, r]] + sb.b[r];
                assert!(
                    margin >= linear - tol,
                    "sample {i} class {j}: margin {margin} < linear bound {linear}"
                );
                assert!(
                    margin >= sb.samplewise_lower[r] - tol,
                    "sample {i} class {j}: margin {margin} < sample-wise bound {}",
                    sb.samplewise_lower[r]
                );
            }
        }
    }
}

fn check_all_methods(graph: &Graph, seed: u64, n: usize, delta: &DeltaBox) {
    validate(graph).unwrap();
    let mut rng = Rng::new(seed);
    let d = delta.dim();
    let x = random_inputs(&mut rng, n, d);
    let labels = upcc::attacks::predicted_classes(graph, x.view()).unwrap();
    let crown = margin_bounds(graph, x.view(), &labels, delta, &BoundMethod::Crown).unwrap();
    let alpha = margin_bounds(graph, x.view(), &labels, delta, &ALPHA).unwrap();
    let ibp = margin_bounds(graph, x.view(), &labels, delta, &BoundMethod::Ibp).unwrap();
    // Window rows in f32, their rounding charged to the bounds.
    let f32_rows = (&BoundCache::disabled(), RowPrecision::F32);
    let crown_f32 = margin_bounds_cached(
        graph,
        x.view(),
        &labels,
        delta,
        &BoundMethod::Crown,
        f32_rows,
    )
    .unwrap();
    let alpha_f32 =
        margin_bounds_cached(graph, x.view(), &labels, delta, &ALPHA, f32_rows).unwrap();
    for bounds in [&crown, &alpha, &ibp, &crown_f32, &alpha_f32] {
        assert_sound(graph, &x, bounds, delta, &mut rng, 600);
    }
    for (c, a) in crown.samples.iter().zip(&alpha.samples) {
        for r in 0..c.others.len() {
            assert!(
                a.samplewise_lower[r] >= c.samplewise_lower[r],
                "α-CROWN looser than CROWN"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    #[test]
    fn mlp_bounds_are_sound(seed in any::<u64>(), eps in 0.01f64..0.4) {
        let mut rng = Rng::new(seed);
        let graph = random_mlp(&mut rng, 6, &[10, 8], 4);
        check_all_methods(&graph, seed, 3, &DeltaBox::linf(6, eps));
    }

    #[test]
    fn cnn_bounds_are_sound(seed in any::<u64>(), eps in 0.005f64..0.1) {
        let mut rng = Rng::new(seed);
        let graph = random_cnn(&mut rng, [2, 7, 7], 3, 5);
        check_all_methods(&graph, seed, 2, &DeltaBox::linf(98, eps));
    }

    #[test]
    fn resnet_bounds_are_sound(seed in any::<u64>(), eps in 0.005f64..0.1) {
        let mut rng = Rng::new(seed);
        let graph = random_resnet(&mut rng, [2, 6, 6], 3, 4);
        check_all_methods(&graph, seed, 2, &DeltaBox::linf(72, eps));
    }

    #[test]
    fn asymmetric_boxes_are_sound(seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let graph = random_cnn(&mut rng, [2, 7, 7], 3, 4);
        let lo = Array1::from_shape_fn(98, |_| -rng.range(0.0, 0.08));
        let hi = Array1::from_shape_fn(98, |_| rng.range(-0.02, 0.08)).iter().zip(lo.iter()).map(|(&h, &l)| h.max(l)).collect();
        check_all_methods(&graph, seed, 2, &DeltaBox { lo, hi });
    }
}

/// m = relu(x + 0.5) − 0.1 on x ∈ [−1, 1]: l = −0.5, u = 1.5, so CROWN's lower slope is 1 and
/// the chord has slope 0.75 and intercept 0.375.
fn hand_net() -> Graph {
    let mut b = GraphBuilder::new(&[1]);
    let h = b.linear(GraphBuilder::INPUT, arr2(&[[1.0]]), arr1(&[0.5]));
    let h = b.relu(h);
    let out = b.linear(h, arr2(&[[1.0], [0.0]]), arr1(&[0.0, 0.1]));
    b.finish(out)
}

#[test]
fn crown_matches_hand_computation() {
    let graph = hand_net();
    let x = arr2(&[[0.0], [0.0]]);
    let delta = DeltaBox::linf(1, 1.0);
    let bounds = margin_bounds(&graph, x.view(), &[0, 1], &delta, &BoundMethod::Crown).unwrap();
    let close = |got: f64, want: f64| assert!((got - want).abs() < 1e-8, "{got} vs {want}");
    let s0 = &bounds.samples[0];
    assert_eq!(s0.others, vec![1]);
    close(s0.a[[0, 0]], 1.0);
    close(s0.b[0], 0.4);
    close(s0.samplewise_lower[0], -0.6);
    let s1 = &bounds.samples[1];
    close(s1.a[[0, 0]], -0.75);
    close(s1.b[0], -0.65);
    close(s1.samplewise_lower[0], -1.4);
    // α-CROWN finds the better lower slope 0 for label 0: bound relu ≥ 0, so m ≥ −0.1.
    let method = BoundMethod::AlphaCrown {
        iterations: 30,
        learning_rate: 0.2,
    };
    let alpha = margin_bounds(&graph, x.view(), &[0, 1], &delta, &method).unwrap();
    assert!(alpha.samples[0].samplewise_lower[0] > -0.11);
    close(alpha.samples[1].samplewise_lower[0], -1.4);
}

#[test]
fn tiny_boxes_give_nearly_exact_margins() {
    let mut rng = Rng::new(7);
    let graph = random_cnn(&mut rng, [2, 7, 7], 3, 5);
    let x = random_inputs(&mut rng, 3, 98);
    let labels = upcc::attacks::predicted_classes(&graph, x.view()).unwrap();
    let logits = forward(&graph, x.view()).unwrap();
    let delta = DeltaBox::linf(98, 1e-7);
    let bounds = margin_bounds(&graph, x.view(), &labels, &delta, &BoundMethod::Crown).unwrap();
    for (i, sb) in bounds.samples.iter().enumerate() {
        for (r, &j) in sb.others.iter().enumerate() {
            let margin = logits[[i, sb.label]] - logits[[i, j]];
            assert!(
                (sb.b[r] - margin).abs() < 1e-6,
                "b {} vs margin {margin}",
                sb.b[r]
            );
            assert!(sb.samplewise_lower[r] > margin - 1e-4);
        }
    }
}

#[test]
fn crown_is_tighter_than_ibp_on_average() {
    let mut rng = Rng::new(11);
    let graph = random_mlp(&mut rng, 8, &[16, 16, 16], 5);
    let x = random_inputs(&mut rng, 6, 8);
    let labels = upcc::attacks::predicted_classes(&graph, x.view()).unwrap();
    let delta = DeltaBox::linf(8, 0.05);
    let mean = |m: &BoundMethod| {
        let b = margin_bounds(&graph, x.view(), &labels, &delta, m).unwrap();
        let all: Vec<f64> = b
            .samples
            .iter()
            .flat_map(|s| s.samplewise_lower.to_vec())
            .collect();
        all.iter().sum::<f64>() / all.len() as f64
    };
    assert!(mean(&BoundMethod::Crown) > mean(&BoundMethod::Ibp));
}

// ---- exact enumeration of activation patterns on tiny MLPs ----

/// Exact min over the box of margin y−j for an MLP (Linear/Relu chain), by enumerating every
/// activation pattern and solving the LP of the resulting affine piece over its polytope.
fn exact_min_margin(graph: &Graph, x: &Array1<f64>, delta: &DeltaBox, y: usize, j: usize) -> f64 {
    let layers: Vec<(&Array2<f64>, &Array1<f64>)> = graph
        .nodes
        .iter()
        .filter_map(|n| match &n.op {
            Op::Linear { weight, bias } => Some((weight, bias)),
            _ => None,
        })
        .collect();
    let relus: usize = layers[..layers.len() - 1]
        .iter()
        .map(|(w, _)| w.nrows())
        .sum();
    assert!(relus <= 12);
    let d = x.len();
    let mut best = f64::INFINITY;
    for pattern in 0u32..(1 << relus) {
        // Affine map δ ↦ coef·δ + cst of the current layer, and constraints coef·δ + cst ≥ 0.
        let mut coef = Array2::<f64>::eye(d);
        let mut cst = x.clone();
        let mut constraints: Vec<(Array1<f64>, f64)> = Vec::new();
        let mut bit = 0;
        for (k, (w, b)) in layers.iter().enumerate() {
            coef = w.dot(&coef);
            cst = w.dot(&cst) + *b;
            if k + 1 == layers.len() {
                break;
            }
            for n in 0..w.nrows() {
                let on = pattern >> bit & 1 == 1;
                bit += 1;
                let sign = if on { 1.0 } else { -1.0 };
                constraints.push((coef.row(n).mapv(|v| v * sign), cst[n] * sign));
                if !on {
                    coef.row_mut(n).fill(0.0);
                    cst[n] = 0.0;
                }
            }
        }
        let obj = &coef.row(y) - &coef.row(j);
        let obj0 = cst[y] - cst[j];
        let mut lp = microlp::Problem::new(microlp::OptimizationDirection::Minimize);
        let vars: Vec<_> = (0..d)
            .map(|n| lp.add_var(obj[n], (delta.lo[n], delta.hi[n])))
            .collect();
        for (c, c0) in &constraints {
            let terms: Vec<(microlp::Variable, f64)> =
                vars.iter().copied().zip(c.iter().copied()).collect();
            lp.add_constraint(terms, microlp::ComparisonOp::Ge, -c0);
        }
        if let Ok(microlp::SolveOutcome::Solution(sol)) = lp.solve() {
            best = best.min(sol.objective() + obj0);
        }
    }
    best
}

#[test]
fn bounds_never_exceed_exact_enumeration() {
    for seed in 0..6u64 {
        let mut rng = Rng::new(100 + seed);
        let graph = random_mlp(&mut rng, 2, &[6, 5], 3);
        let x = random_inputs(&mut rng, 2, 2);
        let labels = upcc::attacks::predicted_classes(&graph, x.view()).unwrap();
        let delta = DeltaBox::linf(2, 0.3);
        let crown = margin_bounds(&graph, x.view(), &labels, &delta, &BoundMethod::Crown).unwrap();
        let alpha = margin_bounds(&graph, x.view(), &labels, &delta, &ALPHA).unwrap();
        let ibp = margin_bounds(&graph, x.view(), &labels, &delta, &BoundMethod::Ibp).unwrap();
        for (i, &label) in labels.iter().enumerate() {
            let xi = x.row(i).to_owned();
            for (r, &j) in crown.samples[i].others.iter().enumerate() {
                let exact = exact_min_margin(&graph, &xi, &delta, label, j);
                assert!(exact.is_finite());
                for b in [&crown, &alpha, &ibp] {
                    let lower = b.samples[i].samplewise_lower[r];
                    assert!(
                        lower <= exact + 1e-7,
                        "seed {seed}: bound {lower} above exact min {exact}"
                    );
                }
            }
        }
    }
}

// ---- concrete evaluation, gradient, errors ----

#[test]
fn vjp_matches_finite_differences() {
    let mut rng = Rng::new(3);
    let graph = random_resnet(&mut rng, [2, 6, 6], 3, 4);
    let x = random_inputs(&mut rng, 2, 72);
    let g = Array2::from_shape_fn((2, 4), |_| rng.range(-1.0, 1.0));
    let grad = vjp(&graph, x.view(), g.view()).unwrap();
    let loss = |x: &Array2<f64>| (forward(&graph, x.view()).unwrap() * &g).sum();
    for &(i, n) in &[(0usize, 0usize), (1, 17), (0, 40), (1, 71)] {
        let h = 1e-6;
        let mut xp = x.clone();
        xp[[i, n]] += h;
        let mut xm = x.clone();
        xm[[i, n]] -= h;
        let fd = (loss(&xp) - loss(&xm)) / (2.0 * h);
        assert!(
            (fd - grad[[i, n]]).abs() < 1e-5 * (1.0 + fd.abs()),
            "{fd} vs {}",
            grad[[i, n]]
        );
    }
}

#[test]
fn forward_is_batch_consistent() {
    let mut rng = Rng::new(5);
    let graph = random_cnn(&mut rng, [2, 7, 7], 3, 5);
    let x = random_inputs(&mut rng, 70, 98);
    let all = forward(&graph, x.view()).unwrap();
    let one = forward(&graph, x.select(Axis(0), &[45]).view()).unwrap();
    assert_eq!(all.row(45), one.row(0));
}

#[test]
fn bad_requests_are_errors_not_panics() {
    let graph = hand_net();
    let x = arr2(&[[0.0]]);
    let delta = DeltaBox::linf(1, 0.1);
    let m = BoundMethod::Crown;
    assert!(matches!(
        margin_bounds(&graph, x.view(), &[2], &delta, &m),
        Err(EngineError::InvalidInput(_))
    ));
    assert!(matches!(
        margin_bounds(&graph, x.view(), &[0, 1], &delta, &m),
        Err(EngineError::InvalidInput(_))
    ));
    assert!(matches!(
        margin_bounds(&graph, x.view(), &[0], &DeltaBox::linf(2, 0.1), &m),
        Err(EngineError::InvalidInput(_))
    ));
    let bad_box = DeltaBox {
        lo: arr1(&[0.1]),
        hi: arr1(&[-0.1]),
    };
    assert!(margin_bounds(&graph, x.view(), &[0], &bad_box, &m).is_err());
    let nan = arr2(&[[f64::NAN]]);
    assert!(margin_bounds(&graph, nan.view(), &[0], &delta, &m).is_err());

    let mut b = GraphBuilder::new(&[1, 4, 4]);
    let p = b.push(
        Op::MaxPool {
            kernel: [2, 2],
            stride: [2, 2],
            padding: [0, 0],
        },
        vec![GraphBuilder::INPUT],
        vec![1, 2, 2],
    );
    let f = b.flatten(p);
    let out = b.linear(f, Array2::ones((2, 4)), Array1::zeros(2));
    let pooled = b.finish(out);
    validate(&pooled).unwrap();
    let err = margin_bounds(
        &pooled,
        Array2::zeros((1, 16)).view(),
        &[0],
        &DeltaBox::linf(16, 0.1),
        &m,
    )
    .unwrap_err();
    match &err {
        EngineError::Unsupported { node, op, .. } => {
            assert_eq!(node, "maxpool1");
            assert_eq!(*op, "maxpool");
            let diag = err.to_diagnostic();
            assert_eq!(diag.code, "E0402");
            assert!(diag.message.contains("maxpool1"));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn dead_branches_are_ignored() {
    let mut rng = Rng::new(13);
    let mut b = GraphBuilder::new(&[4]);
    let h = b.random_linear(&mut rng, GraphBuilder::INPUT, 6);
    let h = b.relu(h);
    let dead = b.random_linear(&mut rng, h, 3);
    let _dead = b.relu(dead);
    let out = b.random_linear(&mut rng, h, 3);
    let graph = b.finish(out);
    validate(&graph).unwrap();
    let pruned = upcc::ir::passes::remove_dead(&graph);
    let x = random_inputs(&mut rng, 2, 4);
    let labels = upcc::attacks::predicted_classes(&graph, x.view()).unwrap();
    let delta = DeltaBox::linf(4, 0.1);
    for m in [BoundMethod::Ibp, BoundMethod::Crown, ALPHA] {
        let full = margin_bounds(&graph, x.view(), &labels, &delta, &m).unwrap();
        let small = margin_bounds(&pruned, x.view(), &labels, &delta, &m).unwrap();
        assert_eq!(full, small);
    }
}
