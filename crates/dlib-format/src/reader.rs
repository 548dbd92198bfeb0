use crate::{DlibError, Result};

/// Cursor over a dlib-serialized byte buffer.
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading at the first byte.
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    /// Current byte offset.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// True when every byte has been consumed.
    pub fn at_end(&self) -> bool {
        self.pos == self.bytes.len()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or(DlibError::Eof(self.pos))?;
        let s = self.bytes.get(self.pos..end).ok_or(DlibError::Eof(self.pos))?;
        self.pos = end;
        Ok(s)
    }

    /// Builds an error pointing at the current position.
    pub fn unexpected(&self, what: impl Into<String>) -> DlibError {
        DlibError::Unexpected { at: self.pos, what: what.into() }
    }

    /// Integer: control byte (low nibble = byte count, 0x80 = negative), then magnitude LE.
    pub fn int(&mut self) -> Result<i64> {
        let at = self.pos;
        let control = self.take(1)?[0];
        let n = (control & 0x0f) as usize;
        if n == 0 || n > 8 || control & 0x70 != 0 {
            return Err(DlibError::BadInteger(at));
        }
        let mut magnitude: u64 = 0;
        for (i, b) in self.take(n)?.iter().enumerate() {
            magnitude |= (*b as u64) << (8 * i);
        }
        let magnitude = i64::try_from(magnitude).map_err(|_| DlibError::BadInteger(at))?;
        Ok(if control & 0x80 != 0 { -magnitude } else { magnitude })
    }

    /// A non-negative integer that must fit a `usize` (sizes, counts).
    pub fn size(&mut self) -> Result<usize> {
        let at = self.pos;
        let v = self.int()?;
        usize::try_from(v).map_err(|_| DlibError::BadInteger(at))
    }

    /// Reads an integer and checks it equals `expected` (versions, dimensions).
    pub fn expect_int(&mut self, expected: i64, what: &str) -> Result<()> {
        let at = self.pos;
        let v = self.int()?;
        if v != expected {
            return Err(DlibError::Unexpected { at, what: format!("{what}: expected {expected}, found {v}") });
        }
        Ok(())
    }

    /// bool: one ASCII byte '1' or '0'.
    pub fn bool(&mut self) -> Result<bool> {
        match self.take(1)?[0] {
            b'1' => Ok(true),
            b'0' => Ok(false),
            other => Err(DlibError::Unexpected { at: self.pos - 1, what: format!("bool byte {other:#04x}") }),
        }
    }

    /// string: integer length, then the bytes.
    pub fn string(&mut self) -> Result<String> {
        let n = self.size()?;
        let at = self.pos;
        let s = self.take(n)?;
        String::from_utf8(s.to_vec()).map_err(|_| DlibError::Unexpected { at, what: "string is not UTF-8".into() })
    }

    /// The string at the current position, without consuming it (None if it is not one).
    pub fn peek_string(&mut self) -> Result<Option<String>> {
        let at = self.pos;
        let s = self.string().ok();
        self.pos = at;
        Ok(s)
    }

    /// Reads a string and checks it equals `expected` (record names).
    pub fn expect_string(&mut self, expected: &str) -> Result<()> {
        let at = self.pos;
        let s = self.string()?;
        if s != expected {
            return Err(DlibError::Unexpected { at, what: format!("expected record {expected:?}, found {s:?}") });
        }
        Ok(())
    }

    /// float/double: integer mantissa, then integer exponent; value = m * 2^e.
    pub fn float(&mut self) -> Result<f64> {
        let mantissa = self.int()?;
        let exponent = self.int()?;
        Ok(match exponent {
            32000 => f64::INFINITY,
            32001 => f64::NEG_INFINITY,
            32002 => f64::NAN,
            e => (mantissa as f64) * 2f64.powi(e as i32),
        })
    }

    /// `resizable_tensor`: version 2, four dimensions, raw little-endian f32 values.
    pub fn tensor(&mut self) -> Result<Tensor> {
        self.expect_int(2, "tensor version")?;
        let mut dims = [0usize; 4];
        for d in &mut dims {
            *d = self.size()?;
        }
        let count =
            dims.iter().try_fold(1usize, |acc, d| acc.checked_mul(*d)).ok_or_else(|| self.unexpected("tensor too large"))?;
        let raw = self.take(count.checked_mul(4).ok_or_else(|| self.unexpected("tensor too large"))?)?;
        let data = raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        Ok(Tensor { dims, data })
    }

    /// `alias_tensor`: version 1 and four dimensions, no data.
    pub fn alias_tensor(&mut self) -> Result<[usize; 4]> {
        self.expect_int(1, "alias_tensor version")?;
        let mut dims = [0usize; 4];
        for d in &mut dims {
            *d = self.size()?;
        }
        Ok(dims)
    }

    /// `matrix`: integer -rows, integer -cols, then row-major elements in float encoding.
    pub fn matrix(&mut self) -> Result<(usize, usize, Vec<f32>)> {
        let at = self.pos;
        let rows = -self.int()?;
        let cols = -self.int()?;
        if rows < 0 || cols < 0 {
            return Err(DlibError::Unexpected { at, what: "negative matrix size".into() });
        }
        let (rows, cols) = (rows as usize, cols as usize);
        let n = rows.checked_mul(cols).ok_or(DlibError::Unexpected { at, what: "matrix too large".into() })?;
        if n > self.bytes.len() - self.pos {
            return Err(DlibError::Eof(self.pos));
        }
        let data = (0..n).map(|_| self.float().map(|v| v as f32)).collect::<Result<_>>()?;
        Ok((rows, cols, data))
    }
}

/// A dlib tensor: dimensions (n, k, rows, cols) and its values.
#[derive(Debug, Clone)]
pub struct Tensor {
    /// n, k, nr, nc.
    pub dims: [usize; 4],
    /// Values in dlib's order.
    pub data: Vec<f32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_follow_dlib_encoding() {
        let bytes = [0x01, 0x00, 0x02, 0x00, 0x01, 0x81, 0x04, 0x02, 0x80, 0x12];
        let mut r = Reader::new(&bytes);
        assert_eq!(r.int().unwrap(), 0);
        assert_eq!(r.int().unwrap(), 256);
        assert_eq!(r.int().unwrap(), -4);
        assert_eq!(r.int().unwrap(), 0x1280);
        assert!(r.at_end());
    }

    #[test]
    fn float_is_mantissa_then_exponent() {
        // 16 * 2^-4 = 1.0, as dlib writes learning-rate multipliers.
        let mut r = Reader::new(&[0x01, 0x10, 0x81, 0x04]);
        assert_eq!(r.float().unwrap(), 1.0);
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let mut r = Reader::new(&[0x04, 0x01]);
        assert!(matches!(r.int(), Err(DlibError::Eof(_))));
        let mut r = Reader::new(&[0x0f]);
        assert!(matches!(r.int(), Err(DlibError::BadInteger(0))));
        let mut r = Reader::new(&[0x01, 0x02, 0x04, 0xff, 0xff, 0xff, 0x7f]);
        assert!(r.tensor().is_err());
    }
}
