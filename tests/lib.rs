//! The test kit every suite shares: free loopback ports, the body patterns the test origins send and
//! the clients check, reading gtlsclient's output, and reading JSON-line clients with serde_json. Used
//! by the end-to-end suite, the in-memory harness, the quinn test client and `cargo xtask`.

pub mod gtls;
pub mod json;
pub mod pattern;
pub mod ports;
