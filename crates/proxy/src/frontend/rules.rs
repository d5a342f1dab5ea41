//! Which backend serves a request: `use_backend` rules in order, then `default_backend`.

use qcc::RequestHead;

use crate::config::{Acl, Config, Frontend};

fn host_without_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.find(']').map_or(authority, |end| &authority[..=end]);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

fn matches(acl: &Acl, head: &RequestHead) -> bool {
    let path = head.path().split('?').next().unwrap_or("");
    match acl {
        Acl::PathBeg(prefixes) => prefixes.iter().any(|p| path.starts_with(p.as_str())),
        Acl::Path(paths) => paths.iter().any(|p| p == path),
        Acl::Hdr {
            name,
            values,
            ignore_case,
        } => {
            let value: Option<String> = if name == "host" {
                // :authority stands for Host in HTTP/3; hdr(host) compares the host without its port.
                Some(host_without_port(head.authority()).to_string())
            } else {
                head.header(name).map(|v| String::from_utf8_lossy(v).into_owned())
            };
            let Some(value) = value else { return false };
            values.iter().any(|v| {
                if *ignore_case {
                    v.eq_ignore_ascii_case(&value)
                } else {
                    *v == value
                }
            })
        }
    }
}

/// The backend index for a request on `frontend`, or `None` when no rule and no default apply.
pub(crate) fn select_backend(config: &Config, frontend: &Frontend, head: &RequestHead) -> Option<usize> {
    let name = frontend
        .rules
        .iter()
        .find(|rule| matches(&rule.acl, head) != rule.negate)
        .map(|rule| rule.backend.as_str())
        .or(frontend.default_backend.as_deref())?;
    config.backend(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn head(authority: &str, path: &str, tier: Option<&str>) -> RequestHead {
        use quiche::h3::Header;
        let mut list = vec![
            Header::new(b":method", b"GET"),
            Header::new(b":scheme", b"https"),
            Header::new(b":authority", authority.as_bytes()),
            Header::new(b":path", path.as_bytes()),
        ];
        list.extend(tier.map(|t| Header::new(b"x-tier", t.as_bytes())));
        RequestHead::parse(&list).unwrap()
    }

    #[test]
    fn rules_apply_in_order_then_the_default() {
        let crt = std::env::current_exe().unwrap().display().to_string();
        let text = format!(
            "frontend f\n bind quic4@127.0.0.1:1 ssl crt {crt}\n use_backend api if {{ path_beg /api }}\n use_backend static if {{ hdr(host) -i Static.Test }}\n use_backend gold if {{ hdr(x-tier) gold }}\n use_backend nogold unless {{ hdr(x-tier) gold }}\n default_backend app\nbackend api\n server a 127.0.0.1:1\nbackend static\n server a 127.0.0.1:1\nbackend app\n server a 127.0.0.1:1\nbackend gold\n server a 127.0.0.1:1\nbackend nogold\n server a 127.0.0.1:1\n"
        );
        let config = Config::parse(Path::new("t.cfg"), &text).unwrap();
        let f = &config.frontends[0];
        let pick = |a: &str, p: &str| {
            config.backends[select_backend(&config, f, &head(a, p, Some("gold"))).unwrap()]
                .name
                .clone()
        };
        assert_eq!(pick("x.test", "/api/v1?q=1"), "api");
        assert_eq!(pick("static.test:443", "/"), "static");
        assert_eq!(pick("x.test", "/"), "gold");
        let plain = head("x.test", "/", None);
        assert_eq!(
            config.backends[select_backend(&config, f, &plain).unwrap()].name,
            "nogold"
        );
    }
}
