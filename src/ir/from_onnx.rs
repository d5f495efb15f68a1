//! Import of a decoded ONNX model into the IR, with constant folding.

use super::Graph;
use crate::formats::onnx::OnnxModel;

#[derive(Clone, Debug, PartialEq)]
pub enum ImportError {
    /// Every node upcc cannot import: (node name, op type).
    Unsupported(Vec<(String, String)>),
    /// Anything else wrong with the graph (bad shapes, dangling names, non-finite weights...).
    Invalid(String),
}

pub fn import(_model: &OnnxModel) -> Result<Graph, ImportError> {
    Err(ImportError::Invalid("ONNX import is not implemented yet".into()))
}
