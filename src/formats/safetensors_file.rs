//! `.safetensors` weights through the `safetensors` crate, every dtype converted to f64.

use super::elem::Elem;
use super::{FormatError, TensorData};
use safetensors::{Dtype, SafeTensors};
use std::collections::BTreeMap;
use std::path::Path;

pub(crate) fn parse(
    path: &Path,
    bytes: &[u8],
) -> Result<BTreeMap<String, TensorData>, FormatError> {
    let file = SafeTensors::deserialize(bytes)
        .map_err(|e| FormatError::corrupt(path, format!("invalid safetensors file: {e}")))?;
    let mut tensors = BTreeMap::new();
    for (name, view) in file.tensors() {
        let elem = match view.dtype() {
            Dtype::BOOL => Elem::Bool,
            Dtype::U8 => Elem::U8,
            Dtype::I8 => Elem::I8,
            Dtype::U16 => Elem::U16,
            Dtype::I16 => Elem::I16,
            Dtype::U32 => Elem::U32,
            Dtype::I32 => Elem::I32,
            Dtype::U64 => Elem::U64,
            Dtype::I64 => Elem::I64,
            Dtype::F16 => Elem::F16,
            Dtype::BF16 => Elem::BF16,
            Dtype::F32 => Elem::F32,
            Dtype::F64 => Elem::F64,
            other => {
                return Err(FormatError::unsupported(
                    path,
                    format!("tensor '{name}' has unsupported dtype {other:?}"),
                ))
            }
        };
        let shape = view.shape().to_vec();
        let numel = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        if numel.and_then(|n| n.checked_mul(elem.size())) != Some(view.data().len()) {
            return Err(FormatError::corrupt(
                path,
                format!("tensor '{name}': data length does not match its shape"),
            ));
        }
        tensors.insert(
            name,
            TensorData {
                shape,
                data: elem.decode(view.data(), true),
            },
        );
    }
    Ok(tensors)
}
