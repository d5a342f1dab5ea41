//! The aioquic column (aioquic from PyPI, driven by the end-to-end suite's h3client.py).

use anyhow::Result;

use super::{
    amplification_case, black_hole, json_200s, json_client, retry_case, url, with_faults, Outcome, Setup,
};

/// h3client.py against `host`:`port`, killed after `limit_secs`.
fn aioquic(s: &Setup, limit_secs: u32, host: (&str, u16), extra: &[&str], urls: &[String]) -> Result<String> {
    let script = s.root.join("crates/proxy/tests/e2e/h3client.py");
    json_client(
        s,
        limit_secs,
        &[s.python.as_os_str(), script.as_os_str()],
        host,
        extra,
        urls,
    )
}

pub(super) fn case(s: &Setup, name: &str) -> Result<Outcome> {
    let p = s.port;
    let h = "127.0.0.1";
    let get = |extra: &[&str], urls: &[String]| aioquic(s, 120, (h, p), extra, urls);
    Ok(match name {
        "handshake" | "http3" => json_200s(&get(&[], &[url(p, "/")])?, 1, None),
        "transfer" => {
            let urls = [
                url(p, "/bytes/2000000"),
                url(p, "/bytes/3000000"),
                url(p, "/bytes/500000"),
            ];
            json_200s(&get(&[], &urls)?, 3, None)
        }
        "multiplexing" => {
            let urls: Vec<String> = (0..2000).map(|_| url(p, "/bytes/32")).collect();
            json_200s(&get(&[], &urls)?, 2000, None)
        }
        "chacha20" => json_200s(&get(&["--chacha20"], &[url(p, "/")])?, 1, None),
        "keyupdate" => json_200s(&get(&["--key-update"], &[url(p, "/bytes/1000000")])?, 1, None),
        "ipv6" => {
            let urls = [format!("https://[::1]:{}/", s.port6)];
            json_200s(&aioquic(s, 120, ("::1", s.port6), &[], &urls)?, 1, None)
        }
        "resumption" => json_200s(&get(&["--resume"], &[url(p, "/")])?, 1, Some("resumed")),
        "zerortt" => json_200s(&get(&["--resume"], &[url(p, "/")])?, 1, Some("early_data")),
        "rebind-port" => json_200s(
            &get(&["--rebind-after", "200000"], &[url(p, "/bytes/5000000")])?,
            1,
            Some("rebound"),
        ),
        "retry" => retry_case(s, |rp| {
            Ok(json_200s(
                &aioquic(s, 120, (h, rp), &[], &[url(rp, "/")])?,
                1,
                None,
            ))
        })?,
        "amplificationlimit" => amplification_case(s, |port| {
            aioquic(s, 5, (h, port), &[], &[url(port, "/")]).map(drop)
        })?,
        "handshakeloss" => with_faults(s, 0.3, |addr, _| {
            let out = aioquic(s, 120, (h, addr.port()), &["--connections", "5"], &[url(p, "/")])?;
            Ok(json_200s(&out, 5, None))
        })?,
        "transferloss" => with_faults(s, 0.02, |addr, _| {
            let out = aioquic(s, 120, (h, addr.port()), &[], &[url(p, "/bytes/5000000")])?;
            Ok(json_200s(&out, 1, None))
        })?,
        "blackhole" => with_faults(s, 0.0, |addr, fp| {
            std::thread::scope(|scope| {
                let client =
                    scope.spawn(|| aioquic(s, 120, (h, addr.port()), &[], &[url(p, "/bytes/20000000")]));
                black_hole(fp);
                Ok(json_200s(&client.join().expect("client thread")?, 1, None))
            })
        })?,
        _ => Outcome::Unsupported("unknown case"),
    })
}
