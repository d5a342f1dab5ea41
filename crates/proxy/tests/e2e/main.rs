//! End to end: the real `qproxy` binary, HTTP/1.1 origins on loopback, and ngtcp2's gtlsclient.
#![allow(unreachable_pub)] // one test binary: `pub` only spans its modules

mod balancing;
mod chaos;
mod client_address;
mod flood;
mod harness;
mod independent;
mod lifecycle;
mod limits;
mod logs;
mod origins;
mod proxying;
mod quic_initial;
mod quinn_client;
mod raw_frames;
mod relay;
mod reuse;
mod security;
mod stateless_reset;
mod udp;
mod workers;
