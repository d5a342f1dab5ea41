//! Runs the real `qproxy` binary with a configuration, HTTP/1.1 origins on loopback, and ngtcp2's
//! `gtlsclient` (Debian package ngtcp2-client) as an HTTP/3 client no one here wrote.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

static NEXT_DIR: AtomicU64 = AtomicU64::new(0);

/// A fresh scratch folder.
pub fn scratch() -> PathBuf {
    let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("qproxy-e2e-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn free_udp_port() -> u16 {
    qproxy_tests::ports::free_udp_port(false).unwrap()
}

pub fn free_tcp_port() -> u16 {
    qproxy_tests::ports::free_tcp_port().unwrap()
}

/// The body `/bytes/N` of the demo origin carries.
pub fn origin_bytes(n: usize) -> Vec<u8> {
    qproxy_tests::pattern::bytes(qproxy_tests::pattern::Body::Demo, n)
}

/// A running qproxy.
pub struct Proxy {
    child: Child,
    pub port: u16,
    pub stats: u16,
    pub dir: PathBuf,
}

impl Proxy {
    /// Starts qproxy with `backend_section` (everything after `backend app`) and extra frontend lines.
    pub fn start(backend_servers: &str, frontend_extra: &str) -> Proxy {
        Proxy::start_with(
            backend_servers,
            frontend_extra,
            "    tune.quic.fe.max-idle-timeout 10s\n",
            "    timeout connect 2s\n    timeout server 2s\n",
        )
    }

    /// Like `start`, with the `global` and `defaults` section bodies given.
    pub fn start_with(backend_servers: &str, frontend_extra: &str, global: &str, defaults: &str) -> Proxy {
        Proxy::launch("", backend_servers, frontend_extra, global, defaults)
    }

    /// Like `start`, with options added to the QUIC `bind` line (such as `allow-0rtt`).
    pub fn start_bind(bind_options: &str, backend_servers: &str, frontend_extra: &str) -> Proxy {
        Proxy::launch(
            bind_options,
            backend_servers,
            frontend_extra,
            "    tune.quic.fe.max-idle-timeout 10s\n",
            "    timeout connect 2s\n    timeout server 2s\n",
        )
    }

    fn launch(
        bind_options: &str,
        backend_servers: &str,
        frontend_extra: &str,
        global: &str,
        defaults: &str,
    ) -> Proxy {
        let dir = scratch();
        // Two workers unless a test says otherwise, on any machine: every suite crosses workers.
        let global = if global.contains("nbthread") {
            global.to_string()
        } else {
            format!("    nbthread 2\n{global}")
        };
        let pem = qproxy::tools::demo::write_certificates(&dir).unwrap().server;
        let (port, stats) = (free_udp_port(), free_tcp_port());
        let config = format!(
            "global\n{global}\ndefaults\n{defaults}\n\
             frontend web\n    bind quic4@127.0.0.1:{port} ssl crt {} alpn h3 {bind_options}\n{frontend_extra}    default_backend app\n\n\
             backend app\n{backend_servers}\n\
             frontend stats\n    bind 127.0.0.1:{stats}\n    http-request use-service prometheus-exporter if {{ path /metrics }}\n    stats uri /stats\n",
            pem.display()
        );
        std::fs::write(dir.join("qproxy.cfg"), config).unwrap();
        let proxy = Proxy {
            child: spawn(&dir),
            port,
            stats,
            dir,
        };
        proxy.wait_until_up();
        proxy
    }

    fn wait_until_up(&self) {
        let start = Instant::now();
        while self.try_metrics().is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "qproxy did not come up: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process (SIGKILL: it forgets every connection at once) and starts a new one on the same
    /// configuration and ports.
    pub fn restart_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(&self.dir);
        self.wait_until_up();
    }

    /// Replaces `old` with `new` in the configuration file (for SIGHUP): servers, limits.
    pub fn rewrite_servers(&self, old: &str, new: &str) {
        let cfg = self.dir.join("qproxy.cfg");
        let text = std::fs::read_to_string(&cfg).unwrap();
        assert!(text.contains(old));
        std::fs::write(&cfg, text.replace(old, new)).unwrap();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn is_running(&self) -> bool {
        std::fs::metadata(format!("/proc/{}", self.child.id())).is_ok()
            && !std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
                .unwrap_or_default()
                .contains("State:\tZ")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("qproxy.log")).unwrap_or_default()
    }

    /// The log once `done` holds for it, or after 5 s: an access line is written after its response
    /// went out, so a client may see the answer before the line is there.
    pub fn log_when(&self, done: impl Fn(&str) -> bool) -> String {
        eventually(|| self.log(), |log| done(log))
    }

    /// One GET on the stats listener; the body of a 200.
    pub fn stats_get(&self, path: &str) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.stats)).ok()?;
        write!(s, "GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let (head, body) = text.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.1 200").then(|| body.to_string())
    }

    /// The metrics through a real Prometheus text parser (the prometheus-parse crate), keyed
    /// `name{label="value",...}` with labels in name order; histograms by their `_count` and `_sum`.
    fn try_metrics(&self) -> Option<HashMap<String, u64>> {
        let body = self.stats_get("/metrics")?;
        let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string())))
            .expect("the metrics parse as Prometheus text");
        let mut out = HashMap::new();
        for sample in scrape.samples {
            let mut labels: Vec<(&String, &String)> = sample.labels.iter().collect();
            labels.sort();
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            let key = |name: &str| {
                if labels.is_empty() {
                    name.to_string()
                } else {
                    format!("{name}{{{}}}", labels.join(","))
                }
            };
            match sample.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => {
                    out.insert(key(&sample.metric), v as u64);
                }
                prometheus_parse::Value::Histogram(buckets) => {
                    let count = buckets.iter().map(|b| b.count).fold(0.0, f64::max);
                    out.insert(key(&format!("{}_count", sample.metric)), count as u64);
                }
                prometheus_parse::Value::Summary(_) => {}
            }
        }
        Some(out)
    }

    /// The JSON view of `stats uri /stats`.
    pub fn stats_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stats_get("/stats").expect("stats answer")).expect("stats JSON")
    }

    pub fn metrics(&self) -> HashMap<String, u64> {
        self.try_metrics().expect("metrics answer")
    }

    /// The metrics once `done` holds for them, or after 5 s: a counter is counted after the datagram
    /// or response it counts went out.
    pub fn metrics_when(&self, done: impl Fn(&HashMap<String, u64>) -> bool) -> HashMap<String, u64> {
        eventually(|| self.metrics(), done)
    }

    /// Waits until every live-object gauge is zero (idle keep-alive sockets are not live objects).
    pub fn assert_gauges_return_to_zero(&self) {
        let gauges = [
            "qproxy_quic_connections",
            "qproxy_quic_closing_connections",
            "qproxy_h3_streams",
            "qproxy_stream_descriptors{phase=\"attached\"}",
            "qproxy_stream_descriptors{phase=\"released\"}",
            "qproxy_tx_budget_bytes",
            "qproxy_backend_exchanges",
            "qproxy_backend_sockets{state=\"active\"}",
            "qproxy_cid_routes",
        ];
        let start = Instant::now();
        loop {
            let m = self.metrics();
            let live: Vec<(&str, u64)> = gauges
                .iter()
                .map(|g| (*g, m[*g]))
                .filter(|(_, v)| *v != 0)
                .collect();
            assert_eq!(m["qproxy_out_of_order_releases_total"], 0);
            assert_eq!(
                m["qproxy_stale_handles_total"], 0,
                "an exchange outlived its connection"
            );
            if live.is_empty() {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "gauges stuck above zero: {live:?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    /// Waits for the process to exit, returning its status code.
    pub fn wait(mut self, limit: Duration) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            if start.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Connections from `options` held open (two requests `pause` apart), once the proxy counts all `n`.
pub fn hold_connections(
    proxy: &Proxy,
    options: &h3_client::Options,
    n: usize,
    pause: Duration,
) -> Vec<std::thread::JoinHandle<anyhow::Result<Vec<h3_client::ConnectionReport>>>> {
    use h3_client::Request;
    let holders = (0..n)
        .map(|_| {
            let mut held = options.clone();
            held.pause_between = Some(pause);
            // Its timeout bounds the whole connection, pause included.
            held.timeout = held.timeout.max(pause + Duration::from_secs(10));
            std::thread::spawn(move || {
                h3_client::run(&held, &[Request::get("/bytes/10"), Request::get("/bytes/10")])
            })
        })
        .collect();
    let started = Instant::now();
    while proxy.metrics()["qproxy_quic_connections"] < n as u64 {
        assert!(started.elapsed() < Duration::from_secs(10), "{}", proxy.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    holders
}

/// What `read` gives once `done` holds for it, or after 5 s.
fn eventually<T>(read: impl Fn() -> T, done: impl Fn(&T) -> bool) -> T {
    let start = Instant::now();
    loop {
        let value = read();
        if done(&value) || start.elapsed() > Duration::from_secs(5) {
            return value;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// qproxy on `dir/qproxy.cfg`, logging to `dir/qproxy.log` (appended to: a restart keeps the first log).
fn spawn(dir: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("qproxy.log"))
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_qproxy"))
        .arg("-f")
        .arg(dir.join("qproxy.cfg"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("qproxy starts")
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What gtlsclient saw.
#[derive(Debug)]
pub struct Seen {
    pub statuses: Vec<u16>,
    pub output: String,
}

/// Runs gtlsclient against `port` with `args` before the URLs.
pub fn gtlsclient(port: u16, args: &[&str], urls: &[String]) -> Seen {
    let out: Output = Command::new("gtlsclient")
        .args([
            "--no-quic-dump",
            "--no-http-dump",
            "--exit-on-all-streams-close",
            "--timeout=10s",
        ])
        .args(args)
        .arg("127.0.0.1")
        .arg(port.to_string())
        .args(urls)
        .stdin(Stdio::null())
        .output()
        .expect("gtlsclient runs (Debian package ngtcp2-client)");
    let output = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let statuses = qproxy_tests::gtls::statuses(&output);
    Seen { statuses, output }
}

/// An origin that accepts connections and does `behave` with each (on its own thread).
pub fn origin(behave: fn(TcpStream)) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            std::thread::spawn(move || behave(s));
        }
    });
    addr
}

/// Reads a request head (enough for these origins); `None` when the connection ends first.
pub fn read_head(s: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).unwrap_or(0) == 0 {
            return None;
        }
        buf.push(b[0]);
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}

pub fn file(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

/// The Python with aioquic, in a virtual environment made on first use (`target/e2e-venv`, by
/// `aioquic_venv.sh`, which `cargo xtask integration` uses too).
pub fn aioquic_python() -> PathBuf {
    static PYTHON: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
            let out = Command::new("sh")
                .arg(dir.join("tests/e2e/aioquic_venv.sh"))
                .arg(dir.join("../../target/e2e-venv"))
                .stderr(Stdio::inherit())
                .output()
                .expect("sh runs");
            assert!(
                out.status.success(),
                "could not make target/e2e-venv with aioquic (the reason is above)"
            );
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        })
        .clone()
}

/// One request as the aioquic client saw it.
#[derive(Debug, Clone)]
pub struct H3Result {
    pub status: Option<u16>,
    pub reset: Option<u64>,
    pub error: Option<String>,
    pub line: String,
}

/// Runs the aioquic client (`h3client.py`) with `args`; one result per request.
pub fn aioquic(port: u16, args: &[&str], urls: &[String]) -> Vec<H3Result> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/h3client.py");
    let out = Command::new(aioquic_python())
        .arg(script)
        .args(["--port", &port.to_string()])
        .args(args)
        .args(urls)
        .stdin(Stdio::null())
        .output()
        .expect("the aioquic client runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "aioquic client failed: {}\n{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    use qproxy_tests::json::{str_at, u64_at};
    qproxy_tests::json::lines(&stdout)
        .into_iter()
        .map(|v| H3Result {
            status: u64_at(&v, "status").and_then(|s| u16::try_from(s).ok()),
            reset: u64_at(&v, "reset"),
            error: str_at(&v, "error").map(str::to_string),
            line: v.to_string(),
        })
        .collect()
}

/// CPU ticks (utime + stime, in clock ticks of 10 ms) of a process.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Runs `rapid_reset.py` (aioquic) against `proxy` for up to `requests` cancelled requests: its JSON
/// report, `{"sent": N, "closed_with": CODE}`.
pub fn rapid_reset(proxy: &Proxy, requests: usize) -> serde_json::Value {
    aioquic_script(proxy, "rapid_reset.py", &["--requests", &requests.to_string()])
}

/// Runs one of the aioquic scripts beside this file against `proxy` (with its port and CA): the first
/// JSON line it prints.
pub fn aioquic_script(proxy: &Proxy, script: &str, args: &[&str]) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/e2e")
        .join(script);
    let out = Command::new(aioquic_python())
        .arg(path)
        .args(["--port", &proxy.port.to_string()])
        .args(args)
        .arg("--ca")
        .arg(proxy.dir.join("ca.pem"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script} {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    qproxy_tests::json::lines(&stdout)[0].clone()
}
