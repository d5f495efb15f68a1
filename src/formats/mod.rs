//! formats (stub)
