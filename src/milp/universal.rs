//! Lowering of the engine's linear margin bounds to the MILP of the paper's Theorem 1
//! (compact form), with presolve.
//!
//! # Strictness and tolerance
//! Sample `i` counts as certified at δ only if `aᵢⱼ·δ + bᵢⱼ > tolᵢⱼ` for every pair `j`, where
//! `tolᵢⱼ = ABS_TOL + REL_TOL·(|bᵢⱼ| + Σₖ |aᵢⱼₖ|·max(|loₖ|, |hiₖ|))`: an absolute margin plus
//! a margin relative to the largest value the bound's terms reach, far above the `f64`
//! round-off of evaluating it. Every count here ([`samplewise_certified`], [`certified_at`],
//! the MILP) uses this rule, so a margin within rounding of 0 never counts.
//!
//! With `zᵢⱼ = 1` meaning "pair j breaks sample i", the pair row is
//! `aᵢⱼ·δ + bᵢⱼ ≤ tolᵢⱼ + Uᵢⱼ(1 − zᵢⱼ)`: a breaking pair may sit anywhere up to the tolerance,
//! so the MILP's optimum is `min_δ #{certified at δ}` and each solver tolerance can only lower
//! it. Coefficients too small to matter (`|aₖ|·rₖ` below `DROP_REL` of the row's largest) are
//! dropped and their largest effect over the box added to the breaking side, which again only
//! relaxes.

use ndarray::ArrayView1;

use super::model::{Model, Sense, VarKind};
use super::MilpError;
use crate::engine::{DeltaBox, MarginBounds};

pub const ABS_TOL: f64 = 1e-6;
pub const REL_TOL: f64 = 1e-9;
const DROP_REL: f64 = 1e-11;

/// Sizes of the full Theorem 1 model and of the presolved one.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct PresolveStats {
    pub samples: usize,
    /// Samples certified for every δ in the box (qᵢ fixed to 1): the sample-wise count.
    pub fixed_certified: usize,
    /// Samples with a pair whose bound is ≤ tol for every δ (qᵢ fixed to 0).
    pub fixed_broken: usize,
    pub undecided: usize,
    pub pairs: usize,
    /// Pairs of undecided samples whose bound is > tol for every δ.
    pub pairs_dropped: usize,
    pub rows_before: usize,
    pub rows_after: usize,
    pub binaries_before: usize,
    pub binaries_after: usize,
    pub nonzeros_before: usize,
    pub nonzeros_after: usize,
    pub delta_vars_before: usize,
    pub delta_vars_after: usize,
}

/// The lowered model and how its variables map back to δ, samples and pairs.
#[derive(Clone, Debug)]
pub struct UniversalMilp {
    pub model: Model,
    pub stats: PresolveStats,
    /// Samples fixed certified; the objective counts only the others.
    pub fixed_certified: usize,
    /// `(coordinate, variable)` of the δ coordinates the model uses.
    delta_vars: Vec<(usize, usize)>,
    /// `(row, z variable)` of each pair row; the row's other terms are on δ.
    pair_rows: Vec<(usize, usize)>,
    /// `(q variable, pair-row indices into pair_rows)` per undecided sample.
    samples: Vec<(usize, Vec<usize>)>,
    lo: Vec<f64>,
    hi: Vec<f64>,
}

/// Range of `a·δ` over the box.
fn dot_range(a: ArrayView1<f64>, bx: &DeltaBox) -> (f64, f64) {
    let (mut lo, mut hi) = (0.0, 0.0);
    for ((&ak, &l), &h) in a.iter().zip(&bx.lo).zip(&bx.hi) {
        let (p, q) = (ak * l, ak * h);
        lo += p.min(q);
        hi += p.max(q);
    }
    (lo, hi)
}

/// The tolerance `tolᵢⱼ` of one pair (see the module documentation).
pub fn pair_tolerance(a: ArrayView1<f64>, b: f64, bx: &DeltaBox) -> f64 {
    let scale: f64 = a
        .iter()
        .zip(&bx.lo)
        .zip(&bx.hi)
        .map(|((&ak, &l), &h)| ak.abs() * l.abs().max(h.abs()))
        .sum();
    ABS_TOL + REL_TOL * (b.abs() + scale)
}

/// Rejects what would make any count meaningless: shape mismatches, non-finite numbers,
/// an empty or inverted box.
pub fn validate(bounds: &MarginBounds, bx: &DeltaBox) -> Result<(), MilpError> {
    let d = bx.dim();
    if bx.hi.len() != d {
        return Err(MilpError::InvalidInput("box lo/hi lengths differ".into()));
    }
    for (&l, &h) in bx.lo.iter().zip(&bx.hi) {
        if !(l.is_finite() && h.is_finite() && l <= h) {
            return Err(MilpError::InvalidInput(format!(
                "bad box interval [{l}, {h}]"
            )));
        }
    }
    for (i, s) in bounds.samples.iter().enumerate() {
        let p = s.others.len();
        if s.a.nrows() != p || s.b.len() != p || (p > 0 && s.a.ncols() != d) {
            return Err(MilpError::InvalidInput(format!(
                "sample {i}: a is {:?}, b has {}, {} classes, box dim {d}",
                s.a.shape(),
                s.b.len(),
                p
            )));
        }
        if !s.a.iter().chain(s.b.iter()).all(|x| x.is_finite()) {
            return Err(MilpError::InvalidInput(format!(
                "sample {i}: non-finite bound"
            )));
        }
    }
    Ok(())
}

/// Per sample: every pair is > tol over the whole box (paper Eq. 2 concretised).
pub fn samplewise_mask(bounds: &MarginBounds, bx: &DeltaBox) -> Result<Vec<bool>, MilpError> {
    validate(bounds, bx)?;
    Ok(bounds
        .samples
        .iter()
        .map(|s| {
            (0..s.others.len()).all(|r| {
                let (min, _) = dot_range(s.a.row(r), bx);
                min + s.b[r] > pair_tolerance(s.a.row(r), s.b[r], bx)
            })
        })
        .collect())
}

/// How many samples [`samplewise_mask`] certifies.
pub fn samplewise_certified(bounds: &MarginBounds, bx: &DeltaBox) -> Result<usize, MilpError> {
    Ok(samplewise_mask(bounds, bx)?.iter().filter(|&&c| c).count())
}

/// Samples the bounds certify at one δ (which must lie in the box): every pair > tol.
/// For any δ this is an upper bound on the universal certified count.
pub fn certified_at(
    bounds: &MarginBounds,
    bx: &DeltaBox,
    delta: &[f64],
) -> Result<usize, MilpError> {
    validate(bounds, bx)?;
    if delta.len() != bx.dim() {
        return Err(MilpError::InvalidInput(format!(
            "δ has {} coordinates, the box {}",
            delta.len(),
            bx.dim()
        )));
    }
    for ((&x, &l), &h) in delta.iter().zip(&bx.lo).zip(&bx.hi) {
        if !(x >= l && x <= h) {
            return Err(MilpError::InvalidInput(format!(
                "δ coordinate {x} outside [{l}, {h}]"
            )));
        }
    }
    let dv = ArrayView1::from(delta);
    Ok(bounds
        .samples
        .iter()
        .filter(|s| {
            (0..s.others.len())
                .all(|r| s.a.row(r).dot(&dv) + s.b[r] > pair_tolerance(s.a.row(r), s.b[r], bx))
        })
        .count())
}

impl UniversalMilp {
    /// Builds the Theorem 1 model; with `presolve` off every sample and pair is kept (for
    /// comparison and tests; the optimum is the same).
    pub fn lower(bounds: &MarginBounds, bx: &DeltaBox, presolve: bool) -> Result<Self, MilpError> {
        validate(bounds, bx)?;
        let d = bx.dim();
        let mut stats = PresolveStats {
            samples: bounds.samples.len(),
            delta_vars_before: d,
            ..PresolveStats::default()
        };
        // Per sample: (pair row, min over box, max over box, tol) of each pair.
        struct Pair {
            r: usize,
            min: f64,
            max: f64,
            tol: f64,
        }
        let mut kept: Vec<(usize, Vec<Pair>)> = Vec::new();
        for (i, s) in bounds.samples.iter().enumerate() {
            let p = s.others.len();
            stats.pairs += p;
            stats.rows_before += 1 + p;
            stats.binaries_before += 1 + p;
            stats.nonzeros_before += 1 + p;
            let pairs: Vec<Pair> = (0..p)
                .map(|r| {
                    let (lo, hi) = dot_range(s.a.row(r), bx);
                    stats.nonzeros_before += 1 + s.a.row(r).iter().filter(|&&x| x != 0.0).count();
                    Pair {
                        r,
                        min: lo + s.b[r],
                        max: hi + s.b[r],
                        tol: pair_tolerance(s.a.row(r), s.b[r], bx),
                    }
                })
                .collect();
            if !presolve {
                kept.push((i, pairs));
                continue;
            }
            if pairs.iter().any(|pr| pr.max <= pr.tol) {
                stats.fixed_broken += 1;
            } else if pairs.iter().all(|pr| pr.min > pr.tol) {
                stats.fixed_certified += 1;
            } else {
                let before = pairs.len();
                let breakable: Vec<Pair> =
                    pairs.into_iter().filter(|pr| pr.min <= pr.tol).collect();
                stats.pairs_dropped += before - breakable.len();
                kept.push((i, breakable));
            }
        }
        stats.undecided = kept.len();

        let mut model = Model::new("universal_crr");
        // δ variables only for coordinates some kept pair uses.
        let mut used = vec![false; d];
        for (i, pairs) in &kept {
            for pr in pairs {
                for (k, &x) in bounds.samples[*i].a.row(pr.r).iter().enumerate() {
                    used[k] |= x != 0.0;
                }
            }
        }
        let mut var_of_coord = vec![usize::MAX; d];
        let mut delta_vars = Vec::new();
        for k in (0..d).filter(|&k| used[k]) {
            let v = model.add_var(
                format!("d{k}"),
                VarKind::Continuous,
                bx.lo[k],
                bx.hi[k],
                0.0,
            );
            var_of_coord[k] = v;
            delta_vars.push((k, v));
        }
        let mut pair_rows = Vec::new();
        let mut samples = Vec::new();
        for (i, pairs) in &kept {
            let s = &bounds.samples[*i];
            let q = model.add_var(format!("q{i}"), VarKind::Binary, 0.0, 1.0, 1.0);
            let mut cover = vec![(q, 1.0)];
            let mut rows_of_sample = Vec::new();
            for pr in pairs {
                let j = s.others[pr.r];
                let z = model.add_var(format!("z{i}_{j}"), VarKind::Binary, 0.0, 1.0, 0.0);
                cover.push((z, 1.0));
                let a = s.a.row(pr.r);
                let biggest = a
                    .iter()
                    .zip(&bx.lo)
                    .zip(&bx.hi)
                    .map(|((&ak, &l), &h)| ak.abs() * l.abs().max(h.abs()))
                    .fold(0.0, f64::max);
                let mut terms = Vec::new();
                let mut kept_max = 0.0;
                let mut dropped_slack = 0.0;
                for (k, &ak) in a.iter().enumerate() {
                    if ak == 0.0 {
                        continue;
                    }
                    let (p, q) = (ak * bx.lo[k], ak * bx.hi[k]);
                    if ak.abs() * bx.lo[k].abs().max(bx.hi[k].abs()) < DROP_REL * biggest {
                        dropped_slack += (-p).max(-q);
                    } else {
                        terms.push((var_of_coord[k], ak));
                        kept_max += p.max(q);
                    }
                }
                // z = 0: a'·δ ≤ R (never binding); z = 1: a'·δ + b ≤ tol + dropped slack.
                let rhs = kept_max + pr.tol;
                let big_m = rhs - (pr.tol + dropped_slack - s.b[pr.r]);
                terms.push((z, big_m));
                pair_rows.push((model.rows.len(), z));
                rows_of_sample.push(pair_rows.len() - 1);
                model.add_row(format!("brk{i}_{j}"), terms, Sense::Le, rhs);
            }
            model.add_row(format!("cover{i}"), cover, Sense::Ge, 1.0);
            samples.push((q, rows_of_sample));
        }
        stats.rows_after = model.rows.len();
        stats.binaries_after = model.num_binaries();
        stats.nonzeros_after = model.num_nonzeros();
        stats.delta_vars_after = delta_vars.len();
        Ok(UniversalMilp {
            fixed_certified: stats.fixed_certified,
            model,
            stats,
            delta_vars,
            pair_rows,
            samples,
            lo: bx.lo.to_vec(),
            hi: bx.hi.to_vec(),
        })
    }

    /// Number of samples the objective counts (the undecided ones).
    pub fn undecided(&self) -> usize {
        self.samples.len()
    }

    /// A full assignment induced by δ (clipped to the box): zᵢⱼ = 1 where the pair row allows
    /// breaking, qᵢ = 1 where no pair of sample i breaks. Feasible by construction.
    pub fn assignment_for(&self, delta: &[f64]) -> Result<Vec<f64>, MilpError> {
        if delta.len() != self.lo.len() || delta.iter().any(|x| !x.is_finite()) {
            return Err(MilpError::InvalidInput(
                "warm-start δ has the wrong length or a non-finite value".into(),
            ));
        }
        let mut x = vec![0.0; self.model.vars.len()];
        for &(k, v) in &self.delta_vars {
            x[v] = delta[k].clamp(self.lo[k], self.hi[k]);
        }
        for &(row, z) in &self.pair_rows {
            let r = &self.model.rows[row];
            let big_m = r.coeffs.iter().find(|t| t.0 == z).map_or(0.0, |t| t.1);
            let lhs: f64 = r
                .coeffs
                .iter()
                .filter(|t| t.0 != z)
                .map(|&(v, c)| c * x[v])
                .sum();
            x[z] = if lhs + big_m <= r.rhs { 1.0 } else { 0.0 };
        }
        for (q, rows) in &self.samples {
            let broken = rows.iter().any(|&p| x[self.pair_rows[p].1] == 1.0);
            x[*q] = if broken { 0.0 } else { 1.0 };
        }
        Ok(x)
    }

    /// Cheap incumbent candidates: the box point nearest 0, and for each pair row the box
    /// vertex that minimises its bound (the δ that breaks that pair most).
    pub fn candidate_deltas(&self) -> Vec<Vec<f64>> {
        let base = self.delta_of(&[]);
        let mut out = vec![base.clone()];
        let coord_of: std::collections::HashMap<usize, usize> =
            self.delta_vars.iter().map(|&(k, v)| (v, k)).collect();
        for &(row, z) in &self.pair_rows {
            let mut delta = base.clone();
            for &(v, c) in &self.model.rows[row].coeffs {
                if let (false, Some(&k)) = (v == z, coord_of.get(&v)) {
                    delta[k] = if c > 0.0 { self.lo[k] } else { self.hi[k] };
                }
            }
            out.push(delta);
        }
        out
    }

    /// δ from a model assignment; coordinates the model does not use get the box point
    /// nearest 0.
    pub fn delta_of(&self, x: &[f64]) -> Vec<f64> {
        let mut delta: Vec<f64> = self
            .lo
            .iter()
            .zip(&self.hi)
            .map(|(&l, &h)| 0.0f64.clamp(l, h))
            .collect();
        for &(k, v) in &self.delta_vars {
            if let Some(&xv) = x.get(v) {
                delta[k] = xv.clamp(self.lo[k], self.hi[k]);
            }
        }
        delta
    }

    /// Header for exported files: what the objective means.
    pub fn export_comment(&self) -> String {
        format!(
            "upcc universal certification MILP (Theorem 1, compact form, presolved)\n\
             certified count = {} fixed-certified samples + optimum of this model\n\
             pair rows use tolerance {ABS_TOL:e} + {REL_TOL:e}*(|b| + sum|a|*r)\n\
             samples {}, fixed broken {}, undecided {}",
            self.fixed_certified, self.stats.samples, self.stats.fixed_broken, self.stats.undecided
        )
    }
}
