//! The quinn column: `h3get` (crates/h3-client: quinn + h3 + rustls, implementations no one here wrote).

use anyhow::Result;

use super::{
    amplification_case, black_hole, json_200s, json_client, retry_case, with_faults, Outcome, Setup,
};

/// h3get against `host`:`port` with `extra` options.
fn h3get(s: &Setup, host: (&str, u16), extra: &[&str], paths: &[&str]) -> Result<String> {
    let program = s.root.join("target/debug/h3get");
    let paths: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
    json_client(s, 120, &[program.as_os_str()], host, extra, &paths)
}

pub(super) fn case(s: &Setup, name: &str) -> Result<Outcome> {
    let (h, p) = ("127.0.0.1", s.port);
    let get = |extra: &[&str], paths: &[&str]| h3get(s, (h, p), extra, paths);
    Ok(match name {
        "handshake" | "http3" => json_200s(&get(&[], &["/"])?, 1, None),
        "transfer" => json_200s(
            &get(&[], &["/bytes/2000000", "/bytes/3000000", "/bytes/500000"])?,
            3,
            None,
        ),
        "multiplexing" => json_200s(&get(&[], &vec!["/bytes/32"; 2000])?, 2000, None),
        "chacha20" => json_200s(&get(&["--chacha20"], &["/"])?, 1, None),
        "keyupdate" => json_200s(&get(&["--key-update"], &["/bytes/1000000"])?, 1, None),
        "ipv6" => json_200s(&h3get(s, ("::1", s.port6), &[], &["/"])?, 1, None),
        // Two connections: the second resumes the first one's session.
        "resumption" => json_200s(
            &get(&["--connections", "2", "--resume"], &["/"])?,
            2,
            Some("resumed"),
        ),
        "zerortt" => json_200s(
            &get(&["--connections", "2", "--resume"], &["/"])?,
            2,
            Some("early_data"),
        ),
        "rebind-port" => json_200s(
            &get(&["--rebind-after", "200000"], &["/bytes/5000000"])?,
            1,
            Some("rebound"),
        ),
        "retry" => retry_case(s, |rp| Ok(json_200s(&h3get(s, (h, rp), &[], &["/"])?, 1, None)))?,
        "amplificationlimit" => amplification_case(s, |port| {
            h3get(s, (h, port), &["--timeout", "3"], &["/"]).map(drop)
        })?,
        "handshakeloss" => with_faults(s, 0.3, |addr, _| {
            Ok(json_200s(
                &h3get(s, (h, addr.port()), &["--connections", "5"], &["/"])?,
                5,
                None,
            ))
        })?,
        "transferloss" => with_faults(s, 0.02, |addr, _| {
            Ok(json_200s(
                &h3get(s, (h, addr.port()), &[], &["/bytes/5000000"])?,
                1,
                None,
            ))
        })?,
        "blackhole" => with_faults(s, 0.0, |addr, fp| {
            std::thread::scope(|scope| {
                let client = scope.spawn(|| h3get(s, (h, addr.port()), &[], &["/bytes/20000000"]));
                black_hole(fp);
                Ok(json_200s(&client.join().expect("client thread")?, 1, None))
            })
        })?,
        _ => Outcome::Unsupported("unknown case"),
    })
}
