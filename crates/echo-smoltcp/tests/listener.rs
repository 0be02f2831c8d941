//! The listener's backlog against unlucky and hostile peers, in one process with no
//! privileges: connections that arrive in some order, die before `accept`, come from
//! spoofed or unreachable sources, or vanish without a word. A server stack (10.0.0.1) and
//! a client stack (10.0.0.2) on a virtual wire, in virtual time; spoofed frames are put on
//! the wire to the server as if a third host sent them.

mod common;

use std::net::SocketAddr;

use common::{accept, connect, ip, listener, options, raw_client, ready, server_addr, Net, PORT};
use echo_smoltcp::embedded_nal::{TcpClientStack, TcpError, TcpErrorKind, TcpFullStack};
use echo_smoltcp::smoltcp::socket::tcp;
use echo_smoltcp::smoltcp::time::Duration;
use echo_smoltcp::smoltcp::wire::{EthernetAddress, Ipv4Address};
use echo_smoltcp::{Error, TcpOptions, TcpSocket};

/// The MAC of the host that sends spoofed frames.
const INTRUDER: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0x99]);

/// A SYN to the server's listening port from `from:port`, sent by the intruder's MAC.
fn syn_to_server<const S: usize, const C: usize>(net: &Net<S, C>, from: Ipv4Address, port: u16) {
    let server_mac = net.server.device().driver().mac();
    let frame = common::syn_frame(INTRUDER, server_mac, (from, port), (ip(1), PORT));
    net.to_server(frame);
}

/// Absent from the subnet: nobody answers ARP for it.
fn absent(host: u8) -> Ipv4Address {
    ip(host)
}

/// Off the subnet, and the server has no gateway: no reply can reach it.
const OFF_SUBNET: Ipv4Address = Ipv4Address::new(10, 9, 9, 9);

fn handshake_timeout() -> Duration {
    TcpOptions::default().handshake_timeout
}

/// The address the server sees for a client-stack socket.
fn seen_as<const S: usize, const C: usize>(net: &Net<S, C>, client: &TcpSocket) -> SocketAddr {
    net.client.local_addr(client).unwrap()
}

/// Accepts a connection and returns it with the peer's address.
fn accept_from<const S: usize, const C: usize>(
    net: &mut Net<S, C>,
    l: &mut TcpSocket,
) -> (TcpSocket, SocketAddr) {
    net.until(1000, |net| ready(net.server.accept(l)))
}

/// Connects a new client socket, trying again every 100 ms after a refusal; panics if it
/// is not connected within `limit`.
fn connect_within<const S: usize, const C: usize>(
    net: &mut Net<S, C>,
    limit: Duration,
) -> TcpSocket {
    let mut socket = net.client.socket().unwrap();
    let deadline = net.now + limit;
    loop {
        match net.client.connect(&mut socket, server_addr()) {
            Ok(()) => return socket,
            Err(nb::Error::WouldBlock) => net.step(),
            Err(nb::Error::Other(Error::ConnectFailed)) => {
                for _ in 0..100 {
                    net.step();
                }
            }
            Err(nb::Error::Other(e)) => panic!("unexpected error: {e}"),
        }
        assert!(net.now < deadline, "refused for longer than {limit}");
    }
}

/// Steps until `receive` on the server's `conn` fails, and returns the error.
fn server_receive_error<const S: usize, const C: usize>(
    net: &mut Net<S, C>,
    conn: &mut TcpSocket,
) -> Option<Error> {
    let mut buf = [0u8; 16];
    match net.server.receive(conn, &mut buf) {
        Err(nb::Error::Other(e)) => Some(e),
        Ok(n) => panic!("received {n} bytes from a peer that is gone"),
        Err(nb::Error::WouldBlock) => None,
    }
}

#[test]
fn accept_hands_out_the_oldest_waiting_connection_first() {
    let mut net: Net<3, 4> = Net::new(1024, options(2), options(1));
    let mut l = listener(&mut net.server);

    let mut a = connect(&mut net);
    let b = connect(&mut net);
    let (a_conn, from) = accept_from(&mut net, &mut l);
    assert_eq!(from, seen_as(&net, &a));
    let c = connect(&mut net);

    // A's connection ends, and its socket goes back to the pool: the lowest index.
    net.server.close(a_conn).unwrap();
    let mut buf = [0u8; 8];
    net.until(1000, |net| {
        ready(net.client.receive(&mut a, &mut buf)).map(|n| assert_eq!(n, 0))
    });
    net.client.close(a).unwrap();
    for _ in 0..100 {
        net.step();
    }

    let (_, from) = accept_from(&mut net, &mut l);
    assert_eq!(from, seen_as(&net, &b));
    let d = connect(&mut net);
    // D's handshake completes on the server too: both C and D are ready to be accepted.
    for _ in 0..10 {
        net.step();
    }
    let (_, from) = accept_from(&mut net, &mut l);
    assert_eq!(from, seen_as(&net, &c), "C waited longer than D");
    let (_, from) = accept_from(&mut net, &mut l);
    assert_eq!(from, seen_as(&net, &d));
}

#[test]
fn a_connection_reset_before_accept_gives_its_socket_back_to_listen() {
    // One pool socket: while the first client holds it, nothing else listens.
    let mut net: Net<1, 2> = Net::new(1024, options(1), options(1));
    let mut l = listener(&mut net.server);
    let h = raw_client(&mut net);
    assert_eq!(net.server.listening(&l), Ok(0));

    net.client.sockets_mut().get_mut::<tcp::Socket>(h).abort();
    // Nobody calls accept: the stack alone puts the socket back in LISTEN.
    net.until(100, |net| (net.server.listening(&l) == Ok(1)).then_some(()));

    let b = connect(&mut net);
    let (_, from) = accept_from(&mut net, &mut l);
    assert_eq!(from, seen_as(&net, &b));
}

#[test]
fn a_waiting_connection_whose_peer_vanished_gives_its_socket_back_to_listen() {
    let mut net: Net<1, 1> = Net::new(1024, options(1), options(1));
    let mut l = listener(&mut net.server);
    let a = connect(&mut net);
    assert_eq!(net.server.listening(&l), Ok(0));

    // The client vanishes without a word; keep-alive and timeout end its connection.
    net.cut.set(true);
    let defaults = TcpOptions::default();
    net.idle(defaults.keep_alive.unwrap() + defaults.timeout.unwrap() + Duration::from_secs(1));
    net.cut.set(false);
    assert_eq!(net.server.listening(&l), Ok(1));

    net.client.close(a).unwrap();
    // The ARP entries expired meanwhile: the new handshake waits for ARP first.
    let b = connect_within(&mut net, Duration::from_secs(3));
    let (_, from) = accept_from(&mut net, &mut l);
    assert_eq!(from, seen_as(&net, &b));
}

#[test]
fn syns_from_our_own_address_or_an_unreachable_source_take_no_socket() {
    let mut net: Net<4, 1> = Net::new(1024, options(2), options(1));
    let mut l = listener(&mut net.server);
    net.step();
    let sent_before = net.client.device().driver().waiting();
    for port in 1000..1020 {
        syn_to_server(&net, ip(1), port); // LAND: source = destination
        syn_to_server(&net, OFF_SUBNET, port);
    }
    // Only the server polls, so everything it sends stays on the wire to be counted.
    for _ in 0..10 {
        net.now += Duration::from_millis(1);
        net.server.poll(net.now);
    }
    assert_eq!(
        net.client.device().driver().waiting(),
        sent_before,
        "no SYN-ACK, no ARP request, no RST"
    );
    assert_eq!(net.server.listening(&l), Ok(2));
    assert_eq!(net.server.available_sockets(), 2);

    let client = connect(&mut net);
    let (_, from) = accept_from(&mut net, &mut l);
    assert_eq!(from, seen_as(&net, &client));
}

#[test]
fn a_half_open_connection_gives_its_socket_back_after_the_handshake_timeout() {
    let mut net: Net<3, 1> = Net::new(1024, options(2), options(1));
    let l = listener(&mut net.server);
    syn_to_server(&net, absent(200), 1000);
    net.step();
    assert_eq!(
        net.server.listening(&l),
        Ok(2),
        "a free socket listens in the half-open one's place"
    );
    assert_eq!(net.server.available_sockets(), 0);

    net.idle(handshake_timeout() + Duration::from_millis(100));
    assert_eq!(net.server.listening(&l), Ok(2));
    assert_eq!(
        net.server.available_sockets(),
        1,
        "the half-open socket is back"
    );

    // And it forgot the absent host: no SYN-ACK, RST or ARP request for it any more.
    let mut sent = 0;
    for _ in 0..1000 {
        net.now += Duration::from_millis(10);
        net.server.poll(net.now);
        sent += net.client.device().driver().waiting();
        net.client.poll(net.now);
    }
    assert_eq!(
        sent, 0,
        "frames sent in the 10 s after the handshake timeout"
    );
}

#[test]
fn a_burst_of_spoofed_syns_leaves_three_clients_served_and_a_backlog_of_three() {
    // The tap example's shape: backlog 3, a pool of 6 (3 served + 3 waiting).
    let mut net: Net<6, 6> = Net::new(1024, options(3), options(1));
    let mut l = listener(&mut net.server);
    for port in 1000..1020 {
        syn_to_server(&net, ip(1), port);
        syn_to_server(&net, OFF_SUBNET, port);
    }
    // Absent hosts: these SYNs do take a socket each, until the handshake times out.
    for host in 200..203 {
        syn_to_server(&net, absent(host), 1000);
    }
    net.step();

    // The half-open sockets listen again after the handshake timeout; smoltcp then holds
    // back their SYN-ACKs for up to 1 s more, the silence it keeps after asking ARP for
    // an absent host.
    let recovery = handshake_timeout() + Duration::from_secs(1) + Duration::from_millis(200);
    let start = net.now;
    let served: Vec<(TcpSocket, TcpSocket)> = (0..3)
        .map(|_| {
            let client = connect_within(&mut net, Duration::from_millis(100));
            let (conn, from) = accept_from(&mut net, &mut l);
            assert_eq!(from, seen_as(&net, &client));
            (client, conn)
        })
        .collect();
    let waiting: Vec<TcpSocket> = (0..3).map(|_| connect_within(&mut net, recovery)).collect();
    assert!(net.now - start <= recovery);
    for client in &waiting {
        let (_, from) = accept_from(&mut net, &mut l);
        assert_eq!(from, seen_as(&net, client));
    }
    assert_eq!(served.len() + waiting.len(), 6);
}

#[test]
fn a_peer_that_vanishes_is_reported_closed_within_keep_alive_plus_timeout() {
    let mut net: Net<2, 1> = Net::new(1024, options(1), options(1));
    let mut l = listener(&mut net.server);
    let mut client = connect(&mut net);
    let mut conn = accept(&mut net, &mut l);
    assert_eq!(ready(net.client.send(&mut client, b"hi")), Some(2));
    let mut buf = [0u8; 8];
    net.until(1000, |net| ready(net.server.receive(&mut conn, &mut buf)));

    // Both ends lose each other: no FIN, no RST, every frame dropped.
    net.cut.set(true);
    let cut_at = net.now;
    let defaults = TcpOptions::default();
    let limit = defaults.keep_alive.unwrap() + defaults.timeout.unwrap();
    let (mut server_err, mut client_err) = (None, None);
    while server_err.is_none() || client_err.is_none() {
        assert!(net.now - cut_at <= limit, "still open after {limit}");
        net.idle(Duration::from_millis(100));
        server_err = server_err.or_else(|| server_receive_error(&mut net, &mut conn));
        if client_err.is_none() {
            client_err = match net.client.send(&mut client, b"x") {
                Err(nb::Error::Other(e)) => Some(e),
                _ => None,
            };
        }
    }
    for err in [server_err.unwrap(), client_err.unwrap()] {
        assert_eq!(err, Error::ConnectionClosed);
        assert_eq!(err.kind(), TcpErrorKind::PipeClosed);
    }

    // The served slot frees: the next client is served on the same two sockets.
    net.cut.set(false);
    net.server.close(conn).unwrap();
    net.client.close(client).unwrap();
    // The ARP entries expired meanwhile: the new handshake waits for ARP first.
    let next = connect_within(&mut net, Duration::from_secs(3));
    let (_, from) = accept_from(&mut net, &mut l);
    assert_eq!(from, seen_as(&net, &next));
}

#[test]
fn a_live_idle_connection_outlasts_the_timeout() {
    let mut net: Net<2, 1> = Net::new(1024, options(1), options(1));
    let mut l = listener(&mut net.server);
    let mut client = connect(&mut net);
    let mut conn = accept(&mut net, &mut l);
    // Silent for three timeouts: keep-alives show both ends are there.
    let defaults = TcpOptions::default();
    net.idle(defaults.timeout.unwrap() * 3);
    assert_eq!(server_receive_error(&mut net, &mut conn), None);
    assert_eq!(ready(net.client.send(&mut client, b"still")), Some(5));
    let mut buf = [0u8; 8];
    let n = net.until(1000, |net| ready(net.server.receive(&mut conn, &mut buf)));
    assert_eq!(&buf[..n], b"still");
}
