//! Counting and showing: per-object traffic counters, the proxy's own counters, the Prometheus text and
//! JSON view served by the stats listener, and the access log.

pub(crate) mod access_log;
pub(crate) mod counters;
pub(crate) mod families;
pub(crate) mod in_flight;
pub(crate) mod json;
pub(crate) mod log_buffer;
pub(crate) mod log_ship;
pub(crate) mod prometheus;
pub(crate) mod stats_listener;
pub(crate) mod traffic;
