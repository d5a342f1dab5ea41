//! In-memory tests: a real quiche HTTP/3 client against `qcc::Connection`.
#![allow(unreachable_pub)] // one test binary: `pub` only spans its modules

mod cid_routing;
mod haproxy_fixes;
mod harness;
mod network_shapes;
mod protocol;
mod random;
mod release_order;
mod roundtrip;
mod scenarios;
mod worker_view;
