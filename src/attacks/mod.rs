//! attacks (stub)
