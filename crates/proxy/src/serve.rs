//! `qproxy::serve`: a loaded configuration becomes a running proxy — counters, live state, the stats
//! listeners, and the worker, until it stops.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use parking_lot::RwLock;

use crate::config::Config;
use crate::telemetry::counters::ProxyCounters;
use crate::telemetry::stats_listener::{self, StatsInputs};
use crate::upstream::live::Runtime;
use crate::worker::Worker;

pub use crate::worker::Exit;

/// Runs `config` until a stop signal drains it (or `hard-stop-after` / a second signal cuts it short).
/// `path` is the file SIGHUP reloads.
pub fn serve(config: Config, path: Option<PathBuf>) -> anyhow::Result<Exit> {
    if config.global.nbthread > 1 {
        tracing::warn!(
            nbthread = config.global.nbthread,
            "this version runs one worker; nbthread is accepted for compatibility"
        );
    }
    let config = Arc::new(config);
    let counters = Arc::new(qcc::Counters::default());
    let proxy = Arc::new(ProxyCounters::default());
    let runtime = Arc::new(RwLock::new(Arc::new(Runtime::new(&config, None))));
    let sources = StatsInputs {
        layers: counters.clone(),
        proxy: proxy.clone(),
        runtime: runtime.clone(),
    };
    for stats in &config.stats {
        let addr = stats_listener::spawn(stats, sources.clone())
            .with_context(|| format!("stats frontend '{}' on {}", stats.name, stats.addr))?;
        let paths = [&stats.metrics_path, &stats.stats_path];
        let paths: Vec<&str> = paths.iter().filter_map(|p| p.as_deref()).collect();
        tracing::info!(%addr, paths = %paths.join(" "), "stats listener ready");
    }
    let mut worker = Worker::new(config, path, counters, proxy, runtime)?;
    for addr in worker.local_addrs() {
        tracing::info!(%addr, "listening for HTTP/3");
    }
    let exit = worker.run();
    crate::telemetry::log_buffer::flush();
    exit
}
