//! Behaviour of the attacks on small classifiers whose worst cases are known.

use ndarray::{array, Array1, Array2, ArrayView2};
use upcc::attacks::testing::{self_labels, Mlp};
use upcc::attacks::{
    check_certificates, evaluate_delta, is_correct, run_attack, AttackError, AttackKind,
    AttackOptions, AttackResult, Classifier, SoundnessViolation, SplitMix64,
};
use upcc::engine::DeltaBox;

const UNIVERSAL: [AttackKind; 4] = [
    AttackKind::Pgd,
    AttackKind::DfUap,
    AttackKind::CosUap,
    AttackKind::AdvUap,
];

fn random_matrix(rows: usize, cols: usize, lo: f64, hi: f64, seed: u64) -> Array2<f64> {
    let mut rng = SplitMix64::new(seed);
    Array2::from_shape_fn((rows, cols), |_| rng.uniform(lo, hi))
}

fn count(mask: &[bool]) -> usize {
    mask.iter().filter(|&&c| c).count()
}

fn attack(
    kind: AttackKind,
    c: &impl Classifier,
    x: &Array2<f64>,
    y: &[usize],
    bx: &DeltaBox,
    opts: &AttackOptions,
) -> AttackResult {
    run_attack(kind, c, x.view(), y, bx, opts).expect("attack runs")
}

/// Two classes, every label 0: the margin of sample i is m_i + v·δ with one shared v, so the worst
/// universal δ is the box corner minimising v·δ, and it is also every sample's worst case.
#[test]
fn linear_two_class_attacks_find_the_analytic_worst_corner() {
    let d = 6;
    let w = random_matrix(2, d, -1.0, 1.0, 11);
    let b = array![0.2, -0.1];
    let model = Mlp::linear(w.clone(), b.clone()).unwrap();
    let x = random_matrix(40, d, 0.0, 1.0, 12);
    let y = vec![0; 40];
    let bx = DeltaBox {
        lo: Array1::from(vec![-0.3, -0.1, -0.2, 0.0, -0.25, -0.05]),
        hi: Array1::from(vec![0.1, 0.2, 0.2, 0.15, 0.05, 0.3]),
    };
    let v = &w.row(0) - &w.row(1);
    let corner = Array1::from_shape_fn(d, |k| if v[k] > 0.0 { bx.lo[k] } else { bx.hi[k] });
    let margins = x.dot(&v) + (b[0] - b[1]);
    let clean = margins.iter().filter(|&&m| m > 0.0).count();
    let analytic = margins
        .iter()
        .filter(|&&m| m + v.dot(&corner) > 0.0)
        .count();
    assert!(
        analytic < clean && analytic > 0,
        "test data must be informative: {analytic} vs {clean}"
    );

    let opts = AttackOptions::default();
    for kind in AttackKind::ALL {
        let r = attack(kind, &model, &x, &y, &bx, &opts);
        // No attack can beat the true minimum, and all but Cos-UAP reach it here.
        assert!(
            r.correct() >= analytic,
            "{kind}: {} < analytic {analytic}",
            r.correct()
        );
        if kind != AttackKind::CosUap {
            assert_eq!(r.correct(), analytic, "{kind} misses the worst corner");
        }
    }
}

/// Sample-wise PGD is exact on a 10-class linear model: sample i is robust iff for every j ≠ yᵢ,
/// (w_y − w_j)·xᵢ + b_y − b_j + min over the box of (w_y − w_j)·δ > 0.
#[test]
fn samplewise_pgd_matches_the_analytic_worst_case_of_a_linear_model() {
    let (n, d, k) = (60, 8, 10);
    let w = random_matrix(k, d, -1.0, 1.0, 21);
    let b = random_matrix(1, k, -0.2, 0.2, 22).row(0).to_owned();
    let model = Mlp::linear(w.clone(), b.clone()).unwrap();
    let x = random_matrix(n, d, 0.0, 1.0, 23);
    let y = self_labels(&model, x.view());
    let bx = DeltaBox {
        lo: Array1::from_shape_fn(d, |i| -0.05 - 0.02 * i as f64),
        hi: Array1::from_shape_fn(d, |i| 0.03 + 0.01 * i as f64),
    };
    let analytic: Vec<bool> = (0..n)
        .map(|i| {
            (0..k).filter(|&j| j != y[i]).all(|j| {
                let v = &w.row(y[i]) - &w.row(j);
                let worst: f64 = (0..d).map(|c| (v[c] * bx.lo[c]).min(v[c] * bx.hi[c])).sum();
                v.dot(&x.row(i)) + b[y[i]] - b[j] + worst > 0.0
            })
        })
        .collect();
    let robust = count(&analytic);
    assert!(
        robust > 0 && robust < n,
        "test data must be informative: {robust}/{n}"
    );
    // The exact sample-wise certificate (also a sound universal one) agrees with every attack.
    let results: Vec<AttackResult> = AttackKind::ALL
        .iter()
        .map(|&kind| attack(kind, &model, &x, &y, &bx, &AttackOptions::default()))
        .collect();
    assert_eq!(check_certificates(&analytic, robust, &results), vec![]);
    // Over-claiming by one sample is caught by the sample-wise attack.
    let mut overclaim = analytic.clone();
    let first_fooled = overclaim.iter().position(|&c| !c).unwrap();
    overclaim[first_fooled] = true;
    let violations = check_certificates(&overclaim, robust, &results);
    assert!(violations.contains(&SoundnessViolation::CountAboveAttack {
        attack: "samplewise_pgd".into(),
        certified: robust + 1,
        attacked: robust,
        certificate: "sample-wise",
    }));
    assert!(
        violations.contains(&SoundnessViolation::CertifiedSampleFooled {
            attack: "samplewise_pgd".into(),
            sample: first_fooled,
        })
    );
    let samplewise = &results[4];
    assert_eq!(samplewise.name(), "samplewise_pgd");
    assert_eq!(samplewise.correct_mask(), &analytic[..]);
}

/// A ReLU MLP with a planted trigger: input 0 is 0 on every sample and drives a hidden unit that
/// adds a large logit to class 3, so δ₀ = ε flips every sample not labelled 3. The unit's small
/// bias keeps it active at δ = 0 (at a ReLU kink a gradient attack sees no slope).
fn planted_trigger() -> (Mlp, Array2<f64>, Vec<usize>, DeltaBox, Vec<f64>) {
    let (d, hidden, k) = (10, 12, 4);
    let mut w1 = random_matrix(hidden + 1, d, -0.5, 0.5, 31);
    w1.row_mut(hidden).fill(0.0);
    w1[[hidden, 0]] = 10.0;
    w1.column_mut(0).slice_mut(ndarray::s![..hidden]).fill(0.0);
    let mut b1 = Array1::zeros(hidden + 1);
    b1[hidden] = 0.01;
    let mut w2 = random_matrix(k, hidden + 1, -1.0, 1.0, 32);
    w2.column_mut(hidden).assign(&array![0.0, 0.0, 0.0, 20.0]);
    let b2 = Array1::zeros(k);
    let model = Mlp::new(vec![(w1, b1), (w2, b2)]).unwrap();
    let mut x = random_matrix(50, d, 0.0, 1.0, 33);
    x.column_mut(0).fill(0.0);
    let y = self_labels(&model, x.view());
    let eps = 0.1;
    let mut planted = vec![0.0; d];
    planted[0] = eps;
    (model, x, y, DeltaBox::linf(d, eps), planted)
}

#[test]
fn universal_attacks_find_a_planted_universal_perturbation() {
    let (model, x, y, bx, planted) = planted_trigger();
    let clean = count(&evaluate_delta(&model, x.view(), &y, &vec![0.0; bx.dim()]).unwrap());
    let with_trigger = count(&evaluate_delta(&model, x.view(), &y, &planted).unwrap());
    let label3 = y.iter().filter(|&&l| l == 3).count();
    assert!(
        with_trigger <= label3 && label3 < clean / 2,
        "planted δ must fool most samples"
    );
    // Adv-UAP is left out: its per-sample adversarial examples here all use other inputs (towards
    // class 0), and the δ synthesised from them switches the trigger unit off.
    for kind in [AttackKind::Pgd, AttackKind::DfUap, AttackKind::CosUap] {
        let r = attack(kind, &model, &x, &y, &bx, &AttackOptions::default());
        assert!(
            r.correct() <= with_trigger,
            "{kind}: {} correct, the planted δ leaves {with_trigger}",
            r.correct()
        );
    }
}

#[test]
fn attacks_are_deterministic_for_a_seed() {
    let model = Mlp::random(&[12, 16, 5], 41).unwrap();
    let x = random_matrix(20, 12, 0.0, 1.0, 42);
    let y = self_labels(&model, x.view());
    let bx = DeltaBox::linf(12, 0.15);
    let opts = AttackOptions {
        steps: 20,
        restarts: 3,
        seed: 7,
        ..AttackOptions::default()
    };
    for kind in AttackKind::ALL {
        let a = attack(kind, &model, &x, &y, &bx, &opts);
        let b = attack(kind, &model, &x, &y, &bx, &opts);
        assert_eq!(a, b, "{kind} is not deterministic");
    }
}

/// Every returned δ lies in the box, including a box that excludes 0 and a zero-width coordinate,
/// and every reported mask is the exact correctness at the returned δ.
#[test]
fn deltas_stay_in_the_box_and_masks_are_exact() {
    let d = 9;
    let model = Mlp::random(&[d, 14, 14, 4], 51).unwrap();
    let x = random_matrix(25, d, 0.0, 1.0, 52);
    let y = self_labels(&model, x.view());
    let mut lo = Array1::from_shape_fn(d, |k| -0.2 + 0.01 * k as f64);
    let mut hi = Array1::from_shape_fn(d, |k| 0.1 + 0.02 * k as f64);
    (lo[2], hi[2]) = (0.05, 0.05);
    (lo[3], hi[3]) = (0.02, 0.3);
    let bx = DeltaBox { lo, hi };
    let opts = AttackOptions {
        steps: 30,
        restarts: 2,
        seed: 3,
        ..AttackOptions::default()
    };
    let inside = |delta: &[f64]| {
        delta
            .iter()
            .enumerate()
            .all(|(k, &v)| bx.lo[k] <= v && v <= bx.hi[k])
    };
    for kind in AttackKind::ALL {
        match attack(kind, &model, &x, &y, &bx, &opts) {
            AttackResult::Universal(u) => {
                assert!(inside(&u.delta), "{kind} left the box");
                let replay = evaluate_delta(&model, x.view(), &y, &u.delta).unwrap();
                assert_eq!(replay, u.correct_mask, "{kind} mask is not exact");
                assert_eq!(u.correct, count(&replay));
            }
            AttackResult::Samplewise(s) => {
                for (i, row) in s.deltas.outer_iter().enumerate() {
                    assert!(inside(row.as_slice().unwrap()), "sample {i} left the box");
                    let xi = (&x.row(i) + &row).insert_axis(ndarray::Axis(0));
                    let z = model.logits(xi.view());
                    assert_eq!(is_correct(z.row(0), y[i]), s.correct_mask[i], "sample {i}");
                }
                assert_eq!(s.correct, count(&s.correct_mask));
            }
        }
    }
}

/// Universal attacks are at least as strong as δ = 0 and actually lower the accuracy of a random
/// network under a large box.
#[test]
fn universal_attacks_beat_the_zero_perturbation() {
    let d = 16;
    let model = Mlp::random(&[d, 20, 6], 61).unwrap();
    let x = random_matrix(40, d, 0.0, 1.0, 62);
    let y = self_labels(&model, x.view());
    let bx = DeltaBox::linf(d, 0.3);
    let clean = count(&evaluate_delta(&model, x.view(), &y, &vec![0.0; d]).unwrap());
    for kind in UNIVERSAL {
        let r = attack(kind, &model, &x, &y, &bx, &AttackOptions::default());
        assert!(
            r.correct() < clean,
            "{kind}: {} vs clean {clean}",
            r.correct()
        );
    }
}

#[test]
fn attack_names_round_trip() {
    for kind in AttackKind::ALL {
        assert_eq!(AttackKind::from_name(kind.name()), Some(kind));
        assert_eq!(kind.is_universal(), kind != AttackKind::SamplewisePgd);
    }
    assert_eq!(AttackKind::from_name("fgsm"), None);
    let names: Vec<&str> = AttackKind::ALL.iter().map(|k| k.name()).collect();
    assert_eq!(
        names,
        ["pgd", "df_uap", "cos_uap", "adv_uap", "samplewise_pgd"]
    );
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let model = Mlp::random(&[3, 4, 2], 71).unwrap();
    let x = random_matrix(2, 3, 0.0, 1.0, 72);
    let bx = DeltaBox::linf(3, 0.1);
    let opts = AttackOptions::default();
    let run = |x: ArrayView2<f64>, y: &[usize], bx: &DeltaBox, o: &AttackOptions| {
        run_attack(AttackKind::Pgd, &model, x, y, bx, o)
    };
    assert!(matches!(
        run(random_matrix(2, 4, 0.0, 1.0, 1).view(), &[0, 1], &bx, &opts),
        Err(AttackError::Shape { .. })
    ));
    assert!(matches!(
        run(x.view(), &[0], &bx, &opts),
        Err(AttackError::Shape { .. })
    ));
    assert!(matches!(
        run(x.view(), &[0, 2], &bx, &opts),
        Err(AttackError::LabelOutOfRange { sample: 1, .. })
    ));
    assert!(matches!(
        run(x.view(), &[0, 1], &DeltaBox::linf(4, 0.1), &opts),
        Err(AttackError::Shape { .. })
    ));
    let mut inverted = bx.clone();
    inverted.lo[1] = 0.5;
    assert!(matches!(
        run(x.view(), &[0, 1], &inverted, &opts),
        Err(AttackError::BadBox { coordinate: 1, .. })
    ));
    let mut infinite = bx.clone();
    infinite.hi[0] = f64::INFINITY;
    assert!(matches!(
        run(x.view(), &[0, 1], &infinite, &opts),
        Err(AttackError::BadBox { coordinate: 0, .. })
    ));
    let mut nan_x = x.clone();
    nan_x[[1, 2]] = f64::NAN;
    assert!(matches!(
        run(nan_x.view(), &[0, 1], &bx, &opts),
        Err(AttackError::NonFiniteInput { sample: 1 })
    ));
    for bad in [
        AttackOptions {
            restarts: 0,
            ..opts.clone()
        },
        AttackOptions {
            step_size: Some(f64::NAN),
            ..opts.clone()
        },
        AttackOptions {
            step_size: Some(-1.0),
            ..opts.clone()
        },
        AttackOptions {
            confidence: -1.0,
            ..opts.clone()
        },
    ] {
        assert!(matches!(
            run(x.view(), &[0, 1], &bx, &bad),
            Err(AttackError::BadOption(_))
        ));
    }
    assert!(matches!(
        evaluate_delta(&model, x.view(), &[0, 1], &[0.0]),
        Err(AttackError::Shape { .. })
    ));
    assert!(matches!(
        evaluate_delta(&model, x.view(), &[0, 1], &[0.0, f64::NAN, 0.0]),
        Err(AttackError::NonFiniteDelta { coordinate: 1 })
    ));
}

/// A classifier that breaks the trait's contract or returns NaN must not crash an attack.
struct Broken {
    wrong_shape: bool,
}

impl Classifier for Broken {
    fn input_dim(&self) -> usize {
        2
    }
    fn num_classes(&self) -> usize {
        3
    }
    fn logits(&self, inputs: ArrayView2<f64>) -> Array2<f64> {
        let cols = if self.wrong_shape { 2 } else { 3 };
        Array2::from_elem((inputs.nrows(), cols), f64::NAN)
    }
    fn input_gradient(&self, inputs: ArrayView2<f64>, _: ArrayView2<f64>) -> Array2<f64> {
        Array2::from_elem(inputs.raw_dim(), f64::NAN)
    }
}

#[test]
fn misbehaving_classifiers_give_errors_or_safe_results() {
    let x = array![[0.1, 0.2], [0.3, 0.4]];
    let bx = DeltaBox::linf(2, 0.1);
    let opts = AttackOptions {
        steps: 5,
        ..AttackOptions::default()
    };
    for kind in AttackKind::ALL {
        let shaped = run_attack(
            kind,
            &Broken { wrong_shape: true },
            x.view(),
            &[0, 1],
            &bx,
            &opts,
        );
        assert!(matches!(shaped, Err(AttackError::Shape { .. })), "{kind}");
        let nan = run_attack(
            kind,
            &Broken { wrong_shape: false },
            x.view(),
            &[0, 1],
            &bx,
            &opts,
        )
        .expect("NaN logits still give a result");
        assert_eq!(nan.correct(), 0, "{kind}: NaN logits are never correct");
        if let AttackResult::Universal(u) = &nan {
            assert!(u.delta.iter().all(|v| v.is_finite() && v.abs() <= 0.1));
        }
    }
}

#[test]
fn an_empty_batch_has_no_correct_samples() {
    let model = Mlp::random(&[3, 2], 81).unwrap();
    let x = Array2::zeros((0, 3));
    for kind in AttackKind::ALL {
        let r = run_attack(
            kind,
            &model,
            x.view(),
            &[],
            &DeltaBox::linf(3, 0.1),
            &AttackOptions::default(),
        )
        .unwrap();
        assert_eq!(r.correct(), 0);
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(12))]

    /// On random networks and boxes (which may exclude 0): δ stays in the box, the mask is exact,
    /// and no universal attack does worse than δ = 0 clamped into the box.
    #[test]
    fn random_problems_keep_the_attack_invariants(seed in 0u64..1_000_000) {
        let mut rng = SplitMix64::new(seed);
        let d = 3 + (rng.next_u64() % 4) as usize;
        let model = Mlp::random(&[d, 6, 3], seed).unwrap();
        let x = random_matrix(8, d, -1.0, 1.0, seed + 1);
        let y: Vec<usize> = (0..8).map(|_| (rng.next_u64() % 3) as usize).collect();
        let lo = Array1::from_shape_fn(d, |_| rng.uniform(-0.5, 0.2));
        let hi = Array1::from_shape_fn(d, |k| lo[k] + rng.uniform(0.0, 0.6));
        let bx = DeltaBox { lo, hi };
        let start: Vec<f64> = (0..d).map(|k| 0.0f64.clamp(bx.lo[k], bx.hi[k])).collect();
        let at_start = count(&evaluate_delta(&model, x.view(), &y, &start).unwrap());
        let opts = AttackOptions { steps: 15, restarts: 2, seed, ..AttackOptions::default() };
        for kind in AttackKind::ALL {
            match attack(kind, &model, &x, &y, &bx, &opts) {
                AttackResult::Universal(u) => {
                    proptest::prop_assert!(u.delta.iter().enumerate().all(|(k, &v)| bx.lo[k] <= v && v <= bx.hi[k]));
                    let replay = evaluate_delta(&model, x.view(), &y, &u.delta).unwrap();
                    proptest::prop_assert_eq!(&replay, &u.correct_mask);
                    proptest::prop_assert!(u.correct <= at_start, "{} worse than the start", kind);
                }
                AttackResult::Samplewise(s) => {
                    for (i, row) in s.deltas.outer_iter().enumerate() {
                        proptest::prop_assert!(row.iter().enumerate().all(|(k, &v)| bx.lo[k] <= v && v <= bx.hi[k]));
                        let z = model.logits((&x.row(i) + &row).insert_axis(ndarray::Axis(0)).view());
                        proptest::prop_assert_eq!(is_correct(z.row(0), y[i]), s.correct_mask[i]);
                    }
                }
            }
        }
    }
}

#[test]
fn zero_steps_return_the_start() {
    let model = Mlp::random(&[5, 8, 3], 101).unwrap();
    let x = random_matrix(10, 5, 0.0, 1.0, 102);
    let y = self_labels(&model, x.view());
    let bx = DeltaBox::linf(5, 0.2);
    let opts = AttackOptions {
        steps: 0,
        ..AttackOptions::default()
    };
    for kind in [AttackKind::Pgd, AttackKind::DfUap, AttackKind::AdvUap] {
        let AttackResult::Universal(u) = attack(kind, &model, &x, &y, &bx, &opts) else {
            panic!("{kind} is universal");
        };
        assert_eq!(u.delta, vec![0.0; 5], "{kind}");
        assert_eq!(u.correct, 10, "{kind}");
    }
}
