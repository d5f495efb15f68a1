//! Element types shared by the decoders and their exact conversion to f64.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Elem {
    Bool,
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F16,
    BF16,
    F32,
    F64,
}

impl Elem {
    pub(crate) fn size(self) -> usize {
        match self {
            Elem::Bool | Elem::U8 | Elem::I8 => 1,
            Elem::U16 | Elem::I16 | Elem::F16 | Elem::BF16 => 2,
            Elem::U32 | Elem::I32 | Elem::F32 => 4,
            Elem::U64 | Elem::I64 | Elem::F64 => 8,
        }
    }

    /// Decodes `bytes` (length a multiple of `size`) as little- or big-endian values.
    pub(crate) fn decode(self, bytes: &[u8], little_endian: bool) -> Vec<f64> {
        let size = self.size();
        bytes
            .chunks_exact(size)
            .map(|chunk| {
                let mut buf = [0u8; 8];
                buf[..size].copy_from_slice(chunk);
                if !little_endian {
                    buf[..size].reverse();
                }
                self.value_from_le(&buf)
            })
            .collect()
    }

    fn value_from_le(self, b: &[u8; 8]) -> f64 {
        let u16v = u16::from_le_bytes([b[0], b[1]]);
        let u32v = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let u64v = u64::from_le_bytes(*b);
        match self {
            Elem::Bool => f64::from(u8::from(b[0] != 0)),
            Elem::U8 => f64::from(b[0]),
            Elem::I8 => f64::from(b[0] as i8),
            Elem::U16 => f64::from(u16v),
            Elem::I16 => f64::from(u16v as i16),
            Elem::U32 => f64::from(u32v),
            Elem::I32 => f64::from(u32v as i32),
            Elem::U64 => u64v as f64,
            Elem::I64 => u64v as i64 as f64,
            Elem::F16 => f16_to_f64(u16v),
            Elem::BF16 => f64::from(f32::from_bits(u32::from(u16v) << 16)),
            Elem::F32 => f64::from(f32::from_bits(u32v)),
            Elem::F64 => f64::from_bits(u64v),
        }
    }
}

/// IEEE 754 binary16 to f64 (exact).
pub(crate) fn f16_to_f64(bits: u16) -> f64 {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exponent = i32::from((bits >> 10) & 0x1f);
    let mantissa = f64::from(bits & 0x3ff);
    let magnitude = match exponent {
        0 => mantissa * 2f64.powi(-24),
        0x1f if mantissa == 0.0 => f64::INFINITY,
        0x1f => f64::NAN,
        _ => (1.0 + mantissa / 1024.0) * 2f64.powi(exponent - 15),
    };
    sign * magnitude
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_values() {
        assert_eq!(f16_to_f64(0x3c00), 1.0);
        assert_eq!(f16_to_f64(0xc000), -2.0);
        assert_eq!(f16_to_f64(0x0001), 2f64.powi(-24));
        assert_eq!(f16_to_f64(0x7bff), 65504.0);
        assert!(f16_to_f64(0x7c00).is_infinite());
        assert!(f16_to_f64(0x7e00).is_nan());
    }

    #[test]
    fn decode_endianness_and_signed() {
        assert_eq!(Elem::I16.decode(&[0xff, 0xfe], true), vec![-257.0]);
        assert_eq!(Elem::I16.decode(&[0xff, 0xfe], false), vec![-2.0]);
        assert_eq!(Elem::BF16.decode(&[0x80, 0x3f], true), vec![1.0]);
        assert_eq!(Elem::F32.decode(&1.5f32.to_le_bytes(), true), vec![1.5]);
    }
}
