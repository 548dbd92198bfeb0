//! The console's pages, rendered on the server (maud escapes every value it
//! inserts). One layout, a page per part of the site.

use super::filter::EventFilter;
use super::live::Doors;
use crate::site::AuditEntry;
use facegate_site::{DoorsKnow, SiteState};
use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde_json::Value;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#1d2433}\
nav{background:#1d2433;padding:.6em 1em}nav a{color:#fff;margin-right:1.2em;text-decoration:none}\
nav form{display:inline;float:right}nav button{background:none;border:1px solid #fff;color:#fff;cursor:pointer}\
main{padding:1em 1.5em}table{border-collapse:collapse;margin:.5em 0 1.5em}\
td,th{border-bottom:1px solid #ddd;padding:.3em .8em;text-align:left}\
.notice{background:#eef4ff;padding:.5em}form.inline{display:inline}.online{color:#17803d}.offline{color:#b42318}.error{color:#b42318}.muted{color:#667085}";

/// The page frame: title, navigation (with the session's CSRF token for
/// logging out), content.
pub fn layout(site: &str, title: &str, csrf: Option<&str>, notice: Option<&str>, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · " (site) " · facegate" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                @if let Some(csrf) = csrf {
                    nav {
                        a href="/doors" { "Doors" }
                        a href="/people" { "People" }
                        a href="/access" { "Access" }
                        a href="/events" { "Events" }
                        form method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(csrf);
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main {
                    h1 { (title) " " span.muted { "site " (site) } }
                    @if let Some(n) = notice { p.notice #notice { (n) } }
                    (content)
                }
            }
        }
    }
}

/// The login form; `problem` says why the last try failed.
pub fn login(site: &str, csrf: &str, problem: Option<&str>) -> Markup {
    layout(
        site,
        "Log in",
        None,
        None,
        html! {
            @if let Some(p) = problem { p.error { (p) } }
            form method="post" action="/login" {
                input type="hidden" name="csrf" value=(csrf);
                label { "Password " input type="password" name="password" autofocus required; }
                " "
                button type="submit" { "Log in" }
            }
        },
    )
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Every door of the site with what its status says.
pub fn doors(site: &SiteState, live: &Doors, network_of: &dyn Fn(&str) -> String, csrf: &str) -> Markup {
    html! {
        @if !live.broker_up {
            p.error { "The broker is not reachable: doors show offline. " (live.broker_error.as_deref().unwrap_or("")) }
        }
        p { "Site version " (site.version) ", " (site.rules.doors.len()) " doors." }
        table {
            tr { th { "door" } th { "state" } th { "version" } th { "pending" } th { "network" } th { "people" }
                 th { "templates" } th { "free space" } th { "events delivered / lost" } th { "last seen" } th { "error" } th {} }
            @for name in site.rules.doors.keys() {
                @let status = live.statuses.get(name);
                @let online = status.is_some_and(|s| s["online"] == true);
                tr {
                    td { (name) }
                    td class=(if online { "online" } else { "offline" }) {
                        (match status { None => "never seen", Some(_) if online => "online", Some(_) => "offline" })
                    }
                    @if let Some(s) = status {
                        td { (text(&s["version"])) @if s["version"].as_u64().is_some_and(|v| v < site.version) { span.muted { " (behind)" } } }
                        td { @if s["pending"].is_object() { (text(&s["pending"]["version"])) " (" (text(&s["pending"]["missing"])) " records missing)" } }
                        td { (s["model"].as_str().map_or("-".into(), network_of)) }
                        td { (text(&s["people"]))
                             @if s["without_templates"].as_u64().is_some_and(|n| n > 0) {
                                 span.muted { " (" (text(&s["without_templates"])) " without its network's templates)" } } }
                        td { (text(&s["templates"])) }
                        td { (s["free_bytes"].as_u64().map_or("-".into(), |b| format!("{:.1} MB", b as f64 / 1e6))) }
                        td { (text(&s["events_delivered"])) " / " (text(&s["events_lost"])) }
                        td { (text(&s["time"])) }
                        td.error { (s["error"].as_str().unwrap_or("")) }
                    } @else {
                        @for _ in 0..9 { td { "-" } }
                    }
                    td { (button("/doors/remove", csrf, &[("name", name)], "Remove")) }
                }
            }
        }
        h2 { "Add a door" }
        form #door-add method="post" action="/doors/add" {
            input type="hidden" name="csrf" value=(csrf);
            "Door " input name="name" required; " admits "
            @for g in site.rules.groups.keys() { label { input type="checkbox" name="group" value=(g); (g) } " " }
            " when " select name="schedule" { option value="" { "always" } @for s in site.rules.schedules.keys() { option value=(s) { (s) } } }
            br; "Its broker login " input name="username" required; " password " input type="password" name="password" required;
            " " button type="submit" { "Add the door" }
            br; span.muted { "Its secrets come back as a file to copy to the door's paths.fleet_secrets (mode 0600), or go over the serial link the console was started with (--port, the door in setup mode). Add its login to the broker and write the ACL again (host-tool acl)." }
        }
    }
}

/// `name` with letters, digits, `.`, `-` and `_` only, at most 64 characters
/// (a file name shown back or offered for download).
pub fn safe_name(name: &str) -> String {
    name.chars().filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c)).take(64).collect()
}

/// A form posting `fields` (and the session's CSRF token) to `action`, as one button.
fn button(action: &str, csrf: &str, fields: &[(&str, &str)], label: &str) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            input type="hidden" name="csrf" value=(csrf);
            @for (name, value) in fields { input type="hidden" name=(name) value=(value); }
            button type="submit" { (label) }
        }
    }
}

/// Everybody enrolled, with their access: groups given and taken here.
pub fn people(site: &SiteState, query: &str, csrf: &str) -> Markup {
    let query = query.to_lowercase();
    let found: Vec<_> = site.people.values().filter(|p| p.name.to_lowercase().contains(&query)).collect();
    html! {
        form method="get" action="/people" {
            input type="search" name="q" value=(query) placeholder="name";
            " " button type="submit" { "Search" }
        }
        p { (found.len()) " of " (site.people.len()) " people." }
        form #enrol method="post" action="/people/enrol" enctype="multipart/form-data" {
            input type="hidden" name="csrf" value=(csrf);
            "Enrol " input name="name" placeholder="name" required;
            " in " @for g in site.rules.groups.keys() { label { input type="checkbox" name="group" value=(g); (g) } " " }
            " from " input type="file" name="photo" accept="image/*" multiple required;
            " " button type="submit" { "Enrol" }
            br; span.muted { "Three or more photos, one face each, in different light; each photo's verdict is shown." }
        }
        table #people {
            tr { th { "name" } th { "groups" } th { "valid from" } th { "until (UTC)" } th { "give a group" } th {} }
            @for p in found {
                tr data-person=(p.name) {
                    td { (p.name) br; span.muted { (p.id) } }
                    td { @for g in &p.access.groups { (g) " " (button("/people/revoke", csrf, &[("name", &p.name), ("group", g)], "×")) " " } }
                    td colspan="2" {
                        form.inline method="post" action="/people/valid" {
                            input type="hidden" name="csrf" value=(csrf);
                            input type="hidden" name="name" value=(p.name);
                            input type="datetime-local" name="from" value=(p.access.valid_from.map_or(String::new(), local_input));
                            " – " input type="datetime-local" name="until" value=(p.access.valid_until.map_or(String::new(), local_input));
                            " " button type="submit" { "Set" }
                        }
                    }
                    td {
                        form.inline method="post" action="/people/grant" {
                            input type="hidden" name="csrf" value=(csrf);
                            input type="hidden" name="name" value=(p.name);
                            select name="group" { @for g in site.rules.groups.keys().filter(|g| !p.access.groups.contains(*g)) { option { (g) } } }
                            " " button type="submit" { "Give" }
                        }
                    }
                    td {
                        form.inline method="post" action="/people/rename" {
                            input type="hidden" name="csrf" value=(csrf);
                            input type="hidden" name="name" value=(p.name);
                            input name="to" placeholder="new name" size="12" required;
                            " " button type="submit" { "Rename" }
                        }
                        " " (button("/people/remove", csrf, &[("name", &p.name)], "Remove"))
                    }
                }
            }
        }
    }
}

/// Unix seconds as a `datetime-local` value in UTC (`2026-12-07T08:00`).
fn local_input(s: i64) -> String {
    iso_seconds(s).chars().take(16).collect()
}

fn iso_seconds(s: i64) -> String {
    facegate_store::access_log::iso_time(s * 1000)
}

/// The answer to "who may open door D at time T".
pub struct Check {
    /// The door.
    pub door: String,
    /// The time asked, as given.
    pub at: String,
    /// Each person and whether they pass (else the rule that stops them).
    pub people: Vec<(String, Result<(), facegate_site::Denial>)>,
}

/// Groups, doors and schedules, their forms, and the "who may open" check.
pub fn access(site: &SiteState, know: DoorsKnow, csrf: &str, check: Option<&Check>) -> Markup {
    let rules = &site.rules;
    let schedule_choice = html! {
        select name="schedule" { option value="" { "always" } @for s in rules.schedules.keys() { option value=(s) { (s) } } }
    };
    html! {
        p { "Time zone: " (rules.time_zone) }
        h2 { "Who may open a door" }
        form method="get" action="/access" {
            select name="door" { @for d in rules.doors.keys() { option selected[check.is_some_and(|c| &c.door == d)] { (d) } } }
            " at " input type="datetime-local" name="at" value=(check.map_or("", |c| c.at.as_str())) required;
            " (" (rules.time_zone) ") " button type="submit" { "Check" }
        }
        @if let Some(c) = check {
            table #check {
                tr { th { "person" } th { "at " (c.door) ", " (c.at) } }
                @for (name, verdict) in &c.people {
                    tr { td { (name) } td { @match verdict { Ok(()) => "passes", Err(d) => (d.event_kind()) } } }
                }
            }
        }
        h2 { "Doors" }
        table {
            tr { th { "door" } th { "admits groups, when" } }
            @for (name, door) in &rules.doors {
                tr { td { (name) } td {
                    form.inline.door-set method="post" action="/doors/set" {
                        input type="hidden" name="csrf" value=(csrf);
                        input type="hidden" name="name" value=(name);
                        @for g in rules.groups.keys() {
                            label { input type="checkbox" name="group" value=(g) checked[door.groups.contains(g)]; (g) } " "
                        }
                        select name="schedule" {
                            option value="" selected[door.schedule.is_none()] { "always" }
                            @for s in rules.schedules.keys() { option value=(s) selected[door.schedule.as_ref() == Some(s)] { (s) } }
                        }
                        " " button type="submit" { "Set" }
                    }
                } }
            }
        }
        form #doors-know method="post" action="/access/doors-know" {
            input type="hidden" name="csrf" value=(csrf);
            "Each door knows "
            select name="know" {
                option value="admitted" selected[know == DoorsKnow::Admitted] { "only the people it admits (others are strangers there)" }
                option value="everyone" selected[know == DoorsKnow::Everyone] { "everyone of the site (logs a refused person by name)" }
            }
            " " button type="submit" { "Set" }
        }
        h2 { "Groups" }
        table {
            tr { th { "group" } th { "schedule" } th { "people" } th {} }
            @for (name, group) in &rules.groups {
                tr { td { (name) } td { (group.schedule.as_deref().unwrap_or("always")) }
                     td { (site.people.values().filter(|p| p.access.groups.contains(name)).count()) }
                     td { (button("/access/group-remove", csrf, &[("name", name)], "Remove")) } }
            }
        }
        form method="post" action="/access/group-add" {
            input type="hidden" name="csrf" value=(csrf);
            "Group " input name="name" required; " passes " (schedule_choice) " " button type="submit" { "Add or change" }
        }
        h2 { "Schedules" }
        table {
            tr { th { "schedule" } th { "windows" } th {} }
            @for (name, schedule) in &rules.schedules {
                tr { td { (name) } td { (schedule.windows.iter().map(|w| w.to_string()).collect::<Vec<_>>().join(", ")) }
                     td { (button("/access/schedule-remove", csrf, &[("name", name)], "Remove")) } }
            }
        }
        form method="post" action="/access/schedule-set" {
            input type="hidden" name="csrf" value=(csrf);
            "Schedule " input name="name" required; " windows "
            input name="windows" placeholder="mon-fri 07:00-19:00, sat 09:00-13:00" size="40" required;
            " " button type="submit" { "Set" }
        }
    }
}

/// The most recent events that pass `filter`, newest first; new ones are
/// added live (the same filter applied to them in the page, times aside).
pub fn events(live: &Doors, filter: &EventFilter, doors: &[String], chart_svg: &str, audit: &[AuditEntry]) -> Markup {
    html! {
        @if !live.broker_up { p.error { "The broker is not reachable: no new events arrive." } }
        // Drawn here from counts and the site's door names (letters, digits, `-_.`): nothing to escape.
        div #chart { (PreEscaped(chart_svg)) }
        form #filter method="get" action="/events" {
            select name="door" { option value="" { "every door" }
                @for d in doors { option value=(d) selected[filter.door == *d] { (d) } } }
            " " input name="person" placeholder="person" value=(filter.person);
            " " select name="kind" { @for (value, label) in KINDS { option value=(value) selected[filter.kind == *value] { (label) } } }
            " from " input type="datetime-local" name="since" value=(filter.since);
            " to " input type="datetime-local" name="until" value=(filter.until);
            " (UTC) " button type="submit" { "Filter" }
            " " button type="submit" formaction="/events.csv" { "Export CSV" }
        }
        table #events data-door=(filter.door) data-person=(filter.person) data-kind=(filter.kind) {
            thead { tr { th { "time" } th { "door" } th { "event" } th { "person" } th { "seq" } } }
            tbody {
                @for e in live.events.iter().rev().filter(|e| filter.keeps(e)).take(500) {
                    tr { td { (text(&e["time"])) } td { (text(&e["door"])) } td { (text(&e["kind"])) }
                         td { (text(&e["person"])) } td.muted { (text(&e["seq"])) } }
                }
            }
        }
        script src="/assets/events.js" {}
        h2 { "Changes to the site" }
        p.muted { "Who changed what, from the command line or this console (the newest 50 of " (audit.len()) ")." }
        table #audit {
            tr { th { "time" } th { "who" } th { "change" } th { "version" } }
            @for a in audit.iter().rev().take(50) {
                tr { td { (iso_seconds(a.at)) } td { (a.who) } td { (a.what) } td { (a.version) } }
            }
        }
    }
}

/// The kinds the filter offers: (value, label).
const KINDS: [(&str, &str); 7] = [
    ("", "every kind"),
    ("granted", "granted"),
    ("denied", "denied (any rule)"),
    ("unknown", "unknown face"),
    ("spoof", "spoof attempt"),
    ("site", "site updates"),
    ("error", "errors"),
];

/// New events from `/events/stream` put at the top of the table (text
/// only: nothing received is read as HTML). Served as `/assets/events.js`.
pub const LIVE_EVENTS_SCRIPT: &str = r#"
const table = document.querySelector('#events');
const body = table.querySelector('tbody');
const wanted = (e) =>
  (!table.dataset.door || e.door === table.dataset.door) &&
  (!table.dataset.person || String(e.person || '').toLowerCase().includes(table.dataset.person.toLowerCase())) &&
  (!table.dataset.kind || String(e.kind || '').startsWith(table.dataset.kind));
const source = new EventSource('/events/stream');
source.addEventListener('access', (m) => {
  const e = JSON.parse(m.data);
  if (!wanted(e)) return;
  const row = body.insertRow(0);
  for (const key of ['time', 'door', 'kind', 'person', 'seq']) {
    row.insertCell().textContent = e[key] == null ? '-' : String(e[key]);
  }
});
"#;
