//! Where log lines go. Access lines, one per request, are the hot path: they collect in a buffer of the
//! worker's own thread (no lock between workers) that it flushes once per loop turn (and when it holds
//! 64 KiB, and when it stops), so a request costs no write syscall of its own; a flush writes whole
//! lines under standard error's lock, so workers' lines never interleave. Every other line (warnings,
//! the stats and health threads) goes to standard error at once.

use std::io::{self, Write};

use std::cell::RefCell;

use tracing_subscriber::fmt::MakeWriter;

/// The access log's tracing target.
pub(crate) const ACCESS_TARGET: &str = "qproxy::access";

/// Past this many buffered bytes, a write flushes.
const FLUSH_AT: usize = 64 * 1024;

thread_local! {
    static BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Writes this thread's buffered access lines to standard error (or hands them to the `log` targets).
pub(crate) fn flush() {
    BUFFER.with_borrow_mut(write_out);
    super::log_ship::flush();
}

fn write_out(buffer: &mut Vec<u8>) {
    if buffer.is_empty() {
        return;
    }
    // A closed stderr is no reason to stop serving.
    let _ = io::stderr().lock().write_all(buffer);
    buffer.clear();
}

/// The writer `tracing_subscriber::fmt` uses: access lines to the buffer, the rest to standard error.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter;

/// One event's destination.
pub enum LineWriter {
    /// Into the buffer.
    Buffered,
    /// Straight to standard error.
    Stderr(io::Stderr),
}

impl Write for LineWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            LineWriter::Buffered => {
                BUFFER.with_borrow_mut(|buffer| {
                    buffer.extend_from_slice(data);
                    if buffer.len() >= FLUSH_AT {
                        write_out(buffer);
                    }
                });
                Ok(data.len())
            }
            LineWriter::Stderr(e) => e.write(data),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            LineWriter::Buffered => Ok(()),
            LineWriter::Stderr(e) => e.flush(),
        }
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter::Stderr(io::stderr())
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> LineWriter {
        if meta.target() == ACCESS_TARGET {
            LineWriter::Buffered
        } else {
            LineWriter::Stderr(io::stderr())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_lines_wait_for_the_flush() {
        let writer = LogWriter;
        let mut line = LineWriter::Buffered;
        line.write_all(b"one\n").unwrap();
        assert!(BUFFER.with_borrow(|b| b.ends_with(b"one\n")));
        std::thread::spawn(|| assert!(BUFFER.with_borrow(Vec::is_empty), "another thread's buffer"))
            .join()
            .unwrap();
        flush();
        assert!(BUFFER.with_borrow(Vec::is_empty));
        assert!(matches!(writer.make_writer(), LineWriter::Stderr(_)));
    }
}
