//! HiGHS back end (cargo feature `highs`). The certified count uses HiGHS's `mip_dual_bound`
//! (the proven bound) in every status, never the incumbent.

use std::time::Duration;

use highs::{HighsModelStatus, RowProblem, Sense as HighsSense};

use super::model::{Model, Sense, VarKind};
use super::solve::{BackendResult, MilpBackend, MilpStatus};
use super::MilpError;

#[derive(Clone, Copy, Debug, Default)]
pub struct Highs;

impl MilpBackend for Highs {
    fn name(&self) -> &'static str {
        "highs"
    }

    fn solve(
        &self,
        model: &Model,
        time_limit: Option<Duration>,
        warm_start: Option<&[f64]>,
    ) -> Result<BackendResult, MilpError> {
        model.validate()?;
        if warm_start.is_some_and(|x| x.len() != model.vars.len()) {
            return Err(MilpError::InvalidInput(
                "warm start has the wrong length".into(),
            ));
        }
        let mut pb = RowProblem::default();
        let cols: Vec<_> = model
            .vars
            .iter()
            .map(|v| pb.add_column_with_integrality(v.obj, v.lo..=v.hi, v.kind == VarKind::Binary))
            .collect();
        for r in &model.rows {
            let terms: Vec<_> = r.coeffs.iter().map(|&(j, c)| (cols[j], c)).collect();
            match r.sense {
                Sense::Le => pb.add_row(..=r.rhs, &terms),
                Sense::Ge => pb.add_row(r.rhs.., &terms),
                Sense::Eq => pb.add_row(r.rhs..=r.rhs, &terms),
            };
        }
        let err = |what: &str| MilpError::Solver(format!("HiGHS: {what}"));
        let mut m = pb
            .try_optimise(HighsSense::Minimise)
            .map_err(|e| err(&format!("cannot load the model: {e:?}")))?;
        m.make_quiet();
        m.set_option("mip_rel_gap", 0.0);
        m.set_option("mip_abs_gap", 0.0);
        if let Some(t) = time_limit {
            m.set_option("time_limit", t.as_secs_f64());
        }
        if let Some(x) = warm_start {
            // A rejected start only loses the seed, not soundness.
            let _ = m.try_set_solution(Some(x), None, None, None);
        }
        let solved = m
            .try_solve()
            .map_err(|e| err(&format!("run failed: {e:?}")))?;
        let status = match solved.status() {
            HighsModelStatus::Optimal => MilpStatus::Optimal,
            HighsModelStatus::ReachedTimeLimit
            | HighsModelStatus::ReachedIterationLimit
            | HighsModelStatus::ReachedInterrupt => MilpStatus::TimeLimit,
            other => return Err(err(&format!("stopped with status {other:?}"))),
        };
        let trivial = model.trivial_lower_bound();
        let dual_bound = solved
            .double_info_value(c"mip_dual_bound")
            .ok()
            .filter(|b| b.is_finite())
            .map_or(trivial, |b| b.max(trivial));
        let nodes = solved.int_info_value(c"mip_node_count").unwrap_or(0).max(0) as usize;
        let incumbent = if solved.objective_value().is_finite()
            && solved.primal_solution_status() == highs::HighsSolutionStatus::Feasible
        {
            let x = solved.get_solution().columns().to_vec();
            (model.max_violation(&x) <= 1e-6).then(|| (model.objective_at(&x), x))
        } else {
            None
        };
        Ok(BackendResult {
            status,
            dual_bound,
            incumbent,
            nodes,
        })
    }
}
