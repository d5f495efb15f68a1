//! Theorem 2: t*(ξ, n) against independently computed roots, and its properties.

// The reference digits are kept as mpmath printed them.
#![allow(clippy::excessive_precision)]

use upcc::population::{arp_curve, arp_lower_bound, t_star, t_star_curve};

/// Roots of (1+4t)·ln(1+4t) − 4t = 4·ln(1/ξ)/n computed with mpmath at 40 digits:
/// python3 -c "import mpmath as mp; mp.mp.dps=40; xi,n=0.1,100;
///   c=4*mp.log(1/mp.mpf(xi))/n; print(mp.findroot(lambda t:(1+4*t)*mp.log(1+4*t)-4*t-c,
///   (mp.mpf('1e-30'),mp.mpf(100)),solver='anderson'))"
const REFERENCE: [(f64, usize, f64); 8] = [
    (0.1, 100, 0.114_726_372_282_441_925_5),
    (0.1, 1000, 0.034_689_849_244_378_413_31),
    (0.05, 500, 0.056_695_974_820_556_126_35),
    (0.01, 10, 0.616_464_992_500_072_899_7),
    (0.5, 1, 0.790_428_908_045_740_008),
    (0.1, 10000, 0.010_806_311_547_174_969_32),
    (1e-6, 50, 0.455_396_046_531_329_072_9),
    (0.9, 100000, 0.000_726_162_785_424_908_796_3),
];

#[test]
fn t_star_matches_mpmath() {
    for (xi, n, expected) in REFERENCE {
        let t = t_star(xi, n).unwrap();
        assert!(
            (t - expected).abs() <= 1e-12,
            "ξ={xi} n={n}: {t} vs {expected}"
        );
        // The root is returned from above, so the bound stays on the safe side.
        assert!(t >= expected - 1e-15);
    }
}

#[test]
fn t_star_decreases_in_n_and_xi() {
    let ns = [1, 2, 5, 10, 50, 100, 1000, 10_000, 1_000_000];
    for xi in [f64::MIN_POSITIVE / 1e10, 1e-9, 0.01, 0.1, 0.5, 0.99] {
        let curve = t_star_curve(xi, &ns).unwrap();
        assert!(
            curve.windows(2).all(|w| w[1].1 < w[0].1),
            "ξ={xi}: {curve:?}"
        );
    }
    for n in ns {
        let ts: Vec<f64> = [1e-9, 0.01, 0.1, 0.5, 0.99]
            .iter()
            .map(|&xi| t_star(xi, n).unwrap())
            .collect();
        assert!(ts.windows(2).all(|w| w[1] < w[0]), "n={n}: {ts:?}");
        assert!(ts.iter().all(|&t| t > 0.0 && t.is_finite()));
    }
}

#[test]
fn arp_bound_is_crr_minus_t_star_clamped_at_zero() {
    let t = t_star(0.1, 1000).unwrap();
    let lb = arp_lower_bound(882, 1000, 0.1).unwrap();
    assert!((lb - (0.882 - t)).abs() < 1e-15);
    assert_eq!(arp_lower_bound(1, 10, 0.1).unwrap(), 0.0);
    let points = arp_curve(&[(100, 73), (1000, 882)], 0.1).unwrap();
    assert_eq!(points.len(), 2);
    assert!((points[0].crr - 0.73).abs() < 1e-15);
    assert!((points[1].lower_bound - lb).abs() < 1e-15);
    assert!(points.iter().all(|p| p.lower_bound <= p.crr));
}

#[test]
fn invalid_arguments_are_errors() {
    for xi in [0.0, 1.0, -0.1, f64::NAN, f64::INFINITY] {
        assert!(t_star(xi, 10).is_err());
    }
    assert!(t_star(0.1, 0).is_err());
    assert!(arp_lower_bound(11, 10, 0.1).is_err());
    assert!(arp_curve(&[(0, 0)], 0.1).is_err());
}
