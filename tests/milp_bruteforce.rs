//! The universal certified count against exact brute force on small random instances, plus
//! hand-made instances, time limits, warm starts and bad input.

use std::time::Duration;

use ndarray::{Array1, Array2};
use proptest::prelude::*;
use upcc::engine::{DeltaBox, MarginBounds, SampleBounds};
use upcc::milp::{
    certified_at, certify_universal, pair_tolerance, samplewise_certified, Microlp, MilpError,
    MilpOptions, MilpStatus,
};

/// splitmix64: a tiny deterministic generator for instance data.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next()
    }
}

fn sample(a: Array2<f64>, b: Array1<f64>, bx: &DeltaBox) -> SampleBounds {
    let k = b.len();
    let lower = Array1::from_iter((0..k).map(|r| {
        b[r] + a
            .row(r)
            .iter()
            .zip(&bx.lo)
            .zip(&bx.hi)
            .map(|((&x, &l), &h)| (x * l).min(x * h))
            .sum::<f64>()
    }));
    SampleBounds {
        label: 0,
        others: (1..=k).collect(),
        a,
        b,
        samplewise_lower: lower,
    }
}

/// n samples, K classes, a d-dimensional box around 0 (asymmetric per coordinate).
fn random_instance(seed: u64, d: usize, n: usize, k: usize) -> (MarginBounds, DeltaBox) {
    let mut rng = Rng(seed);
    let lo = Array1::from_iter((0..d).map(|_| -rng.uniform(0.2, 1.0)));
    let hi = Array1::from_iter((0..d).map(|_| rng.uniform(0.2, 1.0)));
    let bx = DeltaBox { lo, hi };
    let samples = (0..n)
        .map(|_| {
            let a = Array2::from_shape_fn((k - 1, d), |_| rng.uniform(-1.0, 1.0));
            let b = Array1::from_iter((0..k - 1).map(|_| rng.uniform(-0.3, 1.2)));
            sample(a, b, &bx)
        })
        .collect();
    (MarginBounds { samples }, bx)
}

/// Solves `m·x = r` (d ≤ 3) by Gaussian elimination; None when (nearly) singular.
fn solve_small(mut m: Vec<Vec<f64>>, mut r: Vec<f64>) -> Option<Vec<f64>> {
    let d = r.len();
    for c in 0..d {
        let p = (c..d).max_by(|&i, &j| m[i][c].abs().total_cmp(&m[j][c].abs()))?;
        if m[p][c].abs() < 1e-10 {
            return None;
        }
        m.swap(c, p);
        r.swap(c, p);
        for i in 0..d {
            if i != c {
                let f = m[i][c] / m[c][c];
                let pivot_row = m[c].clone();
                for (x, p) in m[i].iter_mut().zip(&pivot_row).skip(c) {
                    *x -= f * p;
                }
                r[i] -= f * r[c];
            }
        }
    }
    Some((0..d).map(|i| r[i] / m[i][i]).collect())
}

/// Samples not broken at δ, where "broken" allows `SLACK` of rounding past the tolerance.
fn count_with_slack(bounds: &MarginBounds, bx: &DeltaBox, delta: &[f64]) -> usize {
    const SLACK: f64 = 1e-9;
    bounds
        .samples
        .iter()
        .filter(|s| {
            (0..s.b.len()).all(|r| {
                let v: f64 =
                    s.a.row(r)
                        .iter()
                        .zip(delta)
                        .map(|(a, x)| a * x)
                        .sum::<f64>()
                        + s.b[r];
                v > pair_tolerance(s.a.row(r), s.b[r], bx) + SLACK
            })
        })
        .count()
}

/// Exact min over δ of the certified count. The broken set of each sample is a union of
/// closed half-spaces `a·δ + b ≤ tol`; a best choice of one half-space per broken sample,
/// intersected with the box, is a polytope with a vertex where d of the hyperplanes
/// `a·δ + b = tol` and box faces meet. So enumerating those points is exact.
fn brute_force(bounds: &MarginBounds, bx: &DeltaBox) -> usize {
    let d = bx.dim();
    let mut planes: Vec<(Vec<f64>, f64)> = Vec::new();
    for s in &bounds.samples {
        for r in 0..s.b.len() {
            let tol = pair_tolerance(s.a.row(r), s.b[r], bx);
            planes.push((s.a.row(r).to_vec(), tol - s.b[r]));
        }
    }
    for k in 0..d {
        let mut e = vec![0.0; d];
        e[k] = 1.0;
        planes.push((e.clone(), bx.lo[k]));
        planes.push((e, bx.hi[k]));
    }
    let mut best = bounds.samples.len();
    let mut idx: Vec<usize> = (0..d).collect();
    loop {
        let m = idx.iter().map(|&i| planes[i].0.clone()).collect();
        let r = idx.iter().map(|&i| planes[i].1).collect();
        if let Some(x) = solve_small(m, r) {
            let inside = (0..d).all(|k| x[k] >= bx.lo[k] - 1e-9 && x[k] <= bx.hi[k] + 1e-9);
            if inside {
                best = best.min(count_with_slack(bounds, bx, &x));
            }
        }
        // Next d-subset in lexicographic order.
        let p = planes.len();
        let Some(c) = (0..d).rev().find(|&c| idx[c] < p - d + c) else {
            break;
        };
        idx[c] += 1;
        for c2 in c + 1..d {
            idx[c2] = idx[c2 - 1] + 1;
        }
    }
    best
}

/// Min of the certified count over a grid of δ: an upper bound on the optimum.
fn grid_min(bounds: &MarginBounds, bx: &DeltaBox, steps: usize) -> usize {
    let d = bx.dim();
    let mut best = usize::MAX;
    let total = (steps + 1).pow(d as u32);
    for code in 0..total {
        let mut c = code;
        let delta: Vec<f64> = (0..d)
            .map(|k| {
                let t = (c % (steps + 1)) as f64 / steps as f64;
                c /= steps + 1;
                (bx.lo[k] + t * (bx.hi[k] - bx.lo[k])).clamp(bx.lo[k], bx.hi[k])
            })
            .collect();
        best = best.min(certified_at(bounds, bx, &delta).unwrap());
    }
    best
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn universal_count_equals_brute_force(seed in any::<u64>(), d in 1usize..=3, n in 1usize..=8, k in 2usize..=4) {
        let (bounds, bx) = random_instance(seed, d, n, k);
        let out = certify_universal(&bounds, &bx, &Microlp, &MilpOptions::default()).unwrap();
        prop_assert_eq!(out.status, MilpStatus::Optimal);
        let exact = brute_force(&bounds, &bx);
        prop_assert_eq!(out.certified, exact);
        let samplewise = samplewise_certified(&bounds, &bx).unwrap();
        let at_zero = certified_at(&bounds, &bx, &vec![0.0; d]).unwrap();
        prop_assert!(samplewise <= out.certified && out.certified <= at_zero);
        let steps = if d == 3 { 10 } else { 24 };
        prop_assert!(out.certified <= grid_min(&bounds, &bx, steps));
        prop_assert!(out.certified_at_best_delta.unwrap() >= out.certified);
        let plain = MilpOptions { no_presolve: true, ..MilpOptions::default() };
        let unpresolved = certify_universal(&bounds, &bx, &Microlp, &plain).unwrap();
        prop_assert_eq!(unpresolved.certified, exact);
    }

    #[test]
    fn time_limited_runs_never_exceed_the_optimum(seed in any::<u64>(), micros in 0u64..2000) {
        let (bounds, bx) = random_instance(seed, 3, 8, 4);
        let exact = brute_force(&bounds, &bx);
        let opts = MilpOptions { time_limit: Some(Duration::from_micros(micros)), ..MilpOptions::default() };
        let out = certify_universal(&bounds, &bx, &Microlp, &opts).unwrap();
        prop_assert!(out.certified <= exact);
        prop_assert!(out.certified >= samplewise_certified(&bounds, &bx).unwrap());
        if out.status == MilpStatus::Optimal {
            prop_assert_eq!(out.certified, exact);
        }
    }

    #[test]
    fn warm_start_keeps_the_optimum(seed in any::<u64>(), d in 1usize..=3) {
        let (bounds, bx) = random_instance(seed, d, 8, 3);
        let mut rng = Rng(seed ^ 0xABCD);
        let delta: Vec<f64> = (0..d).map(|k| rng.uniform(bx.lo[k], bx.hi[k])).collect();
        let opts = MilpOptions { warm_start_delta: Some(delta.clone()), ..MilpOptions::default() };
        let out = certify_universal(&bounds, &bx, &Microlp, &opts).unwrap();
        prop_assert_eq!(out.certified, brute_force(&bounds, &bx));
        let at_hint = certified_at(&bounds, &bx, &delta).unwrap() as f64;
        prop_assert!(out.incumbent_value.unwrap() <= at_hint + 1e-6);
    }
}

#[test]
fn shared_delta_certifies_more_than_samplewise() {
    // Sample 0 breaks for δ ≤ −0.5, sample 1 for δ ≥ 0.5: no single δ breaks both.
    let bx = DeltaBox::linf(1, 1.0);
    let s0 = sample(
        Array2::from_elem((1, 1), 1.0),
        Array1::from_elem(1, 0.5),
        &bx,
    );
    let s1 = sample(
        Array2::from_elem((1, 1), -1.0),
        Array1::from_elem(1, 0.5),
        &bx,
    );
    let bounds = MarginBounds {
        samples: vec![s0, s1],
    };
    assert_eq!(samplewise_certified(&bounds, &bx).unwrap(), 0);
    let out = certify_universal(&bounds, &bx, &Microlp, &MilpOptions::default()).unwrap();
    assert_eq!(out.certified, 1);
    assert_eq!(out.stats.undecided, 2);
}

#[test]
fn margin_of_exactly_zero_is_not_certified() {
    // a·δ + b reaches exactly 0 at δ = −1 (the paper's strict "> 0"); and a margin of 1e-9
    // everywhere is within the tolerance, so it does not count either.
    let bx = DeltaBox::linf(1, 1.0);
    let touching = sample(
        Array2::from_elem((1, 1), 1.0),
        Array1::from_elem(1, 1.0),
        &bx,
    );
    let tiny = sample(Array2::zeros((1, 1)), Array1::from_elem(1, 1e-9), &bx);
    let clear = sample(Array2::zeros((1, 1)), Array1::from_elem(1, 0.5), &bx);
    let bounds = MarginBounds {
        samples: vec![touching, tiny, clear],
    };
    assert_eq!(samplewise_certified(&bounds, &bx).unwrap(), 1);
    let out = certify_universal(&bounds, &bx, &Microlp, &MilpOptions::default()).unwrap();
    assert_eq!(out.certified, 1);
    assert_eq!(out.stats.fixed_broken, 1);
    assert_eq!(out.stats.fixed_certified, 1);
}

#[test]
fn presolve_shrinks_the_model() {
    let (bounds, bx) = random_instance(7, 3, 8, 4);
    let out = certify_universal(&bounds, &bx, &Microlp, &MilpOptions::default()).unwrap();
    let s = &out.stats;
    assert_eq!(s.rows_before, 8 + 8 * 3);
    assert_eq!(s.binaries_before, 8 + 8 * 3);
    assert!(s.rows_after <= s.rows_before && s.nonzeros_after <= s.nonzeros_before);
    assert_eq!(s.fixed_certified + s.fixed_broken + s.undecided, 8);
    let fixed_pairs = 3 * (s.fixed_certified + s.fixed_broken);
    assert_eq!(
        s.binaries_after,
        s.undecided + s.pairs - fixed_pairs - s.pairs_dropped
    );
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let bx = DeltaBox::linf(2, 0.1);
    let good = sample(Array2::zeros((2, 2)), Array1::from_elem(2, 1.0), &bx);
    let mut wrong_shape = good.clone();
    wrong_shape.a = Array2::zeros((2, 3));
    let mut nan = good.clone();
    nan.b[1] = f64::NAN;
    let opts = MilpOptions::default();
    for s in [wrong_shape, nan] {
        let bounds = MarginBounds { samples: vec![s] };
        assert!(matches!(
            certify_universal(&bounds, &bx, &Microlp, &opts),
            Err(MilpError::InvalidInput(_))
        ));
    }
    let bounds = MarginBounds {
        samples: vec![good],
    };
    let inverted = DeltaBox {
        lo: bx.hi.clone(),
        hi: bx.lo.clone(),
    };
    assert!(certify_universal(&bounds, &inverted, &Microlp, &opts).is_err());
    assert!(certified_at(&bounds, &bx, &[0.5, 0.0]).is_err());
    assert!(certified_at(&bounds, &bx, &[0.0]).is_err());
    let short_hint = MilpOptions {
        warm_start_delta: Some(vec![0.0]),
        ..MilpOptions::default()
    };
    assert!(certify_universal(&bounds, &bx, &Microlp, &short_hint).is_err());
}

#[test]
fn random_instances_exercise_the_milp() {
    // The generator must produce instances where sharing δ matters and where δ = 0 is not the
    // worst case, or the brute-force comparison would test nothing.
    let (mut above_samplewise, mut below_zero) = (0, 0);
    for seed in 0..40 {
        let (bounds, bx) = random_instance(seed, 2, 8, 3);
        let exact = brute_force(&bounds, &bx);
        above_samplewise += usize::from(exact > samplewise_certified(&bounds, &bx).unwrap());
        below_zero += usize::from(exact < certified_at(&bounds, &bx, &[0.0, 0.0]).unwrap());
    }
    eprintln!("above samplewise {above_samplewise}/40, below δ=0 {below_zero}/40");
    assert!(above_samplewise >= 10 && below_zero >= 10);
}

#[test]
fn zero_time_limit_reports_only_the_proven_bound() {
    let mut stopped = 0;
    for seed in 0..20 {
        let (bounds, bx) = random_instance(seed, 3, 8, 4);
        let opts = MilpOptions {
            time_limit: Some(Duration::ZERO),
            ..MilpOptions::default()
        };
        let out = certify_universal(&bounds, &bx, &Microlp, &opts).unwrap();
        if out.stats.undecided == 0 {
            continue;
        }
        assert_eq!(out.status, MilpStatus::TimeLimit);
        stopped += 1;
        assert!(out.certified <= brute_force(&bounds, &bx));
        // The objective is integral, so a proven bound may be rounded up, never further.
        assert!(out.certified as f64 <= (out.dual_bound - 1e-6).ceil());
    }
    assert!(stopped > 0);
}

#[cfg(feature = "highs")]
#[test]
fn microlp_and_highs_agree() {
    use upcc::milp::Highs;
    for seed in 0..40 {
        let d = 1 + (seed as usize % 3);
        let (bounds, bx) = random_instance(seed, d, 8, 4);
        let opts = MilpOptions::default();
        let micro = certify_universal(&bounds, &bx, &Microlp, &opts).unwrap();
        let highs = certify_universal(&bounds, &bx, &Highs, &opts).unwrap();
        assert_eq!(highs.status, MilpStatus::Optimal, "seed {seed}");
        assert_eq!(micro.certified, highs.certified, "seed {seed}");
        let exact = brute_force(&bounds, &bx);
        assert_eq!(highs.certified, exact, "seed {seed}");
        let stopped = MilpOptions {
            time_limit: Some(Duration::ZERO),
            ..MilpOptions::default()
        };
        let early = certify_universal(&bounds, &bx, &Highs, &stopped).unwrap();
        assert!(early.certified <= exact, "seed {seed}");
    }
}
