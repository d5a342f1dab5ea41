//! The configuration file: a subset of HAProxy's syntax (see `docs/configuration.md`).
//!
//! Every error names the file, the line and what was expected; nothing starts on a bad config.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

mod backend;

pub use backend::{Backend, BackendSettings, Balance, HttpCheck, Observe, Server, ServerOptions};

/// A configuration error at a place in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line; 0 when the error concerns the whole file.
    pub line: usize,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Timeouts of a proxy section (`timeout <name> <duration>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeouts {
    /// `timeout connect`: a backend TCP connection must be up within this (else 503).
    pub connect: Duration,
    /// `timeout server`: a backend must send something within this while a response is due (else 504).
    pub server: Duration,
    /// `timeout client`: the client must send or acknowledge something within this while a request is
    /// in progress (the QUIC idle timeout is its transport-level twin).
    pub client: Duration,
    /// `timeout http-request`: a request head must be complete within this.
    pub http_request: Duration,
    /// `timeout http-keep-alive`: an idle connection gets GOAWAY after this.
    pub http_keep_alive: Duration,
    /// `timeout client-fin`: after GOAWAY, requests in progress get this long to finish.
    pub client_fin: Duration,
    /// `timeout client-hs`: the QUIC handshake must complete within this.
    pub client_hs: Duration,
    /// `timeout queue`: a request waits this long at most for a server slot (503 after; default
    /// `timeout connect`).
    pub queue: Option<Duration>,
    /// `timeout check`: one health check must finish within this (default the server's `inter`).
    pub check: Option<Duration>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            server: Duration::from_secs(30),
            client: Duration::from_secs(30),
            http_request: Duration::from_secs(10),
            http_keep_alive: Duration::from_secs(60),
            client_fin: Duration::from_secs(30),
            client_hs: Duration::from_secs(10),
            queue: None,
            check: None,
        }
    }
}

/// `global` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Global {
    /// `nbthread`: worker threads.
    pub nbthread: usize,
    /// `hard-stop-after`: a graceful stop ends by force after this.
    pub hard_stop_after: Option<Duration>,
    /// `tune.quic.fe.max-idle-timeout`.
    pub max_idle_timeout: Duration,
    /// `tune.quic.fe.stream.max-concurrent`.
    pub max_concurrent_streams: u64,
    /// `tune.quic.fe.stream.rxbuf`: request body read ahead per stream.
    pub stream_rxbuf: usize,
    /// `tune.quic.fe.stream.max-data`: per-stream QUIC receive window.
    pub stream_max_data: u64,
    /// `tune.quic.fe.conn.max-data`: per-connection QUIC receive window.
    pub conn_max_data: u64,
    /// `tune.quic.mem.tx-max`: Tx budget per connection (bytes held unsent or unacknowledged).
    pub tx_max: usize,
    /// Cleared by `no-memory-trimming`: idle workers give freed memory back to the system.
    pub memory_trimming: bool,
}

impl Default for Global {
    fn default() -> Self {
        Global {
            nbthread: 1,
            hard_stop_after: None,
            max_idle_timeout: Duration::from_secs(30),
            max_concurrent_streams: 100,
            stream_rxbuf: 256 * 1024,
            stream_max_data: 1024 * 1024,
            conn_max_data: 16 * 1024 * 1024,
            tx_max: 4 * 1024 * 1024,
            memory_trimming: true,
        }
    }
}

/// An HTTP/3 listener: `bind quic4@ADDR:PORT ssl crt FILE [key FILE] [alpn h3]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuicBind {
    /// Address and port.
    pub addr: SocketAddr,
    /// PEM with the certificate chain (and the key, unless `key` names another file).
    pub cert: PathBuf,
    /// PEM with the private key.
    pub key: PathBuf,
    /// `quic-force-retry`: every new connection first proves its address with a Retry round trip.
    pub force_retry: bool,
    /// `allow-0rtt`: accept 0-RTT early data (off by default: early data can be replayed).
    pub allow_0rtt: bool,
}

/// What a frontend does with a request that arrives in 0-RTT early data, before the handshake completes
/// (RFC 8470). Only binds with `allow-0rtt` receive any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EarlyDataPolicy {
    /// `http-request wait-for-handshake`: every early request waits for the handshake.
    pub wait_for_handshake: bool,
    /// `early-data-methods M ...`: the methods forwarded before the handshake completes (with
    /// `Early-Data: 1`); the others wait for it. Default: GET HEAD OPTIONS.
    pub methods: Vec<String>,
}

impl Default for EarlyDataPolicy {
    fn default() -> Self {
        EarlyDataPolicy {
            wait_for_handshake: false,
            methods: ["GET", "HEAD", "OPTIONS"].map(String::from).to_vec(),
        }
    }
}

impl EarlyDataPolicy {
    /// May a request with `method` go to a server before the handshake completes?
    pub fn forwards_early(&self, method: &str) -> bool {
        !self.wait_for_handshake && self.methods.iter().any(|m| m == method)
    }
}

/// A condition of `use_backend NAME if|unless { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acl {
    /// `path_beg P1 [P2 ...]`.
    PathBeg(Vec<String>),
    /// `path P1 [P2 ...]` (exact).
    Path(Vec<String>),
    /// `hdr(NAME) [-i] V1 [V2 ...]`; `host` compares without the port.
    Hdr {
        /// Header name, lower-case.
        name: String,
        /// Accepted values.
        values: Vec<String>,
        /// `-i`: compare case-insensitively.
        ignore_case: bool,
    },
}

/// `use_backend NAME if|unless { ACL }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The backend to use.
    pub backend: String,
    /// The condition.
    pub acl: Acl,
    /// `unless` instead of `if`.
    pub negate: bool,
}

/// An HTTP/3 frontend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frontend {
    /// Its name.
    pub name: String,
    /// Where it listens.
    pub binds: Vec<QuicBind>,
    /// `default_backend`.
    pub default_backend: Option<String>,
    /// `use_backend` rules, in order.
    pub rules: Vec<Rule>,
    /// `http-response set-header NAME VALUE`.
    pub set_response_headers: Arc<[(String, String)]>,
    /// Timeouts (from `defaults`, then its own).
    pub timeouts: Timeouts,
    /// `option forwardfor`: add X-Forwarded-For and Forwarded.
    pub forwardfor: bool,
    /// 0-RTT: `http-request wait-for-handshake` and `early-data-methods`.
    pub early_data: EarlyDataPolicy,
}

/// A stats frontend: `bind ADDR:PORT` (TCP) and `http-request use-service prometheus-exporter if { path /metrics }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsFrontend {
    /// Its name.
    pub name: String,
    /// Where it listens (TCP).
    pub addr: SocketAddr,
    /// The path that serves Prometheus text (`prometheus-exporter if { path ... }`).
    pub metrics_path: Option<String>,
    /// The path that serves the JSON view (`stats uri`).
    pub stats_path: Option<String>,
}

/// A whole configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `global`.
    pub global: Global,
    /// HTTP/3 frontends.
    pub frontends: Vec<Frontend>,
    /// Backends.
    pub backends: Vec<Backend>,
    /// Stats frontends.
    pub stats: Vec<StatsFrontend>,
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            line: 0,
            message: format!("cannot read: {e}"),
        })?;
        Config::parse(path, &text)
    }

    /// Parses and checks configuration text; `file` is only used in errors and to resolve relative paths.
    pub fn parse(file: &Path, text: &str) -> Result<Config, ConfigError> {
        Parser::new(file).run(text)
    }

    /// The backend called `name`.
    pub fn backend(&self, name: &str) -> Option<usize> {
        self.backends.iter().position(|b| b.name == name)
    }
}

// ---------------------------------------------------------------- words

/// Splits a line into words: blanks separate, `#` starts a comment, "..." allows blanks and \" \\,
/// '...' is literal.
fn words(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '#' => break,
            ' ' | '\t' => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => cur.push(chars.next().ok_or("a line ends inside a quoted word")?),
                        Some(c) => cur.push(c),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                cur.push(chars.next().ok_or("a line ends with a backslash")?);
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// `10s`, `500ms`, `2m`, `1h`, `1d`, `100us`; a bare number is milliseconds (as in HAProxy).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    Some(match unit {
        "us" => Duration::from_micros(n),
        "" | "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60)?),
        "h" => Duration::from_secs(n.checked_mul(3600)?),
        "d" => Duration::from_secs(n.checked_mul(86400)?),
        _ => return None,
    })
}

/// `4096`, `64k`, `4m`, `1g` (powers of 1024).
pub fn parse_size(s: &str) -> Option<u64> {
    let lower = s.to_ascii_lowercase();
    let (num, mult) = match lower.chars().last()? {
        'k' => (&lower[..lower.len() - 1], 1u64 << 10),
        'm' => (&lower[..lower.len() - 1], 1 << 20),
        'g' => (&lower[..lower.len() - 1], 1 << 30),
        _ => (&lower[..], 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

// ---------------------------------------------------------------- parser

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    None,
    Global,
    Defaults,
    Frontend(usize),
    Stats(usize),
    Backend(usize),
}

/// A frontend being read: it becomes a stats frontend or an HTTP/3 one at the end.
#[derive(Debug, Clone)]
struct FrontendDraft {
    line: usize,
    front: Frontend,
    tcp_bind: Option<(SocketAddr, usize)>,
    metrics_path: Option<(String, usize)>,
    stats_path: Option<(String, usize)>,
}

struct Parser {
    file: PathBuf,
    line: usize,
    section: Section,
    defaults_timeouts: Timeouts,
    defaults_forwardfor: bool,
    defaults_backend: BackendSettings,
    global: Global,
    fronts: Vec<FrontendDraft>,
    backends: Vec<(Backend, usize)>,
    /// (line, backend name) references to check at the end.
    backend_refs: Vec<(usize, String)>,
}

type Res<T> = Result<T, String>;

fn need<'a>(args: &'a [String], i: usize, what: &str) -> Res<&'a str> {
    args.get(i)
        .map(String::as_str)
        .ok_or_else(|| format!("expected {what}"))
}

fn no_more(args: &[String], from: usize) -> Res<()> {
    match args.get(from) {
        None => Ok(()),
        Some(extra) => Err(format!("unexpected '{extra}' at the end of the line")),
    }
}

fn duration_arg(args: &[String], i: usize, what: &str) -> Res<Duration> {
    let raw = need(args, i, what)?;
    parse_duration(raw)
        .ok_or_else(|| format!("expected {what} as a duration such as 500ms, 10s or 2m, found '{raw}'"))
}

fn size_arg(args: &[String], i: usize, what: &str) -> Res<u64> {
    let raw = need(args, i, what)?;
    parse_size(raw)
        .ok_or_else(|| format!("expected {what} as a size such as 65536, 64k or 4m, found '{raw}'"))
}

fn addr_arg(raw: &str, what: &str) -> Res<SocketAddr> {
    raw.parse().map_err(|_| {
        format!("expected {what} as ADDRESS:PORT (e.g. 127.0.0.1:4433 or [::1]:4433), found '{raw}'")
    })
}

impl Parser {
    fn new(file: &Path) -> Self {
        Parser {
            file: file.to_path_buf(),
            line: 0,
            section: Section::None,
            defaults_timeouts: Timeouts::default(),
            defaults_forwardfor: false,
            defaults_backend: BackendSettings::default(),
            global: Global::default(),
            fronts: Vec::new(),
            backends: Vec::new(),
            backend_refs: Vec::new(),
        }
    }

    fn err_at(&self, line: usize, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line,
            message: message.into(),
        }
    }

    fn path(&self, raw: &str) -> PathBuf {
        let p = PathBuf::from(raw);
        if p.is_absolute() {
            return p;
        }
        self.file.parent().map_or(p.clone(), |dir| dir.join(&p))
    }

    fn run(mut self, text: &str) -> Result<Config, ConfigError> {
        for (n, raw) in text.lines().enumerate() {
            self.line = n + 1;
            let args = words(raw).map_err(|e| self.err_at(self.line, e))?;
            if args.is_empty() {
                continue;
            }
            self.line_args(&args).map_err(|e| self.err_at(self.line, e))?;
        }
        self.finish()
    }

    fn line_args(&mut self, args: &[String]) -> Res<()> {
        let kw = args[0].as_str();
        match kw {
            "global" => {
                no_more(args, 1)?;
                self.section = Section::Global;
                return Ok(());
            }
            "defaults" => {
                // `defaults [NAME]`: the name is accepted and ignored.
                no_more(args, 2)?;
                self.section = Section::Defaults;
                return Ok(());
            }
            "frontend" | "backend" => {
                let name = need(args, 1, &format!("a name after '{kw}'"))?.to_string();
                no_more(args, 2)?;
                let taken = self.fronts.iter().any(|f| f.front.name == name)
                    || self.backends.iter().any(|(b, _)| b.name == name);
                if taken {
                    return Err(format!(
                        "the name '{name}' is already used by another proxy section"
                    ));
                }
                if kw == "frontend" {
                    self.fronts.push(FrontendDraft {
                        line: self.line,
                        front: Frontend {
                            name,
                            binds: Vec::new(),
                            default_backend: None,
                            rules: Vec::new(),
                            set_response_headers: Arc::new([]),
                            timeouts: self.defaults_timeouts.clone(),
                            forwardfor: self.defaults_forwardfor,
                            early_data: EarlyDataPolicy::default(),
                        },
                        tcp_bind: None,
                        metrics_path: None,
                        stats_path: None,
                    });
                    self.section = Section::Frontend(self.fronts.len() - 1);
                } else {
                    let backend = Backend {
                        name,
                        settings: self.defaults_backend.clone(),
                        servers: Vec::new(),
                        timeouts: self.defaults_timeouts.clone(),
                        forwardfor: self.defaults_forwardfor,
                    };
                    self.backends.push((backend, self.line));
                    self.section = Section::Backend(self.backends.len() - 1);
                }
                return Ok(());
            }
            "listen" => {
                return Err("'listen' sections are not supported; use a frontend and a backend".into())
            }
            _ => {}
        }
        match self.section {
            Section::None => Err(format!(
                "'{kw}' outside a section; expected global, defaults, frontend or backend first"
            )),
            Section::Global => self.global_kw(args),
            Section::Defaults => self.defaults_kw(args),
            Section::Frontend(i) | Section::Stats(i) => self.frontend_kw(i, args),
            Section::Backend(i) => self.backend_kw(i, args),
        }
    }

    fn global_kw(&mut self, args: &[String]) -> Res<()> {
        let g = &mut self.global;
        match args[0].as_str() {
            "nbthread" => {
                let raw = need(args, 1, "a thread count")?;
                g.nbthread = raw.parse().ok().filter(|n| (1..=64).contains(n)).ok_or(format!("expected a thread count from 1 to 64, found '{raw}'"))?;
                no_more(args, 2)
            }
            "hard-stop-after" => {
                g.hard_stop_after = Some(duration_arg(args, 1, "a duration")?);
                no_more(args, 2)
            }
            "tune.quic.fe.max-idle-timeout" | "tune.quic.frontend.max-idle-timeout" => {
                g.max_idle_timeout = duration_arg(args, 1, "a duration")?;
                no_more(args, 2)
            }
            "tune.quic.fe.stream.max-concurrent" | "tune.quic.frontend.max-streams-bidi" => {
                let raw = need(args, 1, "a stream count")?;
                g.max_concurrent_streams = raw.parse().ok().filter(|n| *n >= 1).ok_or(format!("expected a stream count of at least 1, found '{raw}'"))?;
                no_more(args, 2)
            }
            "tune.quic.fe.stream.rxbuf" => {
                g.stream_rxbuf = size_arg(args, 1, "a size")? as usize;
                no_more(args, 2)
            }
            "tune.quic.fe.stream.max-data" => {
                g.stream_max_data = size_arg(args, 1, "a size")?;
                no_more(args, 2)
            }
            "tune.quic.fe.conn.max-data" => {
                g.conn_max_data = size_arg(args, 1, "a size")?;
                no_more(args, 2)
            }
            "tune.quic.mem.tx-max" => {
                g.tx_max = size_arg(args, 1, "a size")? as usize;
                no_more(args, 2)
            }
            "no-memory-trimming" => {
                g.memory_trimming = false;
                no_more(args, 1)
            }
            // Accepted for compatibility with HAProxy configurations; they change nothing here.
            "daemon" | "master-worker" | "log" | "maxconn" | "user" | "group" | "chroot" | "pidfile" => Ok(()),
            kw => Err(format!(
                "unknown keyword '{kw}' in the global section; expected nbthread, hard-stop-after, tune.quic.fe.max-idle-timeout, tune.quic.fe.stream.max-concurrent, tune.quic.fe.stream.rxbuf, tune.quic.fe.stream.max-data, tune.quic.fe.conn.max-data, tune.quic.mem.tx-max or no-memory-trimming"
            )),
        }
    }

    fn timeout_kw(t: &mut Timeouts, args: &[String]) -> Res<()> {
        let which = need(
            args,
            1,
            "a timeout name (connect, server, client, http-request, http-keep-alive, client-fin, client-hs, queue, check)",
        )?;
        let d = duration_arg(args, 2, &format!("the value of 'timeout {which}'"))?;
        no_more(args, 3)?;
        let slot = match which {
            "queue" => {
                t.queue = Some(d);
                return Ok(());
            }
            "check" => {
                t.check = Some(d);
                return Ok(());
            }
            "connect" => &mut t.connect,
            "server" => &mut t.server,
            "client" => &mut t.client,
            "http-request" => &mut t.http_request,
            "http-keep-alive" => &mut t.http_keep_alive,
            "client-fin" => &mut t.client_fin,
            "client-hs" => &mut t.client_hs,
            other => {
                return Err(format!(
                    "unknown timeout '{other}'; expected connect, server, client, http-request, http-keep-alive, client-fin, client-hs, queue or check"
                ))
            }
        };
        *slot = d;
        Ok(())
    }

    fn option_kw(flag: &mut bool, args: &[String]) -> Res<()> {
        match need(args, 1, "an option name")? {
            "forwardfor" => {
                *flag = true;
                no_more(args, 2)
            }
            // HAProxy defaults that describe what qproxy always does.
            "http-keep-alive" | "httplog" | "dontlognull" | "http-server-close" => Ok(()),
            other => Err(format!(
                "unknown option '{other}'; expected forwardfor, redispatch or httpchk (the last two in backends and defaults)"
            )),
        }
    }

    fn defaults_kw(&mut self, args: &[String]) -> Res<()> {
        if let Some(done) = self.defaults_backend.keyword(args) {
            return done;
        }
        match args[0].as_str() {
            "timeout" => Self::timeout_kw(&mut self.defaults_timeouts, args),
            "option" => Self::option_kw(&mut self.defaults_forwardfor, args),
            "mode" => match need(args, 1, "a mode")? {
                "http" => no_more(args, 2),
                other => Err(format!("mode '{other}' is not supported; expected mode http")),
            },
            "log" | "maxconn" => Ok(()),
            kw => Err(format!(
                "unknown keyword '{kw}' in a defaults section; expected timeout, option, mode, balance, retries or default-server"
            )),
        }
    }

    fn acl(args: &[String], start: usize) -> Res<(Acl, bool)> {
        let cond = need(args, start, "'if' or 'unless'")?;
        let negate = match cond {
            "if" => false,
            "unless" => true,
            other => return Err(format!("expected 'if' or 'unless', found '{other}'")),
        };
        if need(args, start + 1, "'{' to open the condition")? != "{" {
            return Err("expected '{' after if/unless (conditions are written { fetch value ... })".into());
        }
        let close = args
            .iter()
            .rposition(|a| a == "}")
            .ok_or("expected '}' to close the condition")?;
        if close != args.len() - 1 {
            return Err(format!("unexpected '{}' after the condition", args[close + 1]));
        }
        let inner = &args[start + 2..close];
        let fetch = inner
            .first()
            .ok_or("expected a fetch such as path_beg, path or hdr(host) inside { }")?;
        let mut values: Vec<String> = inner[1..].to_vec();
        let acl = match fetch.as_str() {
            "path_beg" => Acl::PathBeg(values),
            "path" => Acl::Path(values),
            f if f.starts_with("hdr(") && f.ends_with(')') => {
                let name = f[4..f.len() - 1].to_ascii_lowercase();
                if name.is_empty() {
                    return Err("expected a header name in hdr(NAME)".into());
                }
                let ignore_case = values.first().is_some_and(|v| v == "-i");
                if ignore_case {
                    values.remove(0);
                }
                Acl::Hdr {
                    name,
                    values,
                    ignore_case,
                }
            }
            other => {
                return Err(format!(
                    "unknown fetch '{other}'; expected path_beg, path or hdr(NAME)"
                ))
            }
        };
        let empty = match &acl {
            Acl::PathBeg(v) | Acl::Path(v) => v.is_empty(),
            Acl::Hdr { values, .. } => values.is_empty(),
        };
        if empty {
            return Err(format!("expected at least one value after '{fetch}'"));
        }
        Ok((acl, negate))
    }

    fn frontend_kw(&mut self, i: usize, args: &[String]) -> Res<()> {
        let line = self.line;
        match args[0].as_str() {
            "bind" => {
                let target = need(args, 1, "an address after 'bind'")?;
                if let Some(rest) = target.strip_prefix("quic4@").or_else(|| target.strip_prefix("quic6@")) {
                    let addr = addr_arg(rest, "the bind address")?;
                    if target.starts_with("quic4@") != addr.is_ipv4() {
                        return Err(format!("'{target}': quic4@ takes an IPv4 address, quic6@ an IPv6 one"));
                    }
                    let (mut cert, mut key, mut ssl, mut force_retry, mut allow_0rtt) = (None, None, false, false, false);
                    let mut j = 2;
                    while j < args.len() {
                        match args[j].as_str() {
                            "ssl" => ssl = true,
                            "crt" => {
                                cert = Some(self.path(need(args, j + 1, "a PEM file after 'crt'")?));
                                j += 1;
                            }
                            "key" => {
                                key = Some(self.path(need(args, j + 1, "a PEM file after 'key'")?));
                                j += 1;
                            }
                            "alpn" => {
                                let alpn = need(args, j + 1, "a protocol list after 'alpn'")?;
                                if !alpn.split(',').any(|p| p == "h3") {
                                    return Err(format!("alpn '{alpn}' lacks h3, the only protocol served on QUIC"));
                                }
                                j += 1;
                            }
                            "allow-0rtt" => allow_0rtt = true,
                            "quic-force-retry" => force_retry = true,
                            other => return Err(format!("unknown bind option '{other}'; expected ssl, crt FILE, key FILE, alpn h3, allow-0rtt or quic-force-retry")),
                        }
                        j += 1;
                    }
                    if !ssl {
                        return Err("a QUIC bind needs 'ssl crt FILE' (QUIC is always encrypted)".into());
                    }
                    let cert = cert.ok_or("a QUIC bind needs 'crt FILE' (a PEM with the certificate chain and key)")?;
                    for (what, path) in [("certificate", &cert), ("key", key.as_ref().unwrap_or(&cert))] {
                        std::fs::metadata(path).map_err(|e| format!("cannot read the {what} file {}: {e}", path.display()))?;
                    }
                    let key = key.unwrap_or_else(|| cert.clone());
                    self.fronts[i].front.binds.push(QuicBind { addr, cert, key, force_retry, allow_0rtt });
                } else {
                    let addr = addr_arg(target, "the bind address (TCP for a stats frontend, quic4@/quic6@ for HTTP/3)")?;
                    no_more(args, 2)?;
                    self.fronts[i].tcp_bind = Some((addr, line));
                    self.section = Section::Stats(i);
                }
                Ok(())
            }
            "default_backend" => {
                let name = need(args, 1, "a backend name")?.to_string();
                no_more(args, 2)?;
                self.backend_refs.push((line, name.clone()));
                self.fronts[i].front.default_backend = Some(name);
                Ok(())
            }
            "use_backend" => {
                let name = need(args, 1, "a backend name")?.to_string();
                let (acl, negate) = Self::acl(args, 2)?;
                self.backend_refs.push((line, name.clone()));
                self.fronts[i].front.rules.push(Rule { backend: name, acl, negate });
                Ok(())
            }
            "http-response" => {
                match need(args, 1, "an action such as set-header")? {
                    "set-header" => {}
                    other => return Err(format!("unknown http-response action '{other}'; expected set-header")),
                }
                let name = need(args, 2, "a header name")?.to_ascii_lowercase();
                let value = need(args, 3, "a header value")?.to_string();
                no_more(args, 4)?;
                // Shared by every request's exchange, so kept in an Arc; built once, at load.
                let headers = &mut self.fronts[i].front.set_response_headers;
                *headers = headers.iter().cloned().chain([(name, value)]).collect();
                Ok(())
            }
            "http-request" => {
                const EXPECTED: &str = "expected 'http-request wait-for-handshake' or 'http-request use-service prometheus-exporter if { path /metrics }'";
                if need(args, 1, "an action")? == "wait-for-handshake" {
                    if args.len() > 2 {
                        return Err("expected 'http-request wait-for-handshake' alone (it takes no condition here)".into());
                    }
                    self.fronts[i].front.early_data.wait_for_handshake = true;
                    return Ok(());
                }
                if args[1] != "use-service" || need(args, 2, "a service")? != "prometheus-exporter" {
                    return Err(EXPECTED.into());
                }
                let (acl, negate) = Self::acl(args, 3)?;
                match (acl, negate) {
                    (Acl::Path(paths), false) if paths.len() == 1 => {
                        self.fronts[i].metrics_path = Some((paths[0].clone(), line));
                        Ok(())
                    }
                    _ => Err("expected the condition '{ path /metrics }' (one exact path)".into()),
                }
            }
            "stats" => match need(args, 1, "a stats keyword such as uri")? {
                "uri" => {
                    let path = need(args, 2, "a path after 'stats uri'")?;
                    if !path.starts_with('/') {
                        return Err(format!("expected the stats path to start with '/', found '{path}'"));
                    }
                    self.fronts[i].stats_path = Some((path.to_string(), line));
                    no_more(args, 3)
                }
                "enable" | "refresh" | "show-legends" | "realm" | "auth" | "admin" | "hide-version" => Ok(()),
                other => Err(format!("unknown stats keyword '{other}'; expected stats uri PATH")),
            },
            "early-data-methods" => {
                need(args, 1, "at least one method, such as GET HEAD OPTIONS")?;
                if let Some(bad) = args[1..].iter().find(|m| !m.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')) {
                    return Err(format!("'{bad}' is not a method; expected methods such as GET HEAD OPTIONS"));
                }
                self.fronts[i].front.early_data.methods = args[1..].to_vec();
                Ok(())
            }
            "timeout" => Self::timeout_kw(&mut self.fronts[i].front.timeouts, args),
            "option" => Self::option_kw(&mut self.fronts[i].front.forwardfor, args),
            "mode" => match need(args, 1, "a mode")? {
                "http" => no_more(args, 2),
                other => Err(format!("mode '{other}' is not supported; expected mode http")),
            },
            "log" | "maxconn" => Ok(()),
            kw => Err(format!(
                "unknown keyword '{kw}' in frontend '{}'; expected bind, default_backend, use_backend, http-response, http-request, early-data-methods, timeout, option or mode",
                self.fronts[i].front.name
            )),
        }
    }

    fn backend_kw(&mut self, i: usize, args: &[String]) -> Res<()> {
        let backend = &mut self.backends[i].0;
        if let Some(done) = backend.keyword(args) {
            return done;
        }
        match args[0].as_str() {
            "timeout" => Self::timeout_kw(&mut backend.timeouts, args),
            "option" => Self::option_kw(&mut backend.forwardfor, args),
            "mode" => match need(args, 1, "a mode")? {
                "http" => no_more(args, 2),
                other => Err(format!("mode '{other}' is not supported; expected mode http")),
            },
            "log" => Ok(()),
            kw => Err(format!(
                "unknown keyword '{kw}' in backend '{}'; expected server, default-server, balance, retries, timeout, option, http-check or mode",
                backend.name
            )),
        }
    }

    fn finish(self) -> Result<Config, ConfigError> {
        let mut frontends = Vec::new();
        let mut stats = Vec::new();
        for draft in &self.fronts {
            let served = draft.metrics_path.is_some() || draft.stats_path.is_some();
            match (draft.tcp_bind, served) {
                (Some((addr, _)), true) => {
                    if !draft.front.binds.is_empty() {
                        return Err(self.err_at(draft.line, format!("frontend '{}' mixes QUIC and TCP binds", draft.front.name)));
                    }
                    stats.push(StatsFrontend {
                        name: draft.front.name.clone(),
                        addr,
                        metrics_path: draft.metrics_path.as_ref().map(|(p, _)| p.clone()),
                        stats_path: draft.stats_path.as_ref().map(|(p, _)| p.clone()),
                    });
                }
                (Some((_, line)), false) => {
                    return Err(self.err_at(
                        line,
                        "a TCP bind serves only stats: expected 'stats uri /stats' or 'http-request use-service prometheus-exporter if { path /metrics }' in this frontend, or a quic4@/quic6@ bind",
                    ))
                }
                (None, true) => {
                    let line = draft.metrics_path.iter().chain(&draft.stats_path).map(|(_, l)| *l).min().unwrap_or(draft.line);
                    return Err(self.err_at(line, "stats and prometheus-exporter need a TCP bind such as 'bind 127.0.0.1:8404'"))
                }
                (None, false) => {
                    if draft.front.binds.is_empty() {
                        return Err(self.err_at(draft.line, format!("frontend '{}' has no bind", draft.front.name)));
                    }
                    if draft.front.default_backend.is_none() && draft.front.rules.is_empty() {
                        return Err(self.err_at(draft.line, format!("frontend '{}' has neither default_backend nor use_backend", draft.front.name)));
                    }
                    frontends.push(draft.front.clone());
                }
            }
        }
        for (line, name) in &self.backend_refs {
            if !self.backends.iter().any(|(b, _)| &b.name == name) {
                return Err(self.err_at(*line, format!("no backend named '{name}'")));
            }
        }
        for (b, line) in &self.backends {
            if b.servers.is_empty() {
                return Err(self.err_at(*line, format!("backend '{}' has no server", b.name)));
            }
        }
        if frontends.is_empty() {
            return Err(self.err_at(
                0,
                "no HTTP/3 frontend: expected a frontend with 'bind quic4@ADDR:PORT ssl crt FILE'",
            ));
        }
        Ok(Config {
            global: self.global,
            frontends,
            backends: self.backends.into_iter().map(|(b, _)| b).collect(),
            stats,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/qproxy/test.cfg"), text)
    }

    fn cert() -> String {
        // Any readable file will do for the parser.
        std::env::current_exe().unwrap().display().to_string()
    }

    fn base() -> String {
        format!(
            "global\n  tune.quic.mem.tx-max 1m\n\ndefaults\n  timeout connect 2s\n  option forwardfor\n\nfrontend web\n  bind quic4@127.0.0.1:4433 ssl crt {} alpn h3\n  http-response set-header alt-svc \"h3=\\\":443\\\";ma=900\"\n  use_backend api if {{ path_beg /api /v2 }}\n  use_backend api if {{ hdr(host) -i API.example.com }}\n  default_backend app\n\nbackend app\n  balance roundrobin\n  server a 127.0.0.1:8080 weight 2 check\n  server b 127.0.0.1:8081\n\nbackend api\n  timeout server 5s\n  server c [::1]:9000\n\nfrontend stats\n  bind 127.0.0.1:8404\n  http-request use-service prometheus-exporter if {{ path /metrics }}\n",
            cert()
        )
    }

    #[test]
    fn a_full_configuration_parses() {
        let c = parse(&base()).unwrap();
        assert_eq!(c.global.tx_max, 1 << 20);
        let f = &c.frontends[0];
        assert_eq!(f.binds[0].addr, "127.0.0.1:4433".parse().unwrap());
        assert_eq!(
            f.set_response_headers.to_vec(),
            vec![("alt-svc".into(), "h3=\":443\";ma=900".into())]
        );
        assert_eq!(f.rules[0].acl, Acl::PathBeg(vec!["/api".into(), "/v2".into()]));
        assert!(matches!(&f.rules[1].acl, Acl::Hdr { name, ignore_case: true, .. } if name == "host"));
        assert!(f.forwardfor);
        assert_eq!(f.timeouts.connect, Duration::from_secs(2));
        assert_eq!(c.backends[0].servers[0].options.weight, 2);
        assert_eq!(c.backends[1].timeouts.server, Duration::from_secs(5));
        assert_eq!(c.backends[1].timeouts.connect, Duration::from_secs(2));
        assert_eq!(c.stats[0].metrics_path.as_deref(), Some("/metrics"));
        assert!(c.global.memory_trimming, "trimming is on unless turned off");
        let off = parse(&base().replacen("global\n", "global\n  no-memory-trimming\n", 1)).unwrap();
        assert!(!off.global.memory_trimming);
    }

    #[test]
    fn early_data_is_off_unless_a_bind_allows_it() {
        let c = parse(&base()).unwrap();
        let f = &c.frontends[0];
        assert!(!f.binds[0].allow_0rtt);
        assert!(f.early_data.forwards_early("GET") && f.early_data.forwards_early("HEAD"));
        assert!(!f.early_data.forwards_early("POST"));
        let text = base().replacen(
            " alpn h3\n",
            " alpn h3 allow-0rtt\n  early-data-methods GET\n  http-request wait-for-handshake\n",
            1,
        );
        let c = parse(&text).unwrap();
        let f = &c.frontends[0];
        assert!(f.binds[0].allow_0rtt);
        assert_eq!(f.early_data.methods, vec!["GET".to_string()]);
        assert!(f.early_data.wait_for_handshake && !f.early_data.forwards_early("GET"));
    }

    fn error_line(text: &str) -> (usize, String) {
        let e = parse(text).unwrap_err();
        assert_eq!(e.file, Path::new("/etc/qproxy/test.cfg"));
        (e.line, e.message)
    }

    #[test]
    fn errors_name_the_line_and_what_was_expected() {
        let good = base();
        let lines: Vec<&str> = good.lines().collect();
        let with = |n: usize, replacement: &str| {
            let mut l = lines.clone();
            l[n - 1] = replacement;
            l.join("\n")
        };
        let cases = [
            (2, "  tune.quic.mem.tx-max lots", "size"),
            (2, "  no-memory-trimming now", "unexpected 'now'"),
            (5, "  timeout connect soon", "duration"),
            (5, "  timeout whenever 2s", "unknown timeout"),
            (6, "  option teleport", "unknown option"),
            (9, "  bind quic4@[::1]:4433 ssl crt x", "quic4@ takes an IPv4"),
            (
                9,
                "  bind quic4@127.0.0.1:4433 crt /etc/hosts",
                "needs 'ssl crt FILE'",
            ),
            (
                9,
                "  bind quic4@127.0.0.1:4433 ssl crt /nonexistent.pem",
                "cannot read the certificate",
            ),
            (11, "  use_backend api if { path_beg }", "at least one value"),
            (11, "  early-data-methods", "at least one method"),
            (11, "  early-data-methods GET P@ST", "'P@ST' is not a method"),
            (
                11,
                "  http-request wait-for-handshake if { path / }",
                "takes no condition",
            ),
            (
                11,
                "  http-request deny",
                "expected 'http-request wait-for-handshake' or",
            ),
            (11, "  use_backend api when { path_beg /a }", "'if' or 'unless'"),
            (13, "  default_backend nowhere", "no backend named 'nowhere'"),
            (17, "  server a 127.0.0.1 weight 2", "ADDRESS:PORT"),
            (17, "  server a 127.0.0.1:8080 weight 0", "weight from 1 to 256"),
            (16, "  balance fastest", "unknown balance"),
            (
                18,
                "  srever b 127.0.0.1:8081",
                "unknown keyword 'srever' in backend 'app'",
            ),
        ];
        for (n, line, expect) in cases {
            let (at, msg) = error_line(&with(n, line));
            assert_eq!(at, n, "{line:?}: {msg}");
            assert!(msg.contains(expect), "{line:?}: '{msg}' lacks '{expect}'");
        }
    }

    #[test]
    fn balancing_checks_queues_and_retries_parse() {
        let text = format!(
            "defaults\n  retries 2\n  option redispatch\n  timeout queue 3s\n  default-server inter 1s fall 4\n\
             frontend web\n  bind quic4@127.0.0.1:4433 ssl crt {}\n  default_backend app\n\
             backend app\n  balance hdr(X-User)\n  option httpchk GET /health\n  http-check expect status 204\n  timeout check 500ms\n\
             \x20 server a 127.0.0.1:8080 check rise 3 maxconn 10 maxqueue 5 observe layer7 error-limit 4\n\
             \x20 default-server inter 250ms\n  server b 127.0.0.1:8081 weight 3\n\
             backend other\n  balance random(3)\n  retries 0\n  option allbackups\n  server c 127.0.0.1:9000 check port 9001\n  server d 127.0.0.1:9002 backup\n\
             frontend stats\n  bind 127.0.0.1:8404\n  stats uri /stats\n",
            cert()
        );
        let c = parse(&text).unwrap();
        let app = &c.backends[0];
        assert_eq!(app.settings.balance, Balance::Hdr("x-user".into()));
        assert_eq!((app.settings.retries, app.settings.redispatch), (2, true));
        let chk = app.settings.httpchk.as_ref().unwrap();
        assert_eq!(
            (chk.method.as_str(), chk.uri.as_str(), chk.expect_status),
            ("GET", "/health", Some(204))
        );
        assert_eq!(app.queue_timeout(), Duration::from_secs(3));
        let (a, b) = (&app.servers[0].options, &app.servers[1].options);
        assert!(a.check && !b.check);
        assert_eq!((a.inter, a.rise, a.fall), (Duration::from_secs(1), 3, 4));
        assert_eq!(
            (a.maxconn, a.maxqueue, a.observe, a.error_limit),
            (10, 5, Some(Observe::Layer7), 4)
        );
        assert_eq!((b.inter, b.weight, b.fall), (Duration::from_millis(250), 3, 4));
        assert_eq!(app.check_timeout(&app.servers[0]), Duration::from_millis(500));
        assert_eq!(app.queue_limit(), 5);
        let other = &c.backends[1];
        assert_eq!(other.settings.balance, Balance::Random { draws: 3 });
        assert_eq!((other.settings.retries, other.settings.redispatch), (0, true));
        assert!(other.settings.allbackups && !app.settings.allbackups);
        let (c_, d) = (&other.servers[0], &other.servers[1]);
        assert_eq!(c_.check_addr(), "127.0.0.1:9001".parse().unwrap());
        assert_eq!(
            d.check_addr(),
            d.addr,
            "checks go to the server's own port by default"
        );
        assert!(d.options.backup && !c_.options.backup);
        assert_eq!(c.stats[0].stats_path.as_deref(), Some("/stats"));
        assert_eq!(c.stats[0].metrics_path, None);

        for (line, expect) in [
            ("  balance fastest", "unknown balance algorithm 'fastest'"),
            ("  balance random(0)", "random(N) with N from 1 to 16"),
            ("  server x 127.0.0.1:1 observe layer4", "add 'check'"),
            (
                "  server x 127.0.0.1:1 check inter soon",
                "check interval as a duration",
            ),
            ("  server x 127.0.0.1:1 fall 0", "fall count from 1 to 1000"),
            (
                "  server x 127.0.0.1:1 observe layer9 check",
                "observe layer4 or layer7",
            ),
            ("  http-check expect status 999", "status code from 100 to 599"),
            ("  http-check send meth GET", "http-check expect status CODE"),
            ("  option httpchk GET health", "start with '/'"),
            ("  retries many", "retry count from 0 to 100"),
            (
                "  server x 127.0.0.1:1 check port 0",
                "check port from 1 to 65535",
            ),
            ("  option allbackups please", "unexpected 'please'"),
        ] {
            let bad = format!(
                "frontend web\n  bind quic4@127.0.0.1:4433 ssl crt {}\n  default_backend app\nbackend app\n  server a 127.0.0.1:1\n{line}\n",
                cert()
            );
            let (at, msg) = error_line(&bad);
            assert_eq!(at, 6, "{line}: {msg}");
            assert!(msg.contains(expect), "{line}: '{msg}' lacks '{expect}'");
        }
    }

    #[test]
    fn structural_errors() {
        assert!(error_line("timeout connect 1s\n").1.contains("outside a section"));
        assert!(error_line("global\n").1.contains("no HTTP/3 frontend"));
        assert!(error_line("frontend f\n  bind 127.0.0.1:80\n")
            .1
            .contains("serves only stats"));
        assert!(error_line("backend b\n").1.contains("has no server"));
        assert!(error_line("global\n  nbthread \"2\n").1.contains("unterminated"));
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("250"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("10us"), Some(Duration::from_micros(10)));
        assert_eq!(parse_duration("1x"), None);
        assert_eq!(parse_size("64k"), Some(65536));
        assert_eq!(parse_size("4M"), Some(4 << 20));
        assert_eq!(parse_size("k"), None);
    }

    #[test]
    fn words_handle_quotes_and_comments() {
        assert_eq!(
            words(r#"a "b c" 'd\e' f\ g # h"#).unwrap(),
            vec!["a", "b c", "d\\e", "f g"]
        );
    }
}
