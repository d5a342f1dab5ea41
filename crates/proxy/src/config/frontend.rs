//! The keywords of a frontend section (HTTP/3 or stats): binds, backend rules, response fields, the
//! stats paths and the early-data policy.

use super::lexer::{addr_arg, need, no_more, Res};
use super::parser::{Parser, Section};
use super::*;

impl Parser {
    /// `bind`.
    pub(super) fn bind(&mut self, args: &[String]) -> Res<()> {
        let (i, line) = (self.frontend_index(), self.line);
        let target = need(args, 1, "an address after 'bind'")?;
        if let Some(rest) = target
            .strip_prefix("quic4@")
            .or_else(|| target.strip_prefix("quic6@"))
        {
            let addr = addr_arg(rest, "the bind address")?;
            if target.starts_with("quic4@") != addr.is_ipv4() {
                return Err(format!(
                    "'{target}': quic4@ takes an IPv4 address, quic6@ an IPv6 one"
                ));
            }
            let (mut cert, mut key, mut ssl, mut force_retry, mut allow_0rtt) =
                (None, None, false, false, false);
            let mut cc_algo = CcAlgo::default();
            let mut j = 2;
            while j < args.len() {
                match args[j].as_str() {
                    "ssl" => ssl = true,
                    "crt" => {
                        cert = Some(self.path(need(args, j + 1, "a PEM file after 'crt'")?));
                        j += 1;
                    }
                    "key" => {
                        key = Some(self.path(need(args, j + 1, "a PEM file after 'key'")?));
                        j += 1;
                    }
                    "alpn" => {
                        let alpn = need(args, j + 1, "a protocol list after 'alpn'")?;
                        if !alpn.split(',').any(|p| p == "h3") {
                            return Err(format!("alpn '{alpn}' lacks h3, the only protocol served on QUIC"));
                        }
                        j += 1;
                    }
                    "allow-0rtt" => allow_0rtt = true,
                    "quic-force-retry" => force_retry = true,
                    "quic-cc-algo" => {
                        cc_algo = match need(args, j + 1, "cubic, newreno or bbr after 'quic-cc-algo'")? {
                            "cubic" => CcAlgo::Cubic,
                            "newreno" => CcAlgo::NewReno,
                            "bbr" => CcAlgo::Bbr,
                            other => {
                                return Err(format!(
                                    "quic-cc-algo '{other}': expected cubic, newreno or bbr (quiche has no 'nocc' and takes no arguments)"
                                ))
                            }
                        };
                        j += 1;
                    }
                    other => return Err(format!("unknown bind option '{other}'; expected ssl, crt FILE, key FILE, alpn h3, allow-0rtt, quic-cc-algo ALGO or quic-force-retry")),
                }
                j += 1;
            }
            if !ssl {
                return Err("a QUIC bind needs 'ssl crt FILE' (QUIC is always encrypted)".into());
            }
            let cert =
                cert.ok_or("a QUIC bind needs 'crt FILE' (a PEM with the certificate chain and key)")?;
            for (what, path) in [("certificate", &cert), ("key", key.as_ref().unwrap_or(&cert))] {
                std::fs::metadata(path)
                    .map_err(|e| format!("cannot read the {what} file {}: {e}", path.display()))?;
            }
            let key = key.unwrap_or_else(|| cert.clone());
            self.fronts[i].front.binds.push(QuicBind {
                addr,
                cert,
                key,
                force_retry,
                allow_0rtt,
                cc_algo,
            });
        } else {
            let addr = addr_arg(
                target,
                "the bind address (TCP for a stats frontend, quic4@/quic6@ for HTTP/3)",
            )?;
            no_more(args, 2)?;
            self.fronts[i].tcp_bind = Some((addr, line));
            self.section = Section::Stats(i);
        }
        Ok(())
    }

    /// `default_backend`.
    pub(super) fn default_backend(&mut self, args: &[String]) -> Res<()> {
        let (i, line) = (self.frontend_index(), self.line);
        let name = need(args, 1, "a backend name")?.to_string();
        no_more(args, 2)?;
        self.backend_refs.push((line, name.clone()));
        self.fronts[i].front.default_backend = Some(name);
        Ok(())
    }

    /// `use_backend`.
    pub(super) fn use_backend(&mut self, args: &[String]) -> Res<()> {
        let (i, line) = (self.frontend_index(), self.line);
        let name = need(args, 1, "a backend name")?.to_string();
        let (acl, negate) = Self::acl(args, 2)?;
        self.backend_refs.push((line, name.clone()));
        self.fronts[i].front.rules.push(Rule {
            backend: name,
            acl,
            negate,
        });
        Ok(())
    }

    /// `http-response`.
    pub(super) fn http_response(&mut self, args: &[String]) -> Res<()> {
        let i = self.frontend_index();
        match need(args, 1, "an action such as set-header")? {
            "set-header" => {}
            other => {
                return Err(format!(
                    "unknown http-response action '{other}'; expected set-header"
                ))
            }
        }
        let name = need(args, 2, "a header name")?.to_ascii_lowercase();
        let value = need(args, 3, "a header value")?.to_string();
        no_more(args, 4)?;
        // Shared by every request's exchange, so kept in an Arc; built once, at load.
        let headers = &mut self.fronts[i].front.set_response_headers;
        *headers = headers.iter().cloned().chain([(name, value)]).collect();
        Ok(())
    }

    /// `http-request`.
    pub(super) fn http_request(&mut self, args: &[String]) -> Res<()> {
        let (i, line) = (self.frontend_index(), self.line);
        const EXPECTED: &str = "expected 'http-request wait-for-handshake' or 'http-request use-service prometheus-exporter if { path /metrics }'";
        if need(args, 1, "an action")? == "wait-for-handshake" {
            if args.len() > 2 {
                return Err(
                    "expected 'http-request wait-for-handshake' alone (it takes no condition here)".into(),
                );
            }
            self.fronts[i].front.early_data.wait_for_handshake = true;
            return Ok(());
        }
        if args[1] != "use-service" || need(args, 2, "a service")? != "prometheus-exporter" {
            return Err(EXPECTED.into());
        }
        let (acl, negate) = Self::acl(args, 3)?;
        match (acl, negate) {
            (Acl::Path(paths), false) if paths.len() == 1 => {
                self.fronts[i].metrics_path = Some((paths[0].clone(), line));
                Ok(())
            }
            _ => Err("expected the condition '{ path /metrics }' (one exact path)".into()),
        }
    }

    /// `stats`.
    pub(super) fn stats(&mut self, args: &[String]) -> Res<()> {
        let (i, line) = (self.frontend_index(), self.line);
        match need(args, 1, "a stats keyword such as uri")? {
            "uri" => {
                let path = need(args, 2, "a path after 'stats uri'")?;
                if !path.starts_with('/') {
                    return Err(format!(
                        "expected the stats path to start with '/', found '{path}'"
                    ));
                }
                self.fronts[i].stats_path = Some((path.to_string(), line));
                no_more(args, 3)
            }
            "enable" | "refresh" | "show-legends" | "realm" | "auth" | "admin" | "hide-version" => Ok(()),
            other => Err(format!(
                "unknown stats keyword '{other}'; expected stats uri PATH"
            )),
        }
    }

    /// `early-data-methods`.
    pub(super) fn early_data_methods(&mut self, args: &[String]) -> Res<()> {
        let i = self.frontend_index();
        need(args, 1, "at least one method, such as GET HEAD OPTIONS")?;
        if let Some(bad) = args[1..].iter().find(|m| {
            !m.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        }) {
            return Err(format!(
                "'{bad}' is not a method; expected methods such as GET HEAD OPTIONS"
            ));
        }
        self.fronts[i].front.early_data.methods = args[1..].to_vec();
        Ok(())
    }
}
