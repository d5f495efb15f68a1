//! semantics (stub)
