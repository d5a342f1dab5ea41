//! Signals: graceful stop (GOAWAY, drain, `hard-stop-after`), the forced stop, and SIGHUP reload.

use super::*;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use signal_hook::consts::SIGHUP;

use crate::config::Config;
use crate::upstream::balance::Balancer;
use crate::upstream::health::HealthChecks;
use crate::upstream::live::Runtime;
use crate::upstream::Termination;

impl Worker {
    pub(super) fn on_signals(&mut self) -> Result<Option<Exit>> {
        let pending: Vec<i32> = self.signals.pending().collect();
        for signal in pending {
            match signal {
                SIGHUP => self.reload(),
                _ if self.run != Run::Serving => {
                    tracing::warn!("second stop signal: closing every connection now");
                    self.force_close();
                    return Ok(Some(Exit::Forced));
                }
                _ => self.begin_stop(Instant::now()),
            }
        }
        Ok(None)
    }

    /// Graceful stop: GOAWAY to every client, no new connection, requests in flight finish.
    pub(crate) fn begin_stop(&mut self, now: Instant) {
        let hard = self.config.global.hard_stop_after.map(|d| now + d);
        tracing::info!(connections = self.slots.len(), "stopping: GOAWAY to every client");
        self.run = Run::Draining { hard_stop: hard };
        self.pool.clear();
        for (index, slot) in self.slots.iter_mut() {
            if let ServerConn::Live(c) = &mut slot.conn {
                c.shutdown(now);
            }
            mark_dirty(&mut self.dirty, slot, index);
        }
        self.process_dirty(now);
    }

    pub(super) fn force_close(&mut self) {
        let now = Instant::now();
        let indexes: Vec<usize> = self.slots.iter().map(|(i, _)| i).collect();
        for index in indexes {
            if let Some(ServerConn::Live(c)) = self.slots.get_mut(index).map(|s| &mut s.conn) {
                c.close(qcc::codes::H3_NO_ERROR, "shutting down");
            }
            self.release(index, now);
            self.transmit(index, now);
        }
        let rest: Vec<usize> = self.exchanges.iter().map(|(i, _)| i).collect();
        for ex in rest {
            self.end_exchange(ex, Termination::ClientAborted, false);
        }
        let queued: Vec<ConnHandle> = self
            .queues
            .values()
            .flat_map(|q| q.iter().map(|e| e.conn()))
            .collect();
        for key in queued {
            self.unqueue(key, None);
        }
        self.slots.clear();
        self.pool.clear();
    }

    /// SIGHUP: read the configuration again for new requests. Listeners and TLS stay as they are.
    pub(super) fn reload(&mut self) {
        let Some(path) = self.config_path.clone() else {
            tracing::warn!("SIGHUP: no configuration file to reload");
            return;
        };
        match Config::load(&path) {
            Ok(new) => {
                let binds = |c: &Config| c.frontends.iter().map(|f| f.binds.clone()).collect::<Vec<_>>();
                if binds(&new) != binds(&self.config) {
                    tracing::warn!(
                        "SIGHUP: listener changes need a restart; keeping the running configuration"
                    );
                    return;
                }
                let runtime = Arc::new(Runtime::new(&new, Some(&self.runtime)));
                let health = match HealthChecks::start(&new, &runtime) {
                    Ok(h) => h,
                    Err(e) => {
                        tracing::error!(
                            "SIGHUP: starting health checks: {e}; keeping the running configuration"
                        );
                        return;
                    }
                };
                self.balancers = new
                    .backends
                    .iter()
                    .map(|b| Balancer::new(b, self.rng.u64(..)))
                    .collect();
                self.health = health;
                *self.shared.write() = runtime.clone();
                self.runtime = runtime;
                self.config = Arc::new(new);
                tracing::info!(path = %path.display(), checks = self.health.checked(), "configuration reloaded");
                // Queued requests of a backend that is gone get their 503 now; the others may fit.
                let names: Vec<String> = self.queues.keys().cloned().collect();
                for name in names {
                    self.drain_queue(&name, Instant::now());
                }
            }
            Err(e) => tracing::error!("SIGHUP: {e}; keeping the running configuration"),
        }
    }
}
