//! The server on a smoltcp UDP socket bound to port 67: what the access point runs each turn.

use smoltcp::socket::udp;
use smoltcp::wire::{IpAddress, IpEndpoint};

use super::{DhcpServer, PACKET_SIZE};

/// Answers the DHCP requests waiting on `socket`; returns whether any did.
///
/// Call it after each poll of the interface that owns `socket`.
pub fn serve<F, const N: usize>(socket: &mut udp::Socket<'_>, server: &mut DhcpServer<F, N>) -> bool
where
    F: FnMut() -> u64,
{
    let mut progress = false;
    let mut request = [0u8; PACKET_SIZE];
    let mut reply = [0u8; PACKET_SIZE];
    loop {
        let len = match socket.recv_slice(&mut request) {
            Ok((len, _)) => len,
            Err(udp::RecvError::Truncated) => {
                warn!("dhcp: request longer than {} bytes ignored", PACKET_SIZE);
                continue;
            }
            Err(udp::RecvError::Exhausted) => return progress,
        };
        progress = true;
        if let Some(answer) = server.handle(&request[..len], &mut reply) {
            let to = IpEndpoint::new(IpAddress::Ipv4(*answer.to.ip()), answer.to.port());
            if let Err(e) = socket.send_slice(answer.packet, to) {
                warn!("dhcp: reply not sent: {}", e);
            }
        }
    }
}
