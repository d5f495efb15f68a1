//! Syntax: the pest grammar (`grammar/upc.pest`) and the typed AST. Parsing does no IO.

pub mod ast;
mod parser;

pub use parser::{parse, KEYWORDS};
