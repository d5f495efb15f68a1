//! milp (stub)
