//! Minimal protobuf wire-format reader: varint, fixed32, fixed64 and length-delimited fields.

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// Iterates the fields of one message; a malformed field yields an error message.
pub(crate) struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Fields { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let byte = *self.buf.get(self.pos).ok_or("truncated varint")?;
            self.pos += 1;
            if shift == 63 && byte > 1 {
                return Err("varint overflows 64 bits".into());
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or("truncated field")?;
        let slice = &self.buf[self.pos..end];
        self.pos = end;
        Ok(slice)
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Wire<'a>), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let result = (|| {
            let key = self.varint()?;
            let field = u32::try_from(key >> 3).map_err(|_| "field number out of range")?;
            let value = match key & 7 {
                0 => Wire::Varint(self.varint()?),
                1 => Wire::Fixed64(u64::from_le_bytes(
                    self.take(8)?.try_into().map_err(|_| "bad fixed64")?,
                )),
                2 => {
                    let len = usize::try_from(self.varint()?).map_err(|_| "length out of range")?;
                    Wire::Bytes(self.take(len)?)
                }
                5 => Wire::Fixed32(u32::from_le_bytes(
                    self.take(4)?.try_into().map_err(|_| "bad fixed32")?,
                )),
                w => return Err(format!("unsupported protobuf wire type {w}")),
            };
            Ok((field, value))
        })();
        if result.is_err() {
            self.pos = self.buf.len();
        }
        Some(result)
    }
}

/// Repeated varints, packed (one `Bytes`) or not (one `Varint` per occurrence).
pub(crate) fn push_varints(out: &mut Vec<u64>, wire: Wire<'_>) -> Result<(), String> {
    match wire {
        Wire::Varint(v) => out.push(v),
        Wire::Bytes(b) => {
            let mut f = Fields::new(b);
            while f.pos < b.len() {
                out.push(f.varint()?);
            }
        }
        _ => return Err("expected varint".into()),
    }
    Ok(())
}

/// Repeated fixed32 values (floats), packed or not.
pub(crate) fn push_fixed32(out: &mut Vec<u32>, wire: Wire<'_>) -> Result<(), String> {
    match wire {
        Wire::Fixed32(v) => out.push(v),
        Wire::Bytes(b) if b.len() % 4 == 0 => out.extend(
            b.chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        ),
        _ => return Err("expected fixed32 values".into()),
    }
    Ok(())
}

/// Repeated fixed64 values (doubles), packed or not.
pub(crate) fn push_fixed64(out: &mut Vec<u64>, wire: Wire<'_>) -> Result<(), String> {
    match wire {
        Wire::Fixed64(v) => out.push(v),
        Wire::Bytes(b) if b.len() % 8 == 0 => out.extend(b.chunks_exact(8).map(|c| {
            let mut a = [0u8; 8];
            a.copy_from_slice(c);
            u64::from_le_bytes(a)
        })),
        _ => return Err("expected fixed64 values".into()),
    }
    Ok(())
}

pub(crate) fn bytes(wire: Wire<'_>) -> Result<&[u8], String> {
    match wire {
        Wire::Bytes(b) => Ok(b),
        _ => Err("expected a length-delimited field".into()),
    }
}

pub(crate) fn string(wire: Wire<'_>) -> Result<String, String> {
    std::str::from_utf8(bytes(wire)?)
        .map(str::to_string)
        .map_err(|_| "string is not UTF-8".into())
}

pub(crate) fn varint(wire: Wire<'_>) -> Result<u64, String> {
    match wire {
        Wire::Varint(v) => Ok(v),
        _ => Err("expected a varint".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields() {
        // field 1 varint 300, field 2 bytes "hi", field 5 fixed32 1.0f32
        let buf = [
            0x08, 0xac, 0x02, 0x12, 0x02, b'h', b'i', 0x2d, 0, 0, 0x80, 0x3f,
        ];
        let fields: Vec<_> = Fields::new(&buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(
            fields,
            vec![
                (1, Wire::Varint(300)),
                (2, Wire::Bytes(b"hi")),
                (5, Wire::Fixed32(0x3f80_0000))
            ]
        );
    }

    #[test]
    fn negative_int64_varint() {
        let buf = [
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ];
        let (_, w) = Fields::new(&buf).next().unwrap().unwrap();
        assert_eq!(varint(w).unwrap() as i64, -1);
    }

    #[test]
    fn malformed_input_is_an_error() {
        assert!(Fields::new(&[0x08]).next().unwrap().is_err());
        assert!(Fields::new(&[0x12, 0x05, 1]).next().unwrap().is_err());
        assert!(Fields::new(&[0x0b]).next().unwrap().is_err());
        assert!(
            Fields::new(&[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f])
                .next()
                .unwrap()
                .is_err()
        );
    }
}
