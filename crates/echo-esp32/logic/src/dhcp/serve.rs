//! The server on smoltcp UDP sockets: what the access point runs after each poll of its
//! interface.
//!
//! Two sockets, because of how smoltcp 0.14 sends. A UDP socket sends its queue in order, and
//! a datagram whose send fails stays at the head of the queue: a unicast reply to an address
//! that never answers ARP (a client that left before its ACK, a forged `ciaddr`) is retried
//! every second forever, every reply queued behind it waits with it, and once the queue is
//! full every later one fails with `BufferFull`. Each failure also silences the whole socket
//! for a second. Only unicast replies wait for ARP (broadcasts need no neighbour, and the
//! server never unicasts off its own network, so there is always a route). So:
//!
//! - the main socket receives the requests and sends the broadcast replies: nothing in its
//!   queue can get stuck;
//! - the unicast socket sends the unicast replies, one at a time: a reply still unsent when the
//!   next unicast reply is ready is dropped for it, by closing and re-binding the socket (the
//!   only way smoltcp offers to empty a send queue; the socket receives nothing, so nothing
//!   else is lost). A client that does answer ARP has its reply as soon as it does.
//!
//! A reply that cannot be delivered is lost (its client, if any, asks again). It never holds
//! up a broadcast reply, and delays the next unicast reply by at most the second smoltcp waits
//! before it tries that socket again. Until it is replaced, smoltcp asks ARP for its address
//! once a second.

use smoltcp::socket::udp;
use smoltcp::wire::{IpAddress, IpEndpoint};

use super::{wire::REPLY_LEN, DhcpServer, Reply, PACKET_SIZE, SERVER_PORT};

/// Requests the main socket holds between two turns: four of the usual ~300 bytes, at least
/// two of the largest ([`PACKET_SIZE`]).
const REQUESTS: usize = 4;
const REQUEST_BYTES: usize = 2 * PACKET_SIZE;
/// Broadcast replies queued between two polls of the interface.
const BROADCASTS: usize = 2;

/// Memory for the server's two sockets, from the caller (the firmware keeps it in `main`'s
/// frame). One array of each kind, which the firmware initialises with less code
/// than one per queue.
pub struct SocketMemory {
    meta: [udp::PacketMetadata; REQUESTS + BROADCASTS + 1],
    bytes: [u8; REQUEST_BYTES + BROADCASTS * REPLY_LEN + REPLY_LEN],
}

impl SocketMemory {
    /// Zeroed memory.
    pub const fn new() -> Self {
        SocketMemory {
            meta: [udp::PacketMetadata::EMPTY; REQUESTS + BROADCASTS + 1],
            bytes: [0; REQUEST_BYTES + BROADCASTS * REPLY_LEN + REPLY_LEN],
        }
    }
}

impl Default for SocketMemory {
    fn default() -> Self {
        Self::new()
    }
}

/// The server's main and unicast sockets, both bound to port 67.
///
/// Add them to the interface's socket set in this order: smoltcp hands a datagram to the first
/// socket bound to its port, and the unicast socket has no receive buffer.
pub fn sockets(memory: &mut SocketMemory) -> (udp::Socket<'_>, udp::Socket<'_>) {
    let (requests_meta, meta) = memory.meta.split_at_mut(REQUESTS);
    let (broadcasts_meta, unicast_meta) = meta.split_at_mut(BROADCASTS);
    let (requests, bytes) = memory.bytes.split_at_mut(REQUEST_BYTES);
    let (broadcasts, unicast) = bytes.split_at_mut(BROADCASTS * REPLY_LEN);
    let mut main = udp::Socket::new(
        udp::PacketBuffer::new(requests_meta, requests),
        udp::PacketBuffer::new(broadcasts_meta, broadcasts),
    );
    let mut unicast = udp::Socket::new(
        udp::PacketBuffer::new(&mut [] as &mut [udp::PacketMetadata], &mut [] as &mut [u8]),
        udp::PacketBuffer::new(unicast_meta, unicast),
    );
    for socket in [&mut main, &mut unicast] {
        socket.bind(SERVER_PORT).expect("port 67 is not 0");
    }
    (main, unicast)
}

/// Answers the DHCP requests waiting on `main`; returns whether any did. `unicast` is the
/// second socket of [`sockets`].
///
/// Call it after each poll of the interface that owns the sockets. Requests are left queued
/// while the main socket has no room for a reply: the next poll sends the replies.
pub fn serve<'a, F, const N: usize>(
    main: &mut udp::Socket<'a>,
    unicast: &mut udp::Socket<'a>,
    server: &mut DhcpServer<F, N>,
) -> bool
where
    F: FnMut() -> u64,
{
    let mut progress = false;
    let mut request = [0u8; PACKET_SIZE];
    let mut reply = [0u8; REPLY_LEN];
    while main.can_send() {
        let len = match main.recv_slice(&mut request) {
            Ok((len, _)) => len,
            Err(udp::RecvError::Truncated) => {
                warn!("dhcp: request longer than {} bytes ignored", PACKET_SIZE);
                continue;
            }
            Err(udp::RecvError::Exhausted) => break,
        };
        progress = true;
        if let Some(answer) = server.handle(&request[..len], &mut reply) {
            send(main, unicast, &answer);
        }
    }
    progress
}

/// Queues `reply` on the socket for its destination.
fn send<'a>(main: &mut udp::Socket<'a>, unicast: &mut udp::Socket<'a>, reply: &Reply<'_>) {
    let socket = if reply.to.ip().is_broadcast() {
        main
    } else {
        if unicast.send_queue() > 0 {
            warn!("dhcp: dropped a reply its client never took (no ARP answer)");
            empty(unicast);
        }
        unicast
    };
    let to = IpEndpoint::new(IpAddress::Ipv4(*reply.to.ip()), reply.to.port());
    if let Err(e) = socket.send_slice(reply.packet, to) {
        warn!("dhcp: reply not sent: {}", e);
    }
}

/// Drops what `socket` has queued: close it and bind it again where it was.
fn empty(socket: &mut udp::Socket<'_>) {
    let endpoint = socket.endpoint();
    socket.close();
    if socket.bind(endpoint).is_err() {
        warn!("dhcp: unicast socket not re-bound");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::Ipv4Addr;

    fn server() -> DhcpServer<fn() -> u64, 4> {
        DhcpServer::new(
            || 0,
            Ipv4Addr::new(192, 168, 4, 1),
            Ipv4Addr::new(192, 168, 4, 2)..=Ipv4Addr::new(192, 168, 4, 5),
        )
    }

    fn reply(to: Ipv4Addr, packet: &[u8]) -> Reply<'_> {
        Reply {
            to: core::net::SocketAddrV4::new(to, 68),
            packet,
            kind: super::super::MessageType::Ack,
            address: to,
        }
    }

    #[test]
    fn the_sockets_are_bound_to_port_67() {
        let mut memory = SocketMemory::new();
        let (main, unicast) = sockets(&mut memory);
        assert_eq!(main.endpoint().port, SERVER_PORT);
        assert_eq!(unicast.endpoint().port, SERVER_PORT);
        assert_eq!(unicast.packet_recv_capacity(), 0);
        assert_eq!(unicast.packet_send_capacity(), 1);
    }

    #[test]
    fn broadcasts_go_on_the_main_socket_and_unicasts_on_the_other() {
        let mut memory = SocketMemory::new();
        let (mut main, mut unicast) = sockets(&mut memory);
        send(
            &mut main,
            &mut unicast,
            &reply(Ipv4Addr::BROADCAST, &[1; REPLY_LEN]),
        );
        send(
            &mut main,
            &mut unicast,
            &reply(Ipv4Addr::new(192, 168, 4, 2), &[2; 10]),
        );
        assert_eq!((main.send_queue(), unicast.send_queue()), (REPLY_LEN, 10));
    }

    #[test]
    fn a_newer_unicast_reply_replaces_an_unsent_one() {
        let mut memory = SocketMemory::new();
        let (mut main, mut unicast) = sockets(&mut memory);
        send(
            &mut main,
            &mut unicast,
            &reply(Ipv4Addr::new(192, 168, 4, 2), &[2; 10]),
        );
        send(
            &mut main,
            &mut unicast,
            &reply(Ipv4Addr::new(192, 168, 4, 3), &[3; 20]),
        );
        assert_eq!(unicast.send_queue(), 20);
        assert_eq!(unicast.endpoint().port, SERVER_PORT, "bound again");
        assert_eq!(main.send_queue(), 0);
    }

    #[test]
    fn nothing_to_serve_is_no_progress() {
        let mut memory = SocketMemory::new();
        let (mut main, mut unicast) = sockets(&mut memory);
        assert!(!serve(&mut main, &mut unicast, &mut server()));
    }
}
