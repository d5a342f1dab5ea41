//! The results: every run's record, the medians per proxy, the text table (with ratios to HAProxy) and
//! the JSON file.

use serde_json::{json, Value};

/// One figure the bench reports.
pub(crate) struct Metric {
    pub(crate) key: &'static str,
    pub(crate) label: &'static str,
    pub(crate) unit: &'static str,
    pub(crate) higher_is_better: bool,
}

const fn m(key: &'static str, label: &'static str, unit: &'static str, up: bool) -> Metric {
    Metric {
        key,
        label,
        unit,
        higher_is_better: up,
    }
}

pub(crate) const METRICS: [Metric; 14] = [
    m("rps_1k", "1 KiB GET, h3load 4 conn x 16 streams", "req/s", true),
    m("cpu_1k", "proxy CPU per 1 KiB request (h3load)", "µs", false),
    m(
        "rps_1k_idle",
        "1 KiB GET, the same beside N idle conns",
        "req/s",
        true,
    ),
    m("cpu_1k_idle", "proxy CPU per 1 KiB request, N idle", "µs", false),
    m(
        "rps_1k_gtls",
        "1 KiB GET, 4 gtlsclient x N requests",
        "req/s",
        true,
    ),
    m(
        "cpu_1k_gtls",
        "proxy CPU per 1 KiB request (gtlsclient)",
        "µs",
        false,
    ),
    m("p50_half", "p50 latency at half the peak req/s", "µs", false),
    m("p90_half", "p90 latency at half the peak req/s", "µs", false),
    m("p99_half", "p99 latency at half the peak req/s", "µs", false),
    m("mbps_100m", "100 MiB GET, gtlsclient", "MB/s", true),
    m("cpu_per_mb", "proxy CPU per MB (100 MiB GET)", "ms", false),
    m(
        "cpu_per_conn",
        "proxy CPU per connection (one GET each)",
        "µs",
        false,
    ),
    m("rss_idle_conn", "RSS per idle connection", "KiB", false),
    m("rss_stream", "RSS per open request stream", "KiB", false),
];

/// One run of one case against one proxy.
pub(crate) struct Run {
    pub(crate) round: usize,
    pub(crate) case: &'static str,
    pub(crate) peer: &'static str,
    pub(crate) values: Vec<(&'static str, f64)>,
    pub(crate) errors: u64,
    pub(crate) note: String,
    pub(crate) failure: Option<String>,
    pub(crate) secs: f64,
    /// CPU (in cores) that processes outside the bench took during the run.
    pub(crate) others: f64,
}

pub(crate) struct Report {
    pub(crate) peers: Vec<(&'static str, String)>,
    pub(crate) runs: Vec<Run>,
    pub(crate) notes: Vec<String>,
}

pub(crate) fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

impl Report {
    pub(crate) fn samples(&self, peer: &str, key: &str) -> Vec<f64> {
        self.runs
            .iter()
            .filter(|r| r.peer == peer)
            .flat_map(|r| r.values.iter())
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .collect()
    }

    pub(crate) fn median(&self, peer: &str, key: &str) -> Option<f64> {
        median(self.samples(peer, key))
    }

    fn names(&self) -> Vec<&'static str> {
        self.peers.iter().map(|(n, _)| *n).collect()
    }

    /// The plain text table: medians per proxy, and each other proxy's ratio to HAProxy.
    pub(crate) fn table(&self) -> String {
        let names = self.names();
        let others: Vec<&str> = names.iter().copied().filter(|n| *n != "haproxy").collect();
        let has_haproxy = names.contains(&"haproxy");
        let mut out = format!("{:<42} {:>6}", "median of the rounds", "unit");
        for n in &names {
            out += &format!(" {n:>9}");
        }
        if has_haproxy {
            for n in &others {
                out += &format!(" {:>10}", format!("{n}/hap"));
            }
        }
        out.push('\n');
        for metric in &METRICS {
            let medians: Vec<Option<f64>> = names.iter().map(|n| self.median(n, metric.key)).collect();
            if medians.iter().all(Option::is_none) {
                continue;
            }
            out += &format!("{:<42} {:>6}", metric.label, metric.unit);
            for v in &medians {
                out += &format!(" {:>9}", v.map_or("-".into(), fmt));
            }
            if has_haproxy {
                let base = self.median("haproxy", metric.key);
                for n in &others {
                    let ratio = match (self.median(n, metric.key), base) {
                        (Some(v), Some(b)) if b > 0.0 => format!("{:.2}", v / b),
                        _ => "-".into(),
                    };
                    out += &format!(" {ratio:>10}");
                }
            }
            out.push('\n');
        }
        out
    }

    /// Everything, as JSON: every run, and the medians.
    pub(crate) fn json(&self, extra: Value) -> Value {
        let names = self.names();
        let metrics: Vec<Value> = METRICS
            .iter()
            .map(|m| {
                let per = |f: &dyn Fn(&str) -> Value| -> Value {
                    names.iter().map(|n| (n.to_string(), f(n))).collect()
                };
                json!({
                    "key": m.key, "label": m.label, "unit": m.unit,
                    "higher_is_better": m.higher_is_better,
                    "median": per(&|n| json!(self.median(n, m.key))),
                    "samples": per(&|n| json!(self.samples(n, m.key))),
                })
            })
            .collect();
        let runs: Vec<Value> = self
            .runs
            .iter()
            .map(|r| {
                json!({
                    "round": r.round, "case": r.case, "peer": r.peer,
                    "values": r.values.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
                    "errors": r.errors, "note": r.note, "failure": r.failure, "seconds": r.secs,
                    "other_processes_cpu": r.others,
                })
            })
            .collect();
        json!({
            "peers": self.peers.iter().map(|(n, v)| (n.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "notes": self.notes,
            "metrics": metrics,
            "runs": runs,
            "setup": extra,
        })
    }
}

/// 12,345 / 123.4 / 1.23.
pub(crate) fn fmt(v: f64) -> String {
    if v.abs() >= 100.0 {
        let digits = format!("{:.0}", v.abs());
        let mut grouped = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(c);
        }
        if v < 0.0 {
            grouped.insert(0, '-');
        }
        grouped
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_numbers() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
        assert_eq!(fmt(11582.4), "11,582");
        assert_eq!(fmt(121.5), "122");
        assert_eq!(fmt(39.14), "39.1");
        assert_eq!(fmt(9.161), "9.16");
    }

    #[test]
    fn the_table_has_ratios_to_haproxy() {
        let run = |peer, v| Run {
            round: 1,
            case: "get1k",
            peer,
            values: vec![("rps_1k", v)],
            errors: 0,
            note: String::new(),
            failure: None,
            secs: 1.0,
            others: 0.0,
        };
        let report = Report {
            peers: vec![("qproxy", "q".into()), ("haproxy", "h".into())],
            runs: vec![run("qproxy", 500.0), run("haproxy", 1000.0)],
            notes: vec![],
        };
        let table = report.table();
        assert!(table.contains("qproxy/hap"), "{table}");
        assert!(
            table.lines().nth(1).unwrap().trim_end().ends_with("0.50"),
            "{table}"
        );
    }
}
