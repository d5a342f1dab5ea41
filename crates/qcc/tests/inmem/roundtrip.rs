//! Request/response round trips, byte-exact, many streams at once.

use crate::harness::{pattern_vec, Knobs, Pair, Setup};

fn download(pair: &mut Pair, sizes: &[usize]) {
    let ids: Vec<(u64, usize)> = sizes
        .iter()
        .map(|&n| (pair.request("GET", &format!("/bytes/{n}"), None), n))
        .collect();
    assert!(
        pair.run_until(|p| ids.iter().all(|(id, _)| p.response(*id).finished)),
        "downloads did not finish"
    );
    for (id, n) in ids {
        let r = pair.response(id);
        assert_eq!(r.status, Some(200));
        assert_eq!(r.body.len(), n, "stream {id}");
        assert!(r.body == pattern_vec(n), "stream {id}: body differs");
    }
}

#[test]
fn bodies_from_0_bytes_to_8_mib_download_byte_exact() {
    let mut pair = Pair::established(Setup::default());
    download(&mut pair, &[0, 1, 1200, 65_536, 1_000_000, 8 * 1024 * 1024]);
    pair.with_server(|c, _| c.shutdown(std::time::Instant::now()));
    assert!(pair.run_to_end());
    pair.assert_idle();
}

#[test]
fn bodies_from_0_bytes_to_8_mib_upload_and_echo_byte_exact() {
    let mut pair = Pair::established(Setup::default());
    let sizes = [0usize, 1, 4096, 300_000, 8 * 1024 * 1024];
    let ids: Vec<(u64, Vec<u8>)> = sizes
        .iter()
        .map(|&n| {
            let body: Vec<u8> = (0..n).map(|i| (i * 7 % 256) as u8).collect();
            (pair.request("POST", "/echo", Some(body.clone())), body)
        })
        .collect();
    assert!(pair.run_until(|p| ids.iter().all(|(id, _)| p.response(*id).finished)));
    for (id, body) in &ids {
        let r = pair.response(*id);
        assert_eq!(r.status, Some(200));
        assert!(
            r.body == *body,
            "stream {id}: echo differs ({} vs {} bytes)",
            r.body.len(),
            body.len()
        );
    }
    pair.with_server(|c, _| c.shutdown(std::time::Instant::now()));
    assert!(pair.run_to_end());
    pair.assert_idle();
}

#[test]
fn a_hundred_concurrent_streams_with_loss_reordering_and_duplication() {
    let knobs = Knobs {
        loss: 0.03,
        dup: 0.02,
        reorder: 0.05,
        mtu: 1200,
    };
    let mut pair = Pair::established(Setup {
        knobs,
        seed: 7,
        ..Setup::default()
    });
    let sizes: Vec<usize> = (0..100).map(|i| (i * 7919) % 40_000).collect();
    download(&mut pair, &sizes);
    pair.with_server(|c, _| c.shutdown(std::time::Instant::now()));
    assert!(pair.run_to_end());
    pair.assert_idle();
}

#[test]
fn trailers_go_out_after_the_body() {
    let mut pair = Pair::established(Setup::default());
    let id = pair.request("GET", "/trailers/5000", None);
    assert!(pair.run_until(|p| p.response(id).finished));
    let r = pair.response(id);
    assert_eq!(r.body, pattern_vec(5000));
    assert_eq!(r.trailers, vec![("x-checksum".to_string(), "5000".to_string())]);
    pair.with_server(|c, _| c.shutdown(std::time::Instant::now()));
    assert!(pair.run_to_end());
    pair.assert_idle();
}

#[test]
fn request_bodies_are_counted_by_the_sink() {
    let mut pair = Pair::established(Setup::default());
    let id = pair.request("PUT", "/sink", Some(vec![9; 123_457]));
    assert!(pair.run_until(|p| p.response(id).finished));
    assert_eq!(pair.response(id).body, b"123457");
    pair.with_server(|c, _| c.shutdown(std::time::Instant::now()));
    assert!(pair.run_to_end());
    pair.assert_idle();
}
