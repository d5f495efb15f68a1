//! Solver back ends behind one trait, and [`certify_universal`], which lowers, solves and
//! turns the solver's answer into a sound certified count.
//!
//! Soundness: `certified = fixed + ⌈dual bound − tol⌉` (see [`CEIL_TOL`]), where the dual bound is the one
//! the solver PROVED (the optimum when it finished; on a time limit the best bound over open
//! nodes, or the model's trivial bound when it reports none). The incumbent is never counted;
//! the count is also capped by what the bounds certify at the best δ found (any δ gives an
//! upper bound on the optimum), which guards against a solver defect.

use std::time::{Duration, Instant};

use super::model::{Model, Sense, VarKind};
use super::universal::{certified_at, PresolveStats, UniversalMilp};
use super::MilpError;
use crate::engine::{DeltaBox, MarginBounds};

/// A proven bound within this above an integer counts as that integer: the objective sums up
/// to n binaries each within the solver's integrality tolerance (1e-6) of 0 or 1, so noise can
/// lift it by n·1e-6. The tolerance is `max(CEIL_TOL, 2e-6·n)` over the n undecided samples;
/// it gives up nothing real (a bound in (k, k + tol] only proves k + 1 in theory).
pub const CEIL_TOL: f64 = 1e-3;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MilpStatus {
    Optimal,
    TimeLimit,
}

/// What a back end reports on a [`Model`] (objective without any constant).
#[derive(Clone, Debug)]
pub struct BackendResult {
    pub status: MilpStatus,
    /// A proven lower bound on the model's optimum.
    pub dual_bound: f64,
    /// Best feasible objective and its assignment.
    pub incumbent: Option<(f64, Vec<f64>)>,
    pub nodes: usize,
}

pub trait MilpBackend {
    fn name(&self) -> &'static str;
    /// Minimises `model`; `warm_start` is a full feasible assignment to seed the incumbent.
    fn solve(
        &self,
        model: &Model,
        time_limit: Option<Duration>,
        warm_start: Option<&[f64]>,
    ) -> Result<BackendResult, MilpError>;
}

/// The default back end: microlp (pure Rust branch and bound).
#[derive(Clone, Copy, Debug, Default)]
pub struct Microlp;

impl MilpBackend for Microlp {
    fn name(&self) -> &'static str {
        "microlp"
    }

    fn solve(
        &self,
        model: &Model,
        time_limit: Option<Duration>,
        warm_start: Option<&[f64]>,
    ) -> Result<BackendResult, MilpError> {
        use microlp::{
            ComparisonOp, OptimizationDirection, Problem, SolveOutcome, TerminationReason,
        };
        model.validate()?;
        let mut p = Problem::new(OptimizationDirection::Minimize);
        let vars: Vec<microlp::Variable> = model
            .vars
            .iter()
            .map(|v| match v.kind {
                VarKind::Continuous => p.add_var(v.obj, (v.lo, v.hi)),
                VarKind::Binary => {
                    p.add_integer_var(v.obj, (v.lo.ceil() as i32, v.hi.floor() as i32))
                }
            })
            .collect();
        for r in &model.rows {
            let op = match r.sense {
                Sense::Le => ComparisonOp::Le,
                Sense::Ge => ComparisonOp::Ge,
                Sense::Eq => ComparisonOp::Eq,
            };
            p.add_constraint(r.coeffs.iter().map(|&(j, c)| (vars[j], c)), op, r.rhs);
        }
        let mut options = microlp::SolveOptions::default();
        options.time_limit = time_limit;
        if let Some(x) = warm_start {
            if x.len() != vars.len() || x.iter().any(|v| !v.is_finite()) {
                return Err(MilpError::InvalidInput(
                    "warm start has the wrong length".into(),
                ));
            }
            options.warm_start = Some(vars.iter().copied().zip(x.iter().copied()).collect());
        }
        let outcome = p
            .solve_with(options)
            .map_err(|e| MilpError::Solver(format!("microlp: {e}")))?;
        let stats = outcome.stats();
        let nodes = stats.nodes_solved as usize;
        let trivial = model.trivial_lower_bound();
        let proven = stats.best_bound.map_or(trivial, |b| b.max(trivial));
        Ok(match outcome {
            SolveOutcome::Solution(sol) => {
                let values: Vec<f64> = vars.iter().map(|&v| sol.var_value(v)).collect();
                let value = model.objective_at(&values);
                let optimal = sol.termination_reason() == TerminationReason::ProvenOptimal;
                BackendResult {
                    status: if optimal {
                        MilpStatus::Optimal
                    } else {
                        MilpStatus::TimeLimit
                    },
                    dual_bound: if optimal { sol.objective() } else { proven },
                    incumbent: Some((value, values)),
                    nodes,
                }
            }
            SolveOutcome::Interrupted(_) => BackendResult {
                status: MilpStatus::TimeLimit,
                dual_bound: proven,
                incumbent: None,
                nodes,
            },
        })
    }
}

#[derive(Clone, Debug, Default)]
pub struct MilpOptions {
    pub time_limit: Option<Duration>,
    /// A known δ (e.g. an attack's) whose induced assignment seeds the incumbent.
    pub warm_start_delta: Option<Vec<f64>>,
    /// Off only for comparisons; the optimum is the same either way.
    pub no_presolve: bool,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct MilpOutcome {
    /// Samples certified against every δ in the box: a proven lower bound.
    pub certified: usize,
    pub status: MilpStatus,
    /// Proven lower bound on the certified count (fixed samples included).
    pub dual_bound: f64,
    /// Best count found at a concrete δ by the solver (fixed samples included).
    pub incumbent_value: Option<f64>,
    pub best_delta: Option<Vec<f64>>,
    /// What the bounds certify at `best_delta`, re-evaluated strictly (> tol): an upper bound
    /// on the optimum. It can exceed `incumbent_value`: pairs the solver breaks sit on the
    /// tolerance, within the solver's feasibility tolerance (1e-7).
    pub certified_at_best_delta: Option<usize>,
    pub nodes: usize,
    pub stats: PresolveStats,
    pub backend: &'static str,
    pub seconds: f64,
}

/// Lowers the bounds, solves the MILP with `backend`, and returns the sound certified count.
pub fn certify_universal(
    bounds: &MarginBounds,
    bx: &DeltaBox,
    backend: &dyn MilpBackend,
    options: &MilpOptions,
) -> Result<MilpOutcome, MilpError> {
    let start = Instant::now();
    let milp = UniversalMilp::lower(bounds, bx, !options.no_presolve)?;
    let fixed = milp.fixed_certified as f64;
    // Seed the incumbent with the best of the given δ and cheap box-vertex candidates.
    let mut warm: Option<(f64, Vec<f64>)> = None;
    let given = options.warm_start_delta.iter().cloned();
    for delta in given.chain(milp.candidate_deltas()) {
        let x = milp.assignment_for(&delta)?;
        let value = milp.model.objective_at(&x);
        if warm.as_ref().is_none_or(|(best, _)| value < *best) {
            warm = Some((value, x));
        }
    }
    let warm = warm.map(|(_, x)| x);
    let result = if milp.model.vars.iter().any(|v| v.kind == VarKind::Binary) {
        backend.solve(&milp.model, options.time_limit, warm.as_deref())?
    } else {
        // Nothing left to decide: every sample is fixed.
        let x = warm.unwrap_or_default();
        BackendResult {
            status: MilpStatus::Optimal,
            dual_bound: 0.0,
            incumbent: Some((0.0, x)),
            nodes: 0,
        }
    };
    let open = milp.undecided() as f64;
    let ceil_tol = CEIL_TOL.max(2e-6 * open);
    let proven = (result.dual_bound - ceil_tol).ceil().clamp(0.0, open);
    let mut certified = milp.fixed_certified + proven as usize;
    let best_delta = result.incumbent.as_ref().map(|(_, x)| milp.delta_of(x));
    let certified_at_best_delta = match &best_delta {
        Some(delta) => Some(certified_at(bounds, bx, delta)?),
        None => None,
    };
    if let Some(upper) = certified_at_best_delta {
        certified = certified.min(upper);
    }
    Ok(MilpOutcome {
        certified,
        status: result.status,
        dual_bound: fixed + result.dual_bound.max(0.0),
        incumbent_value: result.incumbent.as_ref().map(|(v, _)| fixed + v),
        best_delta,
        certified_at_best_delta,
        nodes: result.nodes,
        stats: milp.stats,
        backend: backend.name(),
        seconds: start.elapsed().as_secs_f64(),
    })
}
