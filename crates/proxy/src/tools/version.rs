//! `qproxy -vv`: what this binary was built with and what this machine lets it use, as `haproxy -vv`
//! reports it. Platform features are probed on a socket of its own, the way a listener would use them.

use crate::worker::listener::{probe, Platform};

/// `-v`: the version line.
pub fn version() -> String {
    format!("qproxy version {}\n", env!("CARGO_PKG_VERSION"))
}

/// `-vv`: the version, the build, the platform and the features.
pub fn report() -> String {
    let mut out = version();
    out += &format!(
        "Built with quiche {} on BoringSSL (boring-sys {}, BORINGSSL_API_VERSION {}), mio {}, quinn-udp {}; allocator jemalloc\n",
        env!("QPROXY_QUICHE_VERSION"),
        env!("QPROXY_BORING_SYS_VERSION"),
        env!("QPROXY_BORINGSSL_API"),
        env!("QPROXY_MIO_VERSION"),
        env!("QPROXY_QUINN_UDP_VERSION"),
    );
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    out += &format!(
        "Running on {}, {cpus} CPU(s) for this process (default nbthread)\n",
        kernel()
    );
    out += &features(&probe());
    out
}

fn features(p: &Platform) -> String {
    let yes_no = |on: bool| if on { "yes" } else { "no" };
    let mut out = String::from("Features:\n");
    out += &format!(
        "  GSO (UDP_SEGMENT) on send: {} (up to {} datagrams per call)\n",
        yes_no(p.gso_segments > 1),
        p.gso_segments
    );
    out += &format!(
        "  GRO on receive: {} (up to {} datagrams per buffer)\n",
        yes_no(p.gro_segments > 1),
        p.gro_segments
    );
    out += &format!(
        "  kernel steering to workers (SO_ATTACH_REUSEPORT_CBPF): {}\n",
        match &p.kernel_steering {
            Ok(()) => "yes".to_string(),
            Err(e) => format!("no ({e}): datagrams are handed over between workers"),
        }
    );
    out += "  Retry: yes (bind ... quic-force-retry; stateless tokens, HMAC-SHA256)\n";
    out += "  0-RTT: yes (bind ... allow-0rtt)\n";
    out += "  QUIC-LB connection IDs: plaintext (server-id), encrypted single-pass AES-128 (quic-lb-key)\n";
    out += "  congestion control: cubic, newreno, bbr (quic-cc-algo)\n";
    out += "  HTTP versions: HTTP/3 to clients (ALPN h3), HTTP/1.1 to servers\n";
    out
}

/// `uname`'s system name and release.
#[allow(unsafe_code)]
fn kernel() -> String {
    // SAFETY: `uname` fills the zeroed struct; its fields are NUL-terminated strings.
    let mut name: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut name) } != 0 {
        return "an unknown kernel".into();
    }
    let field = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    format!(
        "{} {} {}",
        field(&name.sysname),
        field(&name.release),
        field(&name.machine)
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_report_names_the_build_and_every_feature_line() {
        let report = super::report();
        assert!(report.starts_with(&format!("qproxy version {}\n", env!("CARGO_PKG_VERSION"))));
        assert!(
            !env!("QPROXY_QUICHE_VERSION").contains("unknown"),
            "quiche is in Cargo.lock"
        );
        assert!(
            report.contains(&format!("quiche {}", env!("QPROXY_QUICHE_VERSION"))),
            "{report}"
        );
        for feature in [
            "GSO",
            "GRO",
            "kernel steering",
            "Retry",
            "0-RTT",
            "QUIC-LB",
            "congestion",
        ] {
            assert!(report.contains(feature), "{feature}: {report}");
        }
    }
}
