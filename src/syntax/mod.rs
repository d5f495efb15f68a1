//! syntax (stub)
