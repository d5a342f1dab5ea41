//! A third independent client: quinn (QUIC) with the h3 crate (HTTP/3) and rustls verifying the demo CA,
//! through the `h3-client` crate (the interop matrix's `h3get`).

use h3_client::{run, Options, Request};

use crate::harness::{origin_bytes, Proxy};

#[test]
fn quinn_and_h3_get_byte_exact_bodies_and_echo_an_upload() {
    let origin = qproxy::tools::demo::spawn_origin("127.0.0.1:0".parse().unwrap()).unwrap();
    let proxy = Proxy::start(&format!("    server o1 {origin}\n"), "");
    let sizes = [0usize, 1, 50_000, 5_000_000];
    let upload: Vec<u8> = (0..3_000_000u32).map(|i| (i % 241) as u8).collect();
    let mut requests: Vec<Request> = sizes
        .iter()
        .map(|n| Request::get(format!("/bytes/{n}")))
        .collect();
    requests.push(Request {
        method: "POST".into(),
        path: "/echo".into(),
        body: Some(upload.clone()),
    });
    let options = Options::new(
        format!("127.0.0.1:{}", proxy.port).parse().unwrap(),
        proxy.dir.join("ca.pem"),
    );
    let reports = run(&options, &requests).unwrap();
    let answers = &reports[0].answers;
    for (n, a) in sizes.iter().zip(answers) {
        assert_eq!((a.status, &a.error), (Some(200), &None));
        assert!(
            a.body == origin_bytes(*n),
            "{n}: body differs ({} bytes)",
            a.body.len()
        );
    }
    assert_eq!(answers[4].status, Some(200));
    assert!(answers[4].body == upload, "echo differs");
    proxy.assert_gauges_return_to_zero();
}
