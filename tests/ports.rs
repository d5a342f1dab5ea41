//! Free loopback ports, found by binding port 0 (the kernel picks one) and letting it go.

use std::net::{TcpListener, UdpSocket};

/// A UDP port free on 127.0.0.1 (or `[::1]` with `v6`).
pub fn free_udp_port(v6: bool) -> std::io::Result<u16> {
    let socket = if v6 {
        UdpSocket::bind("[::1]:0")?
    } else {
        UdpSocket::bind("127.0.0.1:0")?
    };
    Ok(socket.local_addr()?.port())
}

/// A TCP port free on 127.0.0.1.
pub fn free_tcp_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_bindable() {
        let udp = free_udp_port(false).unwrap();
        assert!(UdpSocket::bind(("127.0.0.1", udp)).is_ok());
        let tcp = free_tcp_port().unwrap();
        assert!(TcpListener::bind(("127.0.0.1", tcp)).is_ok());
    }
}
