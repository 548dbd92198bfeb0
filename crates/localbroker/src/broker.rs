//! A real MQTT broker on this machine: Debian's `mosquitto` on a free port
//! with TLS (a CA and a server certificate made here), password logins,
//! persistence on (so it can be killed, restarted and its store read) and
//! its `$SYS` counters every second.

use rumqttc::{Client, Connection, MqttOptions, QoS, TlsConfiguration, Transport};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A running broker and its files.
pub struct Broker {
    /// Its TCP port on 127.0.0.1 (TLS).
    pub port: u16,
    /// The CA certificate (PEM) that signed the broker's.
    pub ca: PathBuf,
    dir: PathBuf,
    child: Option<Child>,
    acl: bool,
}

fn mosquitto() -> Option<PathBuf> {
    ["/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto"].iter().map(PathBuf::from).find(|p| p.exists())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

impl Broker {
    /// Starts a broker in `dir` with these `(user, password)` logins; an
    /// error when mosquitto is not installed. Panics on anything else.
    pub fn start(dir: &Path, users: &[(&str, &str)]) -> Result<Broker, String> {
        let program = mosquitto().ok_or("mosquitto is not installed (apt-get install mosquitto)")?;
        std::fs::create_dir_all(dir).expect("the broker's directory");
        let ca_key = rcgen::KeyPair::generate().expect("a CA key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "facegate test CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("the CA certificate");
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let server_key = rcgen::KeyPair::generate().expect("a server key");
        let server_params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).expect("server parameters");
        let server_cert = server_params.signed_by(&server_key, &issuer).expect("the server certificate");
        let write = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).expect("writing a broker file");
            p
        };
        let ca = write("ca.pem", &ca_cert.pem());
        write("server.pem", &server_cert.pem());
        write("server.key", &server_key.serialize_pem());
        let passwd = dir.join("passwd");
        std::fs::write(&passwd, "").expect("the password file");
        for (user, password) in users {
            let ok = Command::new(program.with_file_name("mosquitto_passwd"))
                .args(["-b"])
                .arg(&passwd)
                .args([user, password])
                .status()
                .or_else(|_| Command::new("mosquitto_passwd").arg("-b").arg(&passwd).args([user, password]).status())
                .expect("mosquitto_passwd runs");
            assert!(ok.success(), "mosquitto_passwd failed");
        }
        let mut broker = Broker { port: free_port(), ca, dir: dir.to_path_buf(), child: None, acl: false };
        broker.spawn(&program);
        Ok(broker)
    }

    /// The configuration the README prescribes (TLS, a login per door, the
    /// site's ACL once given, packets no larger than a site record may be),
    /// with persistence and `$SYS` counters for the tests.
    fn write_conf(&self) {
        let d = self.dir.display();
        let mut conf = format!(
            "listener {port} 127.0.0.1\ncafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n\
             allow_anonymous false\npassword_file {d}/passwd\npersistence true\npersistence_location {d}/\n\
             autosave_interval 1\nuser root\nlog_dest file {d}/mosquitto.log\nmax_inflight_messages 100\nmax_queued_messages 100000\n\
             sys_interval 1\nmax_packet_size {max}\n",
            port = self.port,
            max = facegate_site::mqtt::MAX_PACKET
        );
        if self.acl {
            conf += &format!("acl_file {d}/acl\n");
        }
        std::fs::write(self.dir.join("mosquitto.conf"), conf).expect("the broker's configuration");
    }

    /// Puts the ACL `text` (mosquitto `acl_file`, e.g. from `host-tool acl`)
    /// in force now: the broker reloads its configuration.
    pub fn use_acl(&mut self, text: &str) {
        std::fs::write(self.dir.join("acl"), text).expect("the ACL file");
        self.acl = true;
        self.write_conf();
        let child = self.child.as_ref().expect("the broker runs");
        let ok = Command::new("kill").arg("-HUP").arg(child.id().to_string()).status().expect("kill runs");
        assert!(ok.success(), "the broker took no reload signal");
        // mosquitto reloads between network rounds.
        std::thread::sleep(Duration::from_millis(500));
    }

    fn spawn(&mut self, program: &Path) {
        let d = self.dir.display();
        self.write_conf();
        let child = Command::new(program)
            .arg("-c")
            .arg(self.dir.join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not listen on {} (see {d}/mosquitto.log)", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the broker at once (SIGKILL: no goodbye, no final save).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the broker cleanly (SIGTERM: it saves its store first).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
            let _ = c.wait();
        }
    }

    /// Starts the broker again on the same port, with the same store.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn(&mosquitto().expect("mosquitto was there a moment ago"));
    }

    /// The broker's persistence file.
    pub fn store(&self) -> PathBuf {
        self.dir.join("mosquitto.db")
    }

    /// The broker URL for a door's `fleet.broker`.
    pub fn url(&self) -> String {
        format!("mqtts://localhost:{}", self.port)
    }

    /// A client of this broker logged in as `user`.
    pub fn client(&self, id: &str, user: &str, password: &str) -> (Client, Connection) {
        let tls = facegate_site::mqtt::tls(&self.ca.display().to_string()).expect("the broker's CA");
        let mut o = MqttOptions::new(id, "localhost", self.port);
        o.set_credentials(user, password);
        o.set_max_packet_size(facegate_site::mqtt::MAX_INCOMING, facegate_site::mqtt::MAX_PACKET);
        o.set_keep_alive(Duration::from_secs(5));
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(Arc::new(tls))));
        Client::new(o, 4096)
    }

    /// Publishes `messages` retained at QoS 1 as `user` and returns once the
    /// broker acknowledged every one.
    pub fn publish_retained(&self, user: &str, password: &str, messages: &[(String, Vec<u8>)]) {
        self.publish(user, password, messages, true)
    }

    /// Publishes `messages` at QoS 1 as `user` (retained or not) and returns
    /// once the broker acknowledged every one.
    pub fn publish(&self, user: &str, password: &str, messages: &[(String, Vec<u8>)], retain: bool) {
        let (client, mut connection) = self.client(&format!("{user}-publisher"), user, password);
        for (topic, payload) in messages {
            client.publish(topic.clone(), QoS::AtLeastOnce, retain, payload.clone()).expect("queued");
        }
        let (mut acked, deadline) = (0, Instant::now() + Duration::from_secs(30));
        while acked < messages.len() {
            assert!(Instant::now() < deadline, "the broker acknowledged {acked} of {} messages", messages.len());
            match connection.recv_timeout(Duration::from_millis(200)) {
                Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)))) => acked += 1,
                Ok(Err(e)) => panic!("publishing: {e}"),
                _ => {}
            }
        }
        let _ = client.disconnect();
        let _ = connection.recv_timeout(Duration::from_millis(200));
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}
