//! Universal certification as a MILP (paper Theorem 1): lowering with presolve
//! ([`universal`]), a solver-independent model ([`model`]) with `.lp`/`.mps` export
//! ([`export`]), and solver back ends with a sound certified count ([`solve`]).

pub mod export;
#[cfg(feature = "highs")]
pub mod highs;
pub mod model;
pub mod solve;
pub mod universal;

pub use export::{read_lp, read_mps, write_lp, write_mps};
#[cfg(feature = "highs")]
pub use highs::Highs;
pub use model::{Model, Row, Sense, Var, VarKind};
pub use solve::{
    certify_universal, BackendResult, Microlp, MilpBackend, MilpOptions, MilpOutcome, MilpStatus,
};
pub use universal::{
    certified_at, pair_tolerance, samplewise_certified, PresolveStats, UniversalMilp,
};

#[derive(Clone, Debug, PartialEq)]
pub enum MilpError {
    /// Bounds, box or δ that do not fit together or are not finite.
    InvalidInput(String),
    InvalidModel(String),
    Parse(String),
    Solver(String),
    Io(String),
}

impl std::fmt::Display for MilpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MilpError::InvalidInput(m) => write!(f, "invalid MILP input: {m}"),
            MilpError::InvalidModel(m) => write!(f, "invalid MILP model: {m}"),
            MilpError::Parse(m) => write!(f, "cannot read MILP file: {m}"),
            MilpError::Solver(m) => write!(f, "MILP solver failed: {m}"),
            MilpError::Io(m) => write!(f, "MILP I/O error: {m}"),
        }
    }
}

impl std::error::Error for MilpError {}
