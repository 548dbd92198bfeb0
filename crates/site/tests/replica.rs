//! A door's replica against the administrator's messages, delivered the way a
//! broker may deliver them: late, twice, out of order, replayed, forged.

use facegate_core::Embedding;
use facegate_site::{
    Access, AdminKey, DataKey, Door, DoorsKnow, Freshness, Group, PersonRecord, Received, Replica, Rules, SiteError, SiteState,
    Snapshot,
};
use proptest::prelude::*;
use std::collections::BTreeMap;

struct Site {
    admin: AdminKey,
    data: DataKey,
    state: SiteState,
}

fn template(seed: usize) -> Embedding {
    std::array::from_fn(|i| ((i * 31 + seed * 17) as f32).sin() * 0.1)
}

impl Site {
    fn new() -> Self {
        let mut rules = Rules { time_zone: "UTC".into(), ..Rules::default() };
        rules.groups.insert("staff".into(), Group::default());
        rules.doors.insert("front".into(), Door { groups: ["staff".to_string()].into(), schedule: None });
        let model = facegate_core::ModelId::of_file_bytes(b"the door's network");
        let state = SiteState { name: "hq".into(), version: 0, model, rules, people: BTreeMap::new() };
        Site { admin: AdminKey::generate().unwrap(), data: DataKey::generate().unwrap(), state }
    }

    fn enrol(&mut self, id: &str, seed: usize) {
        let access = Access { groups: ["staff".to_string()].into(), ..Access::default() };
        let t = [template(seed), template(seed + 1000)];
        let r = PersonRecord::new("hq", id, &format!("Person {id}"), access, &t, &self.data).unwrap();
        self.state.people.insert(id.into(), r);
        self.state.version += 1;
    }

    fn remove(&mut self, id: &str) -> (String, Vec<u8>) {
        self.state.people.remove(id);
        self.state.version += 1;
        (format!("facegate/hq/people/{id}"), Vec::new())
    }

    fn messages(&self) -> Vec<(String, Vec<u8>)> {
        self.state.messages(&self.admin, &self.data, &BTreeMap::new(), 0, [0; 32]).unwrap()
    }

    fn replica(&self) -> Replica {
        Replica::new("hq", "front", self.admin.public(), self.data.clone(), 0).unwrap()
    }
}

/// Feeds `messages`, applying every complete version as a door does; the last applied.
fn feed(replica: &mut Replica, messages: &[(String, Vec<u8>)]) -> Option<Snapshot> {
    let mut last = None;
    for (topic, payload) in messages {
        replica.receive(topic, payload).unwrap();
        if let Some(s) = replica.complete().unwrap() {
            replica.mark_applied(&s);
            last = Some(s);
        }
    }
    last
}

fn ids(s: &Snapshot) -> Vec<&str> {
    s.people.iter().map(|p| p.id.as_str()).collect()
}

#[test]
fn a_door_applies_a_version_only_when_it_holds_every_record_the_manifest_lists() {
    let mut site = Site::new();
    (0..3).for_each(|i| site.enrol(&format!("p{i}"), i));
    let messages = site.messages();
    let mut door = site.replica();
    // The manifest first: it waits for its three records.
    let (manifest, records) = messages.split_last().unwrap();
    assert_eq!(door.receive(&manifest.0, &manifest.1).unwrap(), Received::Manifest(3));
    assert_eq!(door.pending(), Some((3, 3)));
    assert!(door.complete().unwrap().is_none());
    let snapshot = feed(&mut door, records).unwrap();
    assert_eq!(snapshot.version, 3);
    assert_eq!(ids(&snapshot), ["p0", "p1", "p2"]);
    assert_eq!(snapshot.people[1].templates, vec![template(1), template(1001)]);
    // The same messages again change nothing.
    assert!(feed(&mut door, &messages).is_none());
    assert_eq!(door.applied(), 3);
}

#[test]
fn a_door_that_was_away_drops_whoever_was_removed_meanwhile() {
    let mut site = Site::new();
    (0..4).for_each(|i| site.enrol(&format!("p{i}"), i));
    let mut door = site.replica();
    feed(&mut door, &site.messages()).unwrap();
    // Away: p1 removed, p9 enrolled. Back: the broker's retained state only
    // (p1's record cleared, the others and the new manifest).
    site.remove("p1");
    site.enrol("p9", 9);
    let mut retained = vec![("facegate/hq/people/p1".to_string(), Vec::new())];
    retained.extend(site.messages());
    let s = feed(&mut door, &retained).unwrap();
    assert_eq!(ids(&s), ["p0", "p2", "p3", "p9"]);
    // Even when p1's clearing never arrives, the manifest leaves p1 out.
    let mut other = site.replica();
    let mut old = Site { state: site.state.clone(), ..Site::new() };
    old.admin = AdminKey::from_bytes(&site.admin.to_bytes());
    old.data = site.data.clone();
    old.enrol("p1", 1);
    let stale_p1 = old.messages().into_iter().find(|(t, _)| t.ends_with("/p1")).unwrap();
    let mut mixed = vec![stale_p1];
    mixed.extend(site.messages());
    assert_eq!(ids(&feed(&mut other, &mixed).unwrap()), ["p0", "p2", "p3", "p9"]);
}

#[test]
fn a_replayed_older_manifest_is_never_applied_again() {
    let mut site = Site::new();
    site.enrol("p0", 0);
    let v1 = site.messages();
    let (_, removal) = (site.enrol("p1", 1), site.remove("p0"));
    let v3 = site.messages();
    let mut door = site.replica();
    feed(&mut door, &v3).unwrap();
    assert_eq!(door.applied(), 3);
    // An attacker (or a confused broker) replays version 1 with p0's record.
    let (manifest, _) = v1.split_last().unwrap();
    door.receive(&removal.0, &removal.1).unwrap();
    assert!(feed(&mut door, &v1).is_none());
    assert_eq!(door.receive(&manifest.0, &manifest.1).unwrap(), Received::StaleManifest(1));
    assert_eq!(door.applied(), 3);
}

#[test]
fn a_record_signed_with_another_key_or_moved_to_another_topic_is_refused() {
    let mut site = Site::new();
    site.enrol("p0", 0);
    let mut door = site.replica();
    let mut intruder = Site::new();
    intruder.data = site.data.clone(); // even knowing the data key
    intruder.state.version = 99;
    intruder.enrol("mallory", 7);
    for (topic, payload) in intruder.messages() {
        assert!(matches!(door.receive(&topic, &payload), Err(SiteError::BadSignature)), "{topic}");
    }
    assert_eq!(door.pending(), None);
    // p0's genuine record replayed on p1's topic.
    let genuine = site.messages();
    let (_, p0) = &genuine[0];
    assert!(matches!(door.receive("facegate/hq/people/p1", p0), Err(SiteError::BadSignature)));
    assert!(matches!(door.receive("facegate/hq/manifest", b"garbage"), Err(SiteError::NotSigned)));
    assert_eq!(door.receive("facegate/elsewhere/people/p0", p0).unwrap(), Received::Ignored);
    assert!(feed(&mut door, &genuine).is_some());
}

#[test]
fn a_door_with_another_data_key_cannot_open_templates_and_says_so() {
    let mut site = Site::new();
    site.enrol("p0", 0);
    let mut door = Replica::new("hq", "front", site.admin.public(), DataKey::generate().unwrap(), 0).unwrap();
    for (topic, payload) in site.messages() {
        door.receive(&topic, &payload).unwrap();
    }
    assert!(matches!(door.complete(), Err(SiteError::Unsealable)));
    assert_eq!(door.applied(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Whatever order and duplication the broker delivers in, the door ends
    /// on the newest version, with exactly its people.
    #[test]
    fn any_order_and_any_duplicates_converge_on_the_newest_version(
        order in Just((0..24usize).collect::<Vec<_>>()).prop_shuffle(),
        dups in proptest::collection::vec(0..24usize, 0..12),
    ) {
        let mut site = Site::new();
        let mut all = Vec::new();
        for i in 0..5 {
            site.enrol(&format!("p{i}"), i);
        }
        all.extend(site.messages());
        all.push(site.remove("p2"));
        site.enrol("p7", 7);
        all.extend(site.messages());
        let final_ids: Vec<String> = site.state.people.keys().cloned().collect();
        let final_version = site.state.version;
        // A delivery: a shuffle of the sent messages, some twice, then the
        // retained state again (what any reconnect gets).
        let mut delivery: Vec<_> = order.iter().filter(|&&k| k < all.len()).map(|&k| all[k].clone()).collect();
        delivery.extend(dups.iter().filter(|&&k| k < all.len()).map(|&k| all[k].clone()));
        delivery.extend(site.messages());
        let mut door = site.replica();
        let mut applied = Vec::new();
        for (topic, payload) in &delivery {
            door.receive(topic, payload).unwrap();
            if let Some(s) = door.complete().unwrap() {
                door.mark_applied(&s);
                applied.push(s);
            }
        }
        let last = applied.last().unwrap();
        prop_assert_eq!(last.version, final_version);
        prop_assert_eq!(last.people.iter().map(|p| p.id.clone()).collect::<Vec<_>>(), final_ids);
        prop_assert!(applied.windows(2).all(|w| w[0].version < w[1].version), "versions only grow");
    }
}

fn now_s() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// The manifest of `site` issued at `issued_at`, and its records.
fn issued(site: &Site, issued_at: i64) -> Vec<(String, Vec<u8>)> {
    site.state.messages(&site.admin, &site.data, &BTreeMap::new(), issued_at, [0; 32]).unwrap()
}

#[test]
fn a_door_without_a_copy_refuses_a_site_older_than_it_joined_at_issued_before_its_newest_or_too_old() {
    let mut site = Site::new();
    site.enrol("p0", 0);
    let v1 = issued(&site, now_s() - 60);
    site.enrol("p1", 1);
    let v2 = issued(&site, now_s() - 30);
    let fresh = |min_version| Freshness { min_version, newest_issued_at: 0, max_age_s: Some(30 * 86_400) };
    // Joined at version 2: a replay of version 1 is refused, and says why.
    let mut door = site.replica().with_freshness(fresh(2));
    let (manifest, records) = v1.split_last().unwrap();
    records.iter().for_each(|(t, p)| _ = door.receive(t, p).unwrap());
    let refused = door.receive(&manifest.0, &manifest.1).unwrap_err();
    assert!(matches!(refused, SiteError::Refused(_)) && refused.to_string().contains("joined at"), "{refused}");
    assert_eq!(door.complete().unwrap(), None);
    assert_eq!(feed(&mut door, &v2).unwrap().version, 2);
    // Issued 40 days ago: too old, even for a door that holds nothing.
    site.enrol("p2", 2);
    let old = issued(&site, now_s() - 40 * 86_400);
    let mut damaged = site.replica().with_freshness(fresh(0));
    let (manifest, _) = old.split_last().unwrap();
    let refused = damaged.receive(&manifest.0, &manifest.1).unwrap_err();
    assert!(refused.to_string().contains("sync"), "{refused}");
    // A newer version issued before the one applied: a replay.
    let mut door = site.replica().with_freshness(fresh(0));
    let applied = feed(&mut door, &v2).unwrap();
    assert_eq!(door.clock_floor_now(), now_s().max(applied.issued_at));
    let mut earlier = issued(&site, applied.issued_at - 1);
    let (manifest, _) = earlier.split_last_mut().unwrap();
    assert!(matches!(door.receive(&manifest.0, &manifest.1), Err(SiteError::Refused(_))));
    assert_eq!(feed(&mut door, &issued(&site, now_s())).unwrap().version, 3, "the same version issued now is taken");
}

#[test]
fn a_door_opens_only_the_people_it_admits_and_learns_nothing_of_the_others() {
    let mut site = Site::new();
    site.state.rules.groups.insert("visitors".into(), Group::default());
    site.state.rules.doors.insert("lab".into(), Door { groups: ["visitors".to_string()].into(), schedule: None });
    let keys: BTreeMap<String, DataKey> =
        ["front", "lab"].iter().map(|d| (d.to_string(), DataKey::generate().unwrap())).collect();
    site.enrol("p0", 0); // staff
    site.enrol("p1", 1);
    let visitor = Access { groups: ["visitors".to_string()].into(), ..Access::default() };
    let r = PersonRecord::new("hq", "p1", "Vera Visitor", visitor, &[template(1)], &site.data).unwrap();
    site.state.people.insert("p1".into(), r);
    let nobody = PersonRecord::new("hq", "p2", "Nemo", Access::default(), &[template(2)], &site.data).unwrap();
    site.state.people.insert("p2".into(), nobody);
    let messages = site.state.messages(&site.admin, &site.data, &keys, 0, [0; 32]).unwrap();
    assert_eq!(messages, site.state.messages(&site.admin, &site.data, &keys, 0, [0; 32]).unwrap(), "the same bytes again");
    let bytes: Vec<u8> = messages.iter().flat_map(|(_, p)| p.clone()).collect();
    for name in ["Person p0", "Vera Visitor", "Nemo"] {
        assert!(!bytes.windows(name.len()).any(|w| w == name.as_bytes()), "{name} in plain text");
    }
    let door = |name: &str, key: &DataKey| {
        let mut r = Replica::new("hq", name, site.admin.public(), key.clone(), 0).unwrap();
        feed(&mut r, &messages).map(|s| s.people.iter().map(|p| p.name.clone()).collect::<Vec<_>>())
    };
    assert_eq!(door("front", &keys["front"]), Some(vec!["Person p0".to_string()]), "staff only");
    assert_eq!(door("lab", &keys["lab"]), Some(vec!["Vera Visitor".to_string()]), "visitors only");
    // The lab's key claiming to be the front door's opens nothing.
    let mut thief = Replica::new("hq", "front", site.admin.public(), keys["lab"].clone(), 0).unwrap();
    for (topic, payload) in &messages {
        thief.receive(topic, payload).unwrap();
    }
    assert!(matches!(thief.complete(), Err(SiteError::Unsealable)));
    // Doors that know everyone of the site: each opens every record, Nemo (in no group) too.
    let everyone = site.state.messages_known_by(DoorsKnow::Everyone, &site.admin, &site.data, &keys, 0, [0; 32]).unwrap();
    let door = |name: &str| {
        let mut r = Replica::new("hq", name, site.admin.public(), keys[name].clone(), 0).unwrap();
        feed(&mut r, &everyone).map(|s| s.people.iter().map(|p| p.name.clone()).collect::<Vec<_>>())
    };
    let all = ["Person p0", "Vera Visitor", "Nemo"].map(String::from).to_vec();
    assert_eq!((door("front"), door("lab")), (Some(all.clone()), Some(all)));
    // A door that joined before doors had keys holds the site's data key, and still opens its people.
    let legacy = site.state.messages(&site.admin, &site.data, &BTreeMap::new(), 0, [0; 32]).unwrap();
    let mut old_door = Replica::new("hq", "front", site.admin.public(), site.data.clone(), 0).unwrap();
    assert_eq!(feed(&mut old_door, &legacy).unwrap().people.len(), 1);
}

#[test]
fn a_site_of_two_networks_names_the_other_in_its_manifest_and_hands_each_person_both() {
    let mut site = Site::new();
    site.enrol("p0", 0);
    let other = facegate_core::ModelId::of_file_bytes(b"the other network");
    let access = Access { groups: ["staff".to_string()].into(), ..Access::default() };
    let (own, theirs) = ([template(5)], vec![template(6), template(7)]);
    let others = [facegate_site::NetworkTemplates { model: other, templates: theirs.clone() }];
    let both = PersonRecord::with_others("hq", "p1", "Ada", access, &own, &others, &site.data).unwrap();
    site.state.people.insert("p1".into(), both);
    site.state.version += 1;
    let networks = site.state.networks(&site.data).unwrap();
    assert_eq!(networks, vec![(site.state.model, vec!["p0".to_string(), "p1".into()]), (other, vec!["p1".to_string()])]);
    let snapshot = feed(&mut site.replica(), &site.messages()).expect("applied");
    assert_eq!(snapshot.others, vec![other]);
    let ada = snapshot.people.iter().find(|p| p.id == "p1").unwrap();
    assert_eq!(ada.templates_of(snapshot.model, other), Some(&theirs[..]));
    assert_eq!(ada.all_templates(snapshot.model).count(), 2);
    let p0 = snapshot.people.iter().find(|p| p.id == "p0").unwrap();
    assert_eq!(p0.templates_of(snapshot.model, other), None, "enrolled with the site's network only");
    // Without anybody of the other network, the manifest names none.
    site.state.people.remove("p1");
    site.state.version += 1;
    assert_eq!(feed(&mut site.replica(), &site.messages()).unwrap().others, vec![]);
}
