//! qproxy: an HTTP/3 (QUIC) reverse proxy in front of HTTP/1.1 services.
//!
//! The binary (`src/main.rs`) only parses the command line: it loads a [`config::Config`] and calls
//! [`serve`], or runs one of the [`tools`]. Inside, along the path of a request: `worker` (the mio event
//! loop: sockets, connections, the request path), `frontend` (client-side rules and Retry tokens),
//! `upstream` (exchanges with HTTP/1.1 servers, balancing, health, live state) and `telemetry`
//! (counters, Prometheus, the JSON view, the access log). The layers below are the `qcc`, `qcs` and
//! `qc-stream` crates.

pub mod config;
mod frontend;
#[doc(hidden)]
pub mod fuzzing;
mod serve;
mod telemetry;
pub mod tools;
mod upstream;
mod worker;

pub use serve::{serve, Exit};
pub use telemetry::log_buffer::{LineWriter, LogWriter};
