//! The origin behind every proxy: nginx when installed (a private configuration in the bench's
//! directory, one worker, keep-alive on, access log off, serving `/1k` and `/100m` from files), else the
//! built-in origin.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::builtin::{Builtin, BIG};
use super::child::Guard;
use super::peers::which;

pub(crate) struct Origin {
    pub(crate) addr: SocketAddr,
    /// What serves it, for the report.
    pub(crate) kind: String,
    _nginx: Option<Guard>,
    _builtin: Option<Builtin>,
}

/// nginx when installed, else the built-in origin; the note says which and why.
pub(crate) fn start(dir: &Path) -> Result<(Origin, Option<String>)> {
    let Some(nginx) = which("nginx") else {
        let builtin = Builtin::start()?;
        return Ok((
            Origin {
                addr: builtin.addr,
                kind: "built-in (xtask, a thread per connection)".into(),
                _nginx: None,
                _builtin: Some(builtin),
            },
            Some("nginx not installed, using the built-in origin (apt-get install nginx)".into()),
        ));
    };
    let version = Command::new(&nginx)
        .arg("-v")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_string())
        .unwrap_or_default();
    let root = dir.join("www");
    std::fs::create_dir_all(&root)?;
    std::fs::write(root.join("1k"), vec![b'x'; 1024])?;
    write_big(&root.join("100m"))?;
    let port = qproxy_tests::ports::free_tcp_port()?;
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, config(dir, port))?;
    let mut guard = Guard::spawn(
        Command::new(&nginx)
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(dir.join("nginx-error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
        "nginx",
    )?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let until = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        if let Some(status) = guard.exited() {
            bail!(
                "nginx exited ({status}): {}",
                std::fs::read_to_string(dir.join("nginx-error.log")).unwrap_or_default()
            );
        }
        if Instant::now() > until {
            bail!("nginx did not listen on {addr} within 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((
        Origin {
            addr,
            kind: version.replace("nginx version: ", ""),
            _nginx: Some(guard),
            _builtin: None,
        },
        None,
    ))
}

impl Origin {
    /// nginx's process, when nginx is the origin (the built-in one runs inside xtask).
    pub(crate) fn pid(&self) -> Option<u32> {
        self._nginx.as_ref().map(Guard::pid)
    }
}

fn write_big(path: &Path) -> Result<()> {
    use std::io::Write;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).context("100m file")?);
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..BIG >> 20 {
        file.write_all(&chunk)?;
    }
    file.flush()?;
    Ok(())
}

fn config(dir: &Path, port: u16) -> String {
    let d = dir.display();
    format!(
        "daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log error;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 65s;
    keepalive_requests 10000000;
    default_type application/octet-stream;
    client_body_temp_path {d}/tmp-body;
    proxy_temp_path {d}/tmp-proxy;
    fastcgi_temp_path {d}/tmp-fastcgi;
    uwsgi_temp_path {d}/tmp-uwsgi;
    scgi_temp_path {d}/tmp-scgi;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {d}/www;
        location / {{ }}
    }}
}}
"
    )
}
