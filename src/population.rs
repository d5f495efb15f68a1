//! Theorem 2 population bound (stub)
