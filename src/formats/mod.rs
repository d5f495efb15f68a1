//! File formats: weights (safetensors, npz, ONNX initializers), ONNX graphs, datasets.
//! Leaf module: decoders only, every failure is a [`FormatError`], never a panic.

use std::path::PathBuf;

/// A dense tensor read from a file, converted exactly to f64.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorData {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

impl TensorData {
    pub fn numel(&self) -> usize {
        self.data.len()
    }

    /// The first non-finite value's flat index, if any.
    pub fn first_non_finite(&self) -> Option<usize> {
        self.data.iter().position(|v| !v.is_finite())
    }
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

impl FormatError {
    pub fn new(path: &Path, kind: FormatErrorKind, message: impl Into<String>) -> Self {
        FormatError {
            path: path.to_path_buf(),
            message: message.into(),
            kind,
        }
    }

    pub fn corrupt(path: &Path, message: impl Into<String>) -> Self {
        Self::new(path, FormatErrorKind::Corrupt, message)
    }

    pub fn unsupported(path: &Path, message: impl Into<String>) -> Self {
        Self::new(path, FormatErrorKind::Unsupported, message)
    }

    pub(crate) fn io(path: &Path, err: &std::io::Error) -> Self {
        let message = match err.kind() {
            std::io::ErrorKind::NotFound => "file not found".to_string(),
            _ => format!("cannot read file: {err}"),
        };
        Self::new(path, FormatErrorKind::Io, message)
    }
}

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for FormatError {}

pub mod dataset;
mod elem;
mod npy;
pub mod onnx;
mod protobuf;
mod safetensors_file;

pub use dataset::{load_dataset, Dataset, DatasetSource, PixelLayout};
use npy::read_npz;

use std::collections::BTreeMap;
use std::path::Path;

/// Largest file upcc reads (weights or datasets): guards against decompression bombs.
pub const MAX_FILE_BYTES: u64 = 1 << 31;

/// Named tensors of a weight file, chosen by extension: `.safetensors`, `.npz`, or `.onnx`
/// (its initializers). NaN or infinity in any tensor is a [`FormatErrorKind::NonFinite`] error.
pub fn load_tensors(path: &Path) -> Result<BTreeMap<String, TensorData>, FormatError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let tensors = match ext.as_str() {
        "safetensors" => safetensors_file::parse(path, &read_file(path)?)?,
        "npz" => read_npz(path, &read_file(path)?)?,
        "onnx" => onnx::load_model(path)?.initializers,
        _ => {
            return Err(FormatError::unsupported(
                path,
                format!(
                    "unknown weight file extension '.{ext}' (expected .safetensors, .npz or .onnx)"
                ),
            ))
        }
    };
    check_finite(path, &tensors)?;
    Ok(tensors)
}

/// Reads a whole file, refusing files over [`MAX_FILE_BYTES`].
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, FormatError> {
    let meta = std::fs::metadata(path).map_err(|e| FormatError::io(path, &e))?;
    if meta.is_dir() {
        return Err(FormatError::new(
            path,
            FormatErrorKind::Io,
            "is a directory, not a file",
        ));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(FormatError::unsupported(
            path,
            format!("file is too large ({} bytes)", meta.len()),
        ));
    }
    std::fs::read(path).map_err(|e| FormatError::io(path, &e))
}

pub(crate) fn check_finite(
    path: &Path,
    tensors: &BTreeMap<String, TensorData>,
) -> Result<(), FormatError> {
    for (name, tensor) in tensors {
        if let Some(i) = tensor.first_non_finite() {
            return Err(FormatError::new(
                path,
                FormatErrorKind::NonFinite,
                format!(
                    "tensor '{name}' holds a non-finite value ({}) at flat index {i}",
                    tensor.data[i]
                ),
            ));
        }
    }
    Ok(())
}
