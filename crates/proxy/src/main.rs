//! The `qproxy` command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use qproxy::config::Config;
use qproxy::Exit;

/// jemalloc: per-size-class runs make the proxy's short-lived allocations (response bodies of 1 to
/// 32 KiB, field blocks) cheap, where glibc's bins and consolidation took ~14 % of a loaded worker's CPU;
/// mimalloc was as fast but held 2.6x the memory per open stream (docs/ARCHITECTURE.md, "Allocator").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// An HTTP/3 (QUIC) reverse proxy in front of HTTP/1.1 services, configured like HAProxy.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Configuration file (HAProxy syntax subset, see docs/configuration.md).
    #[arg(short = 'f', long = "config", value_name = "FILE")]
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
    /// -v: the version; -vv: also the build (quiche, BoringSSL), the platform and the features.
    #[arg(short = 'v', action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// A refreshing table of servers, states, rates and live objects, from a running qproxy's `stats uri`.
    Top {
        /// The JSON stats URL, e.g. http://127.0.0.1:8404/stats.
        #[arg(long = "stats", value_name = "URL")]
        stats: String,
        /// Seconds between refreshes.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
        /// Print one screen and exit.
        #[arg(long)]
        once: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.verbose > 0 {
        let text = if cli.verbose > 1 {
            qproxy::tools::version::report()
        } else {
            qproxy::tools::version::version()
        };
        print!("{text}");
        return ExitCode::SUCCESS;
    }
    if let Some(Command::Top {
        stats,
        interval,
        once,
    }) = &cli.command
    {
        return match qproxy::tools::top::run(
            stats,
            std::time::Duration::from_secs_f64(interval.max(0.1)),
            *once,
        ) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("qproxy top: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let filter = if cli.debug {
        "debug".to_string()
    } else if cli.quiet {
        "warn".to_string()
    } else {
        cli.log.clone()
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| "info".into()))
        .with_writer(qproxy::LogWriter)
        // Colour only for a person at a terminal, never in a file or a pipe.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
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
            let demo = qproxy::tools::demo::prepare(&dir, cli.demo_port)?;
            // One write, and a closed stdout is no reason to stop: the banner is for a human, the proxy
            // runs on without it.
            let banner = qproxy::tools::demo::banner(&demo, &dir);
            let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), banner.as_bytes());
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
    match qproxy::serve(config, Some(path))? {
        Exit::Graceful | Exit::Forced => Ok(ExitCode::SUCCESS),
    }
}
