//! What a door keeps of its site: its secrets (how it reaches the broker and
//! checks what it reads there) and the copy of the rules it decides from
//! while the network is away.

use crate::keys::{DataKey, SitePublicKey};
use crate::replica::Snapshot;
use crate::rules::{Access, Denial, Rules};
use crate::SiteError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// A door's site secrets, as the host tool hands them over at pairing
/// (a TOML file readable by the door's user only).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DoorSecrets {
    /// The site's name.
    pub site: String,
    /// This door's name in the site.
    pub door: String,
    /// The admin key's public half, hex.
    pub site_public_key: String,
    /// The site's data key, hex.
    pub data_key: String,
    /// The door's own broker user name.
    pub username: String,
    /// The door's own broker password.
    pub password: String,
    /// The site's version when the door joined: nothing older is applied.
    #[serde(default)]
    pub min_version: u64,
}

impl std::fmt::Debug for DoorSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DoorSecrets {{ site: {:?}, door: {:?}, username: {:?}, … }}", self.site, self.door, self.username)
    }
}

fn unhex<const N: usize>(what: &str, text: &str) -> Result<[u8; N], SiteError> {
    facegate_core::from_hex(text).ok_or_else(|| SiteError::Invalid(format!("{what}: expected {} hex digits", 2 * N)))
}

impl DoorSecrets {
    /// Reads the TOML form and checks every field.
    pub fn from_toml(text: &str) -> Result<Self, SiteError> {
        let s: DoorSecrets = toml::from_str(text).map_err(|e| SiteError::Invalid(format!("door secrets: {e}")))?;
        s.public_key()?;
        s.data_key()?;
        crate::records::Topics::new(&s.site)?;
        if !crate::records::valid_name(&s.door) {
            return Err(SiteError::Invalid(format!("door name {:?}", s.door)));
        }
        Ok(s)
    }

    /// The TOML form.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("secrets serialise")
    }

    /// The site's public key.
    pub fn public_key(&self) -> Result<SitePublicKey, SiteError> {
        SitePublicKey::from_bytes(&unhex("site_public_key", &self.site_public_key)?)
    }

    /// The site's data key.
    pub fn data_key(&self) -> Result<DataKey, SiteError> {
        Ok(DataKey::from_bytes(unhex("data_key", &self.data_key)?))
    }
}

/// The rules a door decides from, kept on its disk: the applied version's
/// rules and each gallery name's access.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DoorCopy {
    /// The applied site version.
    pub version: u64,
    /// This door's name.
    pub door: String,
    /// Groups, doors, schedules, time zone.
    pub rules: Rules,
    /// Access by the name the gallery holds.
    pub access: HashMap<String, Access>,
    /// When the version was issued (Unix seconds): the door's clock floor.
    pub issued_at: i64,
    /// The digest of the version's signed manifest.
    pub manifest: [u8; 32],
    /// The sha256 of the gallery saved with this version (zero: not known,
    /// a copy from before it was kept): a gallery that differs was not saved
    /// with it, and the version is applied again.
    pub gallery: [u8; 32],
}

/// The copy as written before it named its manifest and gallery.
#[derive(Deserialize)]
struct DoorCopyV1 {
    version: u64,
    door: String,
    rules: Rules,
    access: HashMap<String, Access>,
}

const COPY_MAGIC: &[u8; 8] = b"FGSITEC2";
const COPY_MAGIC_V1: &[u8; 8] = b"FGSITEC1";

impl DoorCopy {
    /// The copy of `snapshot` for `door`. Names must be unique: the gallery
    /// and the events know people by name.
    pub fn of(snapshot: &Snapshot, door: &str, gallery: [u8; 32]) -> Result<Self, SiteError> {
        let mut access = HashMap::with_capacity(snapshot.people.len());
        for p in &snapshot.people {
            if access.insert(p.name.clone(), p.access.clone()).is_some() {
                return Err(SiteError::Invalid(format!("two people of the site are named {:?}", p.name)));
            }
        }
        Ok(DoorCopy {
            version: snapshot.version,
            door: door.into(),
            rules: snapshot.rules.clone(),
            access,
            issued_at: snapshot.issued_at,
            manifest: snapshot.manifest,
            gallery,
        })
    }

    /// Whether the person the gallery calls `name` passes this door at `now`
    /// (Unix seconds). Somebody the copy does not know is in no group.
    pub fn decide(&self, name: &str, now: i64) -> Result<(), Denial> {
        match self.access.get(name) {
            Some(access) => self.rules.decide(&self.door, access, now),
            None => Err(Denial::Group),
        }
    }

    /// The file's bytes: magic, postcard, sha256.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = COPY_MAGIC.to_vec();
        out.extend(postcard::to_allocvec(self).expect("a copy serialises"));
        let sum = Sha256::digest(&out);
        out.extend_from_slice(&sum);
        out
    }

    /// A copy from its file's bytes; damage is an error, never a partial copy.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SiteError> {
        let damaged = || SiteError::Invalid("the site copy is damaged".into());
        if bytes.len() < COPY_MAGIC.len() + 32 {
            return Err(damaged());
        }
        let (body, sum) = bytes.split_at(bytes.len() - 32);
        if Sha256::digest(body).as_slice() != sum {
            return Err(damaged());
        }
        if let Some(v1) = body.strip_prefix(COPY_MAGIC_V1) {
            let old: DoorCopyV1 = postcard::from_bytes(v1).map_err(|_| damaged())?;
            let DoorCopyV1 { version, door, rules, access } = old;
            return Ok(DoorCopy { version, door, rules, access, issued_at: 0, manifest: [0; 32], gallery: [0; 32] });
        }
        postcard::from_bytes(body.strip_prefix(COPY_MAGIC).ok_or_else(damaged)?).map_err(|_| damaged())
    }

    /// Whether `gallery` (the gallery file's bytes) is the one saved with
    /// this version (a copy that does not know says yes).
    pub fn matches_gallery(&self, gallery: &[u8]) -> bool {
        self.gallery == [0; 32] || self.gallery == crate::records::digest(gallery)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::AdminKey;
    use crate::replica::SitePerson;
    use crate::rules::{Door, Group};

    #[test]
    fn secrets_round_trip_and_bad_keys_are_named() {
        let admin = AdminKey::generate().unwrap();
        let s = DoorSecrets {
            site: "hq".into(),
            door: "front".into(),
            site_public_key: facegate_core::hex(&admin.public().to_bytes()),
            data_key: facegate_core::hex(&DataKey::generate().unwrap().to_bytes()),
            username: "door-front".into(),
            password: "pw".into(),
            min_version: 3,
        };
        let back = DoorSecrets::from_toml(&s.to_toml()).unwrap();
        assert_eq!(back.public_key().unwrap(), admin.public());
        assert!(!format!("{back:?}").contains("pw"), "Debug hides the secrets");
        let bad = DoorSecrets { data_key: "abc".into(), ..s.clone() };
        assert!(DoorSecrets::from_toml(&bad.to_toml()).unwrap_err().to_string().contains("data_key"));
        let bad = DoorSecrets { door: "a/b".into(), ..s };
        assert!(DoorSecrets::from_toml(&bad.to_toml()).is_err());
    }

    #[test]
    fn a_copy_decides_by_name_survives_its_file_and_refuses_damage() {
        let mut rules = Rules { time_zone: "UTC".into(), ..Rules::default() };
        rules.groups.insert("staff".into(), Group::default());
        rules.doors.insert("front".into(), Door { groups: ["staff".to_string()].into(), schedule: None });
        let person = |name: &str, groups: &[&str]| SitePerson {
            id: name.to_lowercase(),
            name: name.into(),
            access: Access { groups: groups.iter().map(|g| g.to_string()).collect(), ..Access::default() },
            templates: vec![[0.0; 128]],
            others: Vec::new(),
        };
        let model = facegate_core::ModelId::of_file_bytes(b"m");
        let snapshot = Snapshot {
            version: 4,
            issued_at: 1_800_000_000,
            manifest: [7; 32],
            model,
            others: Vec::new(),
            rules,
            people: vec![person("Ada", &["staff"]), person("Bob", &[])],
        };
        let gallery = b"the gallery's bytes";
        let copy = DoorCopy::of(&snapshot, "front", Sha256::digest(gallery).into()).unwrap();
        assert!(copy.matches_gallery(gallery) && !copy.matches_gallery(b"another gallery"));
        assert_eq!(copy.decide("Ada", 0), Ok(()));
        assert_eq!(copy.decide("Bob", 0), Err(Denial::Group));
        assert_eq!(copy.decide("Eve", 0), Err(Denial::Group));
        let bytes = copy.to_bytes();
        assert_eq!(DoorCopy::from_bytes(&bytes).unwrap(), copy);
        for at in [0, 12, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[at] ^= 1;
            assert!(DoorCopy::from_bytes(&bad).is_err(), "flip at {at}");
        }
        assert!(DoorCopy::from_bytes(&bytes[..bytes.len() - 3]).is_err());
        // A copy written before the digests were kept is still read.
        let mut v1 = COPY_MAGIC_V1.to_vec();
        v1.extend(postcard::to_allocvec(&(4u64, "front", &copy.rules, &copy.access)).unwrap());
        let sum = Sha256::digest(&v1);
        v1.extend_from_slice(&sum);
        let old = DoorCopy::from_bytes(&v1).unwrap();
        assert_eq!((old.version, old.access.len()), (4, 2));
        assert!(old.matches_gallery(b"any gallery"), "a copy that does not know its gallery takes it");
        let twins = Snapshot { people: vec![person("Ada", &[]), person("Ada", &["staff"])], ..snapshot };
        assert!(DoorCopy::of(&twins, "front", [0; 32]).is_err());
    }
}
