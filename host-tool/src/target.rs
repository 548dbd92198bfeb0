//! Where gallery commands go: a device over its serial link, or a gallery file
//! directly (offline: preparing an SD card, tests). Both answer the same
//! requests through the same gallery operations.

use crate::keys::{hex, Keys};
use anyhow::{bail, Context, Result};
use facegate_protocol::link::Link;
use facegate_protocol::message::model_hex;
use facegate_protocol::ops::{enroll_into, identify, people_page, verify, wire_error};
use facegate_protocol::{Client, Request, Response, WireError};
use facegate_store::Gallery;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A session with a device.
pub type Session = Client<Box<dyn serialport::SerialPort>>;

/// A gallery file edited in place.
pub struct Offline {
    /// The file.
    pub path: PathBuf,
    /// Its content.
    pub gallery: Gallery,
    /// Match threshold for verify/identify and similarity warnings.
    pub threshold: f32,
}

/// The target of a command.
pub enum Target {
    /// A device.
    Device(Box<Session>),
    /// A gallery file.
    File(Offline),
}

/// Opens the serial port.
pub fn open_port(port: &str, baud: u32) -> Result<Box<dyn serialport::SerialPort>> {
    serialport::new(port, baud).timeout(Duration::from_millis(200)).open().with_context(|| {
        format!("opening {port} (hint: `host-tool ports` lists serial ports; you may need to be in group dialout)")
    })
}

/// Connects and says hello, without authenticating.
pub fn connect(port: &str, baud: u32, timeout: Duration) -> Result<Session> {
    let link = Link::new(open_port(port, baud)?);
    let keys = Keys::open()?;
    Client::connect(link, keys.host_id()?, timeout).map_err(crate::output::client_error)
}

/// Connects and authenticates with the stored key.
pub fn connect_paired(port: &str, baud: u32, timeout: Duration) -> Result<Session> {
    let mut c = connect(port, baud, timeout)?;
    let keys = Keys::open()?;
    let device = c.hello().device;
    match keys.secret(&device)? {
        Some(secret) => c.set_secret(secret),
        None => bail!(
            "this host has no key for device {} (hint: start the device in setup mode and run `host-tool --port {port} pair`)",
            hex(&device)
        ),
    }
    if !c.hello().paired {
        bail!(
            "device {} does not know this host any more (it was reset or unpaired) (hint: pair again in setup mode)",
            hex(&device)
        );
    }
    Ok(c)
}

impl Offline {
    /// Opens a gallery file, or starts a new one for `model` when it does not exist.
    pub fn open(path: &Path, model: &str, threshold: f32) -> Result<Self> {
        let gallery = if path.exists() {
            Gallery::load(path).with_context(|| format!("loading {}", path.display()))?
        } else {
            Gallery::new(model)
        };
        Ok(Offline { path: path.to_path_buf(), gallery, threshold })
    }

    fn change<T>(&mut self, f: impl FnOnce(&mut Gallery) -> Result<T, WireError>) -> Result<T, WireError> {
        let mut next = self.gallery.clone();
        let out = f(&mut next)?;
        next.save(&self.path).map_err(wire_error)?;
        self.gallery = next;
        Ok(out)
    }

    /// Answers a request as a device would.
    pub fn request(&mut self, request: Request) -> Result<Response, WireError> {
        let threshold = self.threshold;
        match request {
            Request::People { start } => Ok(people_page(&self.gallery, start)),
            Request::Enroll { model, add, people } => {
                facegate_protocol::ops::check_model(&self.gallery, &model)?;
                self.change(|g| Ok(enroll_into(g, add, people, threshold))).map(Response::Enrolled)
            }
            Request::Remove { name } => self.change(|g| g.remove(&name).map_err(wire_error)).map(|_| Response::Done),
            Request::Rename { from, to } => self.change(|g| g.rename(&from, &to).map_err(wire_error)).map(|_| Response::Done),
            Request::Verify { name, model, probe } => {
                facegate_protocol::ops::check_model(&self.gallery, &model)?;
                verify(&self.gallery, &name, &probe.to_embedding()?, threshold).map(Response::Match)
            }
            Request::Identify { model, probe } => {
                facegate_protocol::ops::check_model(&self.gallery, &model)?;
                Ok(Response::Match(identify(&self.gallery, &probe.to_embedding()?, threshold)))
            }
            _ => Err(WireError::Unavailable("this command needs a device (--port), not a gallery file".into())),
        }
    }
}

impl Target {
    /// The model id (hex) templates must be made with.
    pub fn model(&self) -> String {
        match self {
            Target::Device(c) => model_hex(&c.hello().model),
            Target::File(f) => f.gallery.model_id().to_string(),
        }
    }

    /// Sends a request.
    pub fn request(&mut self, request: Request) -> Result<Response> {
        match self {
            Target::Device(c) => c.call(&request).map_err(crate::output::client_error),
            Target::File(f) => f.request(request).map_err(crate::output::wire_error),
        }
    }

    /// Sends a request that may take `timeout` on the device.
    pub fn request_slow(&mut self, request: Request, timeout: Duration) -> Result<Response> {
        match self {
            Target::Device(c) => c.call_with_timeout(&request, timeout).map_err(crate::output::client_error),
            Target::File(f) => f.request(request).map_err(crate::output::wire_error),
        }
    }
}
