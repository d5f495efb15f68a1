//! Weight files (safetensors, npz) and dataset files (IDX, CIFAR binary, npy, npz, CSV) written
//! byte by byte here: good files decode exactly, bad files give the right error kind, never a panic.

use std::io::Write;
use std::path::{Path, PathBuf};
use upcc::formats::{
    load_dataset, load_tensors, DatasetSource, FormatErrorKind, PixelLayout, TensorData,
};

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("upcc_formats_{tag}_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn npy(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn npz(members: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in members {
        writer.start_file(format!("{name}.npy"), options).unwrap();
        writer.write_all(bytes).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

fn safetensors(entries: &[(&str, &str, &[usize], Vec<u8>)]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, dtype, shape, bytes) in entries {
        let start = data.len();
        data.extend_from_slice(bytes);
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    let header = serde_json::Value::Object(header).to_string();
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&data);
    out
}

#[test]
fn safetensors_dtypes_convert_exactly() {
    let dir = TempDir::new("st");
    let path = dir.write(
        "w.safetensors",
        &safetensors(&[
            ("a", "F32", &[2], f32_bytes(&[1.5, -0.25])),
            ("b", "F64", &[1], 0.1f64.to_le_bytes().to_vec()),
            ("c", "F16", &[2], vec![0x00, 0x3c, 0x00, 0xc0]),
            ("d", "BF16", &[1], vec![0x80, 0x3f]),
            ("e", "I64", &[1], (-3i64).to_le_bytes().to_vec()),
        ]),
    );
    let t = load_tensors(&path).unwrap();
    assert_eq!(
        t["a"],
        TensorData {
            shape: vec![2],
            data: vec![1.5, -0.25]
        }
    );
    assert_eq!(t["b"].data, vec![0.1]);
    assert_eq!(t["c"].data, vec![1.0, -2.0]);
    assert_eq!(t["d"].data, vec![1.0]);
    assert_eq!(t["e"].data, vec![-3.0]);
}

#[test]
fn npz_weights_decode() {
    let dir = TempDir::new("npzw");
    let path = dir.write(
        "w.npz",
        &npz(&[
            (
                "fc.weight",
                npy("<f4", &[2, 2], f32_bytes(&[1.0, 2.0, 3.0, 4.0]).as_slice()),
            ),
            ("fc.bias", npy("<f8", &[1], &2.0f64.to_le_bytes())),
        ]),
    );
    let t = load_tensors(&path).unwrap();
    assert_eq!(
        t["fc.weight"],
        TensorData {
            shape: vec![2, 2],
            data: vec![1.0, 2.0, 3.0, 4.0]
        }
    );
    assert_eq!(t["fc.bias"].data, vec![2.0]);
}

#[test]
fn bad_weight_files_give_typed_errors() {
    let dir = TempDir::new("badw");
    let kind = |name: &str, bytes: &[u8]| load_tensors(&dir.write(name, bytes)).unwrap_err();
    let nan = kind(
        "nan.safetensors",
        &safetensors(&[("layer1", "F32", &[2], f32_bytes(&[1.0, f32::NAN]))]),
    );
    assert_eq!(nan.kind, FormatErrorKind::NonFinite);
    assert!(nan.message.contains("layer1"), "{}", nan.message);
    let inf = kind(
        "inf.npz",
        &npz(&[("w", npy("<f4", &[1], &f32_bytes(&[f32::INFINITY])))]),
    );
    assert_eq!(inf.kind, FormatErrorKind::NonFinite);
    let good = safetensors(&[("a", "F32", &[2], f32_bytes(&[1.0, 2.0]))]);
    assert_eq!(
        kind("cut.safetensors", &good[..good.len() - 3]).kind,
        FormatErrorKind::Corrupt
    );
    assert_eq!(
        kind("short.safetensors", &good[..5]).kind,
        FormatErrorKind::Corrupt
    );
    let f8 = safetensors(&[("a", "F8_E4M3", &[1], vec![0])]);
    assert_eq!(
        kind("f8.safetensors", &f8).kind,
        FormatErrorKind::Unsupported
    );
    assert_eq!(
        kind("zip.npz", b"PK\x03\x04 not really a zip").kind,
        FormatErrorKind::Corrupt
    );
    let mismatch = kind(
        "len.npz",
        &npz(&[("w", npy("<f4", &[3], &f32_bytes(&[1.0, 2.0])))]),
    );
    assert_eq!(mismatch.kind, FormatErrorKind::Corrupt);
    assert!(
        mismatch.message.contains("data length mismatch"),
        "{}",
        mismatch.message
    );
    let complex = kind("c.npz", &npz(&[("w", npy("<c8", &[1], &[0; 8]))]));
    assert_eq!(complex.kind, FormatErrorKind::Unsupported);
    assert_eq!(kind("w.pt", b"").kind, FormatErrorKind::Unsupported);
    let missing = load_tensors(Path::new("/nonexistent/upcc/w.safetensors")).unwrap_err();
    assert_eq!(missing.kind, FormatErrorKind::Io);
    assert_eq!(missing.message, "file not found");
}

fn idx(type_code: u8, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, type_code, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn idx_files_plain_and_gzipped() {
    let dir = TempDir::new("idx");
    let pixels: Vec<u8> = (0..8).collect();
    let images = dir.write("img.idx3-ubyte.gz", &gzip(&idx(0x08, &[2, 2, 2], &pixels)));
    let labels = dir.write("lbl.idx1-ubyte", &idx(0x08, &[2], &[7, 3]));
    let d = load_dataset(&DatasetSource::Idx {
        images: images.clone(),
        labels: labels.clone(),
    })
    .unwrap();
    assert_eq!(d.shape, vec![1, 2, 2]);
    assert_eq!(d.labels, vec![7, 3]);
    assert_eq!(d.images, (0..8).map(f64::from).collect::<Vec<_>>());
    let three = dir.write("lbl3", &idx(0x08, &[3], &[1, 2, 3]));
    assert_eq!(
        load_dataset(&DatasetSource::Idx {
            images: images.clone(),
            labels: three
        })
        .unwrap_err()
        .kind,
        FormatErrorKind::Corrupt
    );
    let cut = dir.write("cut", &idx(0x08, &[2, 2, 2], &pixels[..7]));
    assert_eq!(
        load_dataset(&DatasetSource::Idx {
            images: cut,
            labels: labels.clone()
        })
        .unwrap_err()
        .kind,
        FormatErrorKind::Corrupt
    );
    let bad_gz = dir.write("bad.gz", &[0x1f, 0x8b, 8, 0, 1, 2, 3]);
    assert_eq!(
        load_dataset(&DatasetSource::Idx {
            images: bad_gz,
            labels
        })
        .unwrap_err()
        .kind,
        FormatErrorKind::Corrupt
    );
}

#[test]
fn cifar_binary_records() {
    let dir = TempDir::new("cifar");
    let mut bytes = vec![4u8];
    bytes.extend((0..3072).map(|i| (i % 251) as u8));
    let d = load_dataset(&DatasetSource::CifarBinary(dir.write("b.bin", &bytes))).unwrap();
    assert_eq!(
        (d.len(), d.labels[0], d.shape.clone()),
        (1, 4, vec![3, 32, 32])
    );
    assert_eq!(d.images[1024], f64::from((1024 % 251) as u8));
    let err = load_dataset(&DatasetSource::CifarBinary(
        dir.write("cut.bin", &bytes[..3000]),
    ))
    .unwrap_err();
    assert_eq!(err.kind, FormatErrorKind::Corrupt);
    let empty = load_dataset(&DatasetSource::CifarBinary(dir.write("empty.bin", &[]))).unwrap_err();
    assert!(empty.message.contains("empty"), "{}", empty.message);
}

#[test]
fn npy_pair_and_npz_datasets() {
    let dir = TempDir::new("npyds");
    let images = dir.write("x.npy", &npy("|u1", &[2, 2, 2], &[0, 1, 2, 3, 4, 5, 6, 7]));
    let labels = dir.write(
        "y.npy",
        &npy(
            "<i8",
            &[2],
            &[1, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0],
        ),
    );
    let d = load_dataset(&DatasetSource::Npy {
        images: images.clone(),
        labels: labels.clone(),
    })
    .unwrap();
    assert_eq!(
        (d.shape.clone(), d.labels.clone()),
        (vec![1, 2, 2], vec![1, 9])
    );
    let negative = dir.write(
        "neg.npy",
        &npy(
            "<i8",
            &[2],
            &[
                1, 0, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255, 255, 255, 255, 255,
            ],
        ),
    );
    assert_eq!(
        load_dataset(&DatasetSource::Npy {
            images,
            labels: negative
        })
        .unwrap_err()
        .kind,
        FormatErrorKind::Corrupt
    );
    let no_labels = dir.write(
        "a.npz",
        &npz(&[("images", npy("|u1", &[1, 1, 1, 1], &[0]))]),
    );
    let err = load_dataset(&DatasetSource::Npz(no_labels)).unwrap_err();
    assert!(err.message.contains("labels"), "{}", err.message);
    let empty = dir.write(
        "e.npz",
        &npz(&[
            ("images", npy("|u1", &[0, 1, 2, 2], &[])),
            ("labels", npy("|u1", &[0], &[])),
        ]),
    );
    assert!(load_dataset(&DatasetSource::Npz(empty))
        .unwrap_err()
        .message
        .contains("empty"));
    let nan = dir.write(
        "n.npz",
        &npz(&[
            ("images", npy("<f4", &[1, 1, 1], &f32_bytes(&[f32::NAN]))),
            ("labels", npy("|u1", &[1], &[0])),
        ]),
    );
    assert_eq!(
        load_dataset(&DatasetSource::Npz(nan)).unwrap_err().kind,
        FormatErrorKind::NonFinite
    );
}

#[test]
fn csv_layouts_and_errors() {
    let dir = TempDir::new("csv");
    // One 2-channel 1x2 image, HWC: pixel (0,0) = (10, 20), pixel (0,1) = (30, 40).
    let path = dir.write("d.csv", b"3,10,20,30,40\n\n");
    let shape = vec![2, 1, 2];
    let hwc = load_dataset(&DatasetSource::Csv {
        path: path.clone(),
        shape: shape.clone(),
        layout: PixelLayout::Hwc,
    })
    .unwrap();
    assert_eq!(
        (hwc.labels.clone(), hwc.images.clone()),
        (vec![3], vec![10.0, 30.0, 20.0, 40.0])
    );
    let chw = load_dataset(&DatasetSource::Csv {
        path,
        shape: shape.clone(),
        layout: PixelLayout::Chw,
    })
    .unwrap();
    assert_eq!(chw.images, vec![10.0, 20.0, 30.0, 40.0]);
    let load = |text: &[u8]| {
        load_dataset(&DatasetSource::Csv {
            path: dir.write("bad.csv", text),
            shape: shape.clone(),
            layout: PixelLayout::Hwc,
        })
    };
    assert!(load(b"3,10,20,30\n")
        .unwrap_err()
        .message
        .contains("line 1"));
    assert!(load(b"3,10,x,30,40\n")
        .unwrap_err()
        .message
        .contains("not a number"));
    assert!(load(b"-1,10,20,30,40\n")
        .unwrap_err()
        .message
        .contains("label"));
    assert!(load(b"\n\n").unwrap_err().message.contains("empty"));
    assert_eq!(
        load(b"1,nan,0,0,0\n").unwrap_err().kind,
        FormatErrorKind::NonFinite
    );
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn mutate(
        mut bytes: Vec<u8>,
        flips: &[(prop::sample::Index, u8)],
        cut: prop::sample::Index,
    ) -> Vec<u8> {
        for (index, value) in flips {
            let i = index.index(bytes.len());
            bytes[i] = *value;
        }
        let keep = cut.index(bytes.len() + 1);
        bytes.truncate(keep);
        bytes
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn mutated_weight_and_dataset_files_never_panic(
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
            cut in any::<prop::sample::Index>(),
        ) {
            let dir = TempDir::new("fuzz");
            let st = safetensors(&[("a", "F32", &[2], f32_bytes(&[1.0, 2.0])), ("b", "I64", &[1], vec![1; 8])]);
            let _ = load_tensors(&dir.write("m.safetensors", &mutate(st, &flips, cut)));
            let archive = npz(&[("images", npy("|u1", &[1, 2, 2], &[1, 2, 3, 4])), ("labels", npy("|u1", &[1], &[1]))]);
            let path = dir.write("m.npz", &mutate(archive, &flips, cut));
            let _ = load_tensors(&path);
            let _ = load_dataset(&DatasetSource::Npz(path));
            let images = dir.write("i.idx", &mutate(gzip(&idx(0x08, &[1, 2, 2], &[1, 2, 3, 4])), &flips, cut));
            let labels = dir.write("l.idx", &mutate(idx(0x08, &[1], &[1]), &flips, cut));
            let _ = load_dataset(&DatasetSource::Idx { images, labels });
            let csv = dir.write("c.csv", &mutate(b"1,2,3,4,5\n".to_vec(), &flips, cut));
            let _ = load_dataset(&DatasetSource::Csv { path: csv, shape: vec![1, 2, 2], layout: PixelLayout::Hwc });
        }

        #[test]
        fn random_npy_headers_never_panic(header in "\\{[ -~]{0,80}\\}", data in proptest::collection::vec(any::<u8>(), 0..32)) {
            let dir = TempDir::new("fuzzhdr");
            let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
            bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
            bytes.extend_from_slice(header.as_bytes());
            bytes.extend_from_slice(&data);
            let x = dir.write("x.npy", &bytes);
            let y = dir.write("y.npy", &npy("|u1", &[1], &[0]));
            let _ = load_dataset(&DatasetSource::Npy { images: x, labels: y });
        }
    }
}
