//! Which embedding model made a template: the sha256 of the model file.
//! Templates of two models are not comparable, so every template carries one.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// sha256 of an embedding model's file. One text form (64 lower-case hex
/// digits, also in human-readable serde formats such as JSON) and one binary
/// form (32 bytes, in postcard and other binary formats).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelId([u8; 32]);

/// A model id that is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("model id {0:?} is not a sha256 (64 hex digits)")]
pub struct ModelIdError(pub String);

impl ModelId {
    /// The id of a model file's bytes.
    pub fn of_file_bytes(bytes: &[u8]) -> Self {
        ModelId(Sha256::digest(bytes).into())
    }

    /// An id from its 32 bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        ModelId(bytes)
    }

    /// The 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses the hex form (either case).
    pub fn from_hex(text: &str) -> Result<Self, ModelIdError> {
        crate::from_hex(text).map(ModelId).ok_or_else(|| ModelIdError(text.chars().take(80).collect()))
    }

    /// The hex form.
    pub fn to_hex(&self) -> String {
        crate::hex(&self.0)
    }
}

impl std::fmt::Display for ModelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl std::fmt::Debug for ModelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ModelId({})", self.to_hex())
    }
}

impl std::str::FromStr for ModelId {
    type Err = ModelIdError;
    fn from_str(s: &str) -> Result<Self, ModelIdError> {
        ModelId::from_hex(s)
    }
}

impl Serialize for ModelId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_hex())
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for ModelId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let text = String::deserialize(d)?;
            ModelId::from_hex(&text).map_err(D::Error::custom)
        } else {
            <[u8; 32]>::deserialize(d).map(ModelId)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_text_form_and_one_binary_form() {
        let id = ModelId::of_file_bytes(b"model");
        let text = id.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text.parse::<ModelId>().unwrap(), id);
        assert_eq!(ModelId::from_hex(&text.to_uppercase()).unwrap(), id);
        assert!(ModelId::from_hex("zz").is_err());
        assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{text}\""));
        assert_eq!(serde_json::from_str::<ModelId>(&format!("\"{text}\"")).unwrap(), id);
        assert!(serde_json::from_str::<ModelId>("\"nothex\"").is_err());
        // The wire form is the 32 bytes as they are, as it was before the newtype.
        let wire = postcard::to_allocvec(&id).unwrap();
        assert_eq!(wire, id.as_bytes().to_vec());
        assert_eq!(postcard::from_bytes::<ModelId>(&wire).unwrap(), id);
    }
}
