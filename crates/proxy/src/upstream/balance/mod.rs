//! Choosing a server for a request (`balance ...`): the algorithms, over the servers usable right now
//! (UP and below their `maxconn`), from the load each one carries.

mod hash;
mod roundrobin;

use std::net::IpAddr;

use qcc::RequestHead;

use crate::config::{Backend, Balance};
use roundrobin::RoundRobin;

/// One server as the balancer sees it at pick time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Load {
    /// UP, below its `maxconn`, and not excluded by a retry.
    pub(crate) usable: bool,
    /// Requests in flight.
    pub(crate) active: u64,
}

/// Which servers of a backend take traffic now, by HAProxy's rule for `backup` servers: the active
/// (non-backup) servers while one of them is UP; else the first backup server that is UP, or every UP
/// backup under `option allbackups`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tier {
    /// The active servers.
    Active,
    /// Every backup server (`option allbackups`).
    Backups,
    /// This backup server alone.
    FirstBackup(usize),
}

impl Tier {
    /// From each server's (UP, backup) state, in configuration order.
    pub(crate) fn of(servers: impl IntoIterator<Item = (bool, bool)>, allbackups: bool) -> Tier {
        let mut first_backup = None;
        for (i, (up, backup)) in servers.into_iter().enumerate() {
            match (up, backup) {
                (true, false) => return Tier::Active,
                (true, true) if first_backup.is_none() => first_backup = Some(i),
                _ => {}
            }
        }
        match first_backup {
            Some(_) if allbackups => Tier::Backups,
            Some(i) => Tier::FirstBackup(i),
            None => Tier::Active,
        }
    }

    /// Server `i`, a backup server or not, is in this tier.
    pub(crate) fn admits(self, i: usize, backup: bool) -> bool {
        match self {
            Tier::Active => !backup,
            Tier::Backups => backup,
            Tier::FirstBackup(first) => i == first,
        }
    }
}

/// The balancing state of one backend.
#[derive(Debug)]
pub(crate) struct Balancer {
    algorithm: Balance,
    weights: Vec<u32>,
    seeds: Vec<u64>,
    round_robin: RoundRobin,
    /// Where leastconn starts looking, so that equally loaded servers take turns.
    rotor: usize,
    rng: fastrand::Rng,
}

/// The key a hashing algorithm hashes for a request; `None` when it does not hash or the key is absent
/// (then the pick falls back to round robin, as HAProxy does for a missing header).
pub(crate) fn hash_key(algorithm: &Balance, head: &RequestHead, client: IpAddr) -> Option<Vec<u8>> {
    match algorithm {
        Balance::Source => Some(match client {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        }),
        Balance::Uri { whole } => {
            let path = if *whole {
                head.path()
            } else {
                head.path().split('?').next().unwrap_or("")
            };
            Some(path.as_bytes().to_vec())
        }
        Balance::Hdr(name) if name == "host" => Some(head.authority().as_bytes().to_vec()),
        Balance::Hdr(name) => head.header(name).map(<[u8]>::to_vec),
        _ => None,
    }
}

impl Balancer {
    /// For `backend`'s servers, with its algorithm.
    pub(crate) fn new(backend: &Backend, seed: u64) -> Self {
        Balancer {
            algorithm: backend.settings.balance.clone(),
            weights: backend.servers.iter().map(|s| s.options.weight).collect(),
            seeds: backend
                .servers
                .iter()
                .map(|s| hash::server_seed(&s.name))
                .collect(),
            round_robin: RoundRobin::new(backend.servers.len()),
            rotor: 0,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// The server for a request with hash `key`, among `loads` (one per server, in order); `None` when
    /// no server is usable.
    pub(crate) fn pick(&mut self, loads: &[Load], key: Option<&[u8]>) -> Option<usize> {
        let usable = |i: usize| loads.get(i).is_some_and(|l| l.usable);
        match (&self.algorithm, key) {
            (Balance::Source | Balance::Uri { .. } | Balance::Hdr(_), Some(key)) => {
                hash::pick(key, &self.seeds, &self.weights, usable)
            }
            (Balance::LeastConn, _) => self.least_loaded(loads),
            (Balance::Random { draws }, _) => self.random(loads, *draws),
            _ => self.round_robin.pick(&self.weights, usable),
        }
    }

    /// Is `a` less loaded than `b`, per unit of weight?
    fn lighter(&self, loads: &[Load], a: usize, b: usize) -> bool {
        u128::from(loads[a].active) * u128::from(self.weights[b])
            < u128::from(loads[b].active) * u128::from(self.weights[a])
    }

    fn least_loaded(&mut self, loads: &[Load]) -> Option<usize> {
        let n = loads.len().min(self.weights.len());
        let mut best: Option<usize> = None;
        for i in (0..n).map(|k| (self.rotor + k) % n) {
            if loads[i].usable && best.is_none_or(|b| self.lighter(loads, i, b)) {
                best = Some(i);
            }
        }
        let best = best?;
        self.rotor = (best + 1) % n;
        Some(best)
    }

    /// The lightest of `draws` servers drawn at random in proportion to their weights.
    fn random(&mut self, loads: &[Load], draws: u32) -> Option<usize> {
        let total: u64 = (0..self.weights.len())
            .filter(|i| loads.get(*i).is_some_and(|l| l.usable))
            .map(|i| u64::from(self.weights[i]))
            .sum();
        if total == 0 {
            return None;
        }
        let mut best: Option<usize> = None;
        for _ in 0..draws.max(1) {
            let mut ticket = self.rng.u64(0..total);
            let drawn = (0..self.weights.len()).filter(|i| loads[*i].usable).find(|i| {
                let w = u64::from(self.weights[*i]);
                if ticket < w {
                    true
                } else {
                    ticket -= w;
                    false
                }
            })?;
            if best.is_none_or(|b| self.lighter(loads, drawn, b)) {
                best = Some(drawn);
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BackendSettings, Server, ServerOptions, Timeouts};

    fn backend(balance: Balance, weights: &[u32]) -> Backend {
        Backend {
            name: "b".into(),
            settings: BackendSettings {
                balance,
                ..BackendSettings::default()
            },
            servers: weights
                .iter()
                .enumerate()
                .map(|(i, w)| Server {
                    name: format!("s{i}"),
                    addr: "127.0.0.1:1".parse().unwrap(),
                    options: ServerOptions {
                        weight: *w,
                        ..ServerOptions::default()
                    },
                })
                .collect(),
            timeouts: Timeouts::default(),
            forwardfor: false,
        }
    }

    fn idle(n: usize) -> Vec<Load> {
        vec![
            Load {
                usable: true,
                active: 0
            };
            n
        ]
    }

    #[test]
    fn backups_serve_only_when_no_active_server_is_up() {
        // (UP, backup) per server: two active, two backups.
        let all_up = [(true, false), (true, false), (true, true), (true, true)];
        assert_eq!(Tier::of(all_up, false), Tier::Active);
        let one_active = [(false, false), (true, false), (true, true), (true, true)];
        assert_eq!(Tier::of(one_active, true), Tier::Active);
        let actives_down = [(false, false), (false, false), (false, true), (true, true)];
        assert_eq!(Tier::of(actives_down, false), Tier::FirstBackup(3));
        assert_eq!(Tier::of(actives_down, true), Tier::Backups);
        let all_down = [(false, false), (false, true)];
        assert_eq!(Tier::of(all_down, false), Tier::Active);
        let admitted = |t: Tier| -> Vec<usize> {
            let backup = [false, false, true, true];
            (0..4).filter(|i| t.admits(*i, backup[*i])).collect()
        };
        assert_eq!(admitted(Tier::Active), vec![0, 1]);
        assert_eq!(admitted(Tier::Backups), vec![2, 3]);
        assert_eq!(admitted(Tier::FirstBackup(3)), vec![3]);
    }

    #[test]
    fn leastconn_prefers_the_lightest_per_weight_and_rotates_among_equals() {
        let mut b = Balancer::new(&backend(Balance::LeastConn, &[1, 1, 2]), 1);
        let mut loads = idle(3);
        loads[0].active = 3;
        loads[1].active = 1;
        loads[2].active = 3; // 1.5 per weight unit
        assert_eq!(b.pick(&loads, None), Some(1));
        let equal = idle(3);
        let picks: Vec<_> = (0..3).map(|_| b.pick(&equal, None).unwrap()).collect();
        let mut sorted = picks.clone();
        sorted.sort();
        assert_eq!(sorted, vec![0, 1, 2], "{picks:?}");
        loads[1].usable = false;
        assert_eq!(b.pick(&loads, None), Some(2));
    }

    #[test]
    fn random_two_choices_avoid_the_loaded_server() {
        let mut b = Balancer::new(&backend(Balance::Random { draws: 2 }, &[1, 1, 1, 1]), 7);
        let mut loads = idle(4);
        loads[0].active = 100;
        let picks: Vec<_> = (0..4000).map(|_| b.pick(&loads, None).unwrap()).collect();
        let heavy = picks.iter().filter(|p| **p == 0).count();
        // One random draw would give it 1/4; it wins only when both draws land on it: 1/16.
        assert!(heavy < 4000 / 10, "{heavy}");
        assert!((1..4).all(|s| picks.contains(&s)));
        let none_usable = [Load {
            usable: false,
            active: 0,
        }; 4];
        assert_eq!(b.pick(&none_usable, None), None);
    }

    #[test]
    fn hashing_algorithms_take_their_key_and_fall_back_to_round_robin() {
        use quiche::h3::Header;
        let head = RequestHead::parse(&[
            Header::new(b":method", b"GET"),
            Header::new(b":scheme", b"https"),
            Header::new(b":authority", b"example.test"),
            Header::new(b":path", b"/a/b?x=1"),
            Header::new(b"x-user", b"42"),
        ])
        .unwrap();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(
            hash_key(&Balance::Uri { whole: false }, &head, ip).unwrap(),
            b"/a/b"
        );
        assert_eq!(
            hash_key(&Balance::Uri { whole: true }, &head, ip).unwrap(),
            b"/a/b?x=1"
        );
        assert_eq!(
            hash_key(&Balance::Hdr("x-user".into()), &head, ip).unwrap(),
            b"42"
        );
        assert_eq!(
            hash_key(&Balance::Hdr("host".into()), &head, ip).unwrap(),
            b"example.test"
        );
        assert_eq!(hash_key(&Balance::Source, &head, ip).unwrap(), vec![192, 0, 2, 7]);
        assert_eq!(hash_key(&Balance::Hdr("x-none".into()), &head, ip), None);
        assert_eq!(hash_key(&Balance::RoundRobin, &head, ip), None);

        let mut b = Balancer::new(&backend(Balance::Hdr("x-user".into()), &[1, 1, 1]), 1);
        let loads = idle(3);
        let first = b.pick(&loads, Some(b"42"));
        assert!((0..50).all(|_| b.pick(&loads, Some(b"42")) == first));
        let fallback: Vec<_> = (0..3).map(|_| b.pick(&loads, None).unwrap()).collect();
        let mut sorted = fallback.clone();
        sorted.sort();
        assert_eq!(sorted, vec![0, 1, 2]);
    }
}
