//! The backend side: HTTP/1.1 exchanges over keep-alive TCP connections.

mod exchange;
pub mod h1;
mod pool;
mod socket;

pub use exchange::{respond_error, Exchange, ExchangeInfo, Forward, Step, Termination};
pub use pool::Pool;
pub use socket::BackendSocket;
