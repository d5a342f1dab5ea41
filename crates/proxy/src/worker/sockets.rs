//! Who owns each backend socket now. A backend socket is registered with the poller once, when it is
//! opened, under a token made of its file descriptor, and never again: going to the pool and back to
//! an exchange costs no `epoll_ctl`, and an idle socket the server closes wakes the pool. Closing the
//! descriptor removes it from epoll; the kernel hands the number out again only after that, so the
//! entry is overwritten when the number comes back.

use std::os::fd::RawFd;

/// Backend socket tokens start here (the descriptor is added).
pub(super) const SOCKET_BASE: usize = 1 << 21;

/// The owner of the socket behind a descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Owner {
    /// Nobody: closed, or between two owners.
    None,
    /// The exchange at this index.
    Exchange(usize),
    /// Idle in the pool.
    Pool,
}

/// Descriptor to owner.
#[derive(Debug, Default)]
pub(super) struct SocketOwners {
    by_fd: Vec<Owner>,
}

impl SocketOwners {
    /// Records that `owner` has the socket `fd` now.
    pub(super) fn set(&mut self, fd: RawFd, owner: Owner) {
        let i = usize::try_from(fd).expect("an open descriptor is not negative");
        if i >= self.by_fd.len() {
            self.by_fd.resize((i + 1).next_power_of_two(), Owner::None);
        }
        self.by_fd[i] = owner;
    }

    /// Who has `fd`, for an event with its token. An event can be stale (queued before its socket
    /// changed hands in the same turn); each owner checks that the socket is still the one it has.
    pub(super) fn get(&self, fd: usize) -> Owner {
        self.by_fd.get(fd).copied().unwrap_or(Owner::None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_descriptor_has_the_last_owner_set() {
        let mut owners = SocketOwners::default();
        assert_eq!(owners.get(7), Owner::None);
        owners.set(7, Owner::Exchange(3));
        assert_eq!(owners.get(7), Owner::Exchange(3));
        owners.set(7, Owner::Pool);
        assert_eq!(owners.get(7), Owner::Pool);
        owners.set(300, Owner::Exchange(1));
        assert_eq!(
            (owners.get(7), owners.get(300)),
            (Owner::Pool, Owner::Exchange(1))
        );
        assert_eq!(owners.get(299), Owner::None);
    }
}
