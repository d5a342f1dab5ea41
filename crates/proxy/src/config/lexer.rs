//! Words and values: splitting a line, durations, sizes, addresses, and the argument helpers every
//! section's keywords use.

use std::net::SocketAddr;
use std::time::Duration;

/// Splits a line into words: blanks separate, `#` starts a comment, "..." allows blanks and \" \\,
/// '...' is literal.
pub(super) fn words(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '#' => break,
            ' ' | '\t' => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => cur.push(chars.next().ok_or("a line ends inside a quoted word")?),
                        Some(c) => cur.push(c),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                cur.push(chars.next().ok_or("a line ends with a backslash")?);
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// `10s`, `500ms`, `2m`, `1h`, `1d`, `100us`; a bare number is milliseconds (as in HAProxy).
pub(super) fn parse_duration(s: &str) -> Option<Duration> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    Some(match unit {
        "us" => Duration::from_micros(n),
        "" | "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60)?),
        "h" => Duration::from_secs(n.checked_mul(3600)?),
        "d" => Duration::from_secs(n.checked_mul(86400)?),
        _ => return None,
    })
}

/// `4096`, `64k`, `4m`, `1g` (powers of 1024).
pub(super) fn parse_size(s: &str) -> Option<u64> {
    let lower = s.to_ascii_lowercase();
    let (num, mult) = match lower.chars().last()? {
        'k' => (&lower[..lower.len() - 1], 1u64 << 10),
        'm' => (&lower[..lower.len() - 1], 1 << 20),
        'g' => (&lower[..lower.len() - 1], 1 << 30),
        _ => (&lower[..], 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

pub(super) type Res<T> = Result<T, String>;

pub(super) fn need<'a>(args: &'a [String], i: usize, what: &str) -> Res<&'a str> {
    args.get(i)
        .map(String::as_str)
        .ok_or_else(|| format!("expected {what}"))
}

pub(super) fn no_more(args: &[String], from: usize) -> Res<()> {
    match args.get(from) {
        None => Ok(()),
        Some(extra) => Err(format!("unexpected '{extra}' at the end of the line")),
    }
}

pub(super) fn duration_arg(args: &[String], i: usize, what: &str) -> Res<Duration> {
    let raw = need(args, i, what)?;
    parse_duration(raw)
        .ok_or_else(|| format!("expected {what} as a duration such as 500ms, 10s or 2m, found '{raw}'"))
}

pub(super) fn size_arg(args: &[String], i: usize, what: &str) -> Res<u64> {
    let raw = need(args, i, what)?;
    parse_size(raw)
        .ok_or_else(|| format!("expected {what} as a size such as 65536, 64k or 4m, found '{raw}'"))
}

pub(super) fn addr_arg(raw: &str, what: &str) -> Res<SocketAddr> {
    raw.parse().map_err(|_| {
        format!("expected {what} as ADDRESS:PORT (e.g. 127.0.0.1:4433 or [::1]:4433), found '{raw}'")
    })
}
