//! Datasets: images with integer labels, stored as read (pixels not rescaled).

use super::{FormatError, FormatErrorKind, TensorData, MAX_FILE_BYTES};
use crate::rng::SplitMix64;
use std::io::Read;
use std::path::{Path, PathBuf};

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
    Csv {
        path: PathBuf,
        shape: Vec<usize>,
        layout: PixelLayout,
    },
}

/// Loads a dataset. Errors: unreadable or corrupt files, image/label count mismatch, an empty
/// dataset, non-finite pixels, labels that are not non-negative integers.
pub fn load_dataset(source: &DatasetSource) -> Result<Dataset, FormatError> {
    let (dataset, path) = match source {
        DatasetSource::Idx { images, labels } => (load_idx(images, labels)?, images),
        DatasetSource::CifarBinary(path) => (load_cifar(path)?, path),
        DatasetSource::Npz(path) => {
            let mut arrays = super::read_npz(path, &super::read_file(path)?)?;
            let take = |arrays: &mut std::collections::BTreeMap<String, TensorData>, key: &str| {
                arrays.remove(key).ok_or_else(|| {
                    FormatError::corrupt(path, format!("the .npz has no '{key}' array"))
                })
            };
            let images = take(&mut arrays, "images")?;
            let labels = take(&mut arrays, "labels")?;
            (from_arrays(path, images, labels)?, path)
        }
        DatasetSource::Npy { images, labels } => {
            let image_array = super::npy::parse_npy(images, "images", &super::read_file(images)?)?;
            let label_array = super::npy::parse_npy(labels, "labels", &super::read_file(labels)?)?;
            (from_arrays(images, image_array, label_array)?, images)
        }
        DatasetSource::Csv {
            path,
            shape,
            layout,
        } => (load_csv(path, shape, *layout)?, path),
    };
    dataset.check(path)?;
    Ok(dataset)
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Values per image, `prod(shape)`.
    pub fn sample_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Image `i` in CHW order; `i` must be `< len()`.
    pub fn image(&self, i: usize) -> &[f64] {
        let n = self.sample_len();
        &self.images[i * n..(i + 1) * n]
    }

    /// Number of classes the labels imply: largest label + 1 (0 when empty).
    pub fn label_bound(&self) -> usize {
        self.labels.iter().max().map_or(0, |m| m + 1)
    }

    /// Every pixel multiplied by `factor` (e.g. `1/255` maps bytes to [0, 1]).
    pub fn scale(&self, factor: f64) -> Dataset {
        Dataset {
            shape: self.shape.clone(),
            images: self.images.iter().map(|v| v * factor).collect(),
            labels: self.labels.clone(),
        }
    }

    /// The first `n` samples; `n` must be in `1..=len()`.
    pub fn select_first(&self, n: usize) -> Result<Dataset, String> {
        self.select_range(0, n)
    }

    /// Samples `start..end` (end exclusive); the range must be non-empty and within `len()`.
    pub fn select_range(&self, start: usize, end: usize) -> Result<Dataset, String> {
        if start >= end || end > self.len() {
            return Err(format!(
                "cannot select samples {start}..{end} from a dataset of {} samples",
                self.len()
            ));
        }
        Ok(self.gather((start..end).collect::<Vec<_>>().as_slice()))
    }

    /// `n` distinct samples drawn uniformly without replacement, reproducibly from `seed`:
    /// a partial Fisher–Yates shuffle of the indices `0..len` driven by [`SplitMix64`]
    /// (step `i` swaps index `i` with `i + below(len - i)`); samples keep their drawn order.
    pub fn sample(&self, n: usize, seed: u64) -> Result<Dataset, String> {
        if n == 0 || n > self.len() {
            return Err(format!(
                "cannot sample {n} of a dataset of {} samples",
                self.len()
            ));
        }
        let mut rng = SplitMix64::new(seed);
        let mut indices: Vec<usize> = (0..self.len()).collect();
        for i in 0..n {
            let j = i + rng.below((self.len() - i) as u64) as usize;
            indices.swap(i, j);
        }
        Ok(self.gather(&indices[..n]))
    }

    /// `n` images of `shape` with pixels uniform in `[lo, hi)` drawn from [`SplitMix64`] seeded by
    /// `seed` (value `lo + (hi - lo) * unit_f64()`, in row-major order). Labels are all 0 and
    /// carry no meaning.
    pub fn noise(
        n: usize,
        shape: &[usize],
        seed: u64,
        lo: f64,
        hi: f64,
    ) -> Result<Dataset, String> {
        if n == 0 || shape.is_empty() || shape.contains(&0) {
            return Err("noise needs at least one sample of a non-empty shape".into());
        }
        if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
            return Err(format!("noise range [{lo}, {hi}] is not a finite interval"));
        }
        let total = shape
            .iter()
            .try_fold(n, |acc, &d| acc.checked_mul(d))
            .filter(|&t| t <= 1 << 28)
            .ok_or("noise dataset is too large")?;
        let mut rng = SplitMix64::new(seed);
        let images = (0..total)
            .map(|_| lo + (hi - lo) * rng.unit_f64())
            .collect();
        Ok(Dataset {
            shape: shape.to_vec(),
            images,
            labels: vec![0; n],
        })
    }

    fn gather(&self, indices: &[usize]) -> Dataset {
        let mut images = Vec::with_capacity(indices.len() * self.sample_len());
        for &i in indices {
            images.extend_from_slice(self.image(i));
        }
        Dataset {
            shape: self.shape.clone(),
            images,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
        }
    }

    fn check(&self, path: &Path) -> Result<(), FormatError> {
        if self.labels.is_empty() {
            return Err(FormatError::corrupt(path, "the dataset is empty"));
        }
        if Some(self.images.len()) != self.sample_len().checked_mul(self.labels.len()) {
            return Err(FormatError::corrupt(
                path,
                "image data does not match the sample count and shape",
            ));
        }
        if let Some(i) = self.images.iter().position(|v| !v.is_finite()) {
            return Err(FormatError::new(
                path,
                FormatErrorKind::NonFinite,
                format!(
                    "image {} holds a non-finite pixel",
                    i / self.sample_len().max(1)
                ),
            ));
        }
        Ok(())
    }
}

fn labels_from(path: &Path, values: &[f64]) -> Result<Vec<usize>, FormatError> {
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            if v >= 0.0 && v.fract() == 0.0 && v < 1e9 {
                Ok(v as usize)
            } else {
                Err(FormatError::corrupt(
                    path,
                    format!("label {i} ({v}) is not a non-negative integer"),
                ))
            }
        })
        .collect()
}

fn from_arrays(
    path: &Path,
    images: TensorData,
    labels: TensorData,
) -> Result<Dataset, FormatError> {
    let shape = match images.shape.as_slice() {
        [_, h, w] => vec![1, *h, *w],
        [_, c, h, w] => vec![*c, *h, *w],
        other => {
            return Err(FormatError::corrupt(
                path,
                format!("images must be [n, C, H, W] or [n, H, W], found shape {other:?}"),
            ))
        }
    };
    if labels.shape.len() != 1 || labels.shape[0] != images.shape[0] {
        return Err(FormatError::corrupt(
            path,
            format!(
                "labels must be [n] with n = {} images, found shape {:?}",
                images.shape[0], labels.shape
            ),
        ));
    }
    Ok(Dataset {
        shape,
        images: images.data,
        labels: labels_from(path, &labels.data)?,
    })
}

/// Reads a file, transparently gunzipping `.gz` (or gzip-magic) content.
fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, FormatError> {
    let bytes = super::read_file(path)?;
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok(bytes);
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes.as_slice())
        .take(MAX_FILE_BYTES)
        .read_to_end(&mut out)
        .map_err(|e| FormatError::corrupt(path, format!("bad gzip data: {e}")))?;
    Ok(out)
}

/// Parses an IDX file: magic `0 0 type ndim`, big-endian u32 dims, big-endian data.
fn parse_idx(path: &Path, bytes: &[u8]) -> Result<TensorData, FormatError> {
    use super::elem::Elem;
    let header = bytes
        .get(..4)
        .ok_or_else(|| FormatError::corrupt(path, "truncated IDX header"))?;
    if header[0] != 0 || header[1] != 0 {
        return Err(FormatError::corrupt(path, "not an IDX file (bad magic)"));
    }
    let elem = match header[2] {
        0x08 => Elem::U8,
        0x09 => Elem::I8,
        0x0b => Elem::I16,
        0x0c => Elem::I32,
        0x0d => Elem::F32,
        0x0e => Elem::F64,
        t => {
            return Err(FormatError::unsupported(
                path,
                format!("unsupported IDX data type 0x{t:02x}"),
            ))
        }
    };
    let ndim = usize::from(header[3]);
    let dims_end = 4 + 4 * ndim;
    let dims = bytes
        .get(4..dims_end)
        .ok_or_else(|| FormatError::corrupt(path, "truncated IDX header"))?;
    let shape: Vec<usize> = dims
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let needed = shape
        .iter()
        .try_fold(elem.size(), |acc, &d| acc.checked_mul(d));
    let data = &bytes[dims_end..];
    if needed != Some(data.len()) {
        return Err(FormatError::corrupt(
            path,
            format!(
                "IDX data length mismatch: shape {shape:?} needs {needed:?} bytes, found {}",
                data.len()
            ),
        ));
    }
    Ok(TensorData {
        shape,
        data: elem.decode(data, false),
    })
}

fn load_idx(images_path: &Path, labels_path: &Path) -> Result<Dataset, FormatError> {
    let images = parse_idx(images_path, &read_maybe_gz(images_path)?)?;
    let labels = parse_idx(labels_path, &read_maybe_gz(labels_path)?)?;
    if labels.shape.len() != 1 {
        return Err(FormatError::corrupt(
            labels_path,
            format!("IDX labels must be 1-D, found {:?}", labels.shape),
        ));
    }
    if labels.shape[0] != images.shape.first().copied().unwrap_or(0) {
        return Err(FormatError::corrupt(
            labels_path,
            format!(
                "{} labels for {} images",
                labels.shape[0],
                images.shape.first().copied().unwrap_or(0)
            ),
        ));
    }
    from_arrays(images_path, images, labels)
}

const CIFAR_RECORD: usize = 1 + 3 * 32 * 32;

fn load_cifar(path: &Path) -> Result<Dataset, FormatError> {
    let bytes = super::read_file(path)?;
    if bytes.len() % CIFAR_RECORD != 0 {
        return Err(FormatError::corrupt(
            path,
            format!(
                "CIFAR-10 binary size {} is not a multiple of {CIFAR_RECORD}-byte records",
                bytes.len()
            ),
        ));
    }
    let mut images = Vec::with_capacity(bytes.len());
    let mut labels = Vec::with_capacity(bytes.len() / CIFAR_RECORD);
    for record in bytes.chunks_exact(CIFAR_RECORD) {
        if record[0] > 9 {
            return Err(FormatError::corrupt(
                path,
                format!("CIFAR-10 label {} is out of range 0..9", record[0]),
            ));
        }
        labels.push(usize::from(record[0]));
        images.extend(record[1..].iter().map(|&b| f64::from(b)));
    }
    Ok(Dataset {
        shape: vec![3, 32, 32],
        images,
        labels,
    })
}

fn load_csv(path: &Path, shape: &[usize], layout: PixelLayout) -> Result<Dataset, FormatError> {
    let text = String::from_utf8(super::read_file(path)?)
        .map_err(|_| FormatError::corrupt(path, "the CSV file is not UTF-8 text"))?;
    let pixels: usize = shape.iter().product();
    if shape.is_empty() || pixels == 0 || (layout == PixelLayout::Hwc && shape.len() != 3) {
        return Err(FormatError::unsupported(
            path,
            format!("invalid CSV sample shape {shape:?}"),
        ));
    }
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for (line_no, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let values: Vec<f64> = line
            .split(',')
            .map(|field| field.trim().parse::<f64>())
            .collect::<Result<_, _>>()
            .map_err(|_| {
                FormatError::corrupt(
                    path,
                    format!("line {}: a value is not a number", line_no + 1),
                )
            })?;
        if values.len() != pixels + 1 {
            return Err(FormatError::corrupt(
                path,
                format!(
                    "line {}: {} values, expected a label and {pixels} pixels",
                    line_no + 1,
                    values.len()
                ),
            ));
        }
        labels.push(
            labels_from(path, &values[..1]).map_err(|_| {
                FormatError::corrupt(
                    path,
                    format!(
                        "line {}: label {} is not a non-negative integer",
                        line_no + 1,
                        values[0]
                    ),
                )
            })?[0],
        );
        let row = &values[1..];
        match layout {
            PixelLayout::Chw => images.extend_from_slice(row),
            PixelLayout::Hwc => {
                let (c, h, w) = (shape[0], shape[1], shape[2]);
                for ch in 0..c {
                    for y in 0..h {
                        for x in 0..w {
                            images.push(row[(y * w + x) * c + ch]);
                        }
                    }
                }
            }
        }
    }
    Ok(Dataset {
        shape: shape.to_vec(),
        images,
        labels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy(n: usize) -> Dataset {
        Dataset {
            shape: vec![1, 1, 2],
            images: (0..2 * n).map(|v| v as f64).collect(),
            labels: (0..n).collect(),
        }
    }

    #[test]
    fn selections() {
        let d = toy(5);
        assert_eq!(d.select_first(2).unwrap().labels, vec![0, 1]);
        let r = d.select_range(1, 3).unwrap();
        assert_eq!(r.labels, vec![1, 2]);
        assert_eq!(r.images, vec![2.0, 3.0, 4.0, 5.0]);
        assert!(d.select_range(3, 3).is_err());
        assert!(d.select_first(6).is_err());
        assert_eq!(d.scale(0.5).images[3], 1.5);
    }

    #[test]
    fn sampling_is_seeded_and_without_replacement() {
        let d = toy(50);
        let a = d.sample(20, 9).unwrap();
        assert_eq!(a, d.sample(20, 9).unwrap());
        assert_ne!(a.labels, d.sample(20, 10).unwrap().labels);
        let mut labels = a.labels.clone();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), 20);
        for (k, &l) in a.labels.iter().enumerate() {
            assert_eq!(a.image(k), d.image(l));
        }
        assert!(d.sample(51, 1).is_err());
    }

    #[test]
    fn noise_is_seeded_and_in_range() {
        let a = Dataset::noise(3, &[1, 4, 4], 5, -0.5, 0.5).unwrap();
        assert_eq!(a, Dataset::noise(3, &[1, 4, 4], 5, -0.5, 0.5).unwrap());
        assert_eq!(a.images.len(), 48);
        assert!(a.images.iter().all(|v| (-0.5..0.5).contains(v)));
        assert!(Dataset::noise(3, &[1], 5, 1.0, 0.0).is_err());
        assert!(Dataset::noise(0, &[1], 5, 0.0, 1.0).is_err());
    }
}
