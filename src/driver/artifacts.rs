//! Files written by `--out`: perturbations as `.npy` and as magnified PNG pictures.

use flate2::write::ZlibEncoder;
use flate2::{Compression, Crc};
use std::io::{self, Write};
use std::path::Path;

/// A little-endian float64 `.npy` file (format version 1.0, C order).
pub fn write_npy(path: &Path, shape: &[usize], data: &[f64]) -> io::Result<()> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {shape_text}, }}");
    // Magic (6) + version (2) + length (2) + header + '\n' must be a multiple of 64.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = Vec::with_capacity(10 + header.len() + 8 * data.len());
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, bytes)
}

/// An RGB picture of δ (`[C, H, W]`), each pixel magnified `scale` times.
/// One channel: blue for negative, red for positive, white for 0, saturated at ±`eps`.
/// Three channels: 0.5 + δ / (2·eps) per colour.
pub fn write_delta_png(
    path: &Path,
    shape: &[usize],
    delta: &[f64],
    eps: f64,
    scale: usize,
) -> io::Result<()> {
    let (c, h, w) = match shape {
        [c, h, w] => (*c, *h, *w),
        [h, w] => (1, *h, *w),
        [n] => (1, 1, *n),
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "δ must be 1-, 2- or 3-dimensional",
            ))
        }
    };
    if delta.len() != c * h * w {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "δ length does not match its shape",
        ));
    }
    let eps = if eps > 0.0 { eps } else { 1.0 };
    let to_byte = |f: f64| (f.clamp(0.0, 1.0) * 255.0).round() as u8;
    let pixel = |y: usize, x: usize| -> [u8; 3] {
        if c == 3 {
            let v = |ch: usize| to_byte(0.5 + delta[(ch * h + y) * w + x] / (2.0 * eps));
            [v(0), v(1), v(2)]
        } else {
            let t = (delta[y * w + x] / eps).clamp(-1.0, 1.0);
            if t >= 0.0 {
                [255, to_byte(1.0 - t), to_byte(1.0 - t)]
            } else {
                [to_byte(1.0 + t), to_byte(1.0 + t), 255]
            }
        }
    };
    let (out_w, out_h) = (w * scale, h * scale);
    let mut raw = Vec::with_capacity(out_h * (1 + 3 * out_w));
    for oy in 0..out_h {
        raw.push(0); // filter: none
        for ox in 0..out_w {
            raw.extend_from_slice(&pixel(oy / scale, ox / scale));
        }
    }
    let mut encoder = ZlibEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(&raw)?;
    let compressed = encoder.finish()?;

    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&(out_w as u32).to_be_bytes());
    ihdr.extend_from_slice(&(out_h as u32).to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit, RGB, deflate, no filter, no interlace
    push_chunk(&mut png, b"IHDR", &ihdr);
    push_chunk(&mut png, b"IDAT", &compressed);
    push_chunk(&mut png, b"IEND", &[]);
    std::fs::write(path, png)
}

fn push_chunk(png: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    png.extend_from_slice(&(data.len() as u32).to_be_bytes());
    png.extend_from_slice(kind);
    png.extend_from_slice(data);
    let mut crc = Crc::new();
    crc.update(kind);
    crc.update(data);
    png.extend_from_slice(&crc.sum().to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_header_is_aligned_and_data_round_trips() {
        let dir = std::env::temp_dir().join(format!("upcc-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("d.npy");
        write_npy(&path, &[1, 2, 3], &[0.5, -1.0, 2.0, 3.0, 4.0, -0.25]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
        assert!(header.contains("'shape': (1, 2, 3)"));
        let last = &bytes[bytes.len() - 8..];
        assert_eq!(f64::from_le_bytes(last.try_into().unwrap()), -0.25);
    }

    #[test]
    fn png_has_valid_signature_and_size() {
        let dir = std::env::temp_dir().join(format!("upcc-png-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("d.png");
        let delta: Vec<f64> = (0..4).map(|i| i as f64 / 10.0 - 0.1).collect();
        write_delta_png(&path, &[1, 2, 2], &delta, 0.2, 3).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(u32::from_be_bytes(bytes[16..20].try_into().unwrap()), 6);
        assert_eq!(u32::from_be_bytes(bytes[20..24].try_into().unwrap()), 6);
        assert!(write_delta_png(&path, &[1, 3, 2], &delta, 0.2, 3).is_err());
    }
}
