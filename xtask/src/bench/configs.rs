//! The configuration each proxy runs in the bench: the same origin (`default`) and the built-in `/slow`
//! server (requests whose path starts with `/slow`), `--threads` worker threads (1 by default), no
//! logging, the one certificate.

use std::net::SocketAddr;

use super::cert::Certs;

/// Where a proxy listens and forwards.
pub(crate) struct Wiring<'a> {
    pub(crate) port: u16,
    pub(crate) origin: SocketAddr,
    pub(crate) slow: SocketAddr,
    pub(crate) certs: &'a Certs,
    /// Worker threads (`nbthread`, Caddy's GOMAXPROCS).
    pub(crate) threads: usize,
}

/// qproxy, as `qproxy --demo` writes it, with `threads` workers.
pub(crate) fn qproxy(w: &Wiring<'_>) -> String {
    format!(
        "global
    nbthread {threads}
    tune.quic.fe.max-idle-timeout 30s

defaults
    timeout connect 2s
    timeout server 30s

frontend fe
    bind quic4@127.0.0.1:{port} ssl crt {crt} alpn h3
    use_backend slow if {{ path_beg /slow }}
    default_backend be

backend be
    server s1 {origin}

backend slow
    server s1 {slow}
",
        port = w.port,
        crt = w.certs.combined.display(),
        origin = w.origin,
        slow = w.slow,
        threads = w.threads,
    )
}

/// HAProxy 3.4 as ../shared/peers/README.md gives it (there with one thread), `http-reuse safe`, no
/// log.
pub(crate) fn haproxy(w: &Wiring<'_>) -> String {
    format!(
        "global
    nbthread {threads}

defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s

frontend fe
    bind quic4@127.0.0.1:{port} ssl crt {crt} alpn h3
    use_backend slow if {{ path_beg /slow }}
    default_backend be

backend be
    http-reuse safe
    server s1 {origin}

backend slow
    http-reuse safe
    server s1 {slow}
",
        port = w.port,
        crt = w.certs.combined.display(),
        origin = w.origin,
        slow = w.slow,
        threads = w.threads,
    )
}

/// Caddy 2: a Caddyfile with `reverse_proxy`, HTTP/3 on, no admin endpoint, no automatic HTTPS (the
/// bench's certificate instead), errors only in the log. GOMAXPROCS=`threads` is set in its environment.
pub(crate) fn caddy(w: &Wiring<'_>) -> String {
    format!(
        "{{
    admin off
    auto_https off
    log {{
        level ERROR
    }}
    servers {{
        protocols h1 h2 h3
    }}
}}

https://localhost:{port} {{
    bind 127.0.0.1
    tls {cert} {key}
    reverse_proxy /slow* {slow}
    reverse_proxy {origin} {{
        transport http {{
            keepalive_idle_conns_per_host 1024
        }}
    }}
}}
",
        port = w.port,
        cert = w.certs.cert.display(),
        key = w.certs.key.display(),
        origin = w.origin,
        slow = w.slow,
    )
}
