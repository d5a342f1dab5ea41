//! The Chromium column: Debian's `chromium`, headless, a real browser's QUIC and HTTP/3 stack. It is
//! told to use QUIC for the proxy's origin (`--origin-to-force-quic-on`, as after an `Alt-Svc`), to trust
//! the demo leaf by its SPKI hash, and prints the page's DOM once loaded (`--dump-dom`).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::{free_tcp, free_udp, retry_case, variant, with_faults, Outcome, Running, Setup};

/// The page's JavaScript writes its verdict after this marker.
const RESULT: &str = "RESULT ";

fn installed() -> bool {
    Command::new("chromium")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Loads `https://localhost:PORT/PATH`, with localhost resolved to `ip` (`127.0.0.1` or `[::1]`), in a
/// fresh profile; the DOM after the load event and up to 30 s of (virtual) time for the page's scripts,
/// or `FAILED` and Chromium's last error line.
fn dump_dom(s: &Setup, (ip, port): (&str, u16), path: &str) -> Result<String> {
    let spki = std::fs::read_to_string(s.dir.join("server.spki")).context("the demo's server.spki")?;
    let profile = s.dir.join(format!("chromium-{port}"));
    let _ = std::fs::remove_dir_all(&profile);
    let authority = format!("localhost:{port}");
    let out = super::run(
        Command::new("timeout")
            .args(["90", "chromium", "--headless", "--no-sandbox", "--disable-gpu"])
            .args(["--disable-background-networking", "--disable-component-update"])
            .args([
                "--disable-sync",
                "--no-first-run",
                "--virtual-time-budget=30000",
                "--dump-dom",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            // Chromium would try both addresses of localhost, and the demo listens on one.
            .arg(format!("--host-resolver-rules=MAP localhost {ip}"))
            .arg(format!("--origin-to-force-quic-on={authority}"))
            .arg(format!("--ignore-certificate-errors-spki-list={}", spki.trim()))
            .arg(format!("https://{authority}{path}")),
    )?;
    let _ = std::fs::remove_dir_all(&profile);
    let dom = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() || dom.is_empty() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().rfind(|l| !l.contains("dbus")).unwrap_or("");
        return Ok(format!("FAILED {last}"));
    }
    Ok(dom)
}

/// Passes when the demo origin's greeting is in the DOM.
fn greeting(dom: &str) -> Outcome {
    if dom.contains("Hello from the qproxy demo origin") {
        Outcome::Pass
    } else {
        Outcome::Fail(dom.chars().take(300).collect())
    }
}

/// The browser page (`browser_page.py`): 50 PNG images and a 20 MB file, each fetched again and its
/// SHA-256 checked by the page, through a qproxy instance whose backend serves the page.
fn page(s: &Setup) -> Result<Outcome> {
    let www = s.dir.join("browser-page");
    let origin_port = free_tcp()?;
    let _origin = Running(
        Command::new("python3")
            .arg(s.root.join("xtask/src/integration/browser_page.py"))
            .arg(&www)
            .arg(origin_port.to_string())
            .stdout(Stdio::null())
            .spawn()
            .context("python3 for the browser page's origin")?,
    );
    wait_for_tcp(origin_port, &www)?;
    let config = std::fs::read_to_string(s.dir.join("qproxy.cfg"))?;
    let server = config
        .lines()
        .find(|l| l.trim_start().starts_with("server origin1 "))
        .context("the demo's server line")?;
    let config = config.replace(server, &format!("    server origin1 127.0.0.1:{origin_port}"));
    let bind = config
        .lines()
        .find(|l| l.trim_start().starts_with("bind quic4@"))
        .context("demo bind")?;
    let port = free_udp(false)?;
    let page_bind = bind.replace(&format!(":{} ", s.port), &format!(":{port} "));
    let bin = s.root.join("target/debug/qproxy");
    let _proxy = variant(&bin, &s.dir, "browser-page", &config, (bind, &page_bind), None)?;
    let dom = dump_dom(s, ("127.0.0.1", port), "/index.html")?;
    Ok(verdict(&dom))
}

/// Waits (at most 60 s: the page's files are written first) until the page's origin accepts.
fn wait_for_tcp(port: u16, www: &Path) -> Result<()> {
    for _ in 0..600 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!(
        "the browser page's origin never listened on {port} (files in {})",
        www.display()
    )
}

/// The page's verdict: no problem (every body of the right size and hash, every image decoded at its
/// size), and every Resource Timing entry, the page's navigation included, came over `h3`.
fn verdict(dom: &str) -> Outcome {
    use qproxy_tests::json::lines;
    let Some(json) = dom.split(RESULT).nth(1).and_then(|r| r.split("</pre>").next()) else {
        return Outcome::Fail(format!(
            "no verdict in the page: {}",
            dom.chars().take(300).collect::<String>()
        ));
    };
    let Some(v) = lines(json).into_iter().next() else {
        return Outcome::Fail(format!("unreadable verdict {json}"));
    };
    let problems = v["problems"].as_array().map_or(1, Vec::len);
    let protocols = v["protocols"].as_object().cloned().unwrap_or_default();
    let entries = v["entries"].as_u64().unwrap_or(0);
    let h3 = protocols
        .get("h3")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    if problems > 0 {
        Outcome::Fail(format!("the page found problems: {}", v["problems"]))
    } else if entries < 102 || h3 != entries {
        Outcome::Fail(format!(
            "{entries} resources (want 102: page, 50 images, 51 checks), protocols {protocols:?}"
        ))
    } else {
        Outcome::Pass
    }
}

pub(super) fn case(s: &Setup, name: &str) -> Result<Outcome> {
    if !installed() {
        return Ok(Outcome::Unsupported(
            "chromium not installed (apt-get install chromium)",
        ));
    }
    let demo = ("127.0.0.1", s.port);
    Ok(match name {
        "handshake" => greeting(&dump_dom(s, demo, "/")?),
        "http3" => page(s)?,
        "ipv6" => greeting(&dump_dom(s, ("[::1]", s.port6), "/")?),
        "retry" => retry_case(s, |port| Ok(greeting(&dump_dom(s, ("127.0.0.1", port), "/")?)))?,
        "handshakeloss" => with_faults(s, 0.3, |addr, _| {
            Ok(greeting(&dump_dom(s, ("127.0.0.1", addr.port()), "/")?))
        })?,
        "transfer" | "multiplexing" => {
            Outcome::Unsupported("in the http3 case: the page's 20 MB file and 101 parallel requests")
        }
        _ => Outcome::Unsupported("a browser offers no control of it"),
    })
}
