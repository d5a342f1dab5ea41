//! `qproxy::serve`: a loaded configuration becomes a running proxy. The calling thread is the
//! supervisor: it binds every worker's sockets, starts the workers (one thread each), the stats
//! listeners and the health checks, and then only waits, for signals and for workers to end. Whatever
//! must happen once for the whole process happens here, once: a reload reads the file and starts the
//! health checks, then every worker takes the result; a stop signal computes one `hard-stop-after`
//! deadline for all.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::{anyhow, Context};
use crossbeam_channel::Receiver;
use mio::{Events, Interest, Poll, Token, Waker};
use parking_lot::RwLock;
use ring::rand::SecureRandom;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use crate::config::Config;
use crate::frontend::cid::CidLayout;
use crate::frontend::retry_token::RetryTokens;
use crate::frontend::stateless_reset::ResetKey;
use crate::telemetry::counters::WorkerCounters;
use crate::telemetry::stats_listener::{self, StatsInputs};
use crate::upstream::health::HealthChecks;
use crate::upstream::live::{Runtime, SharedRuntime};
use crate::worker::inbox::{Control, Mailboxes};
use crate::worker::limit::SharedLimits;
use crate::worker::listener::bind_all;
use crate::worker::{Worker, WorkerSetup};

pub use crate::worker::Exit;

const SIGNALS: Token = Token(0);
/// A worker ended (its result is on the channel).
const ENDED: Token = Token(1);

/// Runs `config` until a stop signal drains it (or `hard-stop-after` / a second signal cuts it short).
/// `path` is the file SIGHUP reloads.
pub fn serve(config: Config, path: Option<PathBuf>) -> anyhow::Result<Exit> {
    let workers = config.global.workers();
    let config = Arc::new(config);
    let cids = Arc::new(CidLayout::new(
        config.global.server_id.as_deref().map(|id| (id, 0)),
        config.global.quic_lb_key.as_ref().map(|k| &k.0),
        workers,
    ));
    // Before anything can be seen from outside (the stats port, the listeners): a SIGHUP or SIGTERM
    // that comes as soon as the stats port answers is queued for the loop below, never the default
    // action (which ends the process).
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    crate::telemetry::log_ship::start(&config.global.logs).context("opening the log targets")?;
    let runtime = Arc::new(Runtime::new(&config, None));
    let shared: SharedRuntime = Arc::new(RwLock::new(runtime.clone()));
    let counters: Arc<[WorkerCounters]> = (0..workers).map(|_| WorkerCounters::default()).collect();
    let sources = StatsInputs {
        workers: counters.clone(),
        runtime: shared.clone(),
    };
    for stats in &config.stats {
        let addr = stats_listener::spawn(stats, sources.clone())
            .with_context(|| format!("stats frontend '{}' on {}", stats.name, stats.addr))?;
        let paths = [&stats.metrics_path, &stats.stats_path];
        let paths: Vec<&str> = paths.iter().filter_map(|p| p.as_deref()).collect();
        tracing::info!(%addr, paths = %paths.join(" "), "stats listener ready");
    }
    let sockets = bind_all(&config, &cids)?;
    let addrs: Vec<SocketAddr> = sockets[0]
        .iter()
        .map(std::net::UdpSocket::local_addr)
        .collect::<std::io::Result<_>>()?;
    let polls: Vec<Poll> = (0..workers)
        .map(|_| Poll::new())
        .collect::<std::io::Result<_>>()?;
    let (mailboxes, inboxes) = Mailboxes::new(&polls)?;
    let secret = config.global.cluster_secret.as_ref().map(|s| &s.0[..]);
    let retry_tokens =
        Arc::new(RetryTokens::new(secret).map_err(|_| anyhow!("no random key for Retry tokens"))?);
    let reset_key =
        Arc::new(ResetKey::new(secret).map_err(|_| anyhow!("no random key for stateless resets"))?);
    let limits = SharedLimits::new(&config);
    let mut ticket_key = [0u8; 48];
    ring::rand::SystemRandom::new()
        .fill(&mut ticket_key)
        .map_err(|_| anyhow!("no random TLS ticket key"))?;

    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut signals, SIGNALS, Interest::READABLE)?;
    let waker = Arc::new(Waker::new(poll.registry(), ENDED)?);
    let (ended_tx, ended) = crossbeam_channel::unbounded();
    let (ready_tx, ready) = crossbeam_channel::unbounded();
    let mut threads = Vec::with_capacity(workers);
    for (index, ((poll, sockets), inbox)) in polls.into_iter().zip(sockets).zip(inboxes).enumerate() {
        let setup = WorkerSetup {
            index,
            poll,
            sockets,
            inbox,
            mailboxes: mailboxes.clone(),
            config: config.clone(),
            runtime: runtime.clone(),
            cids: cids.clone(),
            retry_tokens: retry_tokens.clone(),
            reset_key: reset_key.clone(),
            ticket_key,
            counters: counters[index].clone(),
            limits: limits.clone(),
        };
        let (ended_tx, ready_tx, waker) = (ended_tx.clone(), ready_tx.clone(), waker.clone());
        let thread = std::thread::Builder::new()
            .name(format!("qproxy-worker-{index}"))
            .spawn(move || {
                let result = match Worker::new(setup) {
                    Ok(mut worker) => {
                        let _ = ready_tx.send(Ok(()));
                        worker.run()
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ended_tx.send(result);
                let _ = waker.wake();
            })
            .context("starting a worker thread")?;
        threads.push(thread);
    }
    drop(ready_tx);
    let started: anyhow::Result<()> = (0..workers).try_for_each(|_| {
        ready
            .recv()
            .map_err(|_| anyhow!("a worker thread died while starting"))?
    });
    let mut supervisor = Supervisor {
        health: None,
        config,
        path,
        runtime,
        shared,
        mailboxes,
        limits,
        threads,
        ended,
        running: workers,
    };
    if let Err(e) = started {
        supervisor.order_all(|| Control::Force);
        supervisor.join();
        return Err(e);
    }
    let health =
        HealthChecks::start(&supervisor.config, &supervisor.runtime).context("starting health checks");
    match health {
        Ok(h) => supervisor.health = Some(h),
        Err(e) => {
            supervisor.order_all(|| Control::Force);
            supervisor.join();
            return Err(e);
        }
    }
    for addr in addrs {
        tracing::info!(%addr, workers, "listening for HTTP/3");
    }
    let exit = supervisor.wait(&mut poll, &mut signals);
    crate::telemetry::log_buffer::flush();
    crate::telemetry::log_ship::drain();
    exit
}

/// The supervisor's state while the workers run.
struct Supervisor {
    config: Arc<Config>,
    path: Option<PathBuf>,
    runtime: Arc<Runtime>,
    shared: SharedRuntime,
    /// Dropped (stopping every checker) when the supervisor returns, or replaced on reload.
    health: Option<HealthChecks>,
    mailboxes: Arc<Mailboxes>,
    limits: Arc<SharedLimits>,
    threads: Vec<JoinHandle<()>>,
    ended: Receiver<anyhow::Result<Exit>>,
    running: usize,
}

impl Supervisor {
    /// Until every worker has ended: how the proxy ends (an error of any worker, else forced if any
    /// worker was forced).
    fn wait(&mut self, poll: &mut Poll, signals: &mut Signals) -> anyhow::Result<Exit> {
        let mut events = Events::with_capacity(8);
        let (mut stopping, mut forced, mut failed) = (false, false, None);
        while self.running > 0 {
            if let Err(e) = poll.poll(&mut events, None) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                failed.get_or_insert(anyhow::Error::from(e));
                self.order_all(|| Control::Force);
                break;
            }
            for signal in signals.pending() {
                match signal {
                    SIGHUP => self.reload(),
                    _ if stopping => {
                        tracing::warn!("second stop signal: closing every connection now");
                        self.order_all(|| Control::Force);
                    }
                    _ => {
                        stopping = true;
                        let hard_stop = self.config.global.hard_stop_after.map(|d| Instant::now() + d);
                        self.order_all(|| Control::Stop { hard_stop });
                    }
                }
            }
            while let Ok(result) = self.ended.try_recv() {
                self.running -= 1;
                match result {
                    Ok(Exit::Graceful) => {}
                    Ok(Exit::Forced) => forced = true,
                    Err(e) => {
                        tracing::error!(error = %e, "a worker failed: stopping the others");
                        failed.get_or_insert(e);
                        self.order_all(|| Control::Force);
                    }
                }
            }
        }
        self.join();
        match failed {
            Some(e) => Err(e),
            None if forced => Ok(Exit::Forced),
            None => Ok(Exit::Graceful),
        }
    }

    fn order_all(&self, order: impl Fn() -> Control) {
        for worker in 0..self.mailboxes.len() {
            self.mailboxes.order(worker, order());
        }
    }

    fn join(&mut self) {
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }

    /// SIGHUP: read the configuration again, for new requests. Listeners, TLS, the worker count and the
    /// connection ID layout stay as they are.
    fn reload(&mut self) {
        let Some(path) = self.path.clone() else {
            tracing::warn!("SIGHUP: no configuration file to reload");
            return;
        };
        let new = match Config::load(&path) {
            Ok(new) => new,
            Err(e) => {
                tracing::error!("SIGHUP: {e}; keeping the running configuration");
                return;
            }
        };
        let fixed = |c: &Config| {
            let binds: Vec<_> = c.frontends.iter().map(|f| f.binds.clone()).collect();
            let g = &c.global;
            (
                binds,
                g.workers(),
                g.server_id.clone(),
                g.quic_lb_key.clone(),
                g.cluster_secret.clone(),
                g.logs.clone(),
                g.kernel_steering,
                g.udp_gso,
            )
        };
        if fixed(&new) != fixed(&self.config) {
            tracing::warn!(
                "SIGHUP: listener changes (binds, nbthread, server-id, quic-lb-key, cluster-secret, log targets, UDP settings) need a restart; keeping the running configuration"
            );
            return;
        }
        let runtime = Arc::new(Runtime::new(&new, Some(&self.runtime)));
        let health = match HealthChecks::start(&new, &runtime) {
            Ok(h) => h,
            Err(e) => {
                tracing::error!("SIGHUP: starting health checks: {e}; keeping the running configuration");
                return;
            }
        };
        let checks = health.checked();
        self.health = Some(health);
        *self.shared.write() = runtime.clone();
        self.limits.reload(&new);
        self.runtime = runtime;
        self.config = Arc::new(new);
        self.order_all(|| Control::Reload {
            config: self.config.clone(),
            runtime: self.runtime.clone(),
        });
        tracing::info!(path = %path.display(), checks, "configuration reloaded");
    }
}
