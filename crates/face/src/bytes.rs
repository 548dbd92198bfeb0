//! Little-endian reader for facegate's own model formats.

use crate::FaceError;

/// Cursor over a model file; every read checks the length.
pub(crate) struct ByteReader<'a> {
    data: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> ByteReader<'a> {
    /// `what` names the model in error messages.
    pub(crate) fn new(data: &'a [u8], what: &'static str) -> Self {
        ByteReader { data, pos: 0, what }
    }

    /// A model error naming the model.
    pub(crate) fn bad(&self, why: &str) -> FaceError {
        FaceError::Model(format!("{}: {why}", self.what))
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], FaceError> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.data.len()).ok_or_else(|| self.bad("file ends early"))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// Checks the 4-byte magic and the u32 version after it.
    pub(crate) fn header(&mut self, magic: &[u8; 4], version: u32) -> Result<(), FaceError> {
        if self.take(4)? != magic {
            return Err(self.bad("not a file of this kind"));
        }
        if self.u32()? != version {
            return Err(self.bad("unsupported version"));
        }
        Ok(())
    }

    pub(crate) fn u32(&mut self) -> Result<u32, FaceError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    pub(crate) fn u16(&mut self) -> Result<u16, FaceError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }

    pub(crate) fn f32(&mut self) -> Result<f32, FaceError> {
        Ok(f32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    pub(crate) fn f64(&mut self) -> Result<f64, FaceError> {
        Ok(f64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    pub(crate) fn f32s(&mut self, n: usize) -> Result<Vec<f32>, FaceError> {
        let raw = self.take(n.checked_mul(4).ok_or_else(|| self.bad("size overflow"))?)?;
        Ok(raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }

    /// Fails unless every byte was read.
    pub(crate) fn finish(&self) -> Result<(), FaceError> {
        if self.pos == self.data.len() {
            Ok(())
        } else {
            Err(self.bad("trailing bytes"))
        }
    }
}

/// Little-endian writer, the counterpart of [`ByteReader`].
#[derive(Default)]
pub(crate) struct ByteWriter(pub(crate) Vec<u8>);

impl ByteWriter {
    pub(crate) fn u32(&mut self, v: usize) {
        self.0.extend_from_slice(&(v as u32).to_le_bytes());
    }
    pub(crate) fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn f64(&mut self, v: f64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn f32s(&mut self, vs: &[f32]) {
        vs.iter().for_each(|v| self.0.extend_from_slice(&v.to_le_bytes()));
    }
    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }
}
