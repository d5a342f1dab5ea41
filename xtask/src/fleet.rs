//! `cargo xtask fleet`: two qproxy instances (`server-id a1` and `b2`, two workers each) behind a
//! stateless L4 balancer made of the kernel's own nftables, in network namespaces:
//!
//! ```text
//! qf-client 10.77.1.2 ── 10.77.1.1 qf-lb 10.77.2.1 ── 10.77.2.2 qf-a (VIP 10.77.9.9, UDP 443)
//!                                        10.77.3.1 ── 10.77.3.2 qf-b (VIP 10.77.9.9, UDP 443)
//! ```
//!
//! The balancer marks each datagram for the VIP with the instance its destination connection ID names
//! (QUIC-LB plaintext: config rotation 0 in the first octet's top bits, then the server ID byte; short
//! and long headers), and a hash of that ID for the client-chosen IDs of Initials; policy routing sends
//! each mark to its instance. No connection state anywhere in the balancer. Checks: connections that
//! change their client port while idle are answered by the instance that has them; both instances
//! serve; killing one leaves every connection of the other answering.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::bench::cert;

const VIP: &str = "10.77.9.9";
const CLIENT: &str = "qf-client";
const LB: &str = "qf-lb";
/// Bytes of the file each origin serves.
const BODY: usize = 1 << 20;
/// Connections in each check.
const CONNS: usize = 16;

/// One instance: its namespace, its subnet's third octet, its server ID.
struct Instance {
    ns: &'static str,
    net: u8,
    server_id: u8,
}

const INSTANCES: [Instance; 2] = [
    Instance {
        ns: "qf-a",
        net: 2,
        server_id: 0xa1,
    },
    Instance {
        ns: "qf-b",
        net: 3,
        server_id: 0xb2,
    },
];

/// Runs `args` (`ip`, `nft`, ...), failing with its output.
fn sh(args: &[&str]) -> Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("running {}", args[0]))?;
    ensure!(
        out.status.success(),
        "{} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// `args` run inside namespace `ns`.
fn in_ns(ns: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).args(args);
    cmd
}

/// Whether this machine can build the namespaces: root, iproute2 and nftables.
fn can_build() -> Result<(), String> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        return Err("needs root (network namespaces)".into());
    }
    for tool in ["ip", "nft"] {
        let found = Command::new(tool)
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Err(format!("needs `{tool}` (apt-get install iproute2 nftables)"));
        }
    }
    Ok(())
}

/// The namespaces, removed when dropped (with everything running in them killed first).
struct Net {
    children: Vec<Child>,
}

impl Drop for Net {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        remove_namespaces();
    }
}

fn remove_namespaces() {
    for ns in [CLIENT, LB, INSTANCES[0].ns, INSTANCES[1].ns] {
        let _ = Command::new("ip")
            .args(["netns", "del", ns])
            .stderr(Stdio::null())
            .status();
    }
}

/// The balancer's ruleset: marks by server ID (1 for a1, 2 for b2), else by a hash of the ID.
fn nft_rules() -> String {
    let mut rules = String::new();
    for (mark, i) in INSTANCES.iter().enumerate() {
        let (mark, id) = (mark + 1, i.server_id);
        // Short header: DCID from payload byte 1 (bit 72 of the UDP header on), its server ID at byte 2.
        rules += &format!("    @th,64,1 0 @th,72,3 0 @th,80,8 {id:#04x} meta mark set {mark} return\n");
        // Long header: DCID from payload byte 6 (bit 112), its server ID at byte 7.
        rules += &format!("    @th,64,1 1 @th,112,3 0 @th,120,8 {id:#04x} meta mark set {mark} return\n");
    }
    format!(
        "table ip quiclb {{
  chain pre {{
    type filter hook prerouting priority -150; policy accept;
    ip daddr {VIP} udp dport 443 jump quic
  }}
  chain quic {{
{rules}    meta mark set jhash @th,120,32 mod 2 offset 1
  }}
}}
"
    )
}

fn build_network() -> Result<Net> {
    remove_namespaces();
    let net = Net { children: Vec::new() };
    for ns in [CLIENT, LB, INSTANCES[0].ns, INSTANCES[1].ns] {
        sh(&["ip", "netns", "add", ns])?;
        sh(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
    }
    let mut links = vec![("qfc0", CLIENT, "10.77.1.2/24", "qfc1", "10.77.1.1/24")];
    let addrs: Vec<(String, String)> = INSTANCES
        .iter()
        .map(|i| (format!("10.77.{}.2/24", i.net), format!("10.77.{}.1/24", i.net)))
        .collect();
    let names = [("qfa0", "qfa1"), ("qfb0", "qfb1")];
    for ((i, (far, near)), (a, b)) in INSTANCES.iter().zip(&addrs).zip(names) {
        links.push((a, i.ns, far.as_str(), b, near.as_str()));
    }
    for (far_if, far_ns, far_addr, near_if, near_addr) in links {
        sh(&[
            "ip", "link", "add", far_if, "netns", far_ns, "type", "veth", "peer", "name", near_if, "netns",
            LB,
        ])?;
        sh(&["ip", "-n", far_ns, "addr", "add", far_addr, "dev", far_if])?;
        sh(&["ip", "-n", far_ns, "link", "set", far_if, "up"])?;
        sh(&["ip", "-n", LB, "addr", "add", near_addr, "dev", near_if])?;
        sh(&["ip", "-n", LB, "link", "set", near_if, "up"])?;
        let gateway = near_addr.split('/').next().unwrap_or_default();
        sh(&["ip", "-n", far_ns, "route", "add", "default", "via", gateway])?;
    }
    for i in &INSTANCES {
        sh(&["ip", "-n", i.ns, "addr", "add", &format!("{VIP}/32"), "dev", "lo"])?;
        let table = (100 + u32::from(i.net)).to_string();
        let via = format!("10.77.{}.2", i.net);
        sh(&["ip", "-n", LB, "route", "add", VIP, "via", &via, "table", &table])?;
        let mark = if i.net == INSTANCES[0].net { "1" } else { "2" };
        sh(&["ip", "-n", LB, "rule", "add", "fwmark", mark, "table", &table])?;
    }
    // Forwarding, and no reverse-path filter: both instances answer from the VIP.
    let mut sysctl = vec![
        "ip",
        "netns",
        "exec",
        LB,
        "sysctl",
        "-qw",
        "net.ipv4.ip_forward=1",
    ];
    let rp: Vec<String> = ["all", "default", "qfc1", "qfa1", "qfb1"]
        .iter()
        .map(|i| format!("net.ipv4.conf.{i}.rp_filter=0"))
        .collect();
    sysctl.extend(rp.iter().map(String::as_str));
    sh(&sysctl)?;
    let mut nft = in_ns(LB, &["nft", "-f", "-"]).stdin(Stdio::piped()).spawn()?;
    nft.stdin
        .take()
        .context("nft stdin")?
        .write_all(nft_rules().as_bytes())?;
    ensure!(nft.wait()?.success(), "nft refused the balancer's rules");
    Ok(net)
}

fn config(i: &Instance, combined: &Path) -> String {
    format!(
        "global
    nbthread 2
    server-id {id:02x}

defaults
    timeout connect 2s
    timeout server 10s

frontend fe
    bind quic4@{VIP}:443 ssl crt {crt} alpn h3
    default_backend be

backend be
    server origin 127.0.0.1:8080

frontend stats
    bind 127.0.0.1:8404
    http-request use-service prometheus-exporter if {{ path /metrics }}
",
        id = i.server_id,
        crt = combined.display()
    )
}

/// A metric of an instance, through curl in its namespace.
fn metric(i: &Instance, name: &str) -> Result<u64> {
    let out = in_ns(i.ns, &["curl", "-sf", "http://127.0.0.1:8404/metrics"]).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .with_context(|| format!("{} has no {name}", i.ns))
}

fn start(net: &mut Net, root: &Path, dir: &Path, combined: &Path) -> Result<()> {
    let www = dir.join("www");
    std::fs::create_dir_all(&www)?;
    let body: Vec<u8> = (0..BODY).map(|i| (i % 251) as u8).collect();
    std::fs::write(www.join("file"), body)?;
    for i in &INSTANCES {
        let origin = in_ns(
            i.ns,
            &[
                "python3",
                "-m",
                "http.server",
                "8080",
                "--bind",
                "127.0.0.1",
                "--directory",
            ],
        )
        .arg(&www)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("python3 -m http.server")?;
        net.children.push(origin);
        let cfg = dir.join(format!("{}.cfg", i.ns));
        std::fs::write(&cfg, config(i, combined))?;
        let log = std::fs::File::create(dir.join(format!("{}.log", i.ns)))?;
        let proxy = in_ns(i.ns, &[])
            .arg(root.join("target/debug/qproxy"))
            .args(["-q", "-f"])
            .arg(&cfg)
            .stderr(log)
            .spawn()?;
        net.children.push(proxy);
    }
    let until = Instant::now() + Duration::from_secs(20);
    for i in &INSTANCES {
        let origin_up = || {
            in_ns(
                i.ns,
                &["curl", "-sf", "-o", "/dev/null", "http://127.0.0.1:8080/file"],
            )
            .status()
            .is_ok_and(|s| s.success())
        };
        while metric(i, "qproxy_quic_connections_total").is_err() || !origin_up() {
            ensure!(
                Instant::now() < until,
                "{} did not come up (see {})",
                i.ns,
                dir.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(())
}

fn client_bin(root: &Path, name: &str) -> PathBuf {
    root.join("target/debug").join(name)
}

/// 16 connections, each moving to a new client port once idle, then a 1 MiB GET each.
fn port_changes(root: &Path, ca: &Path) -> Result<()> {
    let out = in_ns(CLIENT, &[])
        .arg(client_bin(root, "h3get"))
        .args([
            "--host",
            VIP,
            "--port",
            "443",
            "--connections",
            &CONNS.to_string(),
        ])
        .args(["--rebind-while-idle", "--timeout", "20", "--ca"])
        .arg(ca)
        .arg("/file")
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "h3get failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answered = text
        .lines()
        .filter(|l| l.contains("\"status\":200") && l.contains(&format!("\"len\":{BODY}")))
        .count();
    let rebound = text.lines().filter(|l| l.contains("\"rebound\":true")).count();
    ensure!(
        (answered, rebound) == (CONNS, CONNS),
        "{answered} of {CONNS} answered after {rebound} port changes: {text}"
    );
    Ok(())
}

/// h3load holding 16 connections, stepped one phase per line.
struct Held {
    child: Child,
    lines: BufReader<ChildStdout>,
}

impl Held {
    fn start(root: &Path, ca: &Path) -> Result<Held> {
        let mut child = in_ns(CLIENT, &[])
            .arg(client_bin(root, "h3load"))
            .args([
                "--host",
                VIP,
                "--port",
                "443",
                "--hold",
                "-c",
                &CONNS.to_string(),
                "-m",
                "1",
            ])
            .args(["--threads", "2", "--timeout", "60", "--ca"])
            .arg(ca)
            .arg("/file")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let lines = BufReader::new(child.stdout.take().context("h3load stdout")?);
        Ok(Held { child, lines })
    }

    fn next(&mut self) -> Result<serde_json::Value> {
        let mut line = String::new();
        self.lines.read_line(&mut line)?;
        serde_json::from_str(&line).with_context(|| format!("h3load printed {line:?}"))
    }

    fn step(&mut self) -> Result<serde_json::Value> {
        let stdin = self.child.stdin.as_mut().context("h3load stdin")?;
        stdin.write_all(b"go\n")?;
        stdin.flush()?;
        self.next()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn fleet(root: &Path) -> Result<()> {
    if let Err(why) = can_build() {
        if std::env::var_os("CI").is_some() {
            bail!("fleet: {why}");
        }
        println!("fleet: skipped: {why}");
        return Ok(());
    }
    let dir = std::env::temp_dir().join("qproxy-fleet");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let certs = cert::write(&dir)?;
    let mut net = build_network()?;
    start(&mut net, root, &dir, &certs.combined)?;

    port_changes(root, &certs.ca)?;
    let served: Vec<u64> = INSTANCES
        .iter()
        .map(|i| metric(i, "qproxy_quic_connections_total"))
        .collect::<Result<_>>()?;
    ensure!(
        served.iter().all(|&n| n > 0) && served.iter().sum::<u64>() == CONNS as u64,
        "connections per instance {served:?}: both serve, each connection once"
    );
    println!("fleet: {CONNS} connections changed port and stayed on their instance ({served:?})");

    let mut held = Held::start(root, &certs.ca)?;
    let connected = held.next()?;
    ensure!(connected["connections"] == CONNS, "h3load connected {connected}");
    let live: Vec<u64> = INSTANCES
        .iter()
        .map(|i| metric(i, "qproxy_quic_connections"))
        .collect::<Result<_>>()?;
    ensure!(
        live.iter().all(|&n| n > 0),
        "held connections per instance {live:?}: both must have some"
    );
    // Kill instance a (the proxy is the second child started for it).
    let a = &mut net.children[1];
    a.kill()?;
    a.wait()?;
    held.step()?;
    let report = held.step()?;
    let requests = report["requests"].as_u64().unwrap_or(0);
    ensure!(
        requests == live[1],
        "after instance a was killed, {requests} requests answered; instance b held {} connections: {report}",
        live[1]
    );
    println!(
        "fleet: instance a killed with {} connections; all {} of instance b's answered",
        live[0], live[1]
    );
    Ok(())
}
