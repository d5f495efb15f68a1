//! `.npy` arrays (our own parser: v1–v3 header, C order) and `.npz` archives of them.

use super::elem::Elem;
use super::{FormatError, TensorData, MAX_FILE_BYTES};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

const MAGIC: &[u8] = b"\x93NUMPY";

/// Decodes one `.npy` array. `what` names it in messages (the file, or the npz member).
pub(crate) fn parse_npy(path: &Path, what: &str, bytes: &[u8]) -> Result<TensorData, FormatError> {
    let corrupt = |msg: String| FormatError::corrupt(path, format!("{what}: {msg}"));
    if bytes.len() < MAGIC.len() + 2 || &bytes[..MAGIC.len()] != MAGIC {
        return Err(corrupt("not a .npy array (bad magic)".into()));
    }
    let major = bytes[6];
    let (header_len, header_start): (usize, usize) = match major {
        1 => {
            let b = bytes
                .get(8..10)
                .ok_or_else(|| corrupt("truncated .npy header".into()))?;
            (usize::from(u16::from_le_bytes([b[0], b[1]])), 10)
        }
        2 | 3 => {
            let b = bytes
                .get(8..12)
                .ok_or_else(|| corrupt("truncated .npy header".into()))?;
            (u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize, 12)
        }
        v => {
            return Err(FormatError::unsupported(
                path,
                format!("{what}: unsupported .npy version {v}"),
            ))
        }
    };
    let data_start = header_start
        .checked_add(header_len)
        .filter(|&end| end <= bytes.len())
        .ok_or_else(|| corrupt("truncated .npy header".into()))?;
    let header = std::str::from_utf8(&bytes[header_start..data_start])
        .map_err(|_| corrupt("npy header is not text".into()))?;
    let dict = match PyValue::parse(header) {
        Some(PyValue::Dict(d)) => d,
        _ => return Err(corrupt("unreadable npy header dictionary".into())),
    };
    let field = |key: &str| dict.iter().find(|(k, _)| k == key).map(|(_, v)| v);
    let descr = match field("descr") {
        Some(PyValue::Str(s)) => s.as_str(),
        Some(_) => {
            return Err(FormatError::unsupported(
                path,
                format!("{what}: structured npy dtypes are not supported"),
            ))
        }
        None => return Err(corrupt("npy header has no 'descr'".into())),
    };
    let fortran_order = match field("fortran_order") {
        Some(PyValue::Bool(order)) => *order,
        _ => return Err(corrupt("npy header has no valid 'fortran_order'".into())),
    };
    let shape: Vec<usize> = match field("shape") {
        Some(PyValue::Tuple(items)) => items
            .iter()
            .map(|v| match v {
                PyValue::Int(n) => usize::try_from(*n).ok(),
                _ => None,
            })
            .collect::<Option<_>>()
            .ok_or_else(|| corrupt("npy 'shape' is not a tuple of sizes".into()))?,
        _ => return Err(corrupt("npy header has no valid 'shape'".into())),
    };
    let (elem, little_endian) = parse_descr(descr).ok_or_else(|| {
        FormatError::unsupported(path, format!("{what}: unsupported npy dtype '{descr}'"))
    })?;
    let expected = shape
        .iter()
        .try_fold(elem.size(), |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| corrupt(format!("shape {shape:?} is too large")))?;
    let data = &bytes[data_start..];
    if data.len() != expected {
        return Err(corrupt(format!(
            "data length mismatch: shape {shape:?} of '{descr}' needs {expected} bytes, found {}",
            data.len()
        )));
    }
    let values = elem.decode(data, little_endian);
    let data = if fortran_order {
        column_major_to_row_major(&values, &shape)
    } else {
        values
    };
    Ok(TensorData { shape, data })
}

/// Reorders a column-major (Fortran) array into row-major order.
fn column_major_to_row_major(values: &[f64], shape: &[usize]) -> Vec<f64> {
    let mut out = vec![0.0; values.len()];
    let mut index = vec![0usize; shape.len()];
    for value in out.iter_mut() {
        // `index` walks row-major order; its column-major offset is Σ index[k]·Π_{j<k} shape[j].
        let mut offset = 0;
        let mut stride = 1;
        for (k, &dim) in shape.iter().enumerate() {
            offset += index[k] * stride;
            stride *= dim;
        }
        *value = values[offset];
        for k in (0..shape.len()).rev() {
            index[k] += 1;
            if index[k] < shape[k] {
                break;
            }
            index[k] = 0;
        }
    }
    out
}

/// Maps an npy `descr` such as `<f4` or `|u1` to an element type and byte order.
fn parse_descr(descr: &str) -> Option<(Elem, bool)> {
    let mut chars = descr.chars();
    let order = chars.next()?;
    let little_endian = match order {
        '<' | '|' | '=' => true,
        '>' => false,
        _ => return None,
    };
    let elem = match chars.as_str() {
        "b1" => Elem::Bool,
        "u1" => Elem::U8,
        "i1" => Elem::I8,
        "u2" => Elem::U16,
        "i2" => Elem::I16,
        "u4" => Elem::U32,
        "i4" => Elem::I32,
        "u8" => Elem::U64,
        "i8" => Elem::I64,
        "f2" => Elem::F16,
        "f4" => Elem::F32,
        "f8" => Elem::F64,
        _ => return None,
    };
    Some((elem, little_endian))
}

/// Every `<name>.npy` member of an `.npz` archive, keyed by `<name>`.
pub(crate) fn read_npz(
    path: &Path,
    bytes: &[u8],
) -> Result<BTreeMap<String, TensorData>, FormatError> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| FormatError::corrupt(path, format!("not a valid .npz (zip) archive: {e}")))?;
    let mut tensors = BTreeMap::new();
    for i in 0..archive.len() {
        let mut member = archive
            .by_index(i)
            .map_err(|e| FormatError::corrupt(path, format!("bad zip entry {i}: {e}")))?;
        let Some(name) = member.name().strip_suffix(".npy").map(str::to_string) else {
            continue;
        };
        let mut buf = Vec::new();
        (&mut member)
            .take(MAX_FILE_BYTES)
            .read_to_end(&mut buf)
            .map_err(|e| {
                FormatError::corrupt(path, format!("cannot decompress '{name}.npy': {e}"))
            })?;
        let tensor = parse_npy(path, &format!("array '{name}'"), &buf)?;
        tensors.insert(name, tensor);
    }
    if tensors.is_empty() {
        return Err(FormatError::corrupt(
            path,
            "the .npz archive holds no .npy arrays",
        ));
    }
    Ok(tensors)
}

/// The subset of Python literals that npy headers use.
#[derive(Debug, PartialEq)]
enum PyValue {
    Str(String),
    Int(i64),
    Bool(bool),
    None,
    Tuple(Vec<PyValue>),
    List(Vec<PyValue>),
    Dict(Vec<(String, PyValue)>),
}

impl PyValue {
    fn parse(text: &str) -> Option<PyValue> {
        let mut parser = PyParser {
            s: text.as_bytes(),
            pos: 0,
            depth: 0,
        };
        let value = parser.value()?;
        parser.skip_ws();
        (parser.pos == parser.s.len()).then_some(value)
    }
}

struct PyParser<'a> {
    s: &'a [u8],
    pos: usize,
    depth: usize,
}

impl PyParser<'_> {
    fn skip_ws(&mut self) {
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.pos).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> Option<PyValue> {
        self.depth += 1;
        if self.depth > 32 {
            return None;
        }
        let value = match self.peek()? {
            b'{' => {
                self.pos += 1;
                let mut entries = Vec::new();
                while !self.eat(b'}') {
                    let PyValue::Str(key) = self.value()? else {
                        return None;
                    };
                    if !self.eat(b':') {
                        return None;
                    }
                    entries.push((key, self.value()?));
                    if !self.eat(b',') && self.peek() != Some(b'}') {
                        return None;
                    }
                }
                PyValue::Dict(entries)
            }
            open @ (b'(' | b'[') => {
                self.pos += 1;
                let close = if open == b'(' { b')' } else { b']' };
                let mut items = Vec::new();
                while !self.eat(close) {
                    items.push(self.value()?);
                    if !self.eat(b',') && self.peek() != Some(close) {
                        return None;
                    }
                }
                if open == b'(' {
                    PyValue::Tuple(items)
                } else {
                    PyValue::List(items)
                }
            }
            quote @ (b'\'' | b'"') => {
                self.pos += 1;
                let start = self.pos;
                while *self.s.get(self.pos)? != quote {
                    self.pos += 1;
                }
                let text = std::str::from_utf8(&self.s[start..self.pos])
                    .ok()?
                    .to_string();
                self.pos += 1;
                PyValue::Str(text)
            }
            _ => {
                let start = self.pos;
                while self.pos < self.s.len()
                    && (self.s[self.pos].is_ascii_alphanumeric() || self.s[self.pos] == b'-')
                {
                    self.pos += 1;
                }
                match std::str::from_utf8(&self.s[start..self.pos]).ok()? {
                    "True" => PyValue::Bool(true),
                    "False" => PyValue::Bool(false),
                    "None" => PyValue::None,
                    word => PyValue::Int(word.trim_end_matches('L').parse().ok()?),
                }
            }
        };
        self.depth -= 1;
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        npy_ordered(descr, false, shape, data)
    }

    fn npy_ordered(descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
        let order = if fortran { "True" } else { "False" };
        let header =
            format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {shape}, }}\n");
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn parses_header_literals() {
        let v = PyValue::parse("{'a': (2, 3), \"b\": False, 'c': [1,], 'd': ()}").unwrap();
        assert_eq!(
            v,
            PyValue::Dict(vec![
                (
                    "a".into(),
                    PyValue::Tuple(vec![PyValue::Int(2), PyValue::Int(3)])
                ),
                ("b".into(), PyValue::Bool(false)),
                ("c".into(), PyValue::List(vec![PyValue::Int(1)])),
                ("d".into(), PyValue::Tuple(vec![])),
            ])
        );
        assert!(PyValue::parse("{'a': (2, 3}").is_none());
        assert!(PyValue::parse(&"(".repeat(100)).is_none());
    }

    #[test]
    fn decodes_arrays() {
        let p = Path::new("x.npy");
        let t = parse_npy(p, "x", &npy("<f4", "(2,)", &[0, 0, 128, 63, 0, 0, 0, 64])).unwrap();
        assert_eq!(
            t,
            TensorData {
                shape: vec![2],
                data: vec![1.0, 2.0]
            }
        );
        let t = parse_npy(p, "x", &npy(">i2", "(1, 1)", &[0xff, 0xfe])).unwrap();
        assert_eq!(
            t,
            TensorData {
                shape: vec![1, 1],
                data: vec![-2.0]
            }
        );
        let t = parse_npy(p, "x", &npy("<f8", "()", &2.5f64.to_le_bytes())).unwrap();
        assert_eq!(
            t,
            TensorData {
                shape: vec![],
                data: vec![2.5]
            }
        );
    }

    #[test]
    fn fortran_order_arrays_are_reordered() {
        // Column-major [[1, 2, 3], [4, 5, 6]] is stored as 1 4 2 5 3 6.
        let bytes: Vec<u8> = [1u8, 4, 2, 5, 3, 6].to_vec();
        let t = parse_npy(
            Path::new("x.npy"),
            "x",
            &npy_ordered("|u1", true, "(2, 3)", &bytes),
        )
        .unwrap();
        assert_eq!(t.data, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let cube: Vec<u8> = (0..24).collect();
        let t = parse_npy(
            Path::new("x.npy"),
            "x",
            &npy_ordered("|u1", true, "(2, 3, 4)", &cube),
        )
        .unwrap();
        // Element (i, j, k) = (1, 2, 1): row-major index 12i + 4j + k, column-major offset i + 2j + 6k.
        assert_eq!(t.data[12 + 2 * 4 + 1], (1 + 2 * 2 + 6) as f64);
    }

    #[test]
    fn rejects_bad_arrays() {
        let p = Path::new("x.npy");
        let err = parse_npy(p, "x", &npy("<f4", "(3,)", &[0; 8])).unwrap_err();
        assert!(
            err.message.contains("data length mismatch"),
            "{}",
            err.message
        );
        let err = parse_npy(p, "x", &npy("<c16", "(1,)", &[0; 16])).unwrap_err();
        assert_eq!(err.kind, crate::formats::FormatErrorKind::Unsupported);
        let err = parse_npy(p, "x", &npy("<f4", "(4611686018427387904, 8)", &[])).unwrap_err();
        assert!(err.message.contains("too large"), "{}", err.message);
        assert!(parse_npy(p, "x", b"\x93NUMPY\x01").is_err());
    }
}
