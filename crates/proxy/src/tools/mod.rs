//! What ships beside the proxy: the self-contained demo (`qproxy --demo`) and the terminal view
//! (`qproxy top`).

pub mod demo;
pub mod top;
pub mod version;
