//! `quic-initial ACTION [if|unless { CONDITION }]` in a frontend, as HAProxy reads it: what to do with a
//! client's first Initial, decided from its source address alone, before anything is kept for it.

use std::net::IpAddr;

use ipnet::IpNet;

use super::lexer::{need, Res};
use super::parser::Parser;

/// One `quic-initial` line. The first whose condition holds decides; none: `accept`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialRule {
    /// What to do.
    pub action: InitialAction,
    /// When (`None`: always).
    pub cond: Option<(InitialCond, bool)>,
}

/// A `quic-initial` action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitialAction {
    /// Go on as usual (and stop looking at rules).
    Accept,
    /// Drop the datagram without an answer.
    DgramDrop,
    /// Close the connection at once with CONNECTION_REFUSED.
    Reject,
    /// Ask the client to prove its address with a Retry first.
    SendRetry,
}

impl InitialAction {
    /// Every action, in counter order.
    pub const ALL: [InitialAction; 4] = [
        InitialAction::Accept,
        InitialAction::DgramDrop,
        InitialAction::Reject,
        InitialAction::SendRetry,
    ];

    /// Its keyword (and metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            InitialAction::Accept => "accept",
            InitialAction::DgramDrop => "dgram-drop",
            InitialAction::Reject => "reject",
            InitialAction::SendRetry => "send-retry",
        }
    }
}

/// What a `quic-initial` condition looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitialCond {
    /// `src NET [NET ...]`: the source address is in one of the networks (an address is a /32 or /128).
    Src(Vec<IpNet>),
    /// `src_conn_cur OP N`: the connections open now from the source address, over every worker.
    SrcConnCur(Compare, u64),
}

/// An integer comparison, HAProxy's `eq ge gt le lt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    Eq,
    Ge,
    Gt,
    Le,
    Lt,
}

impl Compare {
    /// `value OP n`.
    pub fn holds(self, value: u64, n: u64) -> bool {
        match self {
            Compare::Eq => value == n,
            Compare::Ge => value >= n,
            Compare::Gt => value > n,
            Compare::Le => value <= n,
            Compare::Lt => value < n,
        }
    }
}

impl InitialCond {
    /// Whether the condition holds for a client at `src` with `open` connections.
    pub fn holds(&self, src: IpAddr, open: impl FnOnce() -> u64) -> bool {
        match self {
            InitialCond::Src(nets) => {
                let src = canonical(src);
                nets.iter().any(|n| n.contains(&src))
            }
            InitialCond::SrcConnCur(op, n) => op.holds(open(), *n),
        }
    }
}

/// An IPv4 client on an IPv6 socket (`::ffff:a.b.c.d`) matches IPv4 networks.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl Parser {
    /// `quic-initial ACTION [if|unless { src NET ... | src_conn_cur OP N }]`.
    pub(super) fn quic_initial(&mut self, args: &[String]) -> Res<()> {
        let i = self.frontend_index();
        let word = need(args, 1, "accept, dgram-drop, reject or send-retry")?;
        let action = InitialAction::ALL
            .into_iter()
            .find(|a| a.as_str() == word)
            .ok_or(format!(
                "unknown quic-initial action '{word}'; expected accept, dgram-drop, reject or send-retry"
            ))?;
        let cond = if args.len() > 2 {
            let (fetch, values, negate) = Self::condition(args, 2)?;
            Some((initial_cond(&fetch, &values)?, negate))
        } else {
            None
        };
        self.fronts[i]
            .front
            .quic_initial
            .push(InitialRule { action, cond });
        Ok(())
    }
}

fn initial_cond(fetch: &str, values: &[String]) -> Res<InitialCond> {
    match fetch {
        "src" => {
            if values.is_empty() {
                return Err("expected at least one address or network after 'src'".into());
            }
            let nets = values
                .iter()
                .map(|v| {
                    v.parse::<IpNet>()
                        .or_else(|_| v.parse::<IpAddr>().map(IpNet::from))
                        .map(|n| n.trunc())
                        .map_err(|_| {
                            format!("expected an address or network such as 10.0.0.0/8, found '{v}'")
                        })
                })
                .collect::<Res<Vec<_>>>()?;
            Ok(InitialCond::Src(nets))
        }
        "src_conn_cur" => {
            let [op, n] = values else {
                return Err("expected 'src_conn_cur OP N' with OP one of eq, ge, gt, le, lt".into());
            };
            let op = match op.as_str() {
                "eq" => Compare::Eq,
                "ge" => Compare::Ge,
                "gt" => Compare::Gt,
                "le" => Compare::Le,
                "lt" => Compare::Lt,
                other => {
                    return Err(format!(
                        "unknown operator '{other}'; expected eq, ge, gt, le or lt"
                    ))
                }
            };
            let n = n
                .parse()
                .map_err(|_| format!("expected a count after '{op:?}', found '{n}'"))?;
            Ok(InitialCond::SrcConnCur(op, n))
        }
        other => Err(format!(
            "unknown fetch '{other}' for quic-initial; expected src or src_conn_cur"
        )),
    }
}
