//! The `qproxy` command.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use qproxy::config::Config;
use qproxy::metrics::ProxyCounters;
use qproxy::worker::{Exit, Worker};

/// An HTTP/3 (QUIC) reverse proxy in front of HTTP/1.1 services, configured like HAProxy.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Configuration file (HAProxy syntax subset, see docs/configuration.md).
    #[arg(
        short = 'f',
        long = "config",
        value_name = "FILE",
        required_unless_present = "demo"
    )]
    config: Option<PathBuf>,
    /// Check the configuration and exit: 0 when valid, 1 otherwise.
    #[arg(short = 'c', long = "check")]
    check: bool,
    /// Run a self-contained demo: certificates, a demo origin and a configuration in --demo-dir.
    #[arg(long, conflicts_with_all = ["config", "check"])]
    demo: bool,
    /// Where --demo writes its files.
    #[arg(long, value_name = "DIR")]
    demo_dir: Option<PathBuf>,
    /// First UDP port --demo tries (the next free one is used).
    #[arg(long, default_value_t = 4433)]
    demo_port: u16,
    /// Log filter (tracing syntax: error, warn, info, debug, trace, or per target).
    #[arg(long, default_value = "info", env = "QPROXY_LOG")]
    log: String,
    /// Shortcut for --log debug.
    #[arg(short = 'd', long)]
    debug: bool,
    /// Shortcut for --log warn (no access log).
    #[arg(short = 'q', long)]
    quiet: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = if cli.debug {
        "debug".to_string()
    } else if cli.quiet {
        "warn".to_string()
    } else {
        cli.log.clone()
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("qproxy: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let path = match (&cli.config, cli.demo) {
        (_, true) => {
            let dir = cli
                .demo_dir
                .clone()
                .unwrap_or_else(|| std::env::temp_dir().join("qproxy-demo"));
            let demo = qproxy::demo::prepare(&dir, cli.demo_port)?;
            println!(
                "qproxy demo: HTTP/3 on https://localhost:{port}/ (127.0.0.1 UDP {port}), origin {origin}\n\
                 \x20 trust the demo CA: {ca}\n\
                 \x20 configuration:     {cfg}\n\
                 \x20 metrics:           {metrics}\n\
                 \x20 try:               gtlsclient --exit-on-all-streams-close 127.0.0.1 {port} https://localhost:{port}/",
                port = demo.port,
                origin = demo.origin,
                ca = demo.ca.display(),
                cfg = demo.config.display(),
                metrics = demo.metrics,
            );
            demo.config
        }
        (Some(path), false) => path.clone(),
        (None, false) => anyhow::bail!("no configuration: use -f FILE or --demo"),
    };
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    if cli.check {
        println!("Configuration file is valid");
        return Ok(ExitCode::SUCCESS);
    }
    if config.global.nbthread > 1 {
        tracing::warn!(
            nbthread = config.global.nbthread,
            "this version runs one worker; nbthread is accepted for compatibility"
        );
    }
    let config = Arc::new(config);
    let counters = Arc::new(qcc::Counters::default());
    let proxy = Arc::new(ProxyCounters::default());
    for stats in &config.stats {
        let addr = qproxy::stats::spawn(
            stats.addr,
            stats.metrics_path.clone(),
            counters.clone(),
            proxy.clone(),
        )
        .with_context(|| format!("stats frontend '{}' on {}", stats.name, stats.addr))?;
        tracing::info!(%addr, path = %stats.metrics_path, "stats listener ready");
    }
    let mut worker = Worker::new(config, Some(path), counters, proxy)?;
    for addr in worker.local_addrs() {
        tracing::info!(%addr, "listening for HTTP/3");
    }
    match worker.run()? {
        Exit::Graceful => Ok(ExitCode::SUCCESS),
        Exit::Forced => Ok(ExitCode::SUCCESS),
    }
}
