//! Who may change a site, and who may read its faces.
//!
//! - The site's **admin key** (Ed25519) signs every record the site
//!   publishes; doors hold only its public half, so nobody with mere broker
//!   access can add a person or a group.
//! - The site's **data key** (XChaCha20-Poly1305) encrypts templates in every
//!   record, so a broker's disk never holds a plain template.
//!
//! Both reach a door by the serial pairing, never over the network in clear.

use crate::SiteError;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// What a signed message starts with.
const SIGNED_MAGIC: &[u8; 8] = b"FGSITE1\0";
/// What a signature covers before the topic, so that a signature made for
/// something else can never pass for a site record.
const DOMAIN: &[u8] = b"facegate site record v1\0";
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

fn random<const N: usize>() -> Result<[u8; N], SiteError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| SiteError::Random(e.to_string()))?;
    Ok(bytes)
}

fn signed_bytes(topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + 4 + topic.len() + payload.len());
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(&(topic.len() as u32).to_le_bytes());
    m.extend_from_slice(topic.as_bytes());
    m.extend_from_slice(payload);
    m
}

/// The site administrator's signing key (kept by the host tool, never on a door).
pub struct AdminKey(SigningKey);

impl AdminKey {
    /// A new random key.
    pub fn generate() -> Result<Self, SiteError> {
        Ok(AdminKey(SigningKey::from_bytes(&random()?)))
    }

    /// The key from its 32 secret bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        AdminKey(SigningKey::from_bytes(bytes))
    }

    /// The 32 secret bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The public half doors verify with.
    pub fn public(&self) -> SitePublicKey {
        SitePublicKey(self.0.verifying_key())
    }

    /// `payload` signed for `topic`: magic, signature, payload. The topic is
    /// signed too, so a record cannot be replayed under another topic (one
    /// person's record as another's).
    pub fn sign(&self, topic: &str, payload: &[u8]) -> Vec<u8> {
        let signature = self.0.sign(&signed_bytes(topic, payload));
        [SIGNED_MAGIC.as_slice(), &signature.to_bytes(), payload].concat()
    }
}

/// The public half of the site's admin key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SitePublicKey(VerifyingKey);

impl SitePublicKey {
    /// The key from its 32 bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, SiteError> {
        VerifyingKey::from_bytes(bytes).map(SitePublicKey).map_err(|_| SiteError::Invalid("not an Ed25519 public key".into()))
    }

    /// The 32 bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The payload of a message signed for `topic` by the admin key, or an
    /// error when it is not one (another key, another topic, altered bytes).
    pub fn open<'a>(&self, topic: &str, message: &'a [u8]) -> Result<&'a [u8], SiteError> {
        let rest = message.strip_prefix(SIGNED_MAGIC.as_slice()).ok_or(SiteError::NotSigned)?;
        if rest.len() < Signature::BYTE_SIZE {
            return Err(SiteError::NotSigned);
        }
        let (signature, payload) = rest.split_at(Signature::BYTE_SIZE);
        let signature = Signature::from_slice(signature).map_err(|_| SiteError::BadSignature)?;
        self.0.verify_strict(&signed_bytes(topic, payload), &signature).map_err(|_| SiteError::BadSignature)?;
        Ok(payload)
    }
}

/// The site's data key: authenticated encryption of templates.
#[derive(Clone, PartialEq, Eq)]
pub struct DataKey([u8; 32]);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(…)")
    }
}

impl DataKey {
    /// A new random key.
    pub fn generate() -> Result<Self, SiteError> {
        Ok(DataKey(random()?))
    }

    /// The key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        DataKey(bytes)
    }

    /// The 32 bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0
    }

    /// `plain` encrypted and authenticated, bound to `context` (which must be
    /// given again to open it): random nonce, then ciphertext and tag.
    pub fn seal(&self, context: &[u8], plain: &[u8]) -> Result<Vec<u8>, SiteError> {
        let nonce: [u8; NONCE_LEN] = random()?;
        let cipher = XChaCha20Poly1305::new((&self.0).into());
        let sealed = cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plain, aad: context })
            .map_err(|_| SiteError::Invalid("encryption failed".into()))?;
        Ok([nonce.as_slice(), &sealed].concat())
    }

    /// As [`DataKey::seal`], with the nonce derived from the key, `context`
    /// and `plain` (a synthetic nonce): the same input seals to the same
    /// bytes, so a record published again is the same message, and distinct
    /// inputs never share a nonce. It shows only that two sealings are equal.
    pub fn seal_deterministic(&self, context: &[u8], plain: &[u8]) -> Result<Vec<u8>, SiteError> {
        let mut h = Sha256::new();
        h.update(b"facegate synthetic nonce\0");
        h.update(self.0);
        h.update((context.len() as u64).to_le_bytes());
        h.update(context);
        h.update(plain);
        let digest = h.finalize();
        let nonce = &digest[..NONCE_LEN];
        let cipher = XChaCha20Poly1305::new((&self.0).into());
        let sealed = cipher
            .encrypt(XNonce::from_slice(nonce), Payload { msg: plain, aad: context })
            .map_err(|_| SiteError::Invalid("encryption failed".into()))?;
        Ok([nonce, &sealed].concat())
    }

    /// What [`DataKey::seal`] sealed with this key and `context`, or
    /// [`SiteError::Unsealable`] for anything else.
    pub fn open(&self, context: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SiteError> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(SiteError::Unsealable);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let cipher = XChaCha20Poly1305::new((&self.0).into());
        cipher.decrypt(XNonce::from_slice(nonce), Payload { msg: body, aad: context }).map_err(|_| SiteError::Unsealable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_holds_only_for_its_key_topic_and_bytes() {
        let admin = AdminKey::generate().unwrap();
        let public = admin.public();
        let m = admin.sign("facegate/hq/people/p1", b"record");
        assert_eq!(public.open("facegate/hq/people/p1", &m).unwrap(), b"record");
        assert!(matches!(public.open("facegate/hq/people/p2", &m), Err(SiteError::BadSignature)), "another topic");
        let mut altered = m.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert!(matches!(public.open("facegate/hq/people/p1", &altered), Err(SiteError::BadSignature)));
        let intruder = AdminKey::generate().unwrap().sign("facegate/hq/people/p1", b"record");
        assert!(matches!(public.open("facegate/hq/people/p1", &intruder), Err(SiteError::BadSignature)), "another key");
        assert!(matches!(public.open("facegate/hq/people/p1", b"record"), Err(SiteError::NotSigned)));
        assert!(matches!(public.open("facegate/hq/people/p1", &m[..40]), Err(SiteError::NotSigned)));
        let back = AdminKey::from_bytes(&admin.to_bytes());
        assert_eq!(back.public(), public);
        assert_eq!(SitePublicKey::from_bytes(&public.to_bytes()).unwrap(), public);
    }

    #[test]
    fn sealed_bytes_open_only_with_the_key_and_context_and_hide_the_plain_text() {
        let key = DataKey::generate().unwrap();
        let plain = b"a template's 512 bytes, more or less".repeat(8);
        let sealed = key.seal(b"hq p1", &plain).unwrap();
        assert_eq!(key.open(b"hq p1", &sealed).unwrap(), plain);
        assert!(!sealed.windows(16).any(|w| plain.windows(16).any(|p| p == w)), "no plain run in the sealed bytes");
        assert_ne!(key.seal(b"hq p1", &plain).unwrap(), sealed, "a fresh nonce each time");
        assert!(matches!(key.open(b"hq p2", &sealed), Err(SiteError::Unsealable)), "another context");
        assert!(matches!(DataKey::generate().unwrap().open(b"hq p1", &sealed), Err(SiteError::Unsealable)));
        let mut altered = sealed.clone();
        altered[30] ^= 4;
        assert!(matches!(key.open(b"hq p1", &altered), Err(SiteError::Unsealable)));
        assert!(matches!(key.open(b"hq p1", &sealed[..20]), Err(SiteError::Unsealable)));
        let fixed = key.seal_deterministic(b"hq p1", &plain).unwrap();
        assert_eq!(key.seal_deterministic(b"hq p1", &plain).unwrap(), fixed, "the same input, the same bytes");
        assert_eq!(key.open(b"hq p1", &fixed).unwrap(), plain);
        assert_ne!(key.seal_deterministic(b"hq p2", &plain).unwrap()[..NONCE_LEN], fixed[..NONCE_LEN], "another nonce");
        assert!(!fixed.windows(16).any(|w| plain.windows(16).any(|p| p == w)));
    }
}
