//! Where gallery commands go: a device over its serial link, or a gallery file
//! directly (offline: preparing an SD card, tests). Both answer the same
//! requests with the same code: the gallery service of `facegate-provision`.

use crate::keys::Keys;
use anyhow::{bail, Context, Result};
use facegate_core::{hex, ModelId};
use facegate_protocol::link::Link;
use facegate_protocol::{Client, Request, Response, WireError};
use facegate_provision::{GalleryHome, GalleryService, Handled};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A session with a device.
pub type Session = Client<Box<dyn serialport::SerialPort>>;

/// The target of a command.
pub enum Target {
    /// A device.
    Device(Box<Session>),
    /// A gallery file, served as a device would serve it.
    File(GalleryService),
}

/// Opens the serial port.
pub fn open_port(port: &str, baud: u32) -> Result<Box<dyn serialport::SerialPort>> {
    serialport::new(port, baud).timeout(Duration::from_millis(200)).open().map_err(|e| {
        let hint = crate::ports::open_hint(port, crate::ports::classify(&e));
        anyhow::anyhow!("cannot open {port}: {e} (hint: {hint})")
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

/// A gallery file, or a new one for `model` when it does not exist, served
/// with `threshold` for verify, identify and similarity warnings.
/// With `metric`, templates and probes are compared in the trained metric.
pub fn open_file(
    path: &Path,
    model: ModelId,
    threshold: f32,
    metric: Option<facegate_train::MetricHead>,
    switch: Option<&dyn Fn(ModelId) -> String>,
) -> Result<GalleryService> {
    let home = if path.exists() {
        let mut gallery = facegate_store::Gallery::load(path).with_context(|| format!("loading {}", path.display()))?;
        // --network named: that network's templates are the ones searched (when everyone has them).
        if let Some(network_of) = switch {
            let (found, asked) = (network_of(gallery.model_id()), network_of(model));
            gallery.switch_to(model).with_context(|| {
                format!(
                    "{} holds templates of the {found} network, not of {asked} (templates of two networks are not \
                     comparable): run with --network {found}, or enrol its people again with --network {asked} \
                     (or --network both) into a new gallery",
                    path.display()
                )
            })?;
        }
        GalleryHome::new(path, gallery)
    } else {
        GalleryHome::open(path, model).with_context(|| format!("starting {}", path.display()))?
    };
    let home = match metric {
        Some(head) => home.with_metric(Arc::new(move |e| head.apply(e))),
        None => home,
    };
    Ok(GalleryService::new(Arc::new(home), threshold))
}

fn offline(service: &mut GalleryService, request: Request) -> Result<Response> {
    match service.handle(request) {
        Handled::Answered { reply, .. } => reply.map_err(crate::output::wire_error),
        Handled::NotGallery(_) => Err(crate::output::wire_error(WireError::Unavailable(
            "this command needs a device (--port), not a gallery file".into(),
        ))),
    }
}

impl Target {
    /// The model templates must be made with.
    pub fn model(&self) -> ModelId {
        match self {
            Target::Device(c) => c.hello().model,
            Target::File(f) => f.home().read().model_id(),
        }
    }

    /// Sends a request.
    pub fn request(&mut self, request: Request) -> Result<Response> {
        match self {
            Target::Device(c) => c.call(&request).map_err(crate::output::client_error),
            Target::File(f) => offline(f, request),
        }
    }

    /// Sends a request that may take `timeout` on the device.
    pub fn request_slow(&mut self, request: Request, timeout: Duration) -> Result<Response> {
        match self {
            Target::Device(c) => c.call_with_timeout(&request, timeout).map_err(crate::output::client_error),
            Target::File(f) => offline(f, request),
        }
    }
}
