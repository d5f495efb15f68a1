//! File formats: weights (safetensors, npz, ONNX initializers), ONNX graphs, datasets.
//! Leaf module: decoders only, every failure is a [`FormatError`], never a panic.

use std::path::PathBuf;

/// A dense tensor read from a file, converted exactly to f64.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorData {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

/// Why a file could not be read or decoded.
#[derive(Clone, Debug, PartialEq)]
pub struct FormatError {
    pub path: PathBuf,
    /// One line, e.g. "truncated safetensors header".
    pub message: String,
    pub kind: FormatErrorKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatErrorKind {
    /// Missing, unreadable.
    Io,
    /// Truncated, corrupt, or not the claimed format.
    Corrupt,
    /// Valid file using something upcc does not support (dtype, ONNX op, ...).
    Unsupported,
    /// NaN or infinity in the data.
    NonFinite,
}

pub mod dataset;
pub mod onnx;

pub use dataset::{load_dataset, Dataset, DatasetSource, PixelLayout};

use std::collections::BTreeMap;
use std::path::Path;

/// Named tensors of a weight file, chosen by extension: `.safetensors`, `.npz`, or `.onnx`
/// (its initializers).
pub fn load_tensors(path: &Path) -> Result<BTreeMap<String, TensorData>, FormatError> {
    Err(FormatError {
        path: path.to_path_buf(),
        message: "weight loading is not implemented yet".into(),
        kind: FormatErrorKind::Unsupported,
    })
}
