//! `log` targets in `global`: access lines reach a syslog server over UDP and a local syslog socket,
//! framed as configured, and leave standard error.

use std::net::UdpSocket;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use crate::harness::{gtlsclient, Proxy};

fn origin_servers() -> String {
    let origin = qproxy::tools::demo::spawn_origin("127.0.0.1:0".parse().unwrap()).unwrap();
    format!("    server o1 {origin}\n")
}

/// Reads `n` datagrams, waiting at most 5 s for each.
fn datagrams(recv: impl Fn(&mut [u8]) -> std::io::Result<usize>, n: usize) -> Vec<String> {
    let mut buf = vec![0u8; 65536];
    (0..n)
        .map(|i| {
            let len = recv(&mut buf).unwrap_or_else(|e| panic!("datagram {i} of {n}: {e}"));
            String::from_utf8(buf[..len].to_vec()).unwrap()
        })
        .collect()
}

#[test]
fn access_lines_go_to_a_syslog_server_as_rfc5424_json() {
    let syslog = UdpSocket::bind("127.0.0.1:0").unwrap();
    syslog.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let port = syslog.local_addr().unwrap().port();
    let proxy = Proxy::start_with(
        &origin_servers(),
        "    option jsonlog\n",
        &format!("    log 127.0.0.1:{port} len 4096 format rfc5424 local0\n"),
        "    timeout connect 2s\n    timeout server 2s\n",
    );
    let urls: Vec<String> = (0..5)
        .map(|i| proxy.url(&format!("/bytes/{}", 100 + i)))
        .collect();
    let seen = gtlsclient(proxy.port, &[], &urls);
    assert_eq!(seen.statuses, vec![200; 5], "{}", seen.output);
    let mut paths: Vec<String> = datagrams(|b| syslog.recv(b), 5)
        .iter()
        .map(|d| {
            // <PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG, local0.info = 16 * 8 + 6.
            let fields: Vec<&str> = d.splitn(8, ' ').collect();
            assert_eq!(fields[0], "<134>1", "{d}");
            assert!(fields[1].ends_with('Z') && fields[1].contains('T'), "{d}");
            assert_eq!((fields[3], fields[5], fields[6]), ("qproxy", "-", "-"), "{d}");
            let line: serde_json::Value =
                serde_json::from_str(fields[7]).unwrap_or_else(|e| panic!("{e}: {d}"));
            assert_eq!(line["status"], 200, "{d}");
            assert_eq!(line["frontend"], "web", "{d}");
            assert_eq!(line["server"], "app/o1", "{d}");
            line["path"].as_str().unwrap().to_string()
        })
        .collect();
    paths.sort();
    assert_eq!(
        paths,
        (0..5).map(|i| format!("/bytes/{}", 100 + i)).collect::<Vec<_>>()
    );
    assert!(
        !proxy.log().contains("qproxy::access"),
        "shipped lines leave stderr: {}",
        proxy.log()
    );
    proxy.assert_gauges_return_to_zero();
}

#[test]
fn access_lines_go_to_a_local_syslog_socket_as_rfc3164() {
    let dir = std::env::temp_dir().join(format!("qproxy-e2e-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("log.sock");
    let _ = std::fs::remove_file(&path);
    let socket = UnixDatagram::bind(&path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let proxy = Proxy::start_with(
        &origin_servers(),
        "",
        &format!("    log {} local3\n", path.display()),
        "    timeout connect 2s\n    timeout server 2s\n",
    );
    let seen = gtlsclient(proxy.port, &[], &[proxy.url("/"), proxy.url("/status/404")]);
    assert_eq!(seen.statuses.len(), 2, "{}", seen.output);
    let lines = datagrams(|b| socket.recv(b), 2);
    for (path, status) in [("/", 200), ("/status/404", 404)] {
        let line = lines
            .iter()
            .find(|l| l.contains(&format!(" {path}\" ")))
            .unwrap_or_else(|| panic!("no line for {path}: {lines:?}"));
        // local3.info = 19 * 8 + 6; then the default line.
        assert!(line.starts_with("<158>"), "{line}");
        let (_, msg) = line.split_once(": ").unwrap();
        assert!(msg.starts_with("127.0.0.1:"), "{line}");
        assert!(msg.contains(&format!(" {path}\" {status} ")), "{line}");
        assert!(line.contains(&format!(" qproxy[{}]: ", proxy.pid())), "{line}");
    }
    drop(proxy);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The start names socket buffers the kernel capped below what qproxy asks for (8 MiB), and the sysctls
/// to raise; whether it should depends on this machine's `net.core.rmem_max` / `wmem_max`.
#[test]
fn the_start_names_udp_buffers_the_kernel_capped() {
    let sysctl = |name: &str| -> usize {
        let path = format!("/proc/sys/net/core/{name}");
        std::fs::read_to_string(&path).unwrap().trim().parse().unwrap()
    };
    let capped = sysctl("rmem_max") < 8 << 20 || sysctl("wmem_max") < 8 << 20;
    let proxy = Proxy::start(&origin_servers(), "");
    let log = proxy.log();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("capped the UDP socket buffers"))
        .collect();
    assert_eq!(
        warnings.len(),
        usize::from(capped),
        "one per bind when capped: {log}"
    );
    if capped {
        assert!(
            warnings[0].contains("net.core.rmem_max") && warnings[0].contains("asked=8388608"),
            "{log}"
        );
    }
}
