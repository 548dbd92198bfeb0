//! Who may use the console: the administrator's password (an argon2 hash in
//! the site file), sessions in HttpOnly SameSite=Strict cookies that expire,
//! a CSRF token per session (and one per login form), and a pause after
//! repeated failed logins.

use anyhow::{anyhow, bail, Result};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The shortest password taken.
pub const MIN_PASSWORD_CHARS: usize = 10;

/// How long a session lasts without a new login.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(8 * 3600);

/// Failed logins from one address within [`FAILURE_WINDOW`] before logins
/// from it are refused unheard until the window has passed.
pub const MAX_FAILURES: usize = 5;

/// See [`MAX_FAILURES`].
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "facegate_session";

/// The login form's CSRF cookie (double submit: the form carries the same value).
pub const LOGIN_CSRF_COOKIE: &str = "facegate_login_csrf";

/// 32 random bytes, hex: session ids and CSRF tokens.
pub fn token() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow!("no random bytes: {e}"))?;
    Ok(facegate_core::hex(&bytes))
}

/// The PHC string (argon2id, random salt) stored for `password`.
pub fn hash_password(password: &str) -> Result<String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        bail!("the console password needs at least {MIN_PASSWORD_CHARS} characters");
    }
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| anyhow!("no random bytes: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow!("salt: {e}"))?;
    Ok(Argon2::default().hash_password(password.as_bytes(), &salt).map_err(|e| anyhow!("hashing: {e}"))?.to_string())
}

/// Whether `password` matches the stored PHC string `hash`.
pub fn password_matches(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

/// Compares two tokens in time independent of where they differ.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A logged-in browser.
#[derive(Clone, Debug)]
pub struct Session {
    /// Every state-changing request carries it.
    pub csrf: String,
    expires: Instant,
}

/// The console's sessions and failed-login counts (in memory: a restarted
/// console asks for the password again).
#[derive(Default)]
pub struct Gate {
    sessions: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<IpAddr, Vec<Instant>>>,
    /// What the last change of a session did, shown once on its next page.
    notices: Mutex<HashMap<String, String>>,
}

impl Gate {
    /// A new session: its id (the cookie) and the session.
    pub fn open_session(&self) -> Result<(String, Session)> {
        let (id, session) = (token()?, Session { csrf: token()?, expires: Instant::now() + SESSION_LIFETIME });
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.retain(|_, s| s.expires > Instant::now());
        sessions.insert(id.clone(), session.clone());
        Ok((id, session))
    }

    /// The live session of cookie value `id`.
    pub fn session(&self, id: &str) -> Option<Session> {
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.get(id).filter(|s| s.expires > Instant::now()).cloned()
    }

    /// Ends the session `id`.
    pub fn close_session(&self, id: &str) {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
        self.notices.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }

    /// Keeps `text` for session `id`'s next page.
    pub fn set_notice(&self, id: &str, text: String) {
        self.notices.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_string(), text);
    }

    /// The notice kept for session `id`, once.
    pub fn take_notice(&self, id: &str) -> Option<String> {
        self.notices.lock().unwrap_or_else(|p| p.into_inner()).remove(id)
    }

    /// Whether logins from `from` are paused (too many recent failures).
    pub fn paused(&self, from: IpAddr) -> bool {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let recent = failures.entry(from).or_default();
        recent.retain(|t| t.elapsed() < FAILURE_WINDOW);
        recent.len() >= MAX_FAILURES
    }

    /// Counts a failed login from `from`.
    pub fn failed(&self, from: IpAddr) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).entry(from).or_default().push(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_is_stored_hashed_and_checked() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$") && !hash.contains("correct"));
        assert!(password_matches(&hash, "correct horse battery"));
        assert!(!password_matches(&hash, "correct horse batterY"));
        assert!(!password_matches("not a hash", "correct horse battery"));
        assert_ne!(hash, hash_password("correct horse battery").unwrap(), "a salt of its own each time");
        assert!(hash_password("short").is_err());
    }

    #[test]
    fn sessions_are_found_until_closed_and_failures_pause_logins() {
        let gate = Gate::default();
        let (id, session) = gate.open_session().unwrap();
        assert_eq!(gate.session(&id).unwrap().csrf, session.csrf);
        assert!(gate.session("another").is_none());
        gate.close_session(&id);
        assert!(gate.session(&id).is_none());
        let from: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..MAX_FAILURES {
            assert!(!gate.paused(from));
            gate.failed(from);
        }
        assert!(gate.paused(from));
        assert!(!gate.paused("127.0.0.2".parse().unwrap()), "per address");
        assert!(same_token("abc", "abc") && !same_token("abc", "abd") && !same_token("abc", "ab"));
    }
}
