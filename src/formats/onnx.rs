//! ONNX protobuf decoding (no dependency on the IR), with our own wire-format reader.
//! Decodes ModelProto → GraphProto (node, initializer, input, output), NodeProto, AttributeProto
//! and TensorProto (dims, data_type, float/int32/int64/double/uint64 data, raw_data).

use super::elem::Elem;
use super::protobuf::{self, Fields, Wire};
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

/// Reads and decodes an ONNX model file. Non-finite initializers are a
/// [`FormatErrorKind::NonFinite`] error.
pub fn load_model(path: &Path) -> Result<OnnxModel, FormatError> {
    let model = decode(path, &super::read_file(path)?)?;
    super::check_finite(path, &model.initializers)?;
    Ok(model)
}

#[derive(Debug)]
enum DecodeError {
    Corrupt(String),
    Unsupported(String),
}

impl From<String> for DecodeError {
    fn from(m: String) -> Self {
        DecodeError::Corrupt(m)
    }
}

/// Decodes ModelProto bytes.
fn decode_model(bytes: &[u8]) -> Result<OnnxModel, DecodeError> {
    let mut graph = None;
    for field in Fields::new(bytes) {
        let (number, wire) = field?;
        if number == 7 {
            graph = Some(protobuf::bytes(wire)?);
        }
    }
    let graph = graph.ok_or_else(|| DecodeError::Corrupt("no graph in the model".into()))?;
    let mut model = OnnxModel {
        graph_inputs: Vec::new(),
        graph_outputs: Vec::new(),
        nodes: Vec::new(),
        initializers: BTreeMap::new(),
    };
    for field in Fields::new(graph) {
        let (number, wire) = field?;
        match number {
            1 => model.nodes.push(decode_node(protobuf::bytes(wire)?)?),
            5 => {
                let (name, tensor) = decode_tensor(protobuf::bytes(wire)?)?;
                model.initializers.insert(name, tensor);
            }
            11 => model
                .graph_inputs
                .push(decode_value_info(protobuf::bytes(wire)?)?),
            12 => model
                .graph_outputs
                .push(decode_value_info(protobuf::bytes(wire)?)?),
            _ => {}
        }
    }
    Ok(model)
}

fn decode_node(bytes: &[u8]) -> Result<OnnxNode, DecodeError> {
    let mut node = OnnxNode {
        name: String::new(),
        op_type: String::new(),
        inputs: Vec::new(),
        outputs: Vec::new(),
        attributes: BTreeMap::new(),
    };
    for field in Fields::new(bytes) {
        let (number, wire) = field?;
        match number {
            1 => node.inputs.push(protobuf::string(wire)?),
            2 => node.outputs.push(protobuf::string(wire)?),
            3 => node.name = protobuf::string(wire)?,
            4 => node.op_type = protobuf::string(wire)?,
            5 => {
                if let Some((name, attr)) = decode_attribute(protobuf::bytes(wire)?)? {
                    node.attributes.insert(name, attr);
                }
            }
            _ => {}
        }
    }
    Ok(node)
}

/// Returns `None` for attribute kinds upcc never reads (graphs, string lists, ...).
fn decode_attribute(bytes: &[u8]) -> Result<Option<(String, OnnxAttribute)>, DecodeError> {
    let mut name = String::new();
    let mut kind = None;
    let (mut f, mut i, mut s, mut t) = (None, None, None, None);
    let (mut floats, mut ints) = (Vec::new(), Vec::new());
    for field in Fields::new(bytes) {
        let (number, wire) = field?;
        match number {
            1 => name = protobuf::string(wire)?,
            2 => match wire {
                Wire::Fixed32(bits) => f = Some(f32::from_bits(bits)),
                _ => return Err(DecodeError::Corrupt("attribute 'f' is not a float".into())),
            },
            3 => i = Some(protobuf::varint(wire)? as i64),
            4 => s = Some(String::from_utf8_lossy(protobuf::bytes(wire)?).into_owned()),
            5 => t = Some(decode_tensor(protobuf::bytes(wire)?)?.1),
            7 => protobuf::push_fixed32(&mut floats, wire)?,
            8 => protobuf::push_varints(&mut ints, wire)?,
            20 => kind = Some(protobuf::varint(wire)?),
            _ => {}
        }
    }
    let floats: Vec<f32> = floats.iter().map(|&b| f32::from_bits(b)).collect();
    let ints: Vec<i64> = ints.iter().map(|&v| v as i64).collect();
    // AttributeProto.type: FLOAT 1, INT 2, STRING 3, TENSOR 4, FLOATS 6, INTS 7; older files omit it.
    let attr = match kind {
        Some(1) => f.map(OnnxAttribute::Float),
        Some(2) => i.map(OnnxAttribute::Int),
        Some(3) => s.map(OnnxAttribute::String),
        Some(4) => t.map(OnnxAttribute::Tensor),
        Some(6) => Some(OnnxAttribute::Floats(floats)),
        Some(7) => Some(OnnxAttribute::Ints(ints)),
        Some(_) => None,
        None => f
            .map(OnnxAttribute::Float)
            .or(i.map(OnnxAttribute::Int))
            .or(s.map(OnnxAttribute::String))
            .or(t.map(OnnxAttribute::Tensor))
            .or((!floats.is_empty()).then_some(OnnxAttribute::Floats(floats)))
            .or((!ints.is_empty()).then_some(OnnxAttribute::Ints(ints))),
    };
    Ok(attr.map(|a| (name, a)))
}

/// Decodes a TensorProto into (name, tensor).
fn decode_tensor(bytes: &[u8]) -> Result<(String, TensorData), DecodeError> {
    let mut name = String::new();
    let mut dims = Vec::new();
    let mut data_type = 0u64;
    let mut raw: Option<&[u8]> = None;
    let (mut float_data, mut double_data) = (Vec::new(), Vec::new());
    let (mut int32_data, mut int64_data, mut uint64_data) = (Vec::new(), Vec::new(), Vec::new());
    let mut external = false;
    for field in Fields::new(bytes) {
        let (number, wire) = field?;
        match number {
            1 => protobuf::push_varints(&mut dims, wire)?,
            2 => data_type = protobuf::varint(wire)?,
            4 => protobuf::push_fixed32(&mut float_data, wire)?,
            5 => protobuf::push_varints(&mut int32_data, wire)?,
            7 => protobuf::push_varints(&mut int64_data, wire)?,
            8 => name = protobuf::string(wire)?,
            9 => raw = Some(protobuf::bytes(wire)?),
            10 => protobuf::push_fixed64(&mut double_data, wire)?,
            11 => protobuf::push_varints(&mut uint64_data, wire)?,
            13 => external = true,
            14 => external |= protobuf::varint(wire)? == 1,
            _ => {}
        }
    }
    let label = if name.is_empty() {
        "(unnamed)".to_string()
    } else {
        format!("'{name}'")
    };
    if external {
        return Err(DecodeError::Unsupported(format!(
            "tensor {label} uses external data"
        )));
    }
    let shape = dims
        .iter()
        .map(|&d| usize::try_from(d as i64).ok())
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| DecodeError::Corrupt(format!("tensor {label} has a negative dimension")))?;
    let numel = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| DecodeError::Corrupt(format!("tensor {label} is too large")))?;
    // TensorProto.DataType numbering.
    let elem = match data_type {
        1 => Elem::F32,
        2 => Elem::U8,
        3 => Elem::I8,
        4 => Elem::U16,
        5 => Elem::I16,
        6 => Elem::I32,
        7 => Elem::I64,
        9 => Elem::Bool,
        10 => Elem::F16,
        11 => Elem::F64,
        12 => Elem::U32,
        13 => Elem::U64,
        16 => Elem::BF16,
        other => {
            return Err(DecodeError::Unsupported(format!(
                "tensor {label} has unsupported data type {other}"
            )))
        }
    };
    let data: Vec<f64> = if let Some(raw) = raw {
        if Some(raw.len()) != numel.checked_mul(elem.size()) {
            return Err(DecodeError::Corrupt(format!(
                "tensor {label}: raw data holds {} bytes, shape {shape:?} needs {numel} values",
                raw.len()
            )));
        }
        elem.decode(raw, true)
    } else {
        match elem {
            Elem::F32 => float_data
                .iter()
                .map(|&b| f64::from(f32::from_bits(b)))
                .collect(),
            Elem::F64 => double_data.iter().map(|&b| f64::from_bits(b)).collect(),
            Elem::I64 => int64_data.iter().map(|&v| v as i64 as f64).collect(),
            Elem::U32 | Elem::U64 => uint64_data.iter().map(|&v| v as f64).collect(),
            Elem::F16 => int32_data
                .iter()
                .map(|&v| super::elem::f16_to_f64(v as u16))
                .collect(),
            Elem::BF16 => int32_data
                .iter()
                .map(|&v| f64::from(f32::from_bits((v as u32) << 16)))
                .collect(),
            _ => int32_data
                .iter()
                .map(|&v| f64::from(v as i64 as i32))
                .collect(),
        }
    };
    if data.len() != numel {
        return Err(DecodeError::Corrupt(format!(
            "tensor {label} holds {} values, shape {shape:?} needs {numel}",
            data.len()
        )));
    }
    Ok((name, TensorData { shape, data }))
}

fn decode_value_info(bytes: &[u8]) -> Result<OnnxValueInfo, DecodeError> {
    let mut info = OnnxValueInfo {
        name: String::new(),
        dims: Vec::new(),
    };
    for field in Fields::new(bytes) {
        let (number, wire) = field?;
        match number {
            1 => info.name = protobuf::string(wire)?,
            2 => info.dims = decode_type_dims(protobuf::bytes(wire)?)?,
            _ => {}
        }
    }
    Ok(info)
}

/// TypeProto → tensor_type (1) → shape (2) → dim (1) → dim_value (1) | dim_param (2).
fn decode_type_dims(type_proto: &[u8]) -> Result<Vec<Option<usize>>, DecodeError> {
    let mut dims = Vec::new();
    for field in Fields::new(type_proto) {
        let (number, wire) = field?;
        if number != 1 {
            continue;
        }
        for field in Fields::new(protobuf::bytes(wire)?) {
            let (number, wire) = field?;
            if number != 2 {
                continue;
            }
            for field in Fields::new(protobuf::bytes(wire)?) {
                let (number, wire) = field?;
                if number != 1 {
                    continue;
                }
                let mut value = None;
                for field in Fields::new(protobuf::bytes(wire)?) {
                    let (number, wire) = field?;
                    if number == 1 {
                        value = usize::try_from(protobuf::varint(wire)? as i64).ok();
                    }
                }
                dims.push(value);
            }
        }
    }
    Ok(dims)
}

/// Decodes ONNX model bytes (for callers that already hold them); `path` names them in errors.
pub fn decode(path: &Path, bytes: &[u8]) -> Result<OnnxModel, FormatError> {
    decode_model(bytes).map_err(|e| match e {
        DecodeError::Corrupt(m) => FormatError::new(
            path,
            FormatErrorKind::Corrupt,
            format!("invalid ONNX file: {m}"),
        ),
        DecodeError::Unsupported(m) => FormatError::new(
            path,
            FormatErrorKind::Unsupported,
            format!("ONNX file: {m}"),
        ),
    })
}
