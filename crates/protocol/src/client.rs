//! The host side of a session.

use crate::auth::{sign_request, verify_response, Secret};
use crate::link::{Link, LinkError, LinkStats, Port};
use crate::message::{to_bytes, Auth, DeviceHello, HostId, ModelId, Request, RequestFrame, Response, ResponseFrame, WireError};
use crate::PROTOCOL_VERSION;
use std::time::{Duration, Instant};

/// Errors seen by the host.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The link failed.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// The device refused the request.
    #[error(transparent)]
    Device(#[from] WireError),
    /// The device's answer made no sense (or was not authentic).
    #[error("bad answer from the device: {0}")]
    Protocol(String),
}

impl ClientError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            ClientError::Device(e) => e.hint(),
            ClientError::Link(LinkError::TimedOut) => {
                Some("is the device running and connected to this port? Check the cable, --port and --baud")
            }
            ClientError::Link(_) => Some("the port failed: reconnect the cable and retry"),
            ClientError::Protocol(_) => Some("check --baud; if it persists, pair again"),
        }
    }
}

/// A session with one device.
pub struct Client<P> {
    link: Link<P>,
    host: HostId,
    hello: DeviceHello,
    secret: Option<Secret>,
    counter: u64,
    next_id: u32,
    /// How long to wait for an answer.
    pub timeout: Duration,
}

impl<P: Port> Client<P> {
    /// Opens a session: flushes the line, checks the protocol version, learns the device.
    pub fn connect(link: Link<P>, host: HostId, timeout: Duration) -> Result<Self, ClientError> {
        let mut c = Client {
            link,
            host,
            hello: DeviceHello {
                device: [0; 16],
                software: String::new(),
                model: ModelId::from_bytes([0; 32]),
                paired: false,
                counter_floor: 0,
                setup_mode: false,
            },
            secret: None,
            counter: 0,
            next_id: 1,
            timeout,
        };
        // A lone delimiter ends whatever half-frame the device may hold.
        c.link.write_raw(&[0])?;
        c.link.resync()?;
        match c.call(&Request::Hello { host })? {
            Response::Hello(h) => {
                c.counter = h.counter_floor;
                c.hello = h;
                Ok(c)
            }
            other => Err(ClientError::Protocol(format!("expected a hello, got {other:?}"))),
        }
    }

    /// What the device said at connection.
    pub fn hello(&self) -> &DeviceHello {
        &self.hello
    }

    /// Authenticates later requests with `secret`.
    pub fn set_secret(&mut self, secret: Secret) {
        self.secret = Some(secret);
    }

    /// Link counters.
    pub fn link_stats(&self) -> LinkStats {
        self.link.stats()
    }

    /// The link (e.g. to emulate a line rate).
    pub fn link_mut(&mut self) -> &mut Link<P> {
        &mut self.link
    }

    /// Pairs (device in setup mode); returns the secret and uses it from now on.
    pub fn pair(&mut self, name: &str) -> Result<Secret, ClientError> {
        let saved = self.secret.take();
        let result = self.call(&Request::Pair { host: self.host, name: name.to_string() });
        match result {
            Ok(Response::Paired { device, secret }) if device == self.hello.device => {
                self.secret = Some(secret);
                self.counter = 0;
                Ok(secret)
            }
            Ok(other) => {
                self.secret = saved;
                Err(ClientError::Protocol(format!("expected a pairing, got {other:?}")))
            }
            Err(e) => {
                self.secret = saved;
                Err(e)
            }
        }
    }

    /// Sends a request and waits for its answer.
    pub fn call(&mut self, request: &Request) -> Result<Response, ClientError> {
        self.call_with_timeout(request, self.timeout)
    }

    /// [`call`](Self::call) with its own time-out (for requests that take long on the device).
    pub fn call_with_timeout(&mut self, request: &Request, timeout: Duration) -> Result<Response, ClientError> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.attempt(request, timeout) {
                // Damaged on the way in: the device did nothing, so sending again is safe.
                Err(ClientError::Device(WireError::Malformed(_))) if attempts < 3 => continue,
                // Someone else used this pairing meanwhile: move past their counter once.
                Err(ClientError::Device(WireError::Replay { floor, .. })) if attempts < 2 => self.counter = floor,
                other => return other,
            }
        }
    }

    fn attempt(&mut self, request: &Request, timeout: Duration) -> Result<Response, ClientError> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let body = to_bytes(request);
        let auth = self.secret.map(|secret| {
            self.counter += 1;
            Auth {
                host: self.host,
                counter: self.counter,
                mac: sign_request(&secret, PROTOCOL_VERSION, id, &self.host, self.counter, &body),
            }
        });
        let counter = self.counter;
        self.link.send(&to_bytes(&RequestFrame { version: PROTOCOL_VERSION, id, auth, body }))?;
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(payload) = self.link.recv(left)? else {
                continue; // a damaged frame: wait for a good one (or time out)
            };
            let Ok(frame) = postcard::from_bytes::<ResponseFrame>(&payload) else {
                continue;
            };
            let result: Result<Response, WireError> =
                postcard::from_bytes(&frame.body).map_err(|e| ClientError::Protocol(format!("undecodable response: {e}")))?;
            if frame.id == 0 {
                if let Err(e @ (WireError::Malformed(_) | WireError::VersionMismatch { .. })) = result {
                    return Err(e.into());
                }
            }
            if frame.id != id {
                continue; // a stale answer to an earlier request
            }
            if let Some(secret) = &self.secret {
                let authentic = frame.mac.is_some_and(|m| verify_response(secret, frame.version, id, counter, &frame.body, &m));
                // Refusals before authentication cannot be signed; everything else must be.
                let unsigned_ok = matches!(
                    result,
                    Err(WireError::NotPaired | WireError::BadMac | WireError::Replay { .. } | WireError::VersionMismatch { .. })
                );
                if !authentic && !unsigned_ok {
                    return Err(ClientError::Protocol("the response is not authentic (MAC)".into()));
                }
            }
            return result.map_err(ClientError::from);
        }
    }
}
