//! The backend side: HTTP/1.1 exchanges over keep-alive TCP connections, choosing a server
//! (`balance`), active health checks (`health`) and the live state of frontends, backends and servers
//! that the worker, the checkers and the stats listener share (`live`). No event loop here: the worker
//! drives exchanges.

pub(crate) mod balance;
mod exchange;
pub(crate) mod h1;
pub(crate) mod health;
pub(crate) mod live;
mod pool;
mod socket;

pub(crate) use exchange::{respond_error, Exchange, ExchangeTimeouts, Forward, Step, Termination};
pub(crate) use pool::{Pool, PoolPolicy, Take};
pub(crate) use socket::BackendSocket;
