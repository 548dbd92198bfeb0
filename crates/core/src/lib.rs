#![warn(missing_docs)]
//! facegate's vocabulary, at the bottom of the crate graph: what an embedding
//! is, which model made it ([`ModelId`]), how two are compared ([`distance`]),
//! and the 1:1 / 1:K decisions ([`matching`]).
//!
//! No inference engine and no file formats live here, so the gallery store and
//! the wire protocol can name a template without compiling tract.

pub mod embedding;
pub mod matching;
pub mod model_id;
pub mod print;
pub mod stats;

pub use embedding::{distance, quantize_i8, Embedding, EMBEDDING_DIM};
pub use matching::{Identification, TemplateScore, Verification};
pub use model_id::{ModelId, ModelIdError};

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(2 * bytes.len());
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

/// Bytes from hex (either case); `None` when the text is not `N` bytes of hex.
pub fn from_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let digits = text.as_bytes();
    if digits.len() != 2 * N {
        return None;
    }
    let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *o = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_rejects_bad_text() {
        let bytes: [u8; 4] = [0x00, 0x7f, 0xa5, 0xff];
        assert_eq!(hex(&bytes), "007fa5ff");
        assert_eq!(from_hex::<4>("007FA5ff"), Some(bytes));
        assert_eq!(from_hex::<4>("007fa5f"), None, "odd length");
        assert_eq!(from_hex::<4>("007fa5fg"), None, "not hex");
        assert_eq!(from_hex::<2>("007fa5ff"), None, "wrong length");
    }
}
