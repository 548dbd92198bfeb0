//! Which events the Events page and its CSV export show, from the page's
//! filter form: door, person, kind, and a time range (UTC).

use serde_json::Value;
use std::collections::HashMap;

/// The filter of the Events page; empty fields keep everything.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct EventFilter {
    /// A door's name.
    pub door: String,
    /// A person's name (part of it, any case).
    pub person: String,
    /// An event kind, or the start of one (`denied` keeps every denial).
    pub kind: String,
    /// From this time (UTC, `2026-12-07T08:00`).
    pub since: String,
    /// Before this time (UTC).
    pub until: String,
}

impl EventFilter {
    /// The filter a query string asks for.
    pub fn from_query(query: &HashMap<String, String>) -> Self {
        let field = |k: &str| query.get(k).map_or(String::new(), |v| v.trim().to_string());
        EventFilter {
            door: field("door"),
            person: field("person"),
            kind: field("kind"),
            since: field("since"),
            until: field("until"),
        }
    }

    /// Whether `event` passes. Event times are RFC 3339 in UTC, so they
    /// compare as text with a time typed as `YYYY-MM-DDTHH:MM`.
    pub fn keeps(&self, event: &Value) -> bool {
        let text = |k: &str| event[k].as_str().unwrap_or_default();
        (self.door.is_empty() || text("door") == self.door)
            && (self.person.is_empty() || text("person").to_lowercase().contains(&self.person.to_lowercase()))
            && (self.kind.is_empty() || text("kind").starts_with(&self.kind))
            && (self.since.is_empty() || text("time") >= self.since.as_str())
            && (self.until.is_empty() || text("time") < self.until.as_str())
    }
}

/// One CSV field: quoted when it holds a comma, quote or line break, and a
/// leading `=`, `+`, `-` or `@` defused (a spreadsheet would run it as a
/// formula, and a door's event text is not to be trusted that far).
fn field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@']) { format!("'{text}") } else { text.to_string() };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// The CSV export: a header, then one line per event.
pub fn csv<'a>(events: impl Iterator<Item = &'a Value>) -> String {
    const COLUMNS: [&str; 8] = ["time", "door", "kind", "person", "seq", "distance", "frames", "live"];
    let mut out = COLUMNS.join(",") + "\r\n";
    for e in events {
        let cells: Vec<String> = COLUMNS
            .iter()
            .map(|k| match &e[*k] {
                Value::Null => String::new(),
                Value::String(s) => field(s),
                other => field(&other.to_string()),
            })
            .collect();
        out += &(cells.join(",") + "\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn events() -> Vec<Value> {
        vec![
            json!({"time": "2026-12-07T08:01:00.000Z", "door": "front", "kind": "granted", "person": "Ada Lovelace", "seq": 1}),
            json!({"time": "2026-12-07T09:30:00.000Z", "door": "lab", "kind": "denied-group", "person": "Ada Lovelace", "seq": 1}),
            json!({"time": "2026-12-07T10:00:00.000Z", "door": "front", "kind": "spoof", "person": null, "seq": 2}),
        ]
    }

    #[test]
    fn a_filter_keeps_by_door_person_kind_and_time() {
        let kept = |f: EventFilter| events().iter().filter(|e| f.keeps(e)).count();
        assert_eq!(kept(EventFilter::default()), 3);
        assert_eq!(kept(EventFilter { door: "front".into(), ..Default::default() }), 2);
        assert_eq!(kept(EventFilter { person: "ada".into(), ..Default::default() }), 2);
        assert_eq!(kept(EventFilter { kind: "denied".into(), ..Default::default() }), 1);
        assert_eq!(
            kept(EventFilter { since: "2026-12-07T09:00".into(), until: "2026-12-07T10:00".into(), ..Default::default() }),
            1
        );
        let query = HashMap::from([("door".to_string(), " lab ".to_string())]);
        assert_eq!(EventFilter::from_query(&query).door, "lab");
    }

    #[test]
    fn the_csv_quotes_and_defuses_what_it_must() {
        let mut all = events();
        all.push(json!({"time": "t", "door": "front", "kind": "granted", "person": "=HYPERLINK(\"x\"), evil", "seq": 3}));
        let csv = csv(all.iter());
        let lines: Vec<&str> = csv.split("\r\n").collect();
        assert_eq!(lines[0], "time,door,kind,person,seq,distance,frames,live");
        assert_eq!(lines[1], "2026-12-07T08:01:00.000Z,front,granted,Ada Lovelace,1,,,");
        assert_eq!(lines[4], "t,front,granted,\"'=HYPERLINK(\"\"x\"\"), evil\",3,,,");
        assert_eq!(lines.len(), 6, "a header, four events and the last line's end");
    }
}
