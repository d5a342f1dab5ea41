//! qproxy: an HTTP/3 (QUIC) reverse proxy in front of HTTP/1.1 services.
//!
//! The binary (`src/main.rs`) is thin: it parses the command line, loads the configuration
//! ([`config::Config`]) and runs a [`worker::Worker`]. The layers below are the `qcc`, `qcs` and
//! `qc-stream` crates.

pub mod access;
pub mod backend;
pub mod balance;
pub mod config;
pub mod demo;
pub mod health;
pub mod memory;
pub mod metrics;
pub mod retry;
pub mod route;
pub mod servers;
pub mod stats;
pub mod top;
pub mod traffic;
pub mod worker;
