//! `qproxy --demo`: a private CA and a leaf certificate for localhost, a small HTTP/1.1 origin on
//! loopback, and a configuration file tying them together, all in one folder the user can inspect.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256,
};

use crate::upstream::h1::ChunkedDecoder;

/// What the demo prepared.
#[derive(Debug)]
pub struct Demo {
    /// The configuration file written for it.
    pub config: PathBuf,
    /// The CA certificate clients should trust.
    pub ca: PathBuf,
    /// The HTTP/3 port.
    pub port: u16,
    /// The metrics URL.
    pub metrics: String,
    /// The JSON stats URL (for `qproxy top`).
    pub stats: String,
    /// The origin's address.
    pub origin: SocketAddr,
    /// The leaf's SPKI hash (see [`Certificates::spki`]).
    pub spki: String,
}

/// The demo's certificate files.
#[derive(Debug)]
pub struct Certificates {
    /// `ca.pem`: the CA clients trust.
    pub ca: PathBuf,
    /// `server.pem`: leaf certificate, CA certificate and leaf key, for `bind ... ssl crt`.
    pub server: PathBuf,
    /// Base64 of the SHA-256 of the leaf's SubjectPublicKeyInfo, what Chromium's
    /// `--ignore-certificate-errors-spki-list` takes (also written to `server.spki`).
    pub spki: String,
}

/// Writes `ca.pem`, `server.pem` and `server.spki` into `dir`: a small CA plus a leaf for localhost,
/// 127.0.0.1 and ::1, since rustls-based clients reject a lone self-signed CA:TRUE certificate.
pub fn write_certificates(dir: &Path) -> Result<Certificates> {
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "qproxy demo CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let ca_cert = ca.self_signed(&ca_key)?;
    let mut leaf = CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ])?;
    leaf.distinguished_name.push(DnType::CommonName, "localhost");
    // No basicConstraints at all: an explicit CA:FALSE encodes a DER default, which strict parsers reject.
    leaf.is_ca = IsCa::NoCa;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let leaf_cert = leaf.signed_by(&leaf_key, &ca_cert, &ca_key)?;
    let ca_path = dir.join("ca.pem");
    let server_path = dir.join("server.pem");
    std::fs::write(&ca_path, ca_cert.pem())?;
    std::fs::write(
        &server_path,
        format!("{}{}{}", leaf_cert.pem(), ca_cert.pem(), leaf_key.serialize_pem()),
    )?;
    let digest = ring::digest::digest(&ring::digest::SHA256, &leaf_key.public_key_der());
    let spki = base64::engine::Engine::encode(&base64::engine::general_purpose::STANDARD, digest);
    std::fs::write(dir.join("server.spki"), format!("{spki}\n"))?;
    Ok(Certificates {
        ca: ca_path,
        server: server_path,
        spki,
    })
}

/// What `qproxy --demo` prints: where everything is, and commands that reach the proxy from this
/// machine (gtlsclient and Chromium only when they are installed).
pub fn banner(demo: &Demo, dir: &Path) -> String {
    let port = demo.port;
    let ca = demo.ca.display();
    let mut text = format!(
        "qproxy demo: HTTP/3 on https://localhost:{port}/ (127.0.0.1 UDP {port}), origin {}\n\
         \x20 trust the demo CA: {ca}\n\
         \x20 configuration:     {}\n\
         \x20 metrics:           {}\n\
         \x20 live view:         qproxy top --stats {}\n",
        demo.origin,
        demo.config.display(),
        demo.metrics,
        demo.stats,
    );
    if on_path("gtlsclient") {
        text += &format!(
            "  try:               gtlsclient --exit-on-all-streams-close 127.0.0.1 {port} https://localhost:{port}/\n"
        );
    }
    text +=
        &format!("  try (source tree): cargo run -p h3-client --bin h3get -- --port {port} --ca {ca} /\n");
    if on_path("chromium") {
        // The demo listens on 127.0.0.1 only, and Chromium would try ::1 for localhost first.
        text += &format!(
            "  browser:           chromium --headless --no-sandbox --dump-dom --user-data-dir={} \
             --host-resolver-rules=\"MAP localhost 127.0.0.1\" --origin-to-force-quic-on=localhost:{port} \
             --ignore-certificate-errors-spki-list={} https://localhost:{port}/\n",
            dir.join("chromium").display(),
            demo.spki,
        );
    }
    text
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

fn free_udp_port(from: u16) -> Result<u16> {
    (from..from.saturating_add(100))
        .find(|p| UdpSocket::bind(("127.0.0.1", *p)).is_ok())
        .with_context(|| format!("no free UDP port from {from}"))
}

fn free_tcp_port(from: u16) -> Result<u16> {
    (from..from.saturating_add(100))
        .find(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .with_context(|| format!("no free TCP port from {from}"))
}

/// Prepares the demo in `dir`: certificates, a running origin, and `qproxy.cfg`.
pub fn prepare(dir: &Path, port: u16) -> Result<Demo> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let certs = write_certificates(dir)?;
    let origin = spawn_origin("127.0.0.1:0".parse()?)?;
    let port = free_udp_port(port)?;
    let stats_port = free_tcp_port(8404)?;
    let config = dir.join("qproxy.cfg");
    let text = format!(
        "# Written by `qproxy --demo`. Copy it and point the backend at your own service.\n\
         global\n    tune.quic.fe.max-idle-timeout 30s\n\n\
         defaults\n    timeout connect 5s\n    timeout server 30s\n    option forwardfor\n\n\
         frontend demo\n    bind quic4@127.0.0.1:{port} ssl crt {} alpn h3 allow-0rtt\n    http-response set-header alt-svc \"h3=\\\":{port}\\\"; ma=900\"\n    default_backend origin\n\n\
         backend origin\n    server origin1 {origin}\n\n\
         frontend stats\n    bind 127.0.0.1:{stats_port}\n    http-request use-service prometheus-exporter if {{ path /metrics }}\n    stats uri /stats\n",
        certs.server.display()
    );
    std::fs::write(&config, text)?;
    Ok(Demo {
        config,
        ca: certs.ca,
        spki: certs.spki,
        port,
        metrics: format!("http://127.0.0.1:{stats_port}/metrics"),
        stats: format!("http://127.0.0.1:{stats_port}/stats"),
        origin,
    })
}

// ---------------------------------------------------------------- the origin

/// Starts the demo's HTTP/1.1 origin on `addr` (thread per connection) and returns where it listens.
///
/// `GET /` says hello; `GET /bytes/N` streams N bytes; `POST|PUT /echo` sends the body back; `/status/N`
/// answers status N; anything else is 404. Request bodies may be chunked or have a length.
pub fn spawn_origin(addr: SocketAddr) -> Result<SocketAddr> {
    let listener = TcpListener::bind(addr).with_context(|| format!("binding the demo origin on {addr}"))?;
    let local = listener.local_addr()?;
    std::thread::Builder::new()
        .name("demo-origin".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = std::thread::Builder::new()
                    .name("demo-origin-conn".into())
                    .spawn(move || {
                        let _ = serve_connection(stream);
                    });
            }
        })?;
    Ok(local)
}

fn serve_connection(stream: TcpStream) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::with_capacity(64 * 1024, stream.try_clone()?);
    let mut writer = stream;
    loop {
        let mut head = Vec::new();
        loop {
            let mut line = Vec::new();
            if reader.read_until(b'\n', &mut line)? == 0 {
                return Ok(());
            }
            let blank = line == b"\r\n" || line == b"\n";
            if blank && head.is_empty() {
                continue; // A stray empty line between requests.
            }
            head.extend_from_slice(&line);
            if blank {
                break;
            }
            if head.len() > 64 * 1024 {
                return Ok(());
            }
        }
        let mut fields = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut fields);
        if !matches!(req.parse(&head), Ok(httparse::Status::Complete(_))) {
            writer
                .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")?;
            return Ok(());
        }
        let method = req.method.unwrap_or("GET").to_string();
        let path = req.path.unwrap_or("/").to_string();
        let header = |name: &str| {
            req.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| String::from_utf8_lossy(h.value).to_string())
        };
        let close = header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let chunked = header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let length: u64 = header("content-length")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let body = read_body(&mut reader, chunked, length)?;
        respond(&mut writer, &method, &path, &body)?;
        if close {
            return Ok(());
        }
    }
}

fn read_body(reader: &mut BufReader<TcpStream>, chunked: bool, length: u64) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    if chunked {
        let mut decoder = ChunkedDecoder::default();
        loop {
            let buf = reader.fill_buf()?;
            if buf.is_empty() {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let decoded = decoder
                .decode(buf)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
            for r in decoded.data {
                body.extend_from_slice(&buf[r]);
            }
            let consumed = decoded.consumed;
            reader.consume(consumed);
            if decoded.done {
                return Ok(body);
            }
        }
    }
    reader.take(length).read_to_end(&mut body)?;
    Ok(body)
}

fn respond(w: &mut TcpStream, method: &str, path: &str, body: &[u8]) -> std::io::Result<()> {
    let head = |status: &str, len: u64, kind: &str| {
        format!("HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {len}\r\nserver: qproxy-demo-origin\r\n\r\n")
    };
    if let Some(n) = path.strip_prefix("/bytes/").and_then(|n| n.parse::<u64>().ok()) {
        w.write_all(head("200 OK", n, "application/octet-stream").as_bytes())?;
        if method == "HEAD" {
            return Ok(());
        }
        let block: Vec<u8> = (0..64 * 1024u32).map(|i| (i % 251) as u8).collect();
        let mut left = n;
        while left > 0 {
            let take = left.min(block.len() as u64) as usize;
            w.write_all(&block[..take])?;
            left -= take as u64;
        }
        return Ok(());
    }
    if path == "/echo" {
        w.write_all(head("200 OK", body.len() as u64, "application/octet-stream").as_bytes())?;
        return w.write_all(body);
    }
    if let Some(code) = path
        .strip_prefix("/status/")
        .and_then(|n| n.parse::<u16>().ok())
        .filter(|c| (200..600).contains(c))
    {
        let text = format!("status {code}\n");
        w.write_all(head(&format!("{code} Status"), text.len() as u64, "text/plain").as_bytes())?;
        return w.write_all(text.as_bytes());
    }
    if path == "/" {
        let text = "Hello from the qproxy demo origin. This response came over HTTP/1.1 to qproxy, and to you over HTTP/3.\n";
        w.write_all(head("200 OK", text.len() as u64, "text/plain").as_bytes())?;
        return if method == "HEAD" {
            Ok(())
        } else {
            w.write_all(text.as_bytes())
        };
    }
    let text = "not found\n";
    w.write_all(head("404 Not Found", text.len() as u64, "text/plain").as_bytes())?;
    w.write_all(text.as_bytes())
}
