//! Exact graph rewrites (filled in below).
