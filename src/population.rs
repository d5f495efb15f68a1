//! Theorem 2 population bound: with probability at least `1 − ξ` over the draw of `n` samples,
//! the accuracy under any universal perturbation (ARP) is at least `CRR − t*(ξ, n)`, where
//! `t*` is the root of `(1 + 4t)·ln(1 + 4t) − 4t = 4·ln(1/ξ)/n` (Bennett's inequality with
//! variance ≤ 1/4).

use serde::Serialize;

#[derive(Clone, Debug, PartialEq)]
pub enum PopulationError {
    /// ξ must lie in (0, 1) and n must be positive.
    InvalidArgument(String),
}

impl std::fmt::Display for PopulationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PopulationError::InvalidArgument(m) => write!(f, "population bound: {m}"),
        }
    }
}

impl std::error::Error for PopulationError {}

/// `h(4t) = (1 + 4t)·ln(1 + 4t) − 4t`, increasing for t > 0; `ln_1p` keeps small t accurate.
fn bennett(t: f64) -> f64 {
    let u = 4.0 * t;
    (1.0 + u) * u.ln_1p() - u
}

/// `t*(ξ, n)`: the deviation that the certified rate on `n` samples exceeds its
/// expectation by with probability at most ξ.
pub fn t_star(xi: f64, n: usize) -> Result<f64, PopulationError> {
    if !(xi > 0.0 && xi < 1.0) {
        return Err(PopulationError::InvalidArgument(format!(
            "ξ = {xi} is not in (0, 1)"
        )));
    }
    if n == 0 {
        return Err(PopulationError::InvalidArgument("n = 0 samples".into()));
    }
    let target = -4.0 * xi.ln() / n as f64;
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    while bennett(hi) < target {
        lo = hi;
        hi *= 2.0;
    }
    // bennett(lo) < target ≤ bennett(hi); halve until lo and hi are adjacent floats
    // (about 60 steps, far below the required 1e-12).
    loop {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if bennett(mid) < target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    // The upper end keeps the bound on the safe side.
    Ok(hi)
}

/// Lower bound on the accuracy under any universal perturbation, as a fraction in [0, 1]
/// (never negative): `certified/n − t*(ξ, n)`, valid with probability ≥ 1 − ξ.
pub fn arp_lower_bound(certified: usize, n: usize, xi: f64) -> Result<f64, PopulationError> {
    if certified > n {
        return Err(PopulationError::InvalidArgument(format!(
            "{certified} certified out of {n} samples"
        )));
    }
    let t = t_star(xi, n)?;
    Ok((certified as f64 / n as f64 - t).max(0.0))
}

/// One point of the paper's Figure 2: a certified rate on `n` samples and its bound.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CurvePoint {
    pub n: usize,
    pub crr: f64,
    pub t_star: f64,
    pub lower_bound: f64,
}

/// Figure 2: for each `(n, certified)` run, CRR and the ARP lower bound.
pub fn arp_curve(runs: &[(usize, usize)], xi: f64) -> Result<Vec<CurvePoint>, PopulationError> {
    runs.iter()
        .map(|&(n, certified)| {
            Ok(CurvePoint {
                n,
                crr: if n == 0 {
                    0.0
                } else {
                    certified as f64 / n as f64
                },
                t_star: t_star(xi, n)?,
                lower_bound: arp_lower_bound(certified, n, xi)?,
            })
        })
        .collect()
}

/// Figure 1: `t*(ξ, n)` for each `n`.
pub fn t_star_curve(xi: f64, ns: &[usize]) -> Result<Vec<(usize, f64)>, PopulationError> {
    ns.iter().map(|&n| Ok((n, t_star(xi, n)?))).collect()
}
