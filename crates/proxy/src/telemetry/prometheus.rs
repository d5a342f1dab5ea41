//! The Prometheus text exposition (format 0.0.4), written from the family table
//! ([`super::families::FAMILIES`]).

use std::fmt::Write;

use crate::telemetry::counters::StatusClass;
use crate::telemetry::families::{proxy_label, server_label, Family, Inputs, Source, TrafficValue, FAMILIES};
use crate::telemetry::traffic::{TrafficSnapshot, RESPONSE_TIME_BUCKETS};
use crate::upstream::live::Runtime;

/// Prometheus text being written: one family (HELP, TYPE, samples) at a time.
struct Exposition {
    out: String,
}

impl Exposition {
    fn family(&mut self, name: &str, f: &Family, help: &str) {
        let _ = writeln!(
            self.out,
            "# HELP {name} {help}\n# TYPE {name} {}",
            f.kind.as_str()
        );
    }

    fn sample(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) {
        if labels.is_empty() {
            let _ = writeln!(self.out, "{name} {value}");
        } else {
            let _ = writeln!(self.out, "{name}{{{labels}}} {value}");
        }
    }

    /// A per-object family for the objects of one kind (`labels` identify each object).
    fn traffic(&mut self, name: &str, value: &TrafficValue, objects: &[(String, TrafficSnapshot)]) {
        for (labels, t) in objects {
            match value {
                TrafficValue::ByClass => {
                    for class in StatusClass::ALL {
                        let labels = format!("{labels},code=\"{}\"", class.label());
                        self.sample(name, &labels, t.requests[class as usize]);
                    }
                }
                TrafficValue::Value(get) => self.sample(name, labels, get(t)),
                TrafficValue::ResponseTime => {
                    let mut cumulative = 0;
                    for (i, count) in t.response_time_buckets.iter().enumerate() {
                        cumulative += count;
                        let le = RESPONSE_TIME_BUCKETS
                            .get(i)
                            .map_or("+Inf".to_string(), |b| b.to_string());
                        self.sample(
                            &format!("{name}_bucket"),
                            &format!("{labels},le=\"{le}\""),
                            cumulative,
                        );
                    }
                    self.sample(&format!("{name}_sum"), labels, t.response_time_sum);
                    self.sample(&format!("{name}_count"), labels, cumulative);
                }
            }
        }
    }
}

/// Each kind of object with its objects' labels and traffic.
fn objects(runtime: &Runtime) -> [(&'static str, Vec<(String, TrafficSnapshot)>); 3] {
    let servers = runtime.backends.iter().flat_map(|b| b.servers.iter());
    [
        (
            "frontend",
            runtime
                .frontends
                .iter()
                .map(|f| (proxy_label(&f.name), f.traffic.snapshot()))
                .collect(),
        ),
        (
            "backend",
            runtime
                .backends
                .iter()
                .map(|b| (proxy_label(&b.backend.name), b.backend.traffic.snapshot()))
                .collect(),
        ),
        (
            "server",
            servers.map(|s| (server_label(s), s.traffic.snapshot())).collect(),
        ),
    ]
}

/// Every label of `labels` (`a="x",b="y"`) is one the family's row declares (or an object's own).
fn declares(f: &Family, labels: &str) -> bool {
    labels
        .split(',')
        .filter_map(|l| l.split_once('=').map(|(name, _)| name))
        .all(|name| name == "proxy" || name == "server" || f.labels.contains(&name))
}

/// The whole exposition.
pub(crate) fn render(inputs: &Inputs<'_>) -> String {
    let mut e = Exposition {
        out: String::with_capacity(16 * 1024),
    };
    let objects = objects(inputs.runtime);
    for f in FAMILIES {
        match &f.source {
            Source::Values(get) => {
                e.family(f.name, f, f.help);
                for (labels, value) in get(inputs) {
                    debug_assert!(
                        declares(f, &labels),
                        "{}: labels {labels} not in its table row",
                        f.name
                    );
                    e.sample(f.name, &labels, value);
                }
            }
            Source::Traffic(value) => {
                for (kind, objects) in &objects {
                    let name = f.name.replace("KIND", kind);
                    e.family(&name, f, &f.help.replace("KIND", kind));
                    e.traffic(&name, value, objects);
                }
            }
        }
    }
    e.out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::telemetry::counters::{ProxyCounters, WorkerFigures};
    use qcc::Snapshot;

    #[test]
    fn renders_every_family_once_with_help_and_type() {
        let p = ProxyCounters::default();
        p.count_request(Some(503), 1, 2);
        p.count_request(None, 0, 0);
        let config = Config::parse(
            std::path::Path::new("t.cfg"),
            &format!(
                "frontend web\n bind quic4@127.0.0.1:1 ssl crt {}\n default_backend app\nbackend app\n server \"a\\\"b\" 127.0.0.1:1\n",
                std::env::current_exe().unwrap().display()
            ),
        )
        .unwrap();
        let runtime = Runtime::new(&config, None);
        runtime.backends[0].servers[0].traffic.begin();
        runtime.backends[0].servers[0].traffic.end(
            Some(200),
            (5, 7),
            Some(std::time::Duration::from_millis(30)),
        );
        let layers = Snapshot {
            streams_live: 3,
            closes: [0, 4, 0, 0, 0],
            ..Snapshot::default()
        };
        let text = render(&Inputs {
            layers: &layers,
            proxy: &p,
            runtime: &runtime,
            workers: &[
                WorkerFigures::default(),
                WorkerFigures {
                    connections: 2,
                    ..Default::default()
                },
            ],
        });
        assert!(
            text.contains("qproxy_worker_connections{worker=\"1\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("qproxy_h3_streams 3\n"));
        assert!(text.contains("qproxy_http_requests_total{class=\"5xx\"} 1\n"));
        assert!(text.contains("qproxy_http_requests_total{class=\"none\"} 1\n"));
        assert!(text.contains("qproxy_quic_closed_connections_total{cause=\"peer_no_error\"} 4\n"));
        let server = "proxy=\"app\",server=\"a\\\"b\"";
        assert!(
            text.contains(&format!(
                "qproxy_server_http_responses_total{{{server},code=\"2xx\"}} 1\n"
            )),
            "{text}"
        );
        assert!(text.contains(&format!(
            "qproxy_server_response_time_seconds_bucket{{{server},le=\"0.025\"}} 0\n"
        )));
        assert!(text.contains(&format!(
            "qproxy_server_response_time_seconds_bucket{{{server},le=\"0.05\"}} 1\n"
        )));
        assert!(text.contains(&format!("qproxy_server_up{{{server}}} 1\n")));
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let name = line.split(' ').nth(2).unwrap();
            assert_eq!(text.matches(&format!("# TYPE {name} ")).count(), 1, "{name}");
        }
    }
}
