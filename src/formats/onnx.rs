//! ONNX protobuf decoding (no dependency on the IR).

use super::{FormatError, FormatErrorKind, TensorData};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Clone, Debug, PartialEq)]
pub struct OnnxModel {
    pub graph_inputs: Vec<OnnxValueInfo>,
    pub graph_outputs: Vec<OnnxValueInfo>,
    pub nodes: Vec<OnnxNode>,
    pub initializers: BTreeMap<String, TensorData>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct OnnxValueInfo {
    pub name: String,
    /// Dimensions; symbolic or unknown ones are `None`.
    pub dims: Vec<Option<usize>>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct OnnxNode {
    pub name: String,
    pub op_type: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub attributes: BTreeMap<String, OnnxAttribute>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum OnnxAttribute {
    Int(i64),
    Float(f32),
    Ints(Vec<i64>),
    Floats(Vec<f32>),
    String(String),
    Tensor(TensorData),
}

pub fn load_model(path: &Path) -> Result<OnnxModel, FormatError> {
    Err(FormatError {
        path: path.to_path_buf(),
        message: "ONNX loading is not implemented yet".into(),
        kind: FormatErrorKind::Unsupported,
    })
}
