//! The measurements, one function per case, each against a freshly started proxy: what it runs, and
//! what it computes from the client's report and the proxy's /proc figures.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::builtin::{Builtin, BIG};
use super::clients::{gtls, num, Target};
use super::procfs::{cpu_ticks, rss_kib, thread_ticks};

/// The name qproxy gives its worker threads (then the worker's index).
const WORKER_THREAD: &str = "qproxy-worker-";

/// Counts and durations, full or `--quick`.
pub(crate) struct Sizes {
    pub(crate) load_secs: f64,
    pub(crate) gtls_requests: usize,
    pub(crate) per_conn: u64,
    pub(crate) idle_conns: usize,
    pub(crate) stream_conns: usize,
    pub(crate) streams_per_conn: usize,
}

impl Sizes {
    pub(crate) fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                load_secs: 1.0,
                gtls_requests: 500,
                per_conn: 100,
                idle_conns: 100,
                stream_conns: 10,
                streams_per_conn: 10,
            }
        } else {
            Sizes {
                load_secs: 5.0,
                gtls_requests: 5000,
                per_conn: 1000,
                idle_conns: 1000,
                stream_conns: 50,
                streams_per_conn: 20,
            }
        }
    }
}

/// One case.
#[derive(Clone, Copy)]
pub(crate) struct Case {
    pub(crate) key: &'static str,
    pub(crate) title: &'static str,
    pub(crate) needs_gtls: bool,
}

pub(crate) const CASES: [Case; 8] = [
    Case {
        key: "get1k",
        title: "1 KiB GET (h3load)",
        needs_gtls: false,
    },
    Case {
        key: "get1k_idle",
        title: "1 KiB GET beside idle connections",
        needs_gtls: false,
    },
    Case {
        key: "get1k_gtls",
        title: "1 KiB GET (gtlsclient)",
        needs_gtls: true,
    },
    Case {
        key: "latency",
        title: "latency at half peak",
        needs_gtls: false,
    },
    Case {
        key: "get100m",
        title: "100 MiB GET (gtlsclient)",
        needs_gtls: true,
    },
    Case {
        key: "per_conn",
        title: "one GET per connection",
        needs_gtls: false,
    },
    Case {
        key: "idle",
        title: "idle connections",
        needs_gtls: false,
    },
    Case {
        key: "streams",
        title: "open streams",
        needs_gtls: false,
    },
];

/// What one run measured: metric keys (see `report::METRICS`) with values, errors, and a short note.
#[derive(Default)]
pub(crate) struct Outcome {
    pub(crate) values: Vec<(&'static str, f64)>,
    pub(crate) errors: u64,
    pub(crate) note: String,
}

pub(crate) struct Ctx<'a> {
    pub(crate) target: Target,
    pub(crate) pid: u32,
    pub(crate) sizes: &'a Sizes,
    pub(crate) slow: &'a Builtin,
    pub(crate) ticks_per_second: u64,
    /// The proxy's median 1 KiB req/s so far (for the latency case).
    pub(crate) peak: Option<f64>,
}

impl Ctx<'_> {
    /// CPU µs the proxy spent while `f` ran (plus 200 ms for what it finishes after the client), and
    /// how it spread over qproxy's workers (`workers 52/48 %`, empty with one worker or another proxy).
    fn cpu_us<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<(T, f64, String)> {
        let before = cpu_ticks(self.pid)?;
        let workers_before = thread_ticks(self.pid, WORKER_THREAD)?;
        let value = f()?;
        std::thread::sleep(Duration::from_millis(200));
        let ticks = cpu_ticks(self.pid)?.saturating_sub(before);
        let workers = thread_ticks(self.pid, WORKER_THREAD)?;
        let spent: Vec<u64> = workers
            .iter()
            .map(|(name, t)| {
                let was = workers_before.iter().find(|(n, _)| n == name).map_or(0, |w| w.1);
                t.saturating_sub(was)
            })
            .collect();
        let total: u64 = spent.iter().sum();
        let spread = if spent.len() > 1 && total > 0 {
            let shares: Vec<String> = spent
                .iter()
                .map(|t| format!("{:.0}", *t as f64 * 100.0 / total as f64))
                .collect();
            format!(", workers {} %", shares.join("/"))
        } else {
            String::new()
        };
        Ok((value, ticks as f64 * 1e6 / self.ticks_per_second as f64, spread))
    }
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

pub(crate) fn run(case: &str, ctx: &Ctx<'_>) -> Result<Outcome> {
    // A first request: the proxy answers, and its first-connection setup is out of the figures.
    ctx.target
        .load(&args(&["-n", "1", "/1k"]), Duration::from_secs(10))
        .and_then(|v| match num(&v, "requests") as u64 {
            1 => Ok(()),
            _ => bail!("the warm-up request failed: {v}"),
        })
        .context("warm-up request")?;
    match case {
        "get1k" => get1k(ctx),
        "get1k_idle" => get1k_idle(ctx),
        "get1k_gtls" => get1k_gtls(ctx),
        "latency" => latency(ctx),
        "get100m" => get100m(ctx),
        "per_conn" => per_conn(ctx),
        "idle" => idle(ctx),
        "streams" => streams(ctx),
        other => bail!("unknown case {other}"),
    }
}

/// 4 connections × 16 streams of 1 KiB GETs for the load time: req/s, proxy CPU per request.
fn get1k(ctx: &Ctx<'_>) -> Result<Outcome> {
    let (rps, cpu, mut outcome) = load_1k(ctx)?;
    outcome.values = vec![("rps_1k", rps), ("cpu_1k", cpu)];
    Ok(outcome)
}

/// The 1 KiB load while the idle case's N connections stay open beside it, as browsers keep theirs:
/// what each open connection adds to the cost of serving the busy ones.
fn get1k_idle(ctx: &Ctx<'_>) -> Result<Outcome> {
    let n = ctx.sizes.idle_conns;
    let limit = Duration::from_secs(90);
    let mut hold = ctx
        .target
        .hold(&args(&["-c", &n.to_string(), "-m", "0", "/1k"]), limit)?;
    let open = num(&hold.next(limit)?, "connections");
    let measured = load_1k(ctx);
    hold.step()?;
    let _ = hold.next(Duration::from_secs(20));
    let (rps, cpu, mut outcome) = measured?;
    if open < n as f64 {
        bail!("{open} of {n} idle connections opened");
    }
    outcome.values = vec![("rps_1k_idle", rps), ("cpu_1k_idle", cpu)];
    outcome.note = format!("{open} idle connections, {}", outcome.note);
    Ok(outcome)
}

/// The 1 KiB h3load run: req/s, CPU µs per request, and its errors and note.
fn load_1k(ctx: &Ctx<'_>) -> Result<(f64, f64, Outcome)> {
    let secs = ctx.sizes.load_secs.to_string();
    let a = args(&["-c", "4", "-m", "16", "-d", &secs, "--threads", "2", "/1k"]);
    let limit = Duration::from_secs_f64(ctx.sizes.load_secs + 30.0);
    let (v, cpu, spread) = ctx.cpu_us(|| ctx.target.load(&a, limit))?;
    let requests = num(&v, "requests");
    if requests == 0.0 {
        bail!("no request completed: {v}");
    }
    let outcome = Outcome {
        values: Vec::new(),
        errors: num(&v, "errors") as u64,
        note: format!("{requests} requests, p50 {} µs{spread}", num(&v, "p50_us")),
    };
    Ok((num(&v, "req_per_s"), cpu / requests, outcome))
}

/// 4 gtlsclients × N 1 KiB GETs each, as ../shared/peers/README.md measured: req/s, CPU per request.
fn get1k_gtls(ctx: &Ctx<'_>) -> Result<Outcome> {
    let n = ctx.sizes.gtls_requests;
    let (run, cpu, spread) =
        ctx.cpu_us(|| gtls(ctx.target.port, 4, n, "/1k", &[], Duration::from_secs(120)))?;
    if run.ok == 0 {
        bail!("no 200 from gtlsclient: {}", run.failure.unwrap_or_default());
    }
    Ok(Outcome {
        values: vec![
            ("rps_1k_gtls", run.ok as f64 / run.elapsed.as_secs_f64()),
            ("cpu_1k_gtls", cpu / run.ok as f64),
        ],
        errors: (run.expected - run.ok) as u64,
        note: format!("{} of {} 200s{spread}", run.ok, run.expected),
    })
}

/// h3load paced at half the proxy's median 1 KiB req/s: p50/p90/p99 from sending the request head to
/// the end of the body.
fn latency(ctx: &Ctx<'_>) -> Result<Outcome> {
    let peak = ctx.peak.context("no 1 KiB req/s measured for this proxy yet")?;
    let rate = (peak / 2.0).max(1.0);
    let secs = ctx.sizes.load_secs.to_string();
    let rate_s = format!("{rate:.0}");
    let a = args(&[
        "-c",
        "4",
        "-m",
        "16",
        "-d",
        &secs,
        "--rate",
        &rate_s,
        "--threads",
        "2",
        "/1k",
    ]);
    let v = ctx
        .target
        .load(&a, Duration::from_secs_f64(ctx.sizes.load_secs + 30.0))?;
    Ok(Outcome {
        values: vec![
            ("p50_half", num(&v, "p50_us")),
            ("p90_half", num(&v, "p90_us")),
            ("p99_half", num(&v, "p99_us")),
        ],
        errors: num(&v, "errors") as u64,
        note: format!("paced at {rate:.0}/s, got {:.0}/s", num(&v, "req_per_s")),
    })
}

/// One 100 MiB GET with gtlsclient: MB/s (10^6 bytes), proxy CPU ms per MB.
fn get100m(ctx: &Ctx<'_>) -> Result<Outcome> {
    let flags = ["--max-data=64M", "--max-stream-data-bidi-local=32M"];
    let (run, cpu, _) =
        ctx.cpu_us(|| gtls(ctx.target.port, 1, 1, "/100m", &flags, Duration::from_secs(120)))?;
    if run.ok != 1 || run.failure.is_some() {
        bail!("the download failed: {}", run.failure.unwrap_or_default());
    }
    let mb = BIG as f64 / 1e6;
    Ok(Outcome {
        values: vec![
            ("mbps_100m", mb / run.elapsed.as_secs_f64()),
            ("cpu_per_mb", cpu / 1e3 / mb),
        ],
        errors: 0,
        note: format!("{:.2} s", run.elapsed.as_secs_f64()),
    })
}

/// N connections, 16 at a time, one 1 KiB GET each (a full handshake each): proxy CPU per connection.
fn per_conn(ctx: &Ctx<'_>) -> Result<Outcome> {
    let n = ctx.sizes.per_conn.to_string();
    let a = args(&["-c", "16", "-m", "1", "--per-connection", "1", "-n", &n, "/1k"]);
    let (v, cpu, spread) = ctx.cpu_us(|| ctx.target.load(&a, Duration::from_secs(120)))?;
    let conns = num(&v, "connections");
    if conns == 0.0 {
        bail!("no connection: {v}");
    }
    Ok(Outcome {
        values: vec![("cpu_per_conn", cpu / conns)],
        errors: num(&v, "errors") as u64,
        note: format!(
            "{conns} connections, {:.0} conn/s{spread}",
            conns / num(&v, "elapsed_s")
        ),
    })
}

fn wait_rss(pid: u32, settle: Duration) -> Result<u64> {
    std::thread::sleep(settle);
    rss_kib(pid)
}

/// N connections that stay idle (h3load keeps them alive with PINGs): the proxy's RSS growth per
/// connection, in KiB.
fn idle(ctx: &Ctx<'_>) -> Result<Outcome> {
    let n = ctx.sizes.idle_conns;
    let before = wait_rss(ctx.pid, Duration::from_millis(500))?;
    let limit = Duration::from_secs(90);
    let mut hold = ctx
        .target
        .hold(&args(&["-c", &n.to_string(), "-m", "0", "/1k"]), limit)?;
    let phase = hold.next(limit)?;
    let open = num(&phase, "connections");
    let after = wait_rss(ctx.pid, Duration::from_secs(1))?;
    hold.step()?;
    let _ = hold.next(Duration::from_secs(20));
    if open == 0.0 {
        bail!("no connection opened: {phase}");
    }
    Ok(Outcome {
        values: vec![("rss_idle_conn", after.saturating_sub(before) as f64 / open)],
        errors: n as u64 - open as u64,
        note: format!("{open} connections, RSS {before} -> {after} KiB"),
    })
}

/// C connections with S requests each on `/slow`, which the built-in origin holds until released:
/// the proxy's RSS growth per open request stream (each with its origin connection), over the same
/// connections idle, in KiB. Sampled once the origin holds every request.
fn streams(ctx: &Ctx<'_>) -> Result<Outcome> {
    let (c, s) = (ctx.sizes.stream_conns, ctx.sizes.streams_per_conn);
    let limit = Duration::from_secs(90);
    let a = args(&["-c", &c.to_string(), "-m", &s.to_string(), "/slow"]);
    let mut hold = ctx.target.hold(&a, limit)?;
    let result = (|| -> Result<Outcome> {
        hold.next(limit)?;
        let idle = wait_rss(ctx.pid, Duration::from_secs(1))?;
        hold.step()?;
        let sent = num(&hold.next(limit)?, "streams") as u64;
        let until = Instant::now() + Duration::from_secs(15);
        while ctx.slow.open_slow() < sent && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        let held = ctx.slow.open_slow().min(sent);
        let open = wait_rss(ctx.pid, Duration::from_millis(500))?;
        if held == 0 {
            bail!("no request reached the origin ({sent} sent)");
        }
        Ok(Outcome {
            values: vec![("rss_stream", open.saturating_sub(idle) as f64 / held as f64)],
            errors: (c * s) as u64 - held,
            note: format!(
                "{held} of {} streams held at the origin, RSS {idle} -> {open} KiB",
                c * s
            ),
        })
    })();
    ctx.slow.release();
    let _ = hold.step();
    let _ = hold.next(Duration::from_secs(20));
    result
}
