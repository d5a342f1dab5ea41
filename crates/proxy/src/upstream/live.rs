//! The live state of frontends, backends and servers, shared by the worker (which routes by it), the
//! health checkers (which move servers UP and DOWN) and the stats listener (which shows it).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::config::{Config, Observe, Server};
use crate::telemetry::traffic::Traffic;

/// Counters of one HTTP/3 frontend.
#[derive(Debug)]
pub(crate) struct FrontendRuntime {
    /// Its name.
    pub(crate) name: String,
    /// Its requests.
    pub(crate) traffic: Traffic,
    /// `option jsonlog` (a reload may change it).
    pub(crate) json_log: AtomicBool,
}

/// Consecutive results, for rise/fall and `error-limit`.
#[derive(Debug, Default)]
struct Streaks {
    checks_ok: u32,
    checks_failed: u32,
    errors: u32,
    last_check: String,
}

/// One server: its health and its counters.
#[derive(Debug)]
pub(crate) struct ServerRuntime {
    /// The backend's name.
    pub(crate) backend: String,
    /// Its configuration.
    pub(crate) config: Server,
    /// `backend/server`, as the access log names it.
    pub(crate) label: Arc<str>,
    up: AtomicBool,
    streaks: Mutex<Streaks>,
    /// Its requests.
    pub(crate) traffic: Traffic,
    /// Health checks that passed.
    pub(crate) checks_passed: AtomicU64,
    /// Health checks that failed.
    pub(crate) checks_failed: AtomicU64,
    /// Times it went DOWN.
    pub(crate) went_down: AtomicU64,
    /// Failed connection attempts.
    pub(crate) connect_errors: AtomicU64,
}

/// What live traffic showed about a server (for `observe`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Observed {
    /// A response came (status below 500, or any status under `observe layer4`).
    Fine,
    /// The connection failed or timed out.
    ConnectError,
    /// The response was a 5xx, invalid, or never came.
    ResponseError,
}

impl ServerRuntime {
    fn new(backend: &str, config: Server) -> Self {
        ServerRuntime {
            backend: backend.to_string(),
            label: format!("{backend}/{}", config.name).into(),
            config,
            up: AtomicBool::new(true),
            streaks: Mutex::new(Streaks::default()),
            traffic: Traffic::default(),
            checks_passed: AtomicU64::new(0),
            checks_failed: AtomicU64::new(0),
            went_down: AtomicU64::new(0),
            connect_errors: AtomicU64::new(0),
        }
    }

    /// Its name.
    pub(crate) fn name(&self) -> &str {
        &self.config.name
    }

    /// Its address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.config.addr
    }

    /// Takes traffic.
    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Relaxed)
    }

    /// The last health check's outcome, for humans.
    pub(crate) fn last_check(&self) -> String {
        self.streaks.lock().last_check.clone()
    }

    /// Takes a slot under its `maxconn` for a request (given back by the traffic's `end` or `abandon`);
    /// false when every slot is taken, perhaps by another worker since the balancer looked.
    pub(crate) fn try_begin(&self) -> bool {
        self.traffic.try_begin(u64::from(self.config.options.maxconn))
    }

    /// Below its `maxconn`.
    pub(crate) fn has_room(&self) -> bool {
        let max = self.config.options.maxconn;
        max == 0 || self.traffic.active() < u64::from(max)
    }

    fn set_up(&self, up: bool, reason: &str) {
        if self.up.swap(up, Relaxed) == up {
            return;
        }
        if up {
            tracing::warn!(backend = %self.backend, server = %self.name(), reason, "server is UP");
        } else {
            self.went_down.fetch_add(1, Relaxed);
            tracing::warn!(backend = %self.backend, server = %self.name(), reason, "server is DOWN");
        }
    }

    /// A health check's result: `rise` passes in a row bring it UP, `fall` failures in a row take it DOWN.
    pub(crate) fn report_check(&self, result: Result<String, String>) {
        let options = &self.config.options;
        let mut s = self.streaks.lock();
        match result {
            Ok(info) => {
                self.checks_passed.fetch_add(1, Relaxed);
                s.checks_failed = 0;
                s.checks_ok = s.checks_ok.saturating_add(1);
                s.last_check = format!("passed: {info}");
                if s.checks_ok >= options.rise {
                    s.errors = 0;
                    self.set_up(true, &format!("{} checks passed ({info})", s.checks_ok));
                }
            }
            Err(why) => {
                self.checks_failed.fetch_add(1, Relaxed);
                s.checks_ok = 0;
                s.checks_failed = s.checks_failed.saturating_add(1);
                s.last_check = format!("failed: {why}");
                if s.checks_failed >= options.fall {
                    self.set_up(false, &format!("{} checks failed ({why})", s.checks_failed));
                }
            }
        }
    }

    /// What a request showed; under `observe`, `error-limit` errors in a row take the server DOWN until
    /// health checks bring it back.
    pub(crate) fn observe(&self, what: Observed) {
        if what == Observed::ConnectError {
            self.connect_errors.fetch_add(1, Relaxed);
        }
        let Some(level) = self.config.options.observe else {
            return;
        };
        let error = match (what, level) {
            (Observed::Fine, _) | (Observed::ResponseError, Observe::Layer4) => false,
            (Observed::ConnectError, _) | (Observed::ResponseError, Observe::Layer7) => true,
        };
        let mut s = self.streaks.lock();
        if !error {
            s.errors = 0;
            return;
        }
        s.errors = s.errors.saturating_add(1);
        if s.errors >= self.config.options.error_limit && self.is_up() {
            s.checks_ok = 0;
            self.set_up(false, &format!("{} consecutive errors seen in traffic", s.errors));
        }
    }
}

/// One backend's counters (kept across reloads by name).
#[derive(Debug)]
pub(crate) struct BackendRuntime {
    /// Its name.
    pub(crate) name: String,
    /// Its requests.
    pub(crate) traffic: Traffic,
    /// Requests waiting for a server slot.
    pub(crate) queued: AtomicU64,
    /// Further attempts after a failure.
    pub(crate) retries: AtomicU64,
    /// Of those, sent to another server.
    pub(crate) redispatches: AtomicU64,
}

/// A backend with its servers, as the configuration in force has them.
#[derive(Debug)]
pub(crate) struct BackendView {
    /// Its counters.
    pub(crate) backend: Arc<BackendRuntime>,
    /// Its servers, in configuration order.
    pub(crate) servers: Vec<Arc<ServerRuntime>>,
}

impl BackendView {
    /// Servers UP.
    pub(crate) fn servers_up(&self) -> usize {
        self.servers.iter().filter(|s| s.is_up()).count()
    }

    /// Of those, `backup` servers (or active ones).
    pub(crate) fn servers_up_of(&self, backup: bool) -> usize {
        self.servers
            .iter()
            .filter(|s| s.config.options.backup == backup && s.is_up())
            .count()
    }
}

/// Everything live, for one configuration.
#[derive(Debug)]
pub(crate) struct Runtime {
    /// HTTP/3 frontends, in configuration order.
    pub(crate) frontends: Vec<Arc<FrontendRuntime>>,
    /// Backends, in configuration order.
    pub(crate) backends: Vec<BackendView>,
}

impl Runtime {
    /// The state for `config`. Frontends and backends keep their counters across a reload by name;
    /// servers whose configuration did not change keep their health and counters too.
    pub(crate) fn new(config: &Config, previous: Option<&Runtime>) -> Runtime {
        let old_backend = |name: &str| previous?.backends.iter().find(|b| b.backend.name == name);
        let old_server = |backend: &str, server: &Server| {
            old_backend(backend)?
                .servers
                .iter()
                .find(|s| s.config == *server)
                .cloned()
        };
        let old_frontend = |name: &str| previous?.frontends.iter().find(|f| f.name == name).cloned();
        Runtime {
            frontends: config
                .frontends
                .iter()
                .map(|f| {
                    let runtime = old_frontend(&f.name).unwrap_or_else(|| {
                        Arc::new(FrontendRuntime {
                            name: f.name.clone(),
                            traffic: Traffic::default(),
                            json_log: AtomicBool::default(),
                        })
                    });
                    runtime.json_log.store(f.json_log, Relaxed);
                    runtime
                })
                .collect(),
            backends: config
                .backends
                .iter()
                .map(|b| BackendView {
                    backend: old_backend(&b.name)
                        .map(|v| v.backend.clone())
                        .unwrap_or_else(|| {
                            Arc::new(BackendRuntime {
                                name: b.name.clone(),
                                traffic: Traffic::default(),
                                queued: AtomicU64::new(0),
                                retries: AtomicU64::new(0),
                                redispatches: AtomicU64::new(0),
                            })
                        }),
                    servers: b
                        .servers
                        .iter()
                        .map(|s| {
                            old_server(&b.name, s)
                                .unwrap_or_else(|| Arc::new(ServerRuntime::new(&b.name, s.clone())))
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

/// The runtime of the configuration in force, replaced on reload.
pub(crate) type SharedRuntime = Arc<RwLock<Arc<Runtime>>>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServerOptions;

    fn server(options: ServerOptions) -> ServerRuntime {
        ServerRuntime::new(
            "b",
            Server {
                name: "s".into(),
                addr: "127.0.0.1:1".parse().unwrap(),
                options,
            },
        )
    }

    #[test]
    fn fall_failures_take_it_down_and_rise_passes_bring_it_back() {
        let s = server(ServerOptions {
            check: true,
            rise: 2,
            fall: 3,
            ..ServerOptions::default()
        });
        assert!(s.is_up());
        s.report_check(Err("refused".into()));
        s.report_check(Err("refused".into()));
        s.report_check(Ok("ok".into()));
        s.report_check(Err("refused".into()));
        s.report_check(Err("refused".into()));
        assert!(s.is_up(), "the pass in between restarts the count");
        s.report_check(Err("refused".into()));
        assert!(!s.is_up());
        assert_eq!(s.went_down.load(Relaxed), 1);
        s.report_check(Ok("ok".into()));
        assert!(!s.is_up());
        s.report_check(Ok("ok".into()));
        assert!(s.is_up());
        assert!(s.last_check().starts_with("passed"));
    }

    #[test]
    fn observe_marks_down_after_the_error_limit_and_only_at_its_layer() {
        let s = server(ServerOptions {
            check: true,
            observe: Some(Observe::Layer4),
            error_limit: 3,
            ..ServerOptions::default()
        });
        for _ in 0..5 {
            s.observe(Observed::ResponseError);
        }
        assert!(s.is_up(), "layer4 ignores 5xx");
        s.observe(Observed::ConnectError);
        s.observe(Observed::ConnectError);
        s.observe(Observed::Fine);
        s.observe(Observed::ConnectError);
        s.observe(Observed::ConnectError);
        assert!(s.is_up());
        s.observe(Observed::ConnectError);
        assert!(!s.is_up());
        assert_eq!(s.connect_errors.load(Relaxed), 5);
        let unobserved = server(ServerOptions::default());
        for _ in 0..20 {
            unobserved.observe(Observed::ConnectError);
        }
        assert!(unobserved.is_up());
    }
}
