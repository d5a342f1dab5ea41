//! The fixed-seed slice of the fuzz targets that `cargo test` runs on stable (the targets themselves are
//! in `fuzz/`, run with `cargo xtask fuzz` on nightly): each target's corpus in `fuzz/corpus/`, then
//! mutations of it from a fixed seed. A failure names the target and the input.

use std::path::Path;

/// Mutations per parser target: enough to reach past the seeds, few enough for CI.
const MUTATIONS: usize = 3000;
/// Mutations of the connection target, whose every input costs a handshake.
const CONNECTION_MUTATIONS: usize = 300;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

/// One mutation of `input`, libFuzzer-style: flip, insert, delete, duplicate, splice in another seed.
fn mutate(input: &[u8], seeds: &[Vec<u8>], rng: &mut fastrand::Rng) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..rng.usize(1..4) {
        let at = rng.usize(..=out.len());
        match rng.u8(..6) {
            0 if !out.is_empty() => {
                let i = rng.usize(..out.len());
                out[i] ^= 1 << rng.u8(..8);
            }
            1 => out.insert(at, rng.u8(..)),
            2 if at < out.len() => {
                out.remove(at);
            }
            3 => {
                let chunk: Vec<u8> = out[at..].iter().take(rng.usize(..16)).copied().collect();
                out.splice(at..at, chunk);
            }
            4 => {
                let other = &seeds[rng.usize(..seeds.len())];
                let from = rng.usize(..=other.len());
                out.splice(at.., other[from..].iter().copied());
            }
            _ => out.truncate(at),
        }
    }
    out
}

fn slice(target: &str, run: fn(&[u8])) {
    slice_of(target, run, MUTATIONS);
}

fn slice_of(target: &str, run: fn(&[u8]), mutations: usize) {
    let seeds = corpus(target);
    let mut rng = fastrand::Rng::with_seed(1);
    let mut inputs = seeds.clone();
    for _ in 0..mutations {
        let base = &inputs[rng.usize(..inputs.len())];
        let next = mutate(base, &seeds, &mut rng);
        inputs.push(next);
    }
    for input in &inputs {
        if std::panic::catch_unwind(|| run(input)).is_err() {
            panic!("{target} failed on {:?}", String::from_utf8_lossy(input));
        }
    }
}

#[test]
fn config() {
    slice("config", qproxy::fuzzing::config);
}

#[test]
fn response_head() {
    slice("response_head", qproxy::fuzzing::response_head);
}

#[test]
fn chunked() {
    slice("chunked", qproxy::fuzzing::chunked);
}

#[test]
fn retry_token() {
    slice("retry_token", qproxy::fuzzing::retry_token);
}

#[test]
fn request_head() {
    slice("request_head", qproxy::fuzzing::request_head);
}

#[test]
fn connection() {
    slice_of("connection", qproxy::fuzzing::connection, CONNECTION_MUTATIONS);
}
