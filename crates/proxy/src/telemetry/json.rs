//! The JSON view of `stats uri` (what `qproxy top` reads): the live objects and totals the family table
//! places there, and every frontend, backend and server with its traffic and state.

use std::sync::atomic::Ordering::Relaxed;

use serde_json::{json, Map, Value};

use crate::telemetry::counters::StatusClass;
use crate::telemetry::families::{Inputs, Json, Source, FAMILIES};
use crate::telemetry::traffic::TrafficSnapshot;

fn traffic(t: &TrafficSnapshot) -> Value {
    let requests: serde_json::Map<String, Value> = StatusClass::ALL
        .iter()
        .map(|c| (c.label().to_string(), json!(t.requests[*c as usize])))
        .collect();
    let answered: u64 = t.response_time_buckets.iter().sum();
    json!({
        "requests": requests,
        "requests_total": t.total(),
        "bytes_in": t.bytes_in,
        "bytes_out": t.bytes_out,
        "active": t.active,
        "response_time_avg_ms": if answered == 0 { 0.0 } else { t.response_time_sum * 1000.0 / answered as f64 },
    })
}

fn merge(mut base: Value, extra: Value) -> Value {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        b.extend(e);
    }
    base
}

/// The families the table places in the JSON view: `live` gauges and top-level counters. A labelled
/// family's samples go under `KEY_LABELVALUE`.
fn from_families(inputs: &Inputs<'_>) -> (Map<String, Value>, Map<String, Value>) {
    let (mut live, mut top) = (Map::new(), Map::new());
    for f in FAMILIES {
        let (Json::Live(key) | Json::Top(key)) = f.json else {
            continue;
        };
        let Source::Values(get) = &f.source else {
            continue;
        };
        let into = if matches!(f.json, Json::Live(_)) {
            &mut live
        } else {
            &mut top
        };
        for (labels, value) in get(inputs) {
            let name = match labels.split('"').nth(1) {
                Some(label) => format!("{key}_{label}"),
                None => key.to_string(),
            };
            into.insert(name, json!(value));
        }
    }
    (live, top)
}

/// The JSON view of `stats uri`.
pub(crate) fn json_view(inputs: &Inputs<'_>) -> Value {
    let runtime = inputs.runtime;
    let frontends: Vec<Value> = runtime
        .frontends
        .iter()
        .map(|f| merge(json!({ "name": f.name }), traffic(&f.traffic.snapshot())))
        .collect();
    let backends: Vec<Value> = runtime
        .backends
        .iter()
        .map(|b| {
            let servers: Vec<Value> = b
                .servers
                .iter()
                .map(|srv| {
                    let o = &srv.config.options;
                    merge(
                        json!({
                            "name": srv.name(),
                            "addr": srv.addr().to_string(),
                            "state": if srv.is_up() { "UP" } else { "DOWN" },
                            "weight": o.weight,
                            "backup": o.backup,
                            "maxconn": o.maxconn,
                            "checked": o.check,
                            "last_check": srv.last_check(),
                            "checks_passed": srv.checks_passed.load(Relaxed),
                            "checks_failed": srv.checks_failed.load(Relaxed),
                            "went_down": srv.went_down.load(Relaxed),
                            "connect_errors": srv.connect_errors.load(Relaxed),
                        }),
                        traffic(&srv.traffic.snapshot()),
                    )
                })
                .collect();
            merge(
                json!({
                    "name": b.backend.name,
                    "servers_up": b.servers_up(),
                    "queued": b.backend.queued.load(Relaxed),
                    "retries": b.backend.retries.load(Relaxed),
                    "redispatches": b.backend.redispatches.load(Relaxed),
                    "servers": servers,
                }),
                traffic(&b.backend.traffic.snapshot()),
            )
        })
        .collect();
    let (live, mut view) = from_families(inputs);
    view.insert("live".into(), Value::Object(live));
    view.insert("frontends".into(), json!(frontends));
    view.insert("backends".into(), json!(backends));
    Value::Object(view)
}
