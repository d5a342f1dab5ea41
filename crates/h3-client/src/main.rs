//! `h3get`: HTTP/3 requests with quinn + h3, one JSON line per request (as the aioquic test client
//! prints them) and one per connection with its resumption and 0-RTT outcome.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use h3_client::{run, Options, Rebind, Request};
use serde_json::json;

/// HTTP/3 GETs (or a POST of --body-size bytes) over quinn + h3.
#[derive(Parser, Debug)]
#[command(about)]
struct Cli {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Server UDP port.
    #[arg(long)]
    port: u16,
    /// CA to trust (PEM).
    #[arg(long)]
    ca: PathBuf,
    /// Name to verify and use in :authority.
    #[arg(long, default_value = "localhost")]
    name: String,
    /// Connections, one after the other.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Offer ChaCha20-Poly1305 only.
    #[arg(long)]
    chacha20: bool,
    /// Force a key update after the handshake.
    #[arg(long)]
    key_update: bool,
    /// Resume the session on later connections, with 0-RTT requests.
    #[arg(long)]
    resume: bool,
    /// Change the local port once this many response bytes arrived.
    #[arg(long, value_name = "BYTES", conflicts_with = "rebind_while_idle")]
    rebind_after: Option<u64>,
    /// Change the local port after the handshake, before the requests (the connection idle).
    #[arg(long)]
    rebind_while_idle: bool,
    /// Seconds before a connection is given up.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// Paths to GET (or URLs: only the path and query are used).
    #[arg(required = true)]
    paths: Vec<String>,
}

fn path_of(arg: &str) -> String {
    match arg.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/".to_string(), |i| rest[i..].to_string()),
        None => arg.to_string(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let options = Options {
        server: SocketAddr::new(cli.host, cli.port),
        name: cli.name,
        ca: cli.ca,
        connections: cli.connections,
        chacha20: cli.chacha20,
        key_update: cli.key_update,
        resume: cli.resume,
        rebind: match (cli.rebind_after, cli.rebind_while_idle) {
            (Some(bytes), _) => Rebind::AfterBytes(bytes),
            (None, true) => Rebind::WhileIdle,
            (None, false) => Rebind::Never,
        },
        timeout: Duration::from_secs(cli.timeout),
        pause_between: None,
    };
    let requests: Vec<Request> = cli.paths.iter().map(|p| Request::get(path_of(p))).collect();
    match run(&options, &requests) {
        Ok(reports) => {
            for (c, report) in reports.iter().enumerate() {
                for a in &report.answers {
                    println!(
                        "{}",
                        json!({"conn": a.conn, "index": a.index, "status": a.status, "len": a.body.len(), "error": a.error})
                    );
                }
                println!(
                    "{}",
                    json!({"conn": c, "resumed": report.resumed, "early_data": report.early_data, "rebound": report.rebound})
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("h3get: {e:#}");
            ExitCode::FAILURE
        }
    }
}
