//! The response head as it goes out on HTTP/3: a status and its fields in one byte buffer.

use quiche::h3::HeaderRef;

use crate::head::may_go_out;

/// A response's status and fields, held as they go out: names lower-case, no pseudo-header and no
/// connection-specific field (RFC 9114, 4.2). [`ResponseHead::push`] is the only way in and drops what
/// may not go out. Names and values share one buffer, so a head costs two allocations whatever its
/// number of fields (a field per allocation was a tenth of the proxy's allocator time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    status: u16,
    /// `:status` and its three digits, then each field's name and value.
    bytes: Vec<u8>,
    /// Where each field's name starts, its name ends and its value ends in `bytes`; `:status` first.
    spans: Vec<(u32, u32, u32)>,
}

const STATUS: &[u8] = b":status";

impl ResponseHead {
    /// A response with `status` (100 to 999) and no field.
    pub fn new(status: u16) -> Self {
        Self::with_capacity(status, 0, 0)
    }

    /// A response with room for `fields` fields of `bytes` bytes of names and values in all.
    pub fn with_capacity(status: u16, fields: usize, bytes: usize) -> Self {
        assert!(
            (100..=999).contains(&status),
            "status {status} is not three digits"
        );
        let mut head = ResponseHead {
            status,
            bytes: Vec::with_capacity(STATUS.len() + 3 + bytes),
            spans: Vec::with_capacity(1 + fields),
        };
        head.bytes.extend_from_slice(STATUS);
        let digits = [status / 100, status / 10 % 10, status % 10].map(|d| b'0' + d as u8);
        head.bytes.extend_from_slice(&digits);
        head.spans.push((0, STATUS.len() as u32, head.bytes.len() as u32));
        head
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Adds a field (see [`ResponseHead::push`]).
    pub fn with_header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.push(name.as_bytes(), value.as_ref());
        self
    }

    /// Adds a field, its name lower-cased. A pseudo-header or connection-specific field is dropped:
    /// false then.
    pub fn push(&mut self, name: &[u8], value: &[u8]) -> bool {
        let start = self.bytes.len();
        self.bytes.extend(name.iter().map(u8::to_ascii_lowercase));
        if !may_go_out(&self.bytes[start..]) {
            self.bytes.truncate(start);
            return false;
        }
        let name_end = self.bytes.len();
        self.bytes.extend_from_slice(value);
        self.spans
            .push((start as u32, name_end as u32, self.bytes.len() as u32));
        true
    }

    /// Replaces every field named `name` (in any case) with one field of `value`.
    pub fn set(&mut self, name: &[u8], value: &[u8]) {
        let bytes = &self.bytes;
        let mut first = true;
        self.spans.retain(|&(s, n, _)| {
            let keep = first || !bytes[s as usize..n as usize].eq_ignore_ascii_case(name);
            first = false;
            keep
        });
        self.push(name, value);
    }

    /// The fields after `:status`, as (name, value).
    pub fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.spans[1..].iter().map(|&(s, n, e)| {
            (
                &self.bytes[s as usize..n as usize],
                &self.bytes[n as usize..e as usize],
            )
        })
    }

    /// The header section as quiche sends it, `:status` first, borrowing this head's bytes.
    pub(crate) fn to_refs(&self) -> Vec<HeaderRef<'_>> {
        self.spans
            .iter()
            .map(|&(s, n, e)| {
                HeaderRef::new(
                    &self.bytes[s as usize..n as usize],
                    &self.bytes[n as usize..e as usize],
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quiche::h3::NameValue;

    fn sent(head: &ResponseHead) -> Vec<(String, String)> {
        head.to_refs()
            .iter()
            .map(|h| {
                let s = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
                (s(h.name()), s(h.value()))
            })
            .collect()
    }

    #[test]
    fn every_digit_of_the_status_is_written() {
        for status in [100, 204, 307, 418, 451, 599, 999] {
            let head = ResponseHead::new(status);
            assert_eq!(sent(&head)[0], (":status".to_string(), status.to_string()));
        }
    }

    #[test]
    fn status_first_names_lower_case_and_nothing_http3_forbids() {
        let mut head = ResponseHead::new(204).with_header("Content-Type", "text/plain");
        for forbidden in [
            "Connection",
            "keep-alive",
            "Transfer-Encoding",
            "upgrade",
            "proxy-connection",
            "TE",
            ":path",
        ] {
            assert!(!head.push(forbidden.as_bytes(), b"x"), "{forbidden} went out");
        }
        assert!(head.push(b"X-Mixed-Case", b"V"));
        let pairs = |v: &[(&str, &str)]| {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            sent(&head),
            pairs(&[
                (":status", "204"),
                ("content-type", "text/plain"),
                ("x-mixed-case", "V")
            ])
        );
        assert_eq!(head.fields().count(), 2);
        assert_eq!(head.status(), 204);
    }

    #[test]
    fn set_replaces_every_field_of_that_name_and_never_the_status() {
        let mut head = ResponseHead::new(200)
            .with_header("x-a", "1")
            .with_header("Server", "nginx")
            .with_header("x-a", "2");
        head.set(b"X-A", b"3");
        head.set(b":status", b"500");
        let names: Vec<(String, String)> = sent(&head);
        assert_eq!(names[0], (":status".into(), "200".into()));
        assert_eq!(
            &names[1..],
            &[("server".into(), "nginx".into()), ("x-a".into(), "3".into())]
        );
    }

    #[test]
    #[should_panic(expected = "not three digits")]
    fn a_status_outside_three_digits_is_refused() {
        let _ = ResponseHead::new(42);
    }
}
