//! The backend side of the configuration: `backend` sections, their servers, balancing, health checks,
//! queueing and retries, and what a `defaults` section may preset for them.

use std::net::SocketAddr;
use std::time::Duration;

use super::lexer::{addr_arg, duration_arg, need, no_more, Res};
use super::Timeouts;

/// Load-balancing algorithm (`balance ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Balance {
    /// `roundrobin`: smooth weighted round robin.
    RoundRobin,
    /// `leastconn`: the server with the fewest requests in flight per unit of weight.
    LeastConn,
    /// `source`: consistent hash of the client address.
    Source,
    /// `uri [whole]`: consistent hash of the path (with the query string when `whole`).
    Uri {
        /// Hash the query string too.
        whole: bool,
    },
    /// `hdr(NAME)`: consistent hash of a request header; round robin when it is absent.
    Hdr(String),
    /// `random[(N)]`: the least loaded of N random draws (power of N choices; 2 by default).
    Random {
        /// Draws per pick.
        draws: u32,
    },
}

impl Balance {
    fn parse(args: &[String]) -> Res<Balance> {
        let raw = need(args, 1, "an algorithm")?;
        let balance = match raw {
            "roundrobin" | "static-rr" => Balance::RoundRobin,
            "leastconn" => Balance::LeastConn,
            "source" => Balance::Source,
            "uri" => {
                let whole = args.get(2).is_some_and(|a| a == "whole");
                no_more(args, 2 + usize::from(whole))?;
                return Ok(Balance::Uri { whole });
            }
            "random" => Balance::Random { draws: 2 },
            _ if raw.starts_with("hdr(") && raw.ends_with(')') && raw.len() > 5 => {
                Balance::Hdr(raw[4..raw.len() - 1].to_ascii_lowercase())
            }
            _ if raw.starts_with("random(") && raw.ends_with(')') => {
                let n = &raw[7..raw.len() - 1];
                let draws = n
                    .parse()
                    .ok()
                    .filter(|d| (1..=16).contains(d))
                    .ok_or(format!("expected random(N) with N from 1 to 16, found '{raw}'"))?;
                Balance::Random { draws }
            }
            other => {
                return Err(format!(
                    "unknown balance algorithm '{other}'; expected roundrobin, leastconn, source, uri, hdr(NAME) or random(N)"
                ))
            }
        };
        no_more(args, 2)?;
        Ok(balance)
    }
}

/// What passive health checking watches (`observe`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observe {
    /// Connection failures count as errors.
    Layer4,
    /// Connection failures, invalid responses and 5xx statuses count as errors.
    Layer7,
}

/// Per-server options; `default-server` presets them for the servers that follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerOptions {
    /// `weight` (1 to 256, default 1).
    pub weight: u32,
    /// `check`: health-checked.
    pub check: bool,
    /// `inter`: time between two checks (default 2s).
    pub inter: Duration,
    /// `rise`: consecutive successful checks that bring a DOWN server UP (default 2).
    pub rise: u32,
    /// `fall`: consecutive failed checks that take an UP server DOWN (default 3).
    pub fall: u32,
    /// `maxconn`: requests in flight at most (0: no limit); the rest wait in the backend queue.
    pub maxconn: u32,
    /// `maxqueue`: requests this server adds to the backend queue's bound (default 1000 when `maxconn` is set).
    pub maxqueue: u32,
    /// `observe`: passive health checking of live traffic.
    pub observe: Option<Observe>,
    /// `error-limit`: consecutive errors seen by `observe` that mark the server DOWN (default 10).
    pub error_limit: u32,
    /// `backup`: takes traffic only while no active (non-backup) server of its backend is UP.
    pub backup: bool,
    /// `port`: health checks go to this port instead of the server's.
    pub check_port: Option<u16>,
    /// `pool-max-conn`: idle keep-alive connections kept at most (`None`: no cap; the purge trims them).
    pub pool_max_conn: Option<u32>,
    /// `pool-purge-delay`: every this long, half of the idle connections above `pool-low-conn` close
    /// (default 5s).
    pub pool_purge_delay: Duration,
    /// `pool-low-conn`: idle connections the purge leaves (default 0).
    pub pool_low_conn: u32,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            weight: 1,
            check: false,
            inter: Duration::from_secs(2),
            rise: 2,
            fall: 3,
            maxconn: 0,
            maxqueue: 1000,
            observe: None,
            error_limit: 10,
            backup: false,
            check_port: None,
            pool_max_conn: None,
            pool_purge_delay: Duration::from_secs(5),
            pool_low_conn: 0,
        }
    }
}

fn count_arg(args: &[String], i: usize, what: &str, range: std::ops::RangeInclusive<u32>) -> Res<u32> {
    let raw = need(args, i, what)?;
    raw.parse().ok().filter(|n| range.contains(n)).ok_or(format!(
        "expected {what} from {} to {}, found '{raw}'",
        range.start(),
        range.end()
    ))
}

impl ServerOptions {
    /// Reads options from `args[from..]` over the current values.
    pub(super) fn parse(&mut self, args: &[String], from: usize) -> Res<()> {
        let mut j = from;
        while j < args.len() {
            let takes_value = match args[j].as_str() {
                "weight" => {
                    self.weight = count_arg(args, j + 1, "a weight", 1..=256)?;
                    true
                }
                "check" => {
                    self.check = true;
                    false
                }
                "no-check" => {
                    self.check = false;
                    false
                }
                "backup" => {
                    self.backup = true;
                    false
                }
                "no-backup" => {
                    self.backup = false;
                    false
                }
                "pool-max-conn" => {
                    let raw = need(args, j + 1, "a connection count after 'pool-max-conn'")?;
                    self.pool_max_conn = match raw {
                        "-1" => None,
                        _ => Some(count_arg(args, j + 1, "an idle connection count (or -1: no cap)", 0..=1_000_000)?),
                    };
                    true
                }
                "pool-purge-delay" => {
                    self.pool_purge_delay = duration_arg(args, j + 1, "a duration after 'pool-purge-delay'")?;
                    true
                }
                "pool-low-conn" => {
                    self.pool_low_conn = count_arg(args, j + 1, "an idle connection count", 0..=1_000_000)?;
                    true
                }
                "port" => {
                    self.check_port = Some(count_arg(args, j + 1, "a check port", 1..=65535)? as u16);
                    true
                }
                "inter" => {
                    self.inter = duration_arg(args, j + 1, "the check interval")?;
                    if self.inter.is_zero() {
                        return Err("expected a check interval above 0".into());
                    }
                    true
                }
                "rise" => {
                    self.rise = count_arg(args, j + 1, "a rise count", 1..=1000)?;
                    true
                }
                "fall" => {
                    self.fall = count_arg(args, j + 1, "a fall count", 1..=1000)?;
                    true
                }
                "maxconn" => {
                    self.maxconn = count_arg(args, j + 1, "a connection limit", 0..=1_000_000)?;
                    true
                }
                "maxqueue" => {
                    self.maxqueue = count_arg(args, j + 1, "a queue limit", 0..=1_000_000)?;
                    true
                }
                "error-limit" => {
                    self.error_limit = count_arg(args, j + 1, "an error limit", 1..=1000)?;
                    true
                }
                "observe" => {
                    self.observe = Some(match need(args, j + 1, "layer4 or layer7 after 'observe'")? {
                        "layer4" => Observe::Layer4,
                        "layer7" => Observe::Layer7,
                        other => return Err(format!("expected observe layer4 or layer7, found '{other}'")),
                    });
                    true
                }
                "on-error" => {
                    // Only mark-down is implemented; say so rather than act differently.
                    match need(args, j + 1, "an on-error action")? {
                        "mark-down" => true,
                        other => {
                            return Err(format!("on-error '{other}' is not supported; expected on-error mark-down"))
                        }
                    }
                }
                other => {
                    return Err(format!(
                        "unknown server option '{other}'; expected weight, check, inter, rise, fall, port, backup, maxconn, maxqueue, observe, error-limit, on-error, pool-max-conn, pool-purge-delay or pool-low-conn"
                    ))
                }
            };
            j += 1 + usize::from(takes_value);
        }
        Ok(())
    }
}

/// A backend server: `server NAME ADDR:PORT [options]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// Its name.
    pub name: String,
    /// Address and port.
    pub addr: SocketAddr,
    /// Its options.
    pub options: ServerOptions,
}

impl Server {
    /// Where health checks go: its address, on its `port` when it has one.
    pub fn check_addr(&self) -> SocketAddr {
        let port = self.options.check_port.unwrap_or(self.addr.port());
        SocketAddr::new(self.addr.ip(), port)
    }
}

/// `option httpchk [METHOD] URI` with `http-check expect status N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCheck {
    /// Request method (default OPTIONS, as HAProxy).
    pub method: String,
    /// Request target.
    pub uri: String,
    /// Statuses that pass: `http-check expect status N`, else any 2xx or 3xx.
    pub expect_status: Option<u16>,
}

/// `http-reuse`: when a request may go on an idle keep-alive connection that another request used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    /// Every request opens its own connection.
    Never,
    /// The first request of a client connection opens a new one (it may be the one whose failure the
    /// client cannot retry); later ones reuse idle connections (HAProxy's default).
    Safe,
    /// Like `safe`, and first requests reuse connections that already served more than one request.
    Aggressive,
    /// Any request reuses any idle connection.
    Always,
}

/// Backend settings a `defaults` section may preset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSettings {
    /// `balance`.
    pub balance: Balance,
    /// `retries N`: further attempts after a failed connection (default 3).
    pub retries: u32,
    /// `option redispatch`: retries go to another server.
    pub redispatch: bool,
    /// `option httpchk`: HTTP health checks instead of TCP connects.
    pub httpchk: Option<HttpCheck>,
    /// `default-server`.
    pub default_server: ServerOptions,
    /// `option allbackups`: when no active server is UP, every UP backup server takes traffic (else only
    /// the first one).
    pub allbackups: bool,
    /// `http-reuse` (default `safe`).
    pub reuse: Reuse,
}

impl Default for BackendSettings {
    fn default() -> Self {
        BackendSettings {
            balance: Balance::RoundRobin,
            retries: 3,
            redispatch: false,
            httpchk: None,
            default_server: ServerOptions::default(),
            allbackups: false,
            reuse: Reuse::Safe,
        }
    }
}

impl BackendSettings {
    /// Handles a backend keyword a `defaults` section shares; `None` when `args[0]` is not one.
    /// `balance ALGORITHM`.
    pub(super) fn balance(&mut self, args: &[String]) -> Res<()> {
        self.balance = Balance::parse(args)?;
        Ok(())
    }

    /// `http-reuse never|safe|aggressive|always`.
    pub(super) fn http_reuse(&mut self, args: &[String]) -> Res<()> {
        self.reuse = match need(args, 1, "never, safe, aggressive or always")? {
            "never" => Reuse::Never,
            "safe" => Reuse::Safe,
            "aggressive" => Reuse::Aggressive,
            "always" => Reuse::Always,
            other => {
                return Err(format!(
                    "unknown http-reuse mode '{other}'; expected never, safe, aggressive or always"
                ))
            }
        };
        no_more(args, 2)
    }

    /// `retries N`.
    pub(super) fn retries(&mut self, args: &[String]) -> Res<()> {
        self.retries = count_arg(args, 1, "a retry count", 0..=100)?;
        no_more(args, 2)
    }

    /// `option httpchk [[METHOD] URI]`.
    pub(super) fn httpchk(&mut self, args: &[String]) -> Res<()> {
        let (method, uri) = match (args.get(2), args.get(3)) {
            (None, _) => ("OPTIONS".to_string(), "/".to_string()),
            (Some(uri), None) => ("OPTIONS".to_string(), uri.clone()),
            (Some(method), Some(uri)) => {
                no_more(args, 4)?;
                (method.to_ascii_uppercase(), uri.clone())
            }
        };
        if !uri.starts_with('/') {
            return Err(format!("expected the check URI to start with '/', found '{uri}'"));
        }
        let expect_status = self.httpchk.as_ref().and_then(|c| c.expect_status);
        self.httpchk = Some(HttpCheck {
            method,
            uri,
            expect_status,
        });
        Ok(())
    }

    /// `http-check expect status N`.
    pub(super) fn http_check(&mut self, args: &[String]) -> Res<()> {
        if need(args, 1, "'expect'")? != "expect" || need(args, 2, "'status'")? != "status" {
            return Err("expected 'http-check expect status CODE'".into());
        }
        let raw = need(args, 3, "a status code")?;
        let status = raw
            .parse()
            .ok()
            .filter(|s| (100..=599).contains(s))
            .ok_or(format!("expected a status code from 100 to 599, found '{raw}'"))?;
        no_more(args, 4)?;
        let check = self.httpchk.get_or_insert_with(|| HttpCheck {
            method: "OPTIONS".into(),
            uri: "/".into(),
            expect_status: None,
        });
        check.expect_status = Some(status);
        Ok(())
    }
}

/// A backend: a set of HTTP/1.1 servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// Its name.
    pub name: String,
    /// Balancing, retries, checks.
    pub settings: BackendSettings,
    /// Its servers.
    pub servers: Vec<Server>,
    /// Timeouts (from `defaults`, then its own).
    pub timeouts: Timeouts,
    /// `option forwardfor`.
    pub forwardfor: bool,
}

impl Backend {
    /// How long a request may wait in the queue: `timeout queue`, else `timeout connect` (as HAProxy).
    pub fn queue_timeout(&self) -> Duration {
        self.timeouts.queue.unwrap_or(self.timeouts.connect)
    }

    /// How long one health check may take: `timeout check`, else the server's `inter`.
    pub fn check_timeout(&self, server: &Server) -> Duration {
        self.timeouts.check.unwrap_or(server.options.inter)
    }

    /// Requests the backend queue holds at most: the sum of `maxqueue` over servers with `maxconn`.
    pub fn queue_limit(&self) -> usize {
        self.servers
            .iter()
            .filter(|s| s.options.maxconn > 0)
            .map(|s| s.options.maxqueue as usize)
            .sum()
    }

    /// `server NAME ADDR:PORT [options]`.
    pub(super) fn server_line(&mut self, args: &[String]) -> Res<()> {
        let name = need(args, 1, "a server name")?.to_string();
        if self.servers.iter().any(|s| s.name == name) {
            return Err(format!(
                "server '{name}' is already defined in backend '{}'",
                self.name
            ));
        }
        let addr = addr_arg(need(args, 2, "the server address")?, "the server address")?;
        let mut options = self.settings.default_server.clone();
        options.parse(args, 3)?;
        if options.observe.is_some() && !options.check {
            return Err(
                "'observe' marks a server DOWN and only health checks bring it back: add 'check'".into(),
            );
        }
        self.servers.push(Server { name, addr, options });
        Ok(())
    }
}
