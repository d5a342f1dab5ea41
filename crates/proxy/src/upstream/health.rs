//! Active health checks (`server ... check`): one small thread per checked server, a TCP connect every
//! `inter`, or an HTTP request with `option httpchk`. Results go to the server's rise/fall counters.
//! The threads stop when their [`HealthChecks`] is dropped (on reload or exit).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::config::{Config, HttpCheck};
use crate::upstream::live::{Runtime, ServerRuntime};

/// The running checks of one configuration.
#[derive(Debug)]
pub(crate) struct HealthChecks {
    // Never sent on: dropping it disconnects every checker, which then stops.
    _stop: Sender<()>,
    checked: usize,
}

impl HealthChecks {
    /// Starts a checker for every server with `check`.
    pub(crate) fn start(config: &Config, runtime: &Runtime) -> std::io::Result<HealthChecks> {
        let (stop, stopped) = crossbeam_channel::bounded(0);
        let mut checked = 0;
        for (backend, state) in config.backends.iter().zip(&runtime.backends) {
            for (server, live) in backend.servers.iter().zip(&state.servers) {
                if !server.options.check {
                    continue;
                }
                let check = Check {
                    server: live.clone(),
                    inter: server.options.inter,
                    timeout: backend.check_timeout(server),
                    http: backend.settings.httpchk.clone(),
                };
                let stopped = stopped.clone();
                std::thread::Builder::new()
                    .name(format!("check-{}-{}", backend.name, server.name))
                    .spawn(move || check.run(&stopped))?;
                checked += 1;
            }
        }
        Ok(HealthChecks { _stop: stop, checked })
    }

    /// Servers being checked.
    pub(crate) fn checked(&self) -> usize {
        self.checked
    }
}

struct Check {
    server: Arc<ServerRuntime>,
    inter: Duration,
    timeout: Duration,
    http: Option<HttpCheck>,
}

impl Check {
    fn run(self, stopped: &Receiver<()>) {
        loop {
            let started = Instant::now();
            let result = probe(self.server.config.check_addr(), self.timeout, self.http.as_ref());
            self.server.report_check(result);
            let rest = self.inter.saturating_sub(started.elapsed());
            match stopped.recv_timeout(rest) {
                Err(RecvTimeoutError::Timeout) => {}
                _ => return,
            }
        }
    }
}

/// One check: `Ok` with what passed, or `Err` with why it failed (HAProxy's wording: Layer4 / Layer7).
fn probe(addr: SocketAddr, timeout: Duration, http: Option<&HttpCheck>) -> Result<String, String> {
    let started = Instant::now();
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("Layer4 connection problem: {e}"))?;
    let Some(http) = http else {
        return Ok(format!(
            "Layer4 check passed in {} ms",
            started.elapsed().as_millis()
        ));
    };
    let left = || {
        timeout
            .checked_sub(started.elapsed())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| "Layer7 timeout".to_string())
    };
    stream
        .set_write_timeout(Some(left()?))
        .map_err(|e| e.to_string())?;
    let request = format!(
        "{} {} HTTP/1.1\r\nhost: {addr}\r\nuser-agent: qproxy-check\r\nconnection: close\r\n\r\n",
        http.method, http.uri
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("Layer7 write error: {e}"))?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let status = loop {
        stream
            .set_read_timeout(Some(left()?))
            .map_err(|e| e.to_string())?;
        let n = stream.read(&mut chunk).map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => "Layer7 timeout".to_string(),
            _ => format!("Layer7 read error: {e}"),
        })?;
        if n == 0 {
            return Err("Layer7 invalid response: connection closed before a status".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => break response.code.unwrap_or(0),
            Ok(httparse::Status::Partial) if buf.len() < 16 * 1024 => continue,
            _ => return Err("Layer7 invalid response".into()),
        }
    };
    let passed = match http.expect_status {
        Some(expected) => status == expected,
        None => (200..400).contains(&status),
    };
    if passed {
        Ok(format!("Layer7 check passed: status {status}"))
    } else {
        Err(format!("Layer7 wrong status: {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Answers one connection on a clone of the listener; join it before closing the listener (the
    /// clone keeps the port open while the thread lives).
    fn answer_once(listener: TcpListener, response: &'static str) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = s.write_all(response.as_bytes());
            }
        })
    }

    #[test]
    fn tcp_and_http_checks_pass_and_fail_for_the_right_reasons() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let s = addr;
        let t = Duration::from_secs(2);
        let http = HttpCheck {
            method: "GET".into(),
            uri: "/health".into(),
            expect_status: Some(200),
        };
        let mut answers = vec![answer_once(
            listener.try_clone().unwrap(),
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
        )];
        assert_eq!(
            probe(s, t, Some(&http)).unwrap(),
            "Layer7 check passed: status 200"
        );
        answers.push(answer_once(
            listener.try_clone().unwrap(),
            "HTTP/1.1 503 Busy\r\ncontent-length: 0\r\n\r\n",
        ));
        assert_eq!(probe(s, t, Some(&http)).unwrap_err(), "Layer7 wrong status: 503");
        answers.push(answer_once(listener.try_clone().unwrap(), "garbage\r\n\r\n"));
        assert!(probe(s, t, Some(&http))
            .unwrap_err()
            .starts_with("Layer7 invalid"));
        assert!(probe(s, t, None).unwrap().starts_with("Layer4 check passed"));
        for answer in answers {
            answer.join().unwrap();
        }
        drop(listener);
        assert!(probe(s, t, None)
            .unwrap_err()
            .starts_with("Layer4 connection problem"));
    }
}
