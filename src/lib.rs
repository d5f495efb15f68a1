//! upcc: certifies neural networks against universal perturbations.
//!
//! Stages (see ARCHITECTURE.md): [`syntax`] → [`semantics`] → [`ir`] → [`engine`] → [`milp`]
//! → [`driver`]; the binary in `main.rs` is the CLI.

pub mod attacks;
pub mod diagnostics;
pub mod driver;
pub mod engine;
pub mod formats;
pub mod ir;
pub mod lsp;
pub mod milp;
pub mod population;
pub mod rng;
pub mod semantics;
pub mod source;
pub mod syntax;
