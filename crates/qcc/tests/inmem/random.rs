//! Random operations at random points: open, upload, download, loss, reset, stop-sending, GOAWAY, close,
//! idle timeout, connection release. Each seed must end with byte-exact completed responses, every
//! counter back to zero and no out-of-order release. A failing seed is printed; replay it with
//! `QCC_RANDOM_FIRST_SEED=<seed> QCC_RANDOM_SEEDS=1 cargo test -p qcc --test inmem random`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use qcc::codes;

use crate::harness::{pattern_vec, Knobs, Pair, Setup};
use qcc::ServerConn;

/// Seeds per run in CI: 1,000, over four tests that run in parallel.
const DEFAULT_SEEDS: u64 = 1000;
const SHARDS: u64 = 4;

fn seeds(shard: u64) -> Vec<u64> {
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (first, count) = (
        env("QCC_RANDOM_FIRST_SEED", 0),
        env("QCC_RANDOM_SEEDS", DEFAULT_SEEDS),
    );
    (first..first + count).filter(|s| s % SHARDS == shard).collect()
}

/// One random operation (quinn's `TestOp`), drawn with its weight and its parameters.
#[derive(Debug)]
enum Op {
    /// GET `/bytes/N`.
    Download(usize),
    /// POST `/echo` with this body.
    Echo(Vec<u8>),
    /// POST `/sink` with N bytes.
    Sink(usize),
    /// GET `/hold`: the server never answers on its own.
    Hold,
    /// The client resets one of its streams.
    ClientReset,
    /// The client sends STOP_SENDING on one of its streams.
    ClientStopSending,
    /// The server resets a stream.
    ServerReset,
    /// The server sends GOAWAY.
    ServerShutdown,
    /// The client closes the connection.
    ClientClose,
    /// The server closes the connection with an error.
    ServerClose,
    /// The server releases the connection at once.
    Release,
    /// Both directions go dark (only on vanish seeds).
    Vanish,
    /// Time passes.
    Nothing,
}

impl Op {
    /// Out of 100: 30 downloads, 15 echoes, 5 sinks, 5 holds (only while a stream can open), 8 client
    /// resets, 8 STOP_SENDINGs, 6 server resets, 4 GOAWAYs, 3 client and 3 server closes, 3 releases, 6
    /// black holes on vanish seeds, the rest nothing.
    fn draw(rng: &mut fastrand::Rng, can_open: bool, vanish: bool) -> Op {
        match rng.u32(..100) {
            0..=29 if can_open => Op::Download([0, 1, 1000, 20_000, 200_000][rng.usize(..5)]),
            30..=44 if can_open => {
                let n = [0, 5000, 100_000][rng.usize(..3)];
                Op::Echo((0..n).map(|_| rng.u8(..)).collect())
            }
            45..=49 if can_open => Op::Sink(rng.usize(..50_000)),
            50..=54 if can_open => Op::Hold,
            55..=62 => Op::ClientReset,
            63..=70 => Op::ClientStopSending,
            71..=76 => Op::ServerReset,
            77..=80 => Op::ServerShutdown,
            81..=83 => Op::ClientClose,
            84..=86 => Op::ServerClose,
            87..=89 => Op::Release,
            90..=95 if vanish => Op::Vanish,
            _ => Op::Nothing,
        }
    }
}

#[derive(Debug)]
enum Expect {
    Bytes(usize),
    Echo(Vec<u8>),
    Sink(usize),
    Hold,
}

fn run_seed(seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let vanish_seed = seed % 32 == 5;
    let mut setup = Setup {
        seed,
        knobs: Knobs {
            loss: [0.0, 0.0, 0.01, 0.05][rng.usize(..4)],
            dup: if rng.bool() { 0.02 } else { 0.0 },
            reorder: if rng.bool() { 0.05 } else { 0.0 },
            mtu: [1200, 1350][rng.usize(..2)],
        },
        ..Setup::default()
    };
    setup.limits.tx_budget = [8 * 1024, 64 * 1024, 1024 * 1024][rng.usize(..3)];
    setup.limits.stream_rx_buf = [4 * 1024, 64 * 1024][rng.usize(..2)];
    setup.params.max_streams_bidi = [4, 100][rng.usize(..2)];
    // Short idle timeouts: a lost CONNECTION_CLOSE ends in an idle timeout, which the harness sleeps for.
    setup.params.max_idle_timeout = Duration::from_millis(if vanish_seed { 300 } else { 1000 });
    setup.client_idle = setup.params.max_idle_timeout;
    let mut pair = Pair::established(setup);
    let mut expect: BTreeMap<u64, Expect> = BTreeMap::new();
    let mut abandoned: BTreeSet<u64> = BTreeSet::new();
    for _ in 0..rng.usize(3..12) {
        let live = pair.live().is_some() && !pair.client.is_closed() && !pair.client.is_draining();
        if !live {
            break;
        }
        let can_open = !pair.client_state.goaway && pair.client_h3.is_some();
        let pick = |rng: &mut fastrand::Rng, expect: &BTreeMap<u64, Expect>| {
            let ids: Vec<u64> = expect.keys().copied().collect();
            (!ids.is_empty()).then(|| ids[rng.usize(..ids.len())])
        };
        let op = Op::draw(&mut rng, can_open, vanish_seed);
        if std::env::var_os("QCC_DEBUG").is_some() {
            eprintln!("{op:?} streams {:?}", expect.keys().collect::<Vec<_>>());
        }
        match op {
            Op::Download(n) => {
                if let Some(id) = pair.try_request("GET", &format!("/bytes/{n}"), None, &[]) {
                    expect.insert(id, Expect::Bytes(n));
                }
            }
            Op::Echo(body) => {
                if let Some(id) = pair.try_request("POST", "/echo", Some(body.clone()), &[]) {
                    expect.insert(id, Expect::Echo(body));
                }
            }
            Op::Sink(n) => {
                if let Some(id) = pair.try_request("POST", "/sink", Some(vec![1; n]), &[]) {
                    expect.insert(id, Expect::Sink(n));
                }
            }
            Op::Hold => {
                if let Some(id) = pair.try_request("GET", "/hold", None, &[]) {
                    expect.insert(id, Expect::Hold);
                }
            }
            Op::ClientReset => {
                if let Some(id) = pick(&mut rng, &expect) {
                    pair.client_reset(id, codes::H3_REQUEST_CANCELLED);
                    abandoned.insert(id);
                }
            }
            Op::ClientStopSending => {
                if let Some(id) = pick(&mut rng, &expect) {
                    pair.client_stop_sending(id, codes::H3_REQUEST_CANCELLED);
                    abandoned.insert(id);
                }
            }
            Op::ServerReset => {
                if let Some(id) = pick(&mut rng, &expect) {
                    pair.with_server(|c, app| app.reset(c, id, codes::H3_INTERNAL_ERROR));
                }
            }
            Op::ServerShutdown => pair.with_server(|c, _| c.shutdown(Instant::now())),
            Op::ClientClose => {
                let _ = pair.client.close(true, codes::H3_NO_ERROR, b"client leaves");
            }
            Op::ServerClose => pair.with_server(|c, _| c.close(codes::H3_INTERNAL_ERROR, "server error")),
            Op::Release => pair.release_server(),
            Op::Vanish => {
                pair.net.drop_to_server = true;
                pair.net.drop_to_client = true;
            }
            Op::Nothing => {}
        }
        for _ in 0..rng.usize(..30) {
            pair.step();
        }
    }
    // Let what can finish finish, then end the connection the graceful way.
    let pending = |p: &Pair| {
        expect.iter().any(|(id, e)| {
            let r = p.response(*id);
            !matches!(e, Expect::Hold)
                && !abandoned.contains(id)
                && !r.finished
                && r.reset.is_none()
                && r.upload_stopped.is_none()
        })
    };
    pair.run_until(|p| p.live().is_none() || p.client.is_closed() || !pending(p));
    pair.net.drop_to_server = false;
    pair.net.drop_to_client = false;
    if pair.live().is_some() {
        pair.with_server(|c, app| {
            for (id, e) in &expect {
                if matches!(e, Expect::Hold) {
                    app.reset(c, *id, codes::H3_REQUEST_CANCELLED);
                }
            }
            c.shutdown(Instant::now());
        });
    }
    // The client may miss a lost CONNECTION_CLOSE and wait for its idle timeout: only the server's end
    // is required here.
    let ended = pair.run_until(|p| matches!(p.server, Some(ServerConn::Closed)));
    assert!(
        ended,
        "seed {seed}: the connection did not end: {}",
        pair.describe()
    );
    for (id, e) in &expect {
        let r = pair.response(*id);
        if !r.finished || r.reset.is_some() {
            continue;
        }
        match e {
            Expect::Bytes(n) => assert!(r.body == pattern_vec(*n), "seed {seed}: stream {id} body differs"),
            Expect::Echo(body) => assert!(r.body == *body, "seed {seed}: stream {id} echo differs"),
            Expect::Sink(n) => assert_eq!(r.body, n.to_string().as_bytes(), "seed {seed}: stream {id}"),
            Expect::Hold => {}
        }
    }
    pair.assert_idle();
    assert_eq!(pair.counters.snapshot().stale_wakeups, 0, "seed {seed}");
}

fn run_shard(shard: u64) {
    for seed in seeds(shard) {
        if let Err(panic) = std::panic::catch_unwind(|| run_seed(seed)) {
            eprintln!("random operations failed with seed {seed}");
            std::panic::resume_unwind(panic);
        }
    }
}

#[test]
fn random_operations_shard_0() {
    run_shard(0);
}

#[test]
fn random_operations_shard_1() {
    run_shard(1);
}

#[test]
fn random_operations_shard_2() {
    run_shard(2);
}

#[test]
fn random_operations_shard_3() {
    run_shard(3);
}
