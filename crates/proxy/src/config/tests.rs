//! The parser's tests: a full configuration, every error naming its line, keywords of each section.

use super::lexer::{parse_duration, parse_size, words};
use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("/etc/qproxy/test.cfg"), text)
}

fn cert() -> String {
    // Any readable file will do for the parser.
    std::env::current_exe().unwrap().display().to_string()
}

fn base() -> String {
    format!(
        "global\n  tune.quic.mem.tx-max 1m\n\ndefaults\n  timeout connect 2s\n  option forwardfor\n\nfrontend web\n  bind quic4@127.0.0.1:4433 ssl crt {} alpn h3\n  http-response set-header alt-svc \"h3=\\\":443\\\";ma=900\"\n  use_backend api if {{ path_beg /api /v2 }}\n  use_backend api if {{ hdr(host) -i API.example.com }}\n  default_backend app\n\nbackend app\n  balance roundrobin\n  server a 127.0.0.1:8080 weight 2 check\n  server b 127.0.0.1:8081\n\nbackend api\n  timeout server 5s\n  server c [::1]:9000\n\nfrontend stats\n  bind 127.0.0.1:8404\n  http-request use-service prometheus-exporter if {{ path /metrics }}\n",
        cert()
    )
}

#[test]
fn a_full_configuration_parses() {
    let c = parse(&base()).unwrap();
    assert_eq!(c.global.tx_mem_max, 1 << 20);
    let f = &c.frontends[0];
    assert_eq!(f.binds[0].addr, "127.0.0.1:4433".parse().unwrap());
    assert_eq!(
        f.set_response_headers.to_vec(),
        vec![("alt-svc".into(), "h3=\":443\";ma=900".into())]
    );
    assert_eq!(f.rules[0].acl, Acl::PathBeg(vec!["/api".into(), "/v2".into()]));
    assert!(matches!(&f.rules[1].acl, Acl::Hdr { name, ignore_case: true, .. } if name == "host"));
    assert!(f.forwardfor);
    assert_eq!(f.timeouts.connect, Duration::from_secs(2));
    assert_eq!(c.backends[0].servers[0].options.weight, 2);
    assert_eq!(c.backends[1].timeouts.server, Duration::from_secs(5));
    assert_eq!(c.backends[1].timeouts.connect, Duration::from_secs(2));
    assert_eq!(c.stats[0].metrics_path.as_deref(), Some("/metrics"));
    assert!(c.global.memory_trimming, "trimming is on unless turned off");
    let off = parse(&base().replacen("global\n", "global\n  no-memory-trimming\n", 1)).unwrap();
    assert!(!off.global.memory_trimming);
}

#[test]
fn quic_cc_algo_names_haproxys_controllers_and_refuses_the_rest() {
    assert_eq!(
        parse(&base()).unwrap().frontends[0].binds[0].cc_algo,
        CcAlgo::Cubic
    );
    for (name, algo) in [
        ("cubic", CcAlgo::Cubic),
        ("newreno", CcAlgo::NewReno),
        ("bbr", CcAlgo::Bbr),
    ] {
        let text = base().replacen(" alpn h3\n", &format!(" alpn h3 quic-cc-algo {name}\n"), 1);
        assert_eq!(
            parse(&text).unwrap().frontends[0].binds[0].cc_algo,
            algo,
            "{name}"
        );
    }
    for (option, expected) in [
        (
            "quic-cc-algo nocc",
            "quic-cc-algo 'nocc': expected cubic, newreno or bbr",
        ),
        (
            "quic-cc-algo",
            "expected cubic, newreno or bbr after 'quic-cc-algo'",
        ),
    ] {
        let text = base().replacen(" alpn h3\n", &format!(" alpn h3 {option}\n"), 1);
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains(expected), "{option}: {err}");
    }
}

#[test]
fn early_data_is_off_unless_a_bind_allows_it() {
    let c = parse(&base()).unwrap();
    let f = &c.frontends[0];
    assert!(!f.binds[0].allow_0rtt);
    assert!(f.early_data.forwards_early("GET") && f.early_data.forwards_early("HEAD"));
    assert!(!f.early_data.forwards_early("POST"));
    let text = base().replacen(
        " alpn h3\n",
        " alpn h3 allow-0rtt\n  early-data-methods GET\n  http-request wait-for-handshake\n",
        1,
    );
    let c = parse(&text).unwrap();
    let f = &c.frontends[0];
    assert!(f.binds[0].allow_0rtt);
    assert_eq!(f.early_data.methods, vec!["GET".to_string()]);
    assert!(f.early_data.wait_for_handshake && !f.early_data.forwards_early("GET"));
}

fn error_line(text: &str) -> (usize, String) {
    let e = parse(text).unwrap_err();
    assert_eq!(e.file, Path::new("/etc/qproxy/test.cfg"));
    (e.line, e.message)
}

#[test]
fn errors_name_the_line_and_what_was_expected() {
    let good = base();
    let lines: Vec<&str> = good.lines().collect();
    let with = |n: usize, replacement: &str| {
        let mut l = lines.clone();
        l[n - 1] = replacement;
        l.join("\n")
    };
    let cases = [
        (2, "  tune.quic.mem.tx-max lots", "size"),
        (2, "  no-memory-trimming now", "unexpected 'now'"),
        (5, "  timeout connect soon", "duration"),
        (5, "  timeout whenever 2s", "unknown timeout"),
        (6, "  option teleport", "unknown option"),
        (9, "  bind quic4@[::1]:4433 ssl crt x", "quic4@ takes an IPv4"),
        (
            9,
            "  bind quic4@127.0.0.1:4433 crt /etc/hosts",
            "needs 'ssl crt FILE'",
        ),
        (
            9,
            "  bind quic4@127.0.0.1:4433 ssl crt /nonexistent.pem",
            "cannot read the certificate",
        ),
        (11, "  use_backend api if { path_beg }", "at least one value"),
        (11, "  early-data-methods", "at least one method"),
        (11, "  early-data-methods GET P@ST", "'P@ST' is not a method"),
        (
            11,
            "  http-request wait-for-handshake if { path / }",
            "takes no condition",
        ),
        (
            11,
            "  http-request deny",
            "expected 'http-request wait-for-handshake' or",
        ),
        (11, "  use_backend api when { path_beg /a }", "'if' or 'unless'"),
        (13, "  default_backend nowhere", "no backend named 'nowhere'"),
        (17, "  server a 127.0.0.1 weight 2", "ADDRESS:PORT"),
        (17, "  server a 127.0.0.1:8080 weight 0", "weight from 1 to 256"),
        (16, "  balance fastest", "unknown balance"),
        (
            18,
            "  srever b 127.0.0.1:8081",
            "unknown keyword 'srever' in backend 'app'",
        ),
    ];
    for (n, line, expect) in cases {
        let (at, msg) = error_line(&with(n, line));
        assert_eq!(at, n, "{line:?}: {msg}");
        assert!(msg.contains(expect), "{line:?}: '{msg}' lacks '{expect}'");
    }
}

#[test]
fn balancing_checks_queues_and_retries_parse() {
    let text = format!(
        "defaults\n  retries 2\n  option redispatch\n  timeout queue 3s\n  default-server inter 1s fall 4\n\
         frontend web\n  bind quic4@127.0.0.1:4433 ssl crt {}\n  default_backend app\n\
         backend app\n  balance hdr(X-User)\n  option httpchk GET /health\n  http-check expect status 204\n  timeout check 500ms\n\
         \x20 server a 127.0.0.1:8080 check rise 3 maxconn 10 maxqueue 5 observe layer7 error-limit 4\n\
         \x20 default-server inter 250ms\n  server b 127.0.0.1:8081 weight 3\n\
         backend other\n  balance random(3)\n  retries 0\n  option allbackups\n  server c 127.0.0.1:9000 check port 9001\n  server d 127.0.0.1:9002 backup\n\
         frontend stats\n  bind 127.0.0.1:8404\n  stats uri /stats\n",
        cert()
    );
    let c = parse(&text).unwrap();
    let app = &c.backends[0];
    assert_eq!(app.settings.balance, Balance::Hdr("x-user".into()));
    assert_eq!((app.settings.retries, app.settings.redispatch), (2, true));
    let chk = app.settings.httpchk.as_ref().unwrap();
    assert_eq!(
        (chk.method.as_str(), chk.uri.as_str(), chk.expect_status),
        ("GET", "/health", Some(204))
    );
    assert_eq!(app.queue_timeout(), Duration::from_secs(3));
    let (a, b) = (&app.servers[0].options, &app.servers[1].options);
    assert!(a.check && !b.check);
    assert_eq!((a.inter, a.rise, a.fall), (Duration::from_secs(1), 3, 4));
    assert_eq!(
        (a.maxconn, a.maxqueue, a.observe, a.error_limit),
        (10, 5, Some(Observe::Layer7), 4)
    );
    assert_eq!((b.inter, b.weight, b.fall), (Duration::from_millis(250), 3, 4));
    assert_eq!(app.check_timeout(&app.servers[0]), Duration::from_millis(500));
    assert_eq!(app.queue_limit(), 5);
    let other = &c.backends[1];
    assert_eq!(other.settings.balance, Balance::Random { draws: 3 });
    assert_eq!((other.settings.retries, other.settings.redispatch), (0, true));
    assert!(other.settings.allbackups && !app.settings.allbackups);
    let (c_, d) = (&other.servers[0], &other.servers[1]);
    assert_eq!(c_.check_addr(), "127.0.0.1:9001".parse().unwrap());
    assert_eq!(
        d.check_addr(),
        d.addr,
        "checks go to the server's own port by default"
    );
    assert!(d.options.backup && !c_.options.backup);
    assert_eq!(c.stats[0].stats_path.as_deref(), Some("/stats"));
    assert_eq!(c.stats[0].metrics_path, None);

    for (line, expect) in [
        ("  balance fastest", "unknown balance algorithm 'fastest'"),
        ("  balance random(0)", "random(N) with N from 1 to 16"),
        ("  server x 127.0.0.1:1 observe layer4", "add 'check'"),
        (
            "  server x 127.0.0.1:1 check inter soon",
            "check interval as a duration",
        ),
        ("  server x 127.0.0.1:1 fall 0", "fall count from 1 to 1000"),
        (
            "  server x 127.0.0.1:1 observe layer9 check",
            "observe layer4 or layer7",
        ),
        ("  http-check expect status 999", "status code from 100 to 599"),
        ("  http-check send meth GET", "http-check expect status CODE"),
        ("  option httpchk GET health", "start with '/'"),
        ("  retries many", "retry count from 0 to 100"),
        (
            "  server x 127.0.0.1:1 check port 0",
            "check port from 1 to 65535",
        ),
        ("  option allbackups please", "unexpected 'please'"),
    ] {
        let bad = format!(
            "frontend web\n  bind quic4@127.0.0.1:4433 ssl crt {}\n  default_backend app\nbackend app\n  server a 127.0.0.1:1\n{line}\n",
            cert()
        );
        let (at, msg) = error_line(&bad);
        assert_eq!(at, 6, "{line}: {msg}");
        assert!(msg.contains(expect), "{line}: '{msg}' lacks '{expect}'");
    }
}

#[test]
fn structural_errors() {
    assert!(error_line("timeout connect 1s\n").1.contains("outside a section"));
    assert!(error_line("global\n").1.contains("no HTTP/3 frontend"));
    assert!(error_line("frontend f\n  bind 127.0.0.1:80\n")
        .1
        .contains("serves only stats"));
    assert!(error_line("backend b\n").1.contains("has no server"));
    assert!(error_line("global\n  nbthread \"2\n").1.contains("unterminated"));
}

#[test]
fn durations_and_sizes() {
    assert_eq!(parse_duration("250"), Some(Duration::from_millis(250)));
    assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
    assert_eq!(parse_duration("10us"), Some(Duration::from_micros(10)));
    assert_eq!(parse_duration("1x"), None);
    assert_eq!(parse_size("64k"), Some(65536));
    assert_eq!(parse_size("4M"), Some(4 << 20));
    assert_eq!(parse_size("k"), None);
}

#[test]
fn words_handle_quotes_and_comments() {
    assert_eq!(
        words(r#"a "b c" 'd\e' f\ g # h"#).unwrap(),
        vec!["a", "b c", "d\\e", "f g"]
    );
}

#[test]
fn workers_and_the_server_id() {
    let c = parse(&base()).unwrap();
    assert_eq!(c.global.nbthread, None, "one worker per CPU unless nbthread says");
    assert!(c.global.workers() >= 1);
    assert!(c.global.kernel_steering && c.global.server_id.is_none());
    let with = |lines: &str| base().replacen("global\n", &format!("global\n{lines}"), 1);
    let c = parse(&with(
        "  nbthread 3\n  server-id 0A1b\n  tune.quic.disable-kernel-steering\n",
    ))
    .unwrap();
    assert_eq!((c.global.nbthread, c.global.workers()), (Some(3), 3));
    assert_eq!(c.global.server_id.as_deref(), Some(&[0x0a, 0x1b][..]));
    assert!(!c.global.kernel_steering);
    assert_eq!(
        parse(&with("  server-id 0xff\n")).unwrap().global.server_id,
        Some(vec![0xff])
    );
    for bad in ["abc", "+f", "zz", "", "001122334455667788990011223344"] {
        let (at, msg) = error_line(&with(&format!("  server-id '{bad}'\n")));
        assert_eq!(at, 2, "{bad}: {msg}");
        assert!(msg.contains("1 to 14 bytes in hex"), "{bad}: {msg}");
    }
    assert!(error_line(&with("  nbthread 65\n")).1.contains("from 1 to 64"));
}

#[test]
fn the_quic_lb_key_needs_a_short_enough_server_id_and_at_most_32_workers() {
    let with = |lines: &str| base().replacen("global\n", &format!("global\n{lines}"), 1);
    let key = "8f95f09245765f80256934e50c66207f";
    let c = parse(&with(&format!(
        "  quic-lb-key {key}\n  server-id ed793a51d49b8f5f\n"
    )))
    .unwrap();
    assert_eq!(c.global.quic_lb_key.as_ref().map(|k| k.0[0]), Some(0x8f));
    assert!(c.global.workers() <= 32);
    assert_eq!(
        format!("{:?}", c.global.quic_lb_key),
        "Some(LbKey(..))",
        "the key never shows"
    );
    for (lines, line, expected) in [
        (format!("  quic-lb-key {key}\n"), 2, "needs a 'server-id HEX'"),
        (
            format!("  server-id 00112233445566778899aabbcc\n  quic-lb-key {key}\n"),
            3,
            "at most 12 bytes",
        ),
        (
            format!("  nbthread 33\n  server-id 01\n  quic-lb-key {key}\n"),
            4,
            "at most 32 workers",
        ),
        ("  quic-lb-key 8f95\n".to_string(), 2, "16-byte AES-128 key"),
        (format!("  quic-lb-key {key}00\n"), 2, "16-byte AES-128 key"),
    ] {
        let (at, msg) = error_line(&with(&lines));
        assert_eq!(at, line, "{lines}: {msg}");
        assert!(msg.contains(expected), "{lines}: {msg}");
    }
}

#[test]
fn log_targets_and_their_errors() {
    use super::{LogDest, LogFormat};
    let with = |lines: &str| base().replacen("global\n", &format!("global\n{lines}"), 1);
    let c = parse(&with(
        "  log /dev/log local0\n  log 10.0.0.5 len 4096 format rfc5424 local7 notice\n  log stdout format raw daemon\n",
    ))
    .unwrap();
    let logs = &c.global.logs;
    assert_eq!(logs.len(), 3);
    assert_eq!(logs[0].dest, LogDest::Unix("/dev/log".into()));
    assert_eq!(
        (logs[0].format, logs[0].facility, logs[0].level, logs[0].max_len),
        (LogFormat::Rfc3164, 16, 7, 1024)
    );
    assert_eq!(logs[1].dest, LogDest::Udp("10.0.0.5:514".parse().unwrap()));
    assert_eq!(
        (logs[1].format, logs[1].facility, logs[1].level, logs[1].max_len),
        (LogFormat::Rfc5424, 23, 5, 4096)
    );
    assert_eq!(
        (logs[2].dest.clone(), logs[2].format, logs[2].facility),
        (LogDest::Stdout, LogFormat::Raw, 3)
    );
    assert_eq!(
        parse(&with("  log udp@127.0.0.1:5140 local0\n"))
            .unwrap()
            .global
            .logs[0]
            .dest,
        LogDest::Udp("127.0.0.1:5140".parse().unwrap())
    );
    for (line, expected) in [
        ("  log /dev/log\n", "a syslog facility"),
        ("  log /dev/log local9\n", "unknown syslog facility 'local9'"),
        ("  log nowhere local0\n", "expected a log target"),
        ("  log stdout format json local0\n", "log format 'json'"),
        ("  log stdout len 10 local0\n", "from 80 to 65535"),
        ("  log stdout local0 chatty\n", "unknown log level 'chatty'"),
        ("  log stdout local0 info err extra\n", "unexpected 'extra'"),
    ] {
        let (at, msg) = error_line(&with(line));
        assert_eq!(at, 2, "{line}: {msg}");
        assert!(msg.contains(expected), "{line}: {msg}");
    }
    // A frontend takes `log global` and `option jsonlog`, never a target of its own.
    let front = |lines: &str| {
        base()
            .replacen(
                "frontend",
                "defaults\n  option jsonlog\n  log global\nfrontend",
                1,
            )
            .replacen("default_backend", &format!("{lines}  default_backend"), 1)
    };
    let c = parse(&front("  log global\n")).unwrap();
    assert!(c.frontends[0].json_log, "from defaults");
    let text = front("  log 127.0.0.1 local0\n");
    let (at, msg) = error_line(&text);
    assert_eq!(text.lines().nth(at - 1).unwrap().trim(), "log 127.0.0.1 local0");
    assert!(msg.contains("only 'log global'"), "{msg}");
}

#[test]
fn the_cluster_secret_is_long_enough_and_never_shown() {
    let with = |lines: &str| base().replacen("global\n", &format!("global\n{lines}"), 1);
    let c = parse(&with("  cluster-secret 'a long enough secret'\n")).unwrap();
    assert_eq!(c.global.cluster_secret.as_ref().map(|s| s.0.len()), Some(20));
    assert!(!format!("{c:?}").contains("enough"), "the secret never shows");
    let (at, msg) = error_line(&with("  cluster-secret short\n"));
    assert_eq!(at, 2);
    assert!(msg.contains("at least 16 characters"), "{msg}");
}

#[test]
fn quic_initial_rules_and_their_errors() {
    use super::{Compare, InitialAction, InitialCond};
    let with = |lines: &str| {
        base().replacen(
            "  default_backend app\n",
            &format!("{lines}  default_backend app\n"),
            1,
        )
    };
    let c = parse(&with(
        "  quic-initial dgram-drop if { src 10.0.0.0/8 192.0.2.7 2001:db8::/32 }\n  quic-initial reject unless { src_conn_cur lt 10 }\n  quic-initial send-retry\n",
    ))
    .unwrap();
    let rules = &c.frontends[0].quic_initial;
    assert_eq!(rules.len(), 3);
    assert_eq!(rules[0].action, InitialAction::DgramDrop);
    let Some((InitialCond::Src(nets), false)) = &rules[0].cond else {
        panic!("{rules:?}");
    };
    assert_eq!(nets.len(), 3);
    let src = rules[0].cond.as_ref().unwrap();
    for (ip, inside) in [
        ("10.9.8.7", true),
        ("11.0.0.1", false),
        ("192.0.2.7", true),
        ("::ffff:10.1.1.1", true),
        ("2001:db8::1", true),
    ] {
        assert_eq!(
            src.0.holds(super::canonical(ip.parse().unwrap()), || 0),
            inside,
            "{ip}"
        );
    }
    assert_eq!(
        rules[1].cond,
        Some((InitialCond::SrcConnCur(Compare::Lt, 10), true))
    );
    assert_eq!(
        (rules[2].action, rules[2].cond.is_none()),
        (InitialAction::SendRetry, true)
    );
    for (line, expected) in [
        ("  quic-initial deny\n", "unknown quic-initial action 'deny'"),
        (
            "  quic-initial reject if { src 10.0.0.300/8 }\n",
            "an address or network",
        ),
        ("  quic-initial reject if { src }\n", "at least one address"),
        (
            "  quic-initial reject if { src_conn_cur above 3 }\n",
            "unknown operator 'above'",
        ),
        (
            "  quic-initial reject if { path /x }\n",
            "unknown fetch 'path' for quic-initial",
        ),
        (
            "  quic-initial reject when { src 10.0.0.1 }\n",
            "expected 'if' or 'unless'",
        ),
    ] {
        let text = with(line);
        let (at, msg) = error_line(&text);
        assert_eq!(text.lines().nth(at - 1).unwrap(), line.trim_end(), "{msg}");
        assert!(msg.contains(expected), "{line}: {msg}");
    }
}

#[test]
fn tx_memory_has_a_per_connection_budget_and_a_process_cap_under_haproxys_names() {
    let without = base().replace("  tune.quic.mem.tx-max 1m\n", "");
    let c = parse(&without).unwrap();
    assert_eq!((c.global.conn_tx_buf, c.global.tx_mem_max), (4 << 20, 1 << 30));
    for cap in ["tune.quic.mem.tx-max", "tune.quic.frontend.max-tx-mem"] {
        let lines = format!("  tune.quic.fe.conn.tx-buf 512k\n  {cap} 2m\n");
        let c = parse(&base().replace("  tune.quic.mem.tx-max 1m\n", &lines)).unwrap();
        assert_eq!(
            (c.global.conn_tx_buf, c.global.tx_mem_max),
            (512 << 10, 2 << 20),
            "{cap}"
        );
    }
}
