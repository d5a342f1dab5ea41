//! The client side, without the event loop: the connection IDs we issue (QUIC-LB layout, the worker
//! that owns each), which backend a request goes to (`use_backend` rules) and the stateless Retry
//! tokens of `quic-force-retry` binds.

pub(crate) mod cid;
pub(crate) mod initial_close;
pub(crate) mod retry_token;
pub(crate) mod rules;
pub(crate) mod secret;
pub(crate) mod stateless_reset;
