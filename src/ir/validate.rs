//! IR validator (see the invariants in the module doc of [`crate::ir`]).

use super::Graph;

/// A broken IR invariant: always a bug in lowering or in a pass.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidationError {
    pub node: String,
    pub message: String,
}

pub fn validate(_graph: &Graph) -> Result<(), ValidationError> {
    // Filled in by the IR work (issue 3).
    Ok(())
}
