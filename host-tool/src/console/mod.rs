//! `host-tool --site SITE.toml console`: the site administrator's console in
//! a browser. It reads the same site file and state as the command line at
//! every request (a change made by `host-tool --site …` while it runs shows
//! at the next page), and follows the doors through the site's broker.
//!
//! - `auth`: the password, sessions, CSRF tokens, paused logins;
//! - `live`: the doors' statuses and events from the broker;
//! - `pages`: the HTML.

mod auth;
pub mod bench;
mod chart;
mod filter;
mod live;
mod pages;
mod tls;

use crate::site::SiteHome;
use anyhow::{bail, Context, Result};
use auth::{Gate, Session, LOGIN_CSRF_COOKIE, SESSION_COOKIE, SESSION_LIFETIME};
use axum::extract::{ConnectInfo, Form, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use live::Live;
use std::collections::HashMap;
use std::io::{BufRead, IsTerminal};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The address served when `--listen` is not given.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Where and how the console serves.
pub struct Serve {
    /// The address.
    pub listen: SocketAddr,
    /// HTTPS with this certificate chain and key (PEM files).
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// `console [--listen ADDR] [--tls-cert C --tls-key K] [--set-password]`.
pub fn run(g: &crate::cmd::Global, site: &Path, serve: Serve, set_password: bool) -> Result<()> {
    let Serve { listen, tls } = serve;
    if set_password {
        return set_console_password(site);
    }
    let home = SiteHome::open(site)?;
    if home.config().console_password.is_empty() {
        bail!("the console has no password yet: set one with `host-tool --site {} console --set-password`", site.display());
    }
    if !listen.ip().is_loopback() && tls.is_none() {
        bail!(
            "{listen} is not a loopback address: beyond this machine the console serves HTTPS only (--tls-cert CERT.pem \
             --tls-key KEY.pem), or reach it through an SSH tunnel (ssh -L 8080:127.0.0.1:8080 …)"
        );
    }
    let acceptor = tls.as_ref().map(|(cert, key)| tls::acceptor(cert, key)).transpose()?;
    let app = Arc::new(App {
        // The command line's own functions make the console's changes: quiet, as with --json.
        global: crate::cmd::Global { json: true, ..g.clone() },
        site: site.to_path_buf(),
        models: g.models().ok(),
        live: Live::start(home.config().clone()),
        gate: Gate::default(),
        secure: acceptor.is_some(),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listening on {listen}"))?;
        let local = listener.local_addr()?;
        let scheme = if acceptor.is_some() { "https" } else { "http" };
        println!("console of site {} on {scheme}://{local}/ (Ctrl-C stops it)", home.config().name);
        let service = router(app.clone()).into_make_service_with_connect_info::<Peer>();
        match acceptor {
            Some(acceptor) => axum::serve(tls::TlsListener::new(listener, acceptor)?, service).await,
            None => axum::serve(listener, service).await,
        }
        .context("serving the console")
    })?;
    app.live.stop();
    Ok(())
}

/// `console --set-password`: one line from standard input when it is not a
/// terminal; asked twice, unechoed, on a terminal. Stored as an argon2 hash.
fn set_console_password(site: &Path) -> Result<()> {
    let mut home = SiteHome::open(site)?;
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("new console password: ")?;
        if rpassword::prompt_password("once more: ")? != first {
            bail!("the two passwords differ; nothing was changed");
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("reading the password from standard input")?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    let mut config = home.config().clone();
    config.console_password = auth::hash_password(&password)?;
    home.save_config(config)?;
    println!("console password of site {} set", home.config().name);
    Ok(())
}

/// The address a request came from (failed logins are counted per address).
#[derive(Clone, Copy, Debug)]
struct Peer(SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, tokio::net::TcpListener>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, tls::TlsListener>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, tls::TlsListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

/// What every request handler shares.
struct App {
    global: crate::cmd::Global,
    site: PathBuf,
    models: Option<PathBuf>,
    live: Arc<Live>,
    gate: Gate,
    /// Served over TLS: cookies are marked Secure.
    secure: bool,
}

impl App {
    /// The session this request carries, if it is live.
    fn session(&self, headers: &HeaderMap) -> Option<(String, Session)> {
        let id = cookie(headers, SESSION_COOKIE)?;
        self.gate.session(&id).map(|s| (id, s))
    }

    /// The site as the command line left it.
    fn home(&self) -> Result<SiteHome, Response> {
        SiteHome::open(&self.site).map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")).into_response())
    }

    fn network_of(&self, model_hex: &str) -> String {
        let model = facegate_core::ModelId::from_hex(model_hex).ok();
        let found = model.zip(self.models.as_deref()).and_then(|(m, dir)| facegate_face::Embedder::find_model(dir, m).ok()?);
        found.map_or_else(|| model_hex.chars().take(12).collect(), |(network, _)| network.to_string())
    }
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/doors") }))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/doors", get(doors))
        .route("/people", get(people))
        .route(
            "/people/enrol",
            post(enrol).layer(axum::extract::DefaultBodyLimit::max(MAX_PHOTOS * MAX_PHOTO_BYTES + (64 << 10))),
        )
        .route("/access", get(access))
        .route("/doors/{action}", post(door_change))
        .route("/{page}/{action}", post(form_change))
        .route("/events", get(events))
        .route("/events/stream", get(event_stream))
        .route("/events.csv", get(events_csv))
        .route(
            "/assets/events.js",
            get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], pages::LIVE_EVENTS_SCRIPT) }),
        )
        .layer(axum::middleware::map_response(security_headers))
        .with_state(app)
}

/// No framing by other sites, no scripts from anywhere but the console's
/// own files (the pages hold no inline script).
async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The value of cookie `name` in the request.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

impl App {
    /// A `Set-Cookie` value: HttpOnly, SameSite=Strict, Secure over TLS, for
    /// `max_age_s` (0: cleared).
    fn set_cookie(&self, name: &str, value: &str, max_age_s: u64) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        HeaderValue::from_str(&format!("{name}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age_s}{secure}"))
            .expect("a cookie of hex digits")
    }
}

fn to_login() -> Response {
    Redirect::to("/login").into_response()
}

/// A page of the console, with what the session's last change did.
fn page(app: &App, title: &str, (id, session): &(String, Session), content: maud::Markup) -> Result<Response, Response> {
    let home = app.home()?;
    let notice = app.gate.take_notice(id);
    let html = pages::layout(&home.config().name, title, Some(&session.csrf), notice.as_deref(), content);
    Ok(Html(html.into_string()).into_response())
}

/// A change asked by a form: the session's CSRF token checked, then `apply`
/// (the command line's own function for it: saved, then published) run off
/// the request threads; back to `back`, which says what happened.
async fn change(
    app: Arc<App>,
    (headers, from): (&HeaderMap, SocketAddr),
    csrf: &str,
    back: &'static str,
    apply: impl FnOnce(&crate::cmd::Global, &Path) -> Result<String> + Send + 'static,
) -> Response {
    let Some((id, session)) = app.session(headers) else { return to_login() };
    if !auth::same_token(csrf, &session.csrf) {
        return (StatusCode::FORBIDDEN, "the form did not come from this console: reload the page").into_response();
    }
    let worker = app.clone();
    // The audit log names the console and the address the change came from.
    let g = crate::cmd::Global { actor: Some(format!("console from {}", from.ip())), ..app.global.clone() };
    let result = tokio::task::spawn_blocking(move || {
        let version = || SiteHome::open(&worker.site).map(|h| h.site().version).ok();
        let before = version();
        let result = apply(&g, &worker.site);
        (result, before, version())
    })
    .await;
    // The state is saved before it is published: a change the broker did not take is kept, and said so.
    let notice = match result {
        Ok((Ok(what), _, after)) => {
            format!("Done: saved and published to the doors (version {}). {what}", after.unwrap_or_default())
        }
        Ok((Err(e), before, after)) if after > before => format!(
            "Saved as version {}, not published to the doors yet: {e:#}. The next change or `host-tool --site … sync` \
             publishes it.",
            after.unwrap_or_default()
        ),
        Ok((Err(e), _, _)) => format!("Not done: {e:#}"),
        Err(e) => format!("Not done: {e}"),
    };
    app.gate.set_notice(&id, notice);
    Redirect::to(back).into_response()
}

/// A change that has nothing more to say than that it was made.
fn done(result: Result<()>) -> Result<String> {
    result.map(|()| String::new())
}

/// The most photos one enrolment takes.
pub const MAX_PHOTOS: usize = 10;

/// The largest photo taken (bytes), and so the largest enrolment form.
pub const MAX_PHOTO_BYTES: usize = 10 << 20;

/// `/people/enrol` (a multipart form: `csrf`, `name`, `group` (repeated),
/// `photo` (repeated files)): the photos go through the command line's
/// enrolment, each with its verdict; nothing is kept of them.
async fn enrol(
    State(app): State<Arc<App>>,
    ConnectInfo(Peer(from)): ConnectInfo<Peer>,
    headers: HeaderMap,
    mut form: axum::extract::Multipart,
) -> Response {
    let (mut csrf, mut name, mut groups, mut photos) = (String::new(), String::new(), Vec::new(), Vec::new());
    loop {
        let field = match form.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => return (e.status(), format!("the enrolment form: {e}; nothing was changed")).into_response(),
        };
        let key = field.name().unwrap_or_default().to_string();
        let file_name = field.file_name().map(upload_name);
        let bytes = match field.bytes().await {
            Ok(bytes) => bytes,
            Err(e) => return (e.status(), format!("the enrolment form: {e}; nothing was changed")).into_response(),
        };
        let text = || String::from_utf8_lossy(&bytes).trim().to_string();
        match key.as_str() {
            "csrf" => csrf = text(),
            "name" => name = text(),
            "group" => groups.push(text()),
            "photo" if !bytes.is_empty() => {
                if photos.len() == MAX_PHOTOS || bytes.len() > MAX_PHOTO_BYTES {
                    let why =
                        format!("at most {MAX_PHOTOS} photos of at most {} MB each; nothing was changed", MAX_PHOTO_BYTES >> 20);
                    return (StatusCode::PAYLOAD_TOO_LARGE, why).into_response();
                }
                photos.push((file_name.unwrap_or_else(|| format!("photo-{}", photos.len() + 1)), bytes));
            }
            _ => {}
        }
    }
    change(app, (&headers, from), &csrf, "/people", move |g, site| {
        // The photos as files for the command line's enrolment, in a private directory removed after.
        let dir = std::env::temp_dir().join(format!("facegate-console-{}", auth::token()?));
        std::fs::create_dir(&dir)?;
        let paths: Vec<PathBuf> = photos.iter().enumerate().map(|(k, (n, _))| dir.join(format!("{}-{n}", k + 1))).collect();
        let written = photos.iter().zip(&paths).try_for_each(|((_, bytes), path)| std::fs::write(path, bytes));
        let validity = crate::site::Validity { groups, from: None, until: None };
        let enrolled =
            written.map_err(anyhow::Error::from).and_then(|()| crate::site::enrol_person(g, site, &name, &paths, validity));
        let _ = std::fs::remove_dir_all(&dir);
        let enrolled = enrolled?;
        let verdicts: Vec<String> = enrolled["photos"]
            .as_array()
            .into_iter()
            .flatten()
            .zip(&photos)
            .map(|(r, (n, _))| match r["ok"].as_bool() {
                Some(true) => format!("{n}: used"),
                _ => format!("{n}: refused, {}", r["reason"].as_str().unwrap_or("unusable")),
            })
            .collect();
        Ok(format!("Enrolled {name} with {} templates ({}).", enrolled["templates"], verdicts.join("; ")))
    })
    .await
}

/// An uploaded file's name as shown back: its last part, letters, digits,
/// `.`, `-` and `_` only, at most 64 characters.
fn upload_name(name: &str) -> String {
    pages::safe_name(name.rsplit(['/', '\\']).next().unwrap_or_default())
}

/// The fields of the console's forms (each form uses some).
#[derive(serde::Deserialize)]
struct ChangeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    group: String,
    #[serde(default)]
    schedule: String,
    #[serde(default)]
    windows: String,
    /// A new name (rename).
    #[serde(default)]
    to: String,
    /// Valid from (UTC, `2026-12-07T08:00`; empty: no limit).
    #[serde(default)]
    from: String,
    /// Valid until.
    #[serde(default)]
    until: String,
    /// Which doors know a person (`admitted`, `everyone`).
    #[serde(default)]
    know: String,
}

/// A door's form (urlencoded, `group` repeated): its single fields by name, and its groups.
fn door_form(body: &[u8]) -> (impl Fn(&str) -> String, Vec<String>) {
    let fields: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    let groups = fields.iter().filter(|(k, _)| k == "group").map(|(_, v)| v.clone()).collect();
    let one = move |key: &str| fields.iter().find(|(k, _)| k == key).map(|(_, v)| v.trim().to_string()).unwrap_or_default();
    (one, groups)
}

/// `POST /doors/{add,set,remove}` (`csrf`, `name`, `group` repeated,
/// `schedule`; to add, `username` and `password`): the command line's
/// `door add|set|remove`. Adding answers with the door's secrets file to
/// download (or the Doors page saying why not); a console started with
/// `--port` hands them over that serial link instead, as `door add --port`.
async fn door_change(
    State(app): State<Arc<App>>,
    ConnectInfo(Peer(from)): ConnectInfo<Peer>,
    axum::extract::Path(action): axum::extract::Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    use crate::site::DoorAction;
    let (one, groups) = door_form(&body);
    let (name, schedule) = (one("name"), Some(one("schedule")).filter(|s| !s.is_empty()));
    // Secrets are written by the command line's own code, to a private file read back and removed.
    let Ok(token) = auth::token() else { return StatusCode::INTERNAL_SERVER_ERROR.into_response() };
    let out = std::env::temp_dir().join(format!("facegate-console-door-{token}.toml"));
    let (back, action) = match action.as_str() {
        "add" => {
            // Started with --port: the door in setup mode on that link is given its secrets over it.
            let secrets_out = app.global.port.is_none().then(|| out.clone());
            let (username, password) = (one("username"), one("password"));
            ("/doors", DoorAction::Add { name: name.clone(), groups, schedule, username, password, secrets_out })
        }
        "set" => ("/access", DoorAction::Set { name: name.clone(), groups, schedule }),
        "remove" => ("/doors", DoorAction::Remove { name: name.clone() }),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let response =
        change(app, (&headers, from), &one("csrf"), back, move |g, site| done(crate::site::door(g, site, action))).await;
    match std::fs::read(&out) {
        Ok(secrets) => {
            let _ = std::fs::remove_file(&out);
            let disposition = format!("attachment; filename=\"{}.fleet.toml\"", pages::safe_name(&name));
            let disposition = HeaderValue::from_str(&disposition).unwrap_or(HeaderValue::from_static("attachment"));
            let kind = HeaderValue::from_static("application/toml");
            ([(header::CONTENT_TYPE, kind), (header::CONTENT_DISPOSITION, disposition)], secrets).into_response()
        }
        Err(_) => response,
    }
}

/// A change of the site by one of the command line's functions.
type SiteChange = Box<dyn FnOnce(&crate::cmd::Global, &Path) -> Result<()> + Send>;

/// `POST /people/{grant,revoke,remove,rename,valid}` and `POST
/// /access/{group-add,group-remove,schedule-set,schedule-remove}`: one
/// change each, by the command line's own function.
async fn form_change(
    State(app): State<Arc<App>>,
    ConnectInfo(Peer(from)): ConnectInfo<Peer>,
    axum::extract::Path((page, action)): axum::extract::Path<(String, String)>,
    headers: HeaderMap,
    Form(f): Form<ChangeForm>,
) -> Response {
    use crate::site::{GroupAction, ScheduleAction};
    let ChangeForm { csrf, name, group, schedule, windows, to, from: valid_from, until: valid_until, know } = f;
    let (back, apply): (&'static str, SiteChange) = match (page.as_str(), action.as_str()) {
        ("people", "grant") => ("/people", Box::new(move |g, site| crate::site::grant(g, site, &name, &group))),
        ("people", "revoke") => ("/people", Box::new(move |g, site| crate::site::revoke(g, site, &name, &group))),
        ("people", "remove") => ("/people", Box::new(move |g, site| crate::site::remove(g, site, &name))),
        ("people", "rename") => ("/people", Box::new(move |g, site| crate::site::rename(g, site, &name, to.trim()))),
        ("people", "valid") => {
            ("/people", Box::new(move |g, site| crate::site::valid(g, site, &name, Some(valid_from), Some(valid_until))))
        }
        ("access", "group-add") => {
            let action = GroupAction::Add { name, schedule: Some(schedule).filter(|s| !s.is_empty()) };
            ("/access", Box::new(move |g, site| crate::site::group(g, site, action)))
        }
        ("access", "group-remove") => {
            ("/access", Box::new(move |g, site| crate::site::group(g, site, GroupAction::Remove { name })))
        }
        ("access", "schedule-set") => {
            let windows = windows.split([',', '\n']).map(str::trim).filter(|w| !w.is_empty()).map(String::from).collect();
            ("/access", Box::new(move |g, site| crate::site::schedule(g, site, ScheduleAction::Set { name, windows })))
        }
        ("access", "schedule-remove") => {
            ("/access", Box::new(move |g, site| crate::site::schedule(g, site, ScheduleAction::Remove { name })))
        }
        ("access", "doors-know") => ("/access", Box::new(move |g, site| crate::site::doors_know(g, site, know.parse()?))),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    change(app, (&headers, from), &csrf, back, move |g, site| done(apply(g, site))).await
}

async fn login_form(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if app.session(&headers).is_some() {
        return Redirect::to("/doors").into_response();
    }
    login_page(&app, StatusCode::OK, None)
}

/// The login form with a fresh CSRF token (also in its cookie).
fn login_page(app: &App, status: StatusCode, problem: Option<&str>) -> Response {
    let (home, csrf) = match (app.home(), auth::token()) {
        (Ok(home), Ok(csrf)) => (home, csrf),
        (Err(response), _) => return response,
        (_, Err(e)) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    let body = pages::login(&home.config().name, &csrf, problem).into_string();
    (status, [(header::SET_COOKIE, app.set_cookie(LOGIN_CSRF_COOKIE, &csrf, 3600))], Html(body)).into_response()
}

#[derive(serde::Deserialize)]
struct LoginForm {
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
}

async fn login(
    State(app): State<Arc<App>>,
    ConnectInfo(Peer(from)): ConnectInfo<Peer>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let expected = cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if form.csrf.is_empty() || !auth::same_token(&form.csrf, &expected) {
        return login_page(&app, StatusCode::FORBIDDEN, Some("The form expired or did not come from this console: try again."));
    }
    if app.gate.paused(from.ip()) {
        return login_page(&app, StatusCode::TOO_MANY_REQUESTS, Some("Too many failed logins: wait a minute."));
    }
    let hash = match app.home() {
        Ok(home) => home.config().console_password.clone(),
        Err(response) => return response,
    };
    let matches = tokio::task::spawn_blocking(move || auth::password_matches(&hash, &form.password)).await.unwrap_or(false);
    if !matches {
        app.gate.failed(from.ip());
        return login_page(&app, StatusCode::UNAUTHORIZED, Some("Wrong password."));
    }
    match app.gate.open_session() {
        Ok((id, _)) => {
            let mut response = Redirect::to("/doors").into_response();
            let h = response.headers_mut();
            h.append(header::SET_COOKIE, app.set_cookie(SESSION_COOKIE, &id, SESSION_LIFETIME.as_secs()));
            h.append(header::SET_COOKIE, app.set_cookie(LOGIN_CSRF_COOKIE, "", 0));
            response
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

#[derive(serde::Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(State(app): State<Arc<App>>, headers: HeaderMap, Form(form): Form<CsrfForm>) -> Response {
    let Some((id, session)) = app.session(&headers) else { return to_login() };
    if !auth::same_token(&form.csrf, &session.csrf) {
        return (StatusCode::FORBIDDEN, "the form did not come from this console").into_response();
    }
    app.gate.close_session(&id);
    let mut response = to_login();
    response.headers_mut().append(header::SET_COOKIE, app.set_cookie(SESSION_COOKIE, "", 0));
    response
}

async fn doors(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let Some(session) = app.session(&headers) else { return to_login() };
    let rendered = app.home().and_then(|home| {
        let content = app.live.doors(|live| pages::doors(home.site(), live, &|m| app.network_of(m), &session.1.csrf));
        page(&app, "Doors", &session, content)
    });
    rendered.unwrap_or_else(|response| response)
}

/// `/people?q=NAME`: the people whose name holds NAME.
async fn people(State(app): State<Arc<App>>, headers: HeaderMap, Query(query): Query<HashMap<String, String>>) -> Response {
    let Some(session) = app.session(&headers) else { return to_login() };
    let search = query.get("q").map_or("", String::as_str);
    let rendered =
        app.home().and_then(|home| page(&app, "People", &session, pages::people(home.site(), search, &session.1.csrf)));
    rendered.unwrap_or_else(|response| response)
}

/// `/access[?door=D&at=T]`: the rules, and who may open D at T (the site's wall clock).
async fn access(State(app): State<Arc<App>>, headers: HeaderMap, Query(query): Query<HashMap<String, String>>) -> Response {
    let Some(session) = app.session(&headers) else { return to_login() };
    let rendered = app.home().and_then(|home| {
        let site = home.site();
        let check = match (query.get("door"), query.get("at")) {
            (Some(door), Some(at)) => match site.rules.local_time(at) {
                Ok(now) => {
                    let people =
                        site.people.values().map(|p| (p.name.clone(), site.rules.decide(door, &p.access, now))).collect();
                    Some(pages::Check { door: door.clone(), at: at.clone(), people })
                }
                Err(e) => {
                    app.gate.set_notice(&session.0, format!("Not checked: {e}"));
                    None
                }
            },
            _ => None,
        };
        page(&app, "Access", &session, pages::access(site, home.doors_know(), &session.1.csrf, check.as_ref()))
    });
    rendered.unwrap_or_else(|response| response)
}

/// `/events[?door=&person=&kind=&since=&until=]`.
async fn events(State(app): State<Arc<App>>, headers: HeaderMap, Query(query): Query<HashMap<String, String>>) -> Response {
    let Some(session) = app.session(&headers) else { return to_login() };
    let filter = filter::EventFilter::from_query(&query);
    let rendered = app.home().and_then(|home| {
        let doors: Vec<String> = home.site().rules.doors.keys().cloned().collect();
        let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        // The title is drawn into the SVG as is: a door's name only (letters, digits, `-_.`), never other query text.
        let title = match facegate_site::records::valid_name(&filter.door) {
            true => format!("door {}", filter.door),
            false => "every door".to_string(),
        };
        // The chart counts what the filter keeps (its kind aside: it splits by kind itself).
        let by_door = filter::EventFilter { kind: String::new(), ..filter.clone() };
        let content = app.live.doors(|live| {
            let (hours, first) = chart::count(live.events.iter().filter(|e| by_door.keeps(e)), now_ms);
            let drawn = chart::svg(&hours, first, &title).unwrap_or_else(|e| format!("<p class=\"error\">no chart: {e}</p>"));
            pages::events(live, &filter, &doors, &drawn, home.audit())
        });
        page(&app, "Events", &session, content)
    });
    rendered.unwrap_or_else(|response| response)
}

/// `/events.csv`, with the Events page's filter: every event the console holds that passes it, oldest first.
async fn events_csv(State(app): State<Arc<App>>, headers: HeaderMap, Query(query): Query<HashMap<String, String>>) -> Response {
    if app.session(&headers).is_none() {
        return to_login();
    }
    let filter = filter::EventFilter::from_query(&query);
    let csv = app.live.doors(|live| filter::csv(live.events.iter().filter(|e| filter.keeps(e))));
    let disposition = HeaderValue::from_static("attachment; filename=\"facegate-events.csv\"");
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8")), (header::CONTENT_DISPOSITION, disposition)],
        csv,
    )
        .into_response()
}

/// New events as server-sent events (`access`, the event's JSON).
async fn event_stream(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if app.session(&headers).is_none() {
        return to_login();
    }
    let receiver = app.live.events.subscribe();
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        loop {
            match receiver.recv().await {
                Ok(event) => {
                    let sse = SseEvent::default().event("access").data(event.to_string());
                    return Some((Ok::<_, std::convert::Infallible>(sse), receiver));
                }
                // Fell behind: the page shows what comes next.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}
