//! `h3load`: an HTTP/3 load generator on quinn + h3 (see `h3_client::load`). Prints one JSON line with
//! requests, errors, connections, elapsed seconds and latency percentiles; with `--hold`, one line per
//! phase before it, stepping to the next phase on each line of standard input.

use std::io::BufRead;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use h3_client::load::{hold, run, LoadOptions};
use serde_json::json;

/// N connections × M concurrent streams of GETs on one path, for a count or a duration.
#[derive(Parser, Debug)]
#[command(about)]
struct Cli {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Server UDP port.
    #[arg(long)]
    port: u16,
    /// Certificate or CA to trust (PEM).
    #[arg(long)]
    ca: PathBuf,
    /// Name to verify and use in :authority.
    #[arg(long, default_value = "localhost")]
    name: String,
    /// Connections at the same time.
    #[arg(short = 'c', long, default_value_t = 1)]
    connections: usize,
    /// Concurrent streams per connection (with --hold: streams opened per connection, 0 for none).
    #[arg(short = 'm', long, default_value_t = 1)]
    streams: usize,
    /// Requests in all.
    #[arg(short = 'n', long)]
    requests: Option<u64>,
    /// Seconds to run (with --requests, whichever comes first).
    #[arg(short = 'd', long)]
    duration: Option<f64>,
    /// Total requests per second to start (paced), instead of as fast as possible.
    #[arg(long)]
    rate: Option<f64>,
    /// Reconnect after this many requests on a connection (1: one GET per connection).
    #[arg(long)]
    per_connection: Option<u64>,
    /// Open the connections (and streams) and keep them open, one phase per line of standard input.
    #[arg(long)]
    hold: bool,
    /// Runtime threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Seconds the whole run may take.
    #[arg(long, default_value_t = 120.0)]
    timeout: f64,
    /// The path to GET.
    #[arg(default_value = "/")]
    path: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.requests.is_none() && cli.duration.is_none() && !cli.hold {
        eprintln!("h3load: give --requests N, --duration SECS or --hold");
        return ExitCode::from(2);
    }
    let options = LoadOptions {
        server: SocketAddr::new(cli.host, cli.port),
        name: cli.name,
        ca: cli.ca,
        connections: cli.connections.max(1),
        streams: cli.streams,
        requests: cli.requests,
        duration: cli.duration.map(Duration::from_secs_f64),
        rate: cli.rate,
        per_connection: cli.per_connection.filter(|k| *k > 0),
        path: cli.path,
        threads: cli.threads.max(1),
        timeout: Duration::from_secs_f64(cli.timeout.max(0.1)),
    };
    let result = if cli.hold {
        let (tx, rx) = futures::channel::mpsc::unbounded();
        // Each line steps a phase; the end of input drops the sender, which steps every later phase.
        std::thread::spawn(move || {
            for _ in std::io::stdin().lock().lines().map_while(Result::ok) {
                if tx.unbounded_send(()).is_err() {
                    break;
                }
            }
        });
        hold(&options, rx, |name, mut value| {
            value["phase"] = json!(name);
            println!("{value}");
        })
    } else {
        run(&options)
    };
    match result {
        Ok(report) => {
            println!("{}", report.to_json());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("h3load: {e:#}");
            ExitCode::FAILURE
        }
    }
}
