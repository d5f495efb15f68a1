//! Datasets: images with integer labels, stored as read (pixels not rescaled).

use super::{FormatError, FormatErrorKind};
use std::path::PathBuf;

#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// Per-sample shape, `[C, H, W]`.
    pub shape: Vec<usize>,
    /// `n × prod(shape)` values, row-major, in CHW order.
    pub images: Vec<f64>,
    pub labels: Vec<usize>,
}

/// How pixels are interleaved in a flat CSV row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PixelLayout {
    Chw,
    Hwc,
}

#[derive(Clone, Debug, PartialEq)]
pub enum DatasetSource {
    /// MNIST IDX image and label files (optionally `.gz`).
    Idx { images: PathBuf, labels: PathBuf },
    /// CIFAR-10 binary batch: per record one label byte then 3072 CHW bytes.
    CifarBinary(PathBuf),
    /// `.npz` with arrays `images` (`[n, C, H, W]` or `[n, H, W]`) and `labels` (`[n]`).
    Npz(PathBuf),
    /// Two `.npy` files.
    Npy { images: PathBuf, labels: PathBuf },
    /// Label then pixels 0–255 per line (ERAN's format); `shape` is `[C, H, W]`.
    Csv { path: PathBuf, shape: Vec<usize>, layout: PixelLayout },
}

pub fn load_dataset(source: &DatasetSource) -> Result<Dataset, FormatError> {
    let path = match source {
        DatasetSource::Idx { images, .. } | DatasetSource::Npy { images, .. } => images.clone(),
        DatasetSource::CifarBinary(p) | DatasetSource::Npz(p) | DatasetSource::Csv { path: p, .. } => p.clone(),
    };
    Err(FormatError {
        path,
        message: "dataset loading is not implemented yet".into(),
        kind: FormatErrorKind::Unsupported,
    })
}
