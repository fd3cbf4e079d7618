//! TLS in front of the emulators: a throwaway CA with a server certificate it issued
//! (optionally expired, with chosen names), and a TLS-terminating proxy on 127.0.0.1
//! that counts handshakes and refusals.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::wait_until;

/// A throwaway certificate authority and a server certificate it issued.
pub struct TestPki {
    /// The CA certificate, PEM (what `ca_file` points at).
    pub ca_pem: String,
    pub server_chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    pub server_key: rustls::pki_types::PrivateKeyDer<'static>,
}

/// `names`: the server certificate's subject alternative names ("127.0.0.1" is an IP
/// SAN). `expired`: a certificate whose validity ended in 2020.
pub fn test_pki(names: &[&str], expired: bool) -> TestPki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "tillrelay test CA (throwaway)");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let mut leaf = CertificateParams::new(names).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "tillrelay test server");
    if expired {
        leaf.not_before = rcgen::date_time_ymd(2019, 1, 1);
        leaf.not_after = rcgen::date_time_ymd(2020, 1, 1);
    }
    let leaf_cert = leaf.signed_by(&key, &issuer).unwrap();
    TestPki {
        ca_pem: ca_cert.pem(),
        server_chain: vec![leaf_cert.der().clone()],
        server_key: rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    }
}

/// What the TLS proxy saw.
#[derive(Debug, Default, Clone)]
pub struct TlsCounts {
    /// Handshakes that completed (a client that trusted the certificate).
    pub handshakes: u64,
    /// Connections closed during the handshake (the client refused the certificate),
    /// with the alerts/errors rustls reported.
    pub refused: u64,
    pub errors: Vec<String>,
}

/// A TLS-terminating proxy on 127.0.0.1: accepts HTTPS with the given certificate and
/// forwards the plaintext to `upstream` (the emulators' plain HTTP port).
pub struct TlsProxy {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    pub counts: Arc<Mutex<TlsCounts>>,
    thread: Option<JoinHandle<()>>,
}

impl TlsProxy {
    pub fn start(pki: &TestPki, upstream: SocketAddr) -> TlsProxy {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(pki.server_chain.clone(), pki.server_key.clone_key())
            .unwrap();
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Mutex::new(TlsCounts::default()));
        let (s, c) = (stop.clone(), counts.clone());
        let thread = std::thread::spawn(move || {
            let mut conns: Vec<JoinHandle<()>> = Vec::new();
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (cfg, s, c) = (config.clone(), s.clone(), c.clone());
                        conns.push(std::thread::spawn(move || {
                            proxy_conn(cfg, stream, upstream, &s, &c)
                        }));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
                conns.retain(|h| !h.is_finished());
            }
            for h in conns {
                let _ = h.join();
            }
        });
        TlsProxy {
            addr,
            stop,
            counts,
            thread: Some(thread),
        }
    }

    pub fn base(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn counts(&self) -> TlsCounts {
        self.counts.lock().unwrap().clone()
    }

    /// The counts once at least `n` connections were refused (the proxy notices a
    /// client's refusal a moment after the client has moved on), or as they are
    /// after 10 s.
    pub fn counts_after_refusals(&self, n: u64) -> TlsCounts {
        wait_until(Duration::from_secs(10), || self.counts().refused >= n);
        self.counts()
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One proxied connection, driven by hand over non-blocking sockets (rustls' own
/// state machine; no async runtime needed in a test).
fn proxy_conn(
    cfg: Arc<rustls::ServerConfig>,
    mut client: TcpStream,
    upstream: SocketAddr,
    stop: &AtomicBool,
    counts: &Mutex<TlsCounts>,
) {
    let Ok(mut tls) = rustls::ServerConnection::new(cfg) else {
        return;
    };
    let _ = client.set_nonblocking(true);
    let mut up: Option<TcpStream> = None;
    let mut handshaken = false;
    let mut buf = vec![0u8; 16 * 1024];
    let finish = |handshaken: bool, err: Option<String>| {
        let mut c = counts.lock().unwrap();
        if !handshaken {
            c.refused += 1;
        }
        if let Some(e) = err {
            c.errors.push(e);
        }
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let mut progress = false;
        // network → rustls
        match tls.read_tls(&mut client) {
            Ok(0) => {
                finish(handshaken, None);
                return;
            }
            Ok(_) => {
                progress = true;
                if let Err(e) = tls.process_new_packets() {
                    // Send our alert, then give up on the connection.
                    let _ = tls.write_tls(&mut client);
                    finish(handshaken, Some(e.to_string()));
                    return;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => {
                finish(handshaken, Some(e.to_string()));
                return;
            }
        }
        if !handshaken && !tls.is_handshaking() {
            handshaken = true;
            counts.lock().unwrap().handshakes += 1;
            match TcpStream::connect(upstream) {
                Ok(s) => {
                    let _ = s.set_nonblocking(true);
                    up = Some(s);
                }
                Err(_) => return,
            }
        }
        if let Some(u) = up.as_mut() {
            // plaintext from the client → upstream
            match tls.reader().read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    progress = true;
                    if write_all_nb(u, &buf[..n]).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
            // upstream → client
            match u.read(&mut buf) {
                Ok(0) => {
                    tls.send_close_notify();
                    let _ = flush_tls(&mut tls, &mut client);
                    return;
                }
                Ok(n) => {
                    progress = true;
                    if tls.writer().write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
        if flush_tls(&mut tls, &mut client).is_err() {
            finish(handshaken, None);
            return;
        }
        if !progress {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

fn flush_tls(tls: &mut rustls::ServerConnection, client: &mut TcpStream) -> std::io::Result<()> {
    while tls.wants_write() {
        match tls.write_tls(client) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn write_all_nb(s: &mut TcpStream, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        match s.write(data) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
