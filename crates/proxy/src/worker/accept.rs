//! A new connection: version negotiation, the stateless Retry of `quic-force-retry` binds, and the
//! slot a `qcc::Connection` lives in.

use super::conns::Slot;
use super::inbox::RoomWake;
use super::*;
use crate::config::{canonical, InitialAction};
use crate::frontend::initial_close;
use crate::telemetry::counters::RetryOutcome;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Instant, SystemTime};

use qcc::Connection;

impl Worker {
    pub(super) fn accept(
        &mut self,
        listener: usize,
        datagram: &mut [u8],
        peer: SocketAddr,
        dcid: &[u8],
        now: Instant,
    ) -> Option<usize> {
        if self.run != Run::Serving {
            return None; // Stopping: no new connection.
        }
        let len = datagram.len();
        let hdr = quiche::Header::from_slice(datagram, self.cids.len()).ok()?;
        let local = self.listeners[listener].local;
        // A client Initial fills at least 1200 bytes (RFC 9000, 14.1); smaller ones cost us nothing, and
        // get no Version Negotiation either (5.2.2: a spoofed source would be its reflector).
        if len < 1200 {
            return None;
        }
        if !quiche::version_is_supported(hdr.version) {
            let n = quiche::negotiate_version(&hdr.scid, &hdr.dcid, &mut self.out).ok()?;
            let _ = self.listeners[listener]
                .io
                .send(peer, &self.out[..n], None, &self.proxy);
            return None;
        }
        let frontend = self.listeners[listener].frontend;
        // `quic-initial` rules, by the source address alone, before anything is kept for the client.
        let src = canonical(peer.ip());
        let action = self.initial_action(frontend, src);
        match action {
            InitialAction::DgramDrop => return None,
            InitialAction::Reject => {
                let ours = self.cids.issue(self.me, &mut self.rng);
                if let Some(n) =
                    initial_close::refuse(hdr.version, &hdr.dcid, &hdr.scid, &ours, &mut self.out)
                {
                    let _ = self.listeners[listener]
                        .io
                        .send(peer, &self.out[..n], None, &self.proxy);
                }
                return None;
            }
            InitialAction::Accept | InitialAction::SendRetry => {}
        }
        // `maxconn`, global then the frontend's: over either, the Initial is dropped before anything is
        // kept for it (the client tries again, as after a lost datagram).
        let Some(global) = self.limits.global.try_acquire() else {
            self.proxy.refused_maxconn.fetch_add(1, Relaxed);
            return None;
        };
        let Some(own) = self.limits.frontends[frontend].try_acquire() else {
            self.proxy.refused_frontend_maxconn.fetch_add(1, Relaxed);
            return None;
        };
        let issued_cid = self.cids.issue(self.me, &mut self.rng);
        let token = hdr.token.as_deref().unwrap_or_default();
        // Retry: always with `quic-force-retry`, and while the bind has too many handshakes in progress
        // (a flood of Initials from addresses that may be spoofed); a client back with its token is
        // checked either way.
        let retry = self.listeners[listener].force_retry
            || action == InitialAction::SendRetry
            || self.limits.over_retry_threshold(listener);
        let (scid, odcid) = if retry || !token.is_empty() {
            if hdr.ty != quiche::Type::Initial {
                return None;
            }
            if token.is_empty() {
                // Stateless: the client comes back to `issued_cid` with the token, or not at all.
                let token = self.retry_tokens.mint(peer, &hdr.dcid, SystemTime::now());
                let new_scid = quiche::ConnectionId::from_ref(&issued_cid);
                let n = quiche::retry(
                    &hdr.scid,
                    &hdr.dcid,
                    &new_scid,
                    &token,
                    hdr.version,
                    &mut self.out,
                )
                .ok()?;
                let _ = self.listeners[listener]
                    .io
                    .send(peer, &self.out[..n], None, &self.proxy);
                self.proxy.count_retry(RetryOutcome::Sent);
                return None;
            }
            match self.retry_tokens.validate(peer, token, SystemTime::now()) {
                Some(odcid) => {
                    self.proxy.count_retry(RetryOutcome::Validated);
                    (hdr.dcid.to_vec(), Some(quiche::ConnectionId::from_vec(odcid)))
                }
                None if retry => {
                    self.proxy.count_retry(RetryOutcome::Rejected);
                    return None;
                }
                // Not one of ours (RFC 9000, 8.1.3: as if it had none), and no Retry needed.
                None => (issued_cid, None),
            }
        } else {
            (issued_cid, None)
        };
        let scid = quiche::ConnectionId::from_vec(scid);
        // The stateless reset token of the ID it is known by, which any instance with the key can
        // derive once the connection is forgotten.
        let token = self.reset_key.token(&scid);
        self.listeners[listener]
            .tls
            .quic_mut()
            .set_stateless_reset_token(Some(token));
        // The slot and serial the connection is about to get, for its waker.
        let (index, serial) = (self.slots.vacant_key(), self.serial + 1);
        let waker = Arc::new(RoomWake {
            worker: self.me,
            index,
            serial,
            mailboxes: self.mailboxes.clone(),
            posted: Arc::default(),
        });
        let conn = match Connection::accept(
            &mut self.listeners[listener].tls,
            &scid,
            odcid.as_ref(),
            local,
            peer,
            self.counters.clone(),
            Some(waker),
            now,
        ) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, %peer, "accept failed");
                return None;
            }
        };
        self.serial = serial;
        let trace: Arc<str> = conn.trace_id().into();
        let span = conn.span().clone();
        span.in_scope(|| tracing::debug!(%peer, "new connection"));
        let slot = self.slots.insert(Slot {
            serial: self.serial,
            conn: ServerConn::live(conn),
            listener,
            peer,
            trace,
            span,
            exchanges: HashMap::new(),
            _permits: [global, own],
            handshake: self.limits.handshakes[listener].try_acquire(),
            _source: self.limits.sources.open(src),
            requests: 0,
            awaiting_handshake: Vec::new(),
            paced: None,
            dirty: false,
            timer: None,
        });
        debug_assert_eq!(slot, index, "the slab filled another slot than its vacant key");
        self.router.insert(dcid, index);
        self.router.insert(scid.as_ref(), index);
        self.publish_routes();
        Some(index)
    }

    /// What the frontend's `quic-initial` rules say of a new client at `src` (counted when a rule
    /// decided).
    fn initial_action(&self, frontend: usize, src: IpAddr) -> InitialAction {
        let rules = &self.config.frontends[frontend].quic_initial;
        let open = || self.limits.sources.current(src);
        let Some(rule) = rules.iter().find(|r| {
            r.cond
                .as_ref()
                .is_none_or(|(cond, negate)| cond.holds(src, open) != *negate)
        }) else {
            return InitialAction::Accept;
        };
        self.proxy.count_initial_rule(rule.action);
        rule.action
    }
}
