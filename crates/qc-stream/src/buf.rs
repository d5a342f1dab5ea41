//! Tx buffers handed to quiche zero-copy.

use std::fmt;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::Bytes;
use quiche::{BufFactory, BufSplit};

use crate::desc::DescShared;
use crate::TxBudget;

/// The buffer type quiche holds for our connections: bytes plus, for body data, a charge on the Tx budget
/// that is refunded when the last piece of the buffer is dropped.
#[derive(Clone)]
pub struct TxBuf {
    data: Bytes,
    charge: Option<Arc<Charge>>,
}

/// One charged allocation. Shared by every split and clone of the buffer it was made for, so the refund
/// happens exactly once, when quiche has dropped all of them.
struct Charge {
    len: usize,
    desc: Arc<DescShared>,
    budget: TxBudget,
}

impl Drop for Charge {
    // Accounting only: returns the bytes to the descriptor and the budget.
    fn drop(&mut self) {
        self.desc.outstanding.fetch_sub(self.len, Relaxed);
        self.budget.refund(self.len);
    }
}

impl TxBuf {
    pub(crate) fn charged(data: Bytes, desc: Arc<DescShared>, budget: TxBudget) -> Self {
        let len = data.len();
        TxBuf {
            data,
            charge: Some(Arc::new(Charge { len, desc, budget })),
        }
    }

    /// Bytes in this buffer.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when the buffer holds no byte.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

impl AsRef<[u8]> for TxBuf {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl BufSplit for TxBuf {
    fn split_at(&mut self, at: usize) -> Self {
        TxBuf {
            data: self.data.split_off(at),
            charge: self.charge.clone(),
        }
    }
}

impl fmt::Debug for TxBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TxBuf")
            .field("len", &self.data.len())
            .field("charged", &self.charge.is_some())
            .finish()
    }
}

/// quiche's buffer factory for qproxy connections (`quiche::Connection<TxBufFactory>`).
///
/// Buffers quiche makes itself (HTTP/3 frame headers, control streams, copies) are not charged: only body
/// data that passed through a descriptor counts against the budget.
#[derive(Clone, Copy, Debug, Default)]
pub struct TxBufFactory;

impl BufFactory for TxBufFactory {
    type Buf = TxBuf;
    type DgramBuf = Vec<u8>;

    fn buf_from_slice(buf: &[u8]) -> TxBuf {
        TxBuf {
            data: Bytes::copy_from_slice(buf),
            charge: None,
        }
    }

    fn dgram_buf_from_slice(buf: &[u8]) -> Vec<u8> {
        buf.to_vec()
    }
}
