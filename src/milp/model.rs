//! A small solver-independent MILP: minimise `c·x` subject to sparse rows and variable bounds.
//! Back ends (`solve.rs`) and writers (`export.rs`) read this structure only.

use super::MilpError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VarKind {
    Continuous,
    /// Integer with bounds inside `[0, 1]`.
    Binary,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Var {
    pub name: String,
    pub kind: VarKind,
    pub lo: f64,
    pub hi: f64,
    /// Objective coefficient (the model is always a minimisation).
    pub obj: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sense {
    Le,
    Ge,
    Eq,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub name: String,
    /// `(variable index, coefficient)`, each variable at most once.
    pub coeffs: Vec<(usize, f64)>,
    pub sense: Sense,
    pub rhs: f64,
}

/// Minimise `Σ obj·x` over the rows and bounds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Model {
    pub name: String,
    pub vars: Vec<Var>,
    pub rows: Vec<Row>,
}

impl Model {
    pub fn new(name: &str) -> Self {
        Model {
            name: name.to_string(),
            ..Model::default()
        }
    }

    pub fn add_var(&mut self, name: String, kind: VarKind, lo: f64, hi: f64, obj: f64) -> usize {
        self.vars.push(Var {
            name,
            kind,
            lo,
            hi,
            obj,
        });
        self.vars.len() - 1
    }

    pub fn add_row(&mut self, name: String, coeffs: Vec<(usize, f64)>, sense: Sense, rhs: f64) {
        self.rows.push(Row {
            name,
            coeffs,
            sense,
            rhs,
        });
    }

    pub fn num_binaries(&self) -> usize {
        self.vars
            .iter()
            .filter(|v| v.kind == VarKind::Binary)
            .count()
    }

    pub fn num_nonzeros(&self) -> usize {
        self.rows.iter().map(|r| r.coeffs.len()).sum()
    }

    /// `Σ obj·x`.
    pub fn objective_at(&self, x: &[f64]) -> f64 {
        self.vars.iter().zip(x).map(|(v, xi)| v.obj * xi).sum()
    }

    /// The objective's minimum over the variable bounds alone: a bound every back end may fall
    /// back to when it has proven nothing better.
    pub fn trivial_lower_bound(&self) -> f64 {
        self.vars
            .iter()
            .map(|v| (v.obj * v.lo).min(v.obj * v.hi))
            .sum()
    }

    /// Largest violation of a bound, a row or integrality at `x` (0 when `x` is feasible).
    pub fn max_violation(&self, x: &[f64]) -> f64 {
        if x.len() != self.vars.len() {
            return f64::INFINITY;
        }
        let mut worst: f64 = 0.0;
        for (v, &xi) in self.vars.iter().zip(x) {
            worst = worst.max(v.lo - xi).max(xi - v.hi);
            if v.kind == VarKind::Binary {
                worst = worst.max((xi - xi.round()).abs());
            }
        }
        for r in &self.rows {
            let lhs: f64 = r.coeffs.iter().map(|&(j, c)| c * x[j]).sum();
            let v = match r.sense {
                Sense::Le => lhs - r.rhs,
                Sense::Ge => r.rhs - lhs,
                Sense::Eq => (lhs - r.rhs).abs(),
            };
            worst = worst.max(v);
        }
        worst
    }

    /// Checks what every back end and writer relies on: finite data, sane bounds, binaries
    /// within `[0, 1]`, variable indices in range and not repeated in a row, unique names
    /// without whitespace (the `.lp`/`.mps` formats separate tokens by spaces).
    pub fn validate(&self) -> Result<(), MilpError> {
        let bad = |msg: String| Err(MilpError::InvalidModel(msg));
        let mut names = std::collections::HashSet::new();
        for v in &self.vars {
            if !valid_name(&v.name) || !names.insert(v.name.as_str()) {
                return bad(format!(
                    "variable name `{}` is empty, repeated or has spaces",
                    v.name
                ));
            }
            if v.lo.is_nan() || v.hi.is_nan() || v.lo > v.hi || !v.obj.is_finite() {
                return bad(format!("variable `{}` has invalid bounds or cost", v.name));
            }
            if v.kind == VarKind::Binary && (v.lo < 0.0 || v.hi > 1.0) {
                return bad(format!("binary `{}` has bounds outside [0, 1]", v.name));
            }
        }
        let mut row_names = std::collections::HashSet::new();
        let mut seen = vec![usize::MAX; self.vars.len()];
        for (r_idx, r) in self.rows.iter().enumerate() {
            if !valid_name(&r.name) || !row_names.insert(r.name.as_str()) || r.name == "obj" {
                return bad(format!(
                    "row name `{}` is empty, repeated, reserved or has spaces",
                    r.name
                ));
            }
            if r.rhs.is_nan() {
                return bad(format!("row `{}` has a NaN right-hand side", r.name));
            }
            for &(j, c) in &r.coeffs {
                if j >= self.vars.len() || !c.is_finite() {
                    return bad(format!("row `{}` has a bad term ({j}, {c})", r.name));
                }
                if seen[j] == r_idx {
                    return bad(format!("row `{}` repeats variable {j}", r.name));
                }
                seen[j] = r_idx;
            }
        }
        Ok(())
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.[]".contains(c))
        && !name.starts_with(|c: char| c.is_ascii_digit() || c == '.')
}
