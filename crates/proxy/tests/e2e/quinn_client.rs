//! A third independent client: quinn (QUIC) with the h3 crate (HTTP/3) and rustls verifying the demo CA.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::{Buf, Bytes};

use crate::harness::{origin_bytes, Proxy};

/// One request's outcome.
struct Answer {
    status: u16,
    body: Vec<u8>,
}

/// Sends `requests` (method, path, body) concurrently on one connection to `port`, trusting `ca`.
fn quinn_requests(
    port: u16,
    ca: &Path,
    requests: Vec<(&'static str, String, Option<Vec<u8>>)>,
) -> Result<Vec<Answer>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let ca = ca.to_path_buf();
    runtime.block_on(async move {
        let mut roots = rustls::RootCertStore::empty();
        let pem = std::fs::read(&ca)?;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            roots.add(cert?)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"h3".to_vec()];
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
        endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
        let conn = endpoint
            .connect(format!("127.0.0.1:{port}").parse()?, "localhost")?
            .await
            .context("QUIC handshake")?;
        let (mut driver, send_request) = h3::client::new(h3_quinn::Connection::new(conn)).await?;
        let drive = tokio::spawn(async move {
            let _ = futures::future::poll_fn(|cx| driver.poll_close(cx)).await;
        });
        let mut tasks = Vec::new();
        for (method, path, body) in requests {
            let mut send_request = send_request.clone();
            tasks.push(tokio::spawn(async move {
                let mut req = http::Request::builder()
                    .method(method)
                    .uri(format!("https://localhost:{port}{path}"));
                if let Some(b) = &body {
                    req = req.header("content-length", b.len());
                }
                let mut stream = send_request.send_request(req.body(())?).await?;
                if let Some(b) = body {
                    stream.send_data(Bytes::from(b)).await?;
                }
                stream.finish().await?;
                let response = stream.recv_response().await?;
                let mut body = Vec::new();
                while let Some(mut chunk) = stream.recv_data().await? {
                    let n = chunk.remaining();
                    body.extend_from_slice(&chunk.copy_to_bytes(n));
                }
                anyhow::Ok(Answer {
                    status: response.status().as_u16(),
                    body,
                })
            }));
        }
        let mut answers = Vec::new();
        for task in tasks {
            answers.push(task.await??);
        }
        drop(send_request);
        endpoint.close(0u32.into(), b"done");
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), drive).await;
        endpoint.wait_idle().await;
        Ok(answers)
    })
}

#[test]
fn quinn_and_h3_get_byte_exact_bodies_and_echo_an_upload() {
    let origin = qproxy::demo::spawn_origin("127.0.0.1:0".parse().unwrap()).unwrap();
    let proxy = Proxy::start(&format!("    server o1 {origin}\n"), "");
    let ca = proxy.dir.join("ca.pem");
    let sizes = [0usize, 1, 50_000, 5_000_000];
    let upload: Vec<u8> = (0..3_000_000u32).map(|i| (i % 241) as u8).collect();
    let mut requests: Vec<(&'static str, String, Option<Vec<u8>>)> = sizes
        .iter()
        .map(|n| ("GET", format!("/bytes/{n}"), None))
        .collect();
    requests.push(("POST", "/echo".to_string(), Some(upload.clone())));
    let answers = quinn_requests(proxy.port, &ca, requests).unwrap();
    for (n, a) in sizes.iter().zip(&answers) {
        assert_eq!(a.status, 200);
        assert!(
            a.body == origin_bytes(*n),
            "{n}: body differs ({} bytes)",
            a.body.len()
        );
    }
    assert_eq!(answers[4].status, 200);
    assert!(answers[4].body == upload, "echo differs");
    proxy.assert_gauges_return_to_zero();
}
