//! Stream descriptors: the Tx bytes of one QUIC stream, kept until the peer acknowledges them.
//!
//! **What it owns.** A descriptor ([`AttachedDesc`], then [`ReleasedDesc`]) accounts for the body bytes of
//! one stream from the moment the upper side hands them over until the transport frees them. The bytes
//! live in [`TxBuf`]s, which quiche 0.30 takes zero-copy (`stream_send_zc`, `h3::Connection::send_body_zc`)
//! through [`TxBufFactory`]: the buffer quiche keeps for retransmission *is* the descriptor's buffer, and it
//! is freed when quiche drops it (acknowledged, reset, or connection gone). Every byte is charged to the
//! connection-wide [`TxBudget`]; when freed bytes make room for a stream that was refused, the budget
//! reports it through a [`RoomSink`] that the connection attaches and, at release, detaches. A [`TxPool`]
//! caps the bytes of all budgets of the process together.
//!
//! **What it may not touch.** No socket, no clock, no HTTP/3, and never a strong reference to the layers
//! above: a room notification goes through a `Weak` sink, and a dead sink is a counted no-op.
//!
//! **Two phases by type.** An [`AttachedDesc`] accepts data. [`AttachedDesc::release`] consumes it, trims
//! the bytes the transport never accepted, and returns a [`ReleasedDesc`] that only waits until the
//! transport has freed the rest.
//!
//! ```
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use qc_stream::{AttachedDesc, Counters, TxBudget};
//!
//! let counters = Arc::new(Counters::default());
//! let budget = TxBudget::new(64 * 1024, counters.clone());
//! let mut desc = AttachedDesc::new(0, &budget);
//! desc.push(Bytes::from_static(b"hello")).unwrap();
//! assert_eq!(budget.in_use(), 5);
//! // The stream ends before the transport took the bytes: release trims them and refunds the budget.
//! let released = desc.release();
//! assert!(released.is_done());
//! drop(released);
//! assert!(counters.snapshot().is_idle());
//! ```
#![warn(missing_docs)]

mod budget;
mod buf;
mod counters;
mod desc;

pub use budget::{Room, RoomSink, TxBudget, TxPool};
pub use buf::{TxBuf, TxBufFactory};
pub use counters::{CloseCause, Counters, Live, Object, Snapshot};
pub use desc::{AttachedDesc, ReleasedDesc};
