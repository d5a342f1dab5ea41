//! The request stream's state machine (RFC 9000, 3, seen from the server).

/// Where a request stream stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Created, request headers not yet accepted.
    Idle,
    /// Request headers accepted; both directions open.
    Open,
    /// The response is complete (FIN sent); the request body is still coming.
    HalfClosedLocal,
    /// The request is complete (FIN received); the response is still going.
    HalfClosedRemote,
    /// Both directions complete.
    Closed,
    /// Aborted in either direction (RESET_STREAM or STOP_SENDING, sent or received).
    Reset,
}

impl State {
    /// The state after the request's FIN was received.
    pub(crate) fn on_remote_fin(self) -> State {
        match self {
            State::Idle | State::Open => State::HalfClosedRemote,
            State::HalfClosedLocal => State::Closed,
            other => other,
        }
    }

    /// The state after the response's FIN was sent.
    pub(crate) fn on_local_fin(self) -> State {
        match self {
            State::Idle | State::Open => State::HalfClosedLocal,
            State::HalfClosedRemote => State::Closed,
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::State::*;

    #[test]
    fn both_fins_close_in_either_order() {
        assert_eq!(Open.on_remote_fin().on_local_fin(), Closed);
        assert_eq!(Open.on_local_fin().on_remote_fin(), Closed);
        assert_eq!(Reset.on_local_fin(), Reset);
        assert_eq!(Reset.on_remote_fin(), Reset);
    }
}
