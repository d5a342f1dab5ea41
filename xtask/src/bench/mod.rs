//! `cargo xtask bench`: qproxy, HAProxy 3.x (QUIC) and Caddy side by side, on the same origin with the
//! same clients and the same certificate, one worker each. Cases: 1 KiB GET throughput and proxy CPU
//! per request (h3load and gtlsclient), latency at half that peak, a 100 MiB download (MB/s, CPU per
//! MB), CPU per connection, RSS per idle connection and per open request stream. Runs alternate
//! between the proxies, each on a fresh process, for `--rounds N` rounds (default 3); the table shows
//! medians and ratios to HAProxy, and target/bench/ gets bench.json and bench.svg.

mod builtin;
mod cases;
pub(crate) mod cert;
mod child;
mod clients;
mod configs;
mod origin;
mod peers;
mod procfs;
mod report;
mod svg;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;

use cases::{Ctx, Outcome, Sizes, CASES};
use clients::{release_bin, Target};
use configs::Wiring;
use report::{Report, Run};

pub(crate) const USAGE: &str =
    "usage: cargo xtask bench [--rounds N] [--quick] [--threads N] [--haproxy PATH] [--cases KEY,..] [--peers NAME,..]";

struct Args {
    rounds: usize,
    quick: bool,
    /// Worker threads of every proxy.
    threads: usize,
    haproxy: Option<PathBuf>,
    /// Only these cases (their keys), when given.
    cases: Option<Vec<String>>,
    /// Only these peers (qproxy, haproxy, caddy), when given.
    peers: Option<Vec<String>>,
}

fn list(value: Option<&String>, flag: &str) -> Result<Vec<String>> {
    let value = value.with_context(|| format!("{flag} needs a comma-separated list"))?;
    Ok(value.split(',').map(str::to_string).collect())
}

fn parse(args: &[String]) -> Result<Args> {
    let mut parsed = Args {
        rounds: 3,
        quick: false,
        threads: 1,
        haproxy: None,
        cases: None,
        peers: None,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--quick" => parsed.quick = true,
            "--rounds" => {
                parsed.rounds = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|n| (1..=100).contains(n))
                    .context("--rounds needs a number from 1 to 100")?
            }
            "--threads" => {
                parsed.threads = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|n| (1..=64).contains(n))
                    .context("--threads needs a number from 1 to 64")?
            }
            "--haproxy" => parsed.haproxy = Some(it.next().context("--haproxy needs a path")?.into()),
            "--cases" => {
                let keys = list(it.next(), "--cases")?;
                if let Some(bad) = keys.iter().find(|k| !CASES.iter().any(|c| c.key == k.as_str())) {
                    let known: Vec<_> = CASES.iter().map(|c| c.key).collect();
                    bail!("no bench case {bad}; the cases are {}", known.join(", "));
                }
                parsed.cases = Some(keys);
            }
            "--peers" => parsed.peers = Some(list(it.next(), "--peers")?),
            other => bail!("unknown bench option {other}; {USAGE}"),
        }
    }
    Ok(parsed)
}

/// Everything a run needs that outlives it.
struct Bench<'a> {
    root: &'a Path,
    dir: PathBuf,
    certs: cert::Certs,
    origin: origin::Origin,
    slow: builtin::Builtin,
    sizes: Sizes,
    ticks: u64,
    threads: usize,
}

impl Bench<'_> {
    /// Busy CPU ticks of the machine and of the bench's own processes (xtask with its built-in
    /// origins and reaped clients, nginx, the proxy).
    fn ticks(&self, proxy: u32) -> Result<(u64, u64)> {
        let nginx = self.origin.pid().map_or(Ok(0), procfs::cpu_ticks)?;
        let ours = procfs::own_and_reaped_ticks()? + nginx + procfs::cpu_ticks(proxy)?;
        Ok((procfs::machine_busy_ticks()?, ours))
    }

    /// `case` against a fresh `peer` process, stopped afterwards; with the CPU (in cores) that
    /// processes outside the bench took meanwhile.
    fn run(&self, peer: &peers::Peer, case: &str, peak: Option<f64>) -> Result<(Outcome, f64)> {
        let port = free_port()?;
        let wiring = Wiring {
            port,
            origin: self.origin.addr,
            slow: self.slow.addr,
            certs: &self.certs,
            threads: self.threads,
        };
        let running = peer.start(&self.dir, &wiring)?;
        let ctx = Ctx {
            target: Target {
                h3load: release_bin(self.root, "h3load"),
                ca: self.certs.ca.clone(),
                port: running.port,
            },
            pid: running.pid(),
            sizes: &self.sizes,
            slow: &self.slow,
            ticks_per_second: self.ticks,
            peak,
        };
        let started = Instant::now();
        let (busy0, ours0) = self.ticks(ctx.pid)?;
        let outcome = cases::run(case, &ctx)?;
        let (busy1, ours1) = self.ticks(ctx.pid)?;
        let others = (busy1 - busy0).saturating_sub(ours1 - ours0) as f64
            / self.ticks as f64
            / started.elapsed().as_secs_f64();
        Ok((outcome, others))
    }
}

/// A port free on 127.0.0.1 for both UDP and TCP (Caddy listens on both; the proxies' connections to
/// the origin take ephemeral TCP ports from the same range).
fn free_port() -> Result<u16> {
    for _ in 0..100 {
        let port = qproxy_tests::ports::free_udp_port(false)?;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no port free for both UDP and TCP on 127.0.0.1")
}

/// CPU (in cores) other processes take while the bench idles, over `window`.
fn others_now(bench: &Bench<'_>, window: Duration) -> Result<f64> {
    let own = || -> Result<(u64, u64)> {
        let nginx = bench.origin.pid().map_or(Ok(0), procfs::cpu_ticks)?;
        Ok((
            procfs::machine_busy_ticks()?,
            procfs::own_and_reaped_ticks()? + nginx,
        ))
    };
    let (busy0, ours0) = own()?;
    std::thread::sleep(window);
    let (busy1, ours1) = own()?;
    Ok((busy1 - busy0).saturating_sub(ours1 - ours0) as f64 / bench.ticks as f64 / window.as_secs_f64())
}

/// Waits (in 0.5 s steps, at most `limit`, taken from `budget`) until processes outside the bench take
/// less than [`BUSY`] of a core.
fn wait_quiet(bench: &Bench<'_>, limit: Duration, budget: &mut Duration) -> Result<()> {
    let until = Instant::now() + limit.min(*budget);
    let started = Instant::now();
    while others_now(bench, Duration::from_millis(500))? > BUSY && Instant::now() < until {}
    *budget = budget.saturating_sub(started.elapsed());
    Ok(())
}

/// Above this CPU (in cores) taken by other processes, a run is done again once (the machine is
/// shared: another build may be running).
const BUSY: f64 = 0.25;

fn summary(o: &Outcome) -> String {
    let mut parts: Vec<String> = o
        .values
        .iter()
        .map(|(k, v)| format!("{k} {}", report::fmt(*v)))
        .collect();
    if o.errors > 0 {
        parts.push(format!("{} errors", o.errors));
    }
    parts.push(o.note.clone());
    parts.join(", ")
}

pub(crate) fn bench(args: &[String]) -> Result<()> {
    let args = parse(args)?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace root")?;
    let started = Instant::now();
    crate::cargo(&[
        "build",
        "--release",
        "--package",
        "qproxy",
        "--package",
        "h3-client",
    ])?;
    // What was built: the commit, "-dirty" when the work tree had changes.
    let commit = std::process::Command::new("git")
        .args([
            "-C",
            &root.display().to_string(),
            "describe",
            "--always",
            "--dirty",
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let dir = std::env::temp_dir().join("qproxy-bench");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let out_dir = root.join("target/bench");
    std::fs::create_dir_all(&out_dir)?;
    let mut notes = Vec::new();
    let (origin, origin_note) = origin::start(&dir)?;
    notes.extend(origin_note);
    let bench = Bench {
        root,
        certs: cert::write(&dir)?,
        origin,
        slow: builtin::Builtin::start()?,
        sizes: Sizes::new(args.quick),
        ticks: procfs::ticks_per_second(),
        threads: args.threads,
        dir,
    };
    let (mut peers, skipped) = peers::find(root, args.haproxy.as_deref());
    if let Some(only) = &args.peers {
        peers.retain(|p| only.iter().any(|n| n == p.kind.name()));
    }
    notes.extend(skipped);
    let gtls = clients::have_gtls();
    if !gtls {
        notes.push("gtlsclient not installed: its cases skipped (apt-get install ngtcp2-client)".into());
    }
    for note in &notes {
        eprintln!("bench: {note}");
    }
    let cases: Vec<_> = CASES
        .iter()
        .filter(|c| gtls || !c.needs_gtls)
        .filter(|c| {
            args.cases
                .as_ref()
                .is_none_or(|only| only.iter().any(|k| k == c.key))
        })
        .collect();
    let total = args.rounds * cases.len() * peers.len();
    eprintln!(
        "bench: {} on origin {} ({}), {} rounds, {total} runs",
        peers
            .iter()
            .map(|p| format!("{} ({})", p.kind.name(), p.version))
            .collect::<Vec<_>>()
            .join(", "),
        bench.origin.addr,
        bench.origin.kind,
        args.rounds
    );
    let mut report = Report {
        peers: peers.iter().map(|p| (p.kind.name(), p.version.clone())).collect(),
        runs: Vec::new(),
        notes,
    };
    let mut k = 0;
    // How long the whole bench may wait for other processes to quieten down.
    let mut quiet_budget = Duration::from_secs(300);
    for round in 1..=args.rounds {
        for case in &cases {
            for peer in &peers {
                k += 1;
                let name = peer.kind.name();
                eprint!("[{k}/{total}] {name} {} round {round} ... ", case.title);
                let peak = report.median(name, "rps_1k");
                let mut t = Instant::now();
                wait_quiet(&bench, Duration::from_secs(20), &mut quiet_budget)?;
                let mut result = bench.run(peer, case.key, peak);
                if matches!(result, Ok((_, others)) if others > BUSY) {
                    eprint!("machine busy, again ... ");
                    wait_quiet(&bench, Duration::from_secs(30), &mut quiet_budget)?;
                    t = Instant::now();
                    result = bench.run(peer, case.key, peak);
                }
                let secs = t.elapsed().as_secs_f64();
                let (outcome, others, failure) = match result {
                    Ok((o, others)) => {
                        eprintln!("{} ({secs:.1} s, other processes {others:.2} CPU)", summary(&o));
                        (o, others, None)
                    }
                    Err(e) => {
                        eprintln!("FAILED: {e:#}");
                        (Outcome::default(), 0.0, Some(format!("{e:#}")))
                    }
                };
                report.runs.push(Run {
                    round,
                    case: case.key,
                    peer: name,
                    values: outcome.values,
                    errors: outcome.errors,
                    note: outcome.note,
                    failure,
                    secs,
                    others,
                });
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let title = format!(
        "cargo xtask bench{}: medians of {} rounds, {} worker thread{} each, origin {}",
        if args.quick { " --quick" } else { "" },
        args.rounds,
        args.threads,
        if args.threads == 1 { "" } else { "s" },
        bench.origin.kind
    );
    let setup = json!({
        "qproxy_commit": commit,
        "rounds": args.rounds,
        "quick": args.quick,
        "threads": args.threads,
        "origin": bench.origin.kind,
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "seconds": elapsed,
        "sizes": {
            "load_secs": bench.sizes.load_secs, "gtls_requests": bench.sizes.gtls_requests,
            "per_conn": bench.sizes.per_conn, "idle_conns": bench.sizes.idle_conns,
            "stream_conns": bench.sizes.stream_conns, "streams_per_conn": bench.sizes.streams_per_conn,
        },
    });
    std::fs::write(
        out_dir.join("bench.json"),
        serde_json::to_string_pretty(&report.json(setup))? + "\n",
    )?;
    std::fs::write(out_dir.join("bench.svg"), svg::chart(&report, &title))?;
    println!("{title}");
    print!("{}", report.table());
    let failed = report.runs.iter().filter(|r| r.failure.is_some()).count();
    println!(
        "{} runs in {:.0} s ({failed} failed); every run in target/bench/bench.json, chart in target/bench/bench.svg",
        report.runs.len(),
        elapsed
    );
    let others: Vec<f64> = report.runs.iter().map(|r| r.others).collect();
    println!(
        "CPU taken by processes outside the bench during the runs: median {:.2}, max {:.2} (of {} cores)",
        report::median(others.clone()).unwrap_or(0.0),
        others.iter().copied().fold(0.0, f64::max),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for note in &report.notes {
        println!("note: {note}");
    }
    Ok(())
}
