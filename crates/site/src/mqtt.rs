//! How doors and the administrator reach a site's broker: MQTT over TLS
//! (rustls on ring), one way for both (feature `mqtt`).

use crate::SiteError;
use rumqttc::{MqttOptions, TlsConfiguration, Transport};
use std::sync::Arc;
use std::time::Duration;

/// Largest packet sent, and the broker's `max_packet_size`: a manifest lists
/// every person (about 50 bytes each) and a record carries a person's
/// sealed templates. The broker refuses anything larger, so no login can
/// hand the others a packet they would fail on.
pub const MAX_PACKET: usize = 16 << 20;

/// Largest packet taken: the broker's limit and room for its framing.
pub const MAX_INCOMING: usize = MAX_PACKET + (64 << 10);

/// Host and port of `mqtts://host[:port]` (8883 by default). TLS only:
/// templates and credentials travel there.
pub fn host_port(url: &str) -> Result<(String, u16), SiteError> {
    let bad = |why: &str| SiteError::Invalid(format!("broker {url:?}: {why}"));
    let rest =
        url.strip_prefix("mqtts://").ok_or_else(|| bad("use mqtts://host:port (TLS: templates and credentials travel there)"))?;
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().map_err(|_| bad("bad port"))?),
        None => (rest, 8883),
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    Ok((host.to_string(), port))
}

/// TLS trusting the CA certificates of `ca_file` (PEM), or the system's roots when it is empty.
pub fn tls(ca_file: &str) -> Result<rustls::ClientConfig, SiteError> {
    let mut roots = rustls::RootCertStore::empty();
    let added = if ca_file.is_empty() {
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs).0
    } else {
        use rustls::pki_types::pem::PemObject;
        let certs = rustls::pki_types::CertificateDer::pem_file_iter(ca_file)
            .and_then(|c| c.collect::<Result<Vec<_>, _>>())
            .map_err(|e| SiteError::Invalid(format!("CA file {ca_file:?}: {e}")))?;
        roots.add_parsable_certificates(certs).0
    };
    if added == 0 {
        return Err(SiteError::Invalid(match ca_file {
            "" => "no CA file given and the system has no CA certificates".into(),
            f => format!("CA file {f:?} holds no usable certificate"),
        }));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SiteError::Invalid(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Who connects, and how.
pub struct Login<'a> {
    /// `mqtts://host:port`.
    pub broker: &'a str,
    /// PEM of the broker's CA ("" = the system's roots).
    pub ca_file: &'a str,
    /// MQTT client id (unique per connection on the broker).
    pub client_id: String,
    /// Broker user name.
    pub username: &'a str,
    /// Its password.
    pub password: &'a str,
    /// Keep-alive interval.
    pub keep_alive: Duration,
}

/// Connection options for `login`: TLS, credentials, keep-alive, packet size.
pub fn options(login: &Login<'_>) -> Result<MqttOptions, SiteError> {
    let (host, port) = host_port(login.broker)?;
    let mut o = MqttOptions::new(login.client_id.clone(), host, port);
    o.set_credentials(login.username, login.password);
    o.set_keep_alive(login.keep_alive);
    o.set_max_packet_size(MAX_INCOMING, MAX_PACKET);
    o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(Arc::new(tls(login.ca_file)?))));
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tls_urls_with_a_host_are_taken() {
        assert_eq!(host_port("mqtts://b.example:8884").unwrap(), ("b.example".into(), 8884));
        assert_eq!(host_port("mqtts://b.example").unwrap(), ("b.example".into(), 8883));
        for bad in ["mqtt://b.example:1883", "mqtts://:8883", "mqtts://b:x", "b.example"] {
            assert!(host_port(bad).is_err(), "{bad}");
        }
        assert!(tls("/nonexistent/ca.pem").is_err());
    }
}
