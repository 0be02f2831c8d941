//! The stack against itself, in one process with no privileges: a server stack and a
//! client stack on a virtual Ethernet wire (through `DriverDevice`), in virtual time.

mod common;

use common::{
    accept, connect, connect_raw, failed, listener, options, raw_client, ready, server_addr, Net,
    Rng, TestStack, PORT,
};
use echo_smoltcp::embedded_nal::{TcpClientStack, TcpError, TcpErrorKind, TcpFullStack};
use echo_smoltcp::smoltcp::socket::tcp;
use echo_smoltcp::smoltcp::time::Duration;
use echo_smoltcp::{Error, TcpSocket};

/// Server side of an echo through the embedded-nal calls: what arrives is sent back,
/// unsent bytes are kept, EOF closes once everything went out.
struct Echo {
    socket: Option<TcpSocket>,
    pending: Vec<u8>,
    eof: bool,
}

impl Echo {
    fn new(socket: TcpSocket) -> Self {
        Echo {
            socket: Some(socket),
            pending: Vec::new(),
            eof: false,
        }
    }

    /// Returns true once the connection is closed.
    fn poll<const N: usize>(&mut self, stack: &mut TestStack<N>) -> bool {
        let Some(socket) = self.socket.as_mut() else {
            return true;
        };
        loop {
            if !self.pending.is_empty() {
                match ready(stack.send(socket, &self.pending)) {
                    Some(n) => {
                        self.pending.drain(..n);
                        continue;
                    }
                    None => return false,
                }
            }
            if self.eof {
                stack.close(self.socket.take().unwrap()).unwrap();
                return true;
            }
            let mut buf = [0u8; 700];
            match ready(stack.receive(socket, &mut buf)) {
                Some(0) => self.eof = true,
                Some(n) => self.pending.extend_from_slice(&buf[..n]),
                None => return false,
            }
        }
    }
}

/// Client side: sends `data` in random chunks while reading the echo; returns the echo.
fn exchange<const S: usize, const C: usize>(
    net: &mut Net<S, C>,
    client: &mut TcpSocket,
    echo: &mut Echo,
    data: &[u8],
    rng: &mut Rng,
) -> Vec<u8> {
    let (mut sent, mut echoed) = (0, Vec::with_capacity(data.len()));
    let mut buf = vec![0u8; 3000];
    net.until(200_000, |net| {
        if sent < data.len() {
            let chunk = rng.size(2000).min(data.len() - sent);
            if let Some(n) = ready(net.client.send(client, &data[sent..sent + chunk])) {
                assert!(n > 0 && n <= chunk);
                sent += n;
            }
        }
        let want = rng.size(buf.len());
        if let Some(n) = ready(net.client.receive(client, &mut buf[..want])) {
            assert!(n > 0, "EOF before the echo was complete");
            echoed.extend_from_slice(&buf[..n]);
        }
        echo.poll(&mut net.server);
        (echoed.len() == data.len()).then_some(())
    });
    echoed
}

#[test]
fn three_clients_connecting_at_once_all_get_in_with_backlog_3() {
    let mut net: Net<6, 3> = Net::new(2048, options(3), options(1));
    let mut l = listener(&mut net.server);
    assert_eq!(net.server.listening(&l), Ok(3));

    // All three SYNs go out before the server accepts anything.
    let mut clients: Vec<TcpSocket> = (0..3).map(|_| net.client.socket().unwrap()).collect();
    for c in &mut clients {
        assert_eq!(
            net.client.connect(c, server_addr()),
            Err(nb::Error::WouldBlock)
        );
    }
    net.until(1000, |net| {
        let done = clients
            .iter_mut()
            .all(|c| ready(net.client.connect(c, server_addr())).is_some());
        done.then_some(())
    });

    let mut served: Vec<Echo> = (0..3)
        .map(|_| Echo::new(accept(&mut net, &mut l)))
        .collect();
    assert_eq!(net.server.accept(&mut l), Err(nb::Error::WouldBlock));
    assert_eq!(
        net.server.listening(&l),
        Ok(3),
        "accept re-arms the backlog"
    );

    let mut rng = Rng::new(3);
    for (i, (c, echo)) in clients.iter_mut().zip(&mut served).enumerate() {
        let message = format!("client {i}");
        let echoed = exchange(&mut net, c, echo, message.as_bytes(), &mut rng);
        assert_eq!(echoed, message.as_bytes());
    }
}

#[test]
fn a_client_beyond_the_backlog_is_refused() {
    let mut net: Net<4, 2> = Net::new(1024, options(1), options(1));
    let mut l = listener(&mut net.server);
    let mut a = net.client.socket().unwrap();
    let mut b = net.client.socket().unwrap();
    assert!(net.client.connect(&mut a, server_addr()).is_err());
    assert!(net.client.connect(&mut b, server_addr()).is_err());

    let (mut a_up, mut b_err) = (false, None);
    net.until(1000, |net| {
        a_up = a_up || ready(net.client.connect(&mut a, server_addr())).is_some();
        if b_err.is_none() {
            b_err = failed(net.client.connect(&mut b, server_addr()));
        }
        (a_up && b_err.is_some()).then_some(())
    });
    let err = b_err.unwrap();
    assert_eq!(err, Error::ConnectFailed);
    assert_eq!(err.kind(), TcpErrorKind::Other);
    accept(&mut net, &mut l);
}

#[test]
fn sockets_are_recycled_over_sixty_connections_without_waiting_out_time_wait() {
    // Two pool sockets on the server: one listening, one serving.
    let mut net: Net<2, 1> = Net::new(1024, options(1), options(1));
    let mut l = listener(&mut net.server);
    let mut rng = Rng::new(60);
    for round in 0..60 {
        let mut client = connect(&mut net);
        let mut echo = Echo::new(accept(&mut net, &mut l));
        let message = format!("round {round}");
        let echoed = exchange(
            &mut net,
            &mut client,
            &mut echo,
            message.as_bytes(),
            &mut rng,
        );
        assert_eq!(echoed, message.as_bytes());
        if round % 2 == 0 {
            // The server closes first and goes to TIME-WAIT.
            net.server.close(echo.socket.take().unwrap()).unwrap();
            let mut buf = [0u8; 8];
            net.until(1000, |net| {
                ready(net.client.receive(&mut client, &mut buf)).map(|n| assert_eq!(n, 0))
            });
            net.client.close(client).unwrap();
        } else {
            // The client closes first; the server echoes EOF by closing.
            net.client.close(client).unwrap();
            net.until(1000, |net| echo.poll(&mut net.server).then_some(()));
        }
        for _ in 0..20 {
            net.step();
        }
    }
    assert!(
        net.now.total_millis() < 10_000,
        "TIME-WAIT sockets were reused, not waited out"
    );
    assert_eq!(net.server.listening(&l), Ok(1));
    assert_eq!(net.server.available_sockets(), 1);
}

#[test]
fn receive_gives_data_then_eof_and_send_still_works_after_the_peers_fin() {
    let mut net: Net<2, 1> = Net::new(1024, options(1), options(1));
    let mut l = listener(&mut net.server);
    // The client is a raw smoltcp socket the board-style way, so it can half-close.
    let raw = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; 1024]),
        tcp::SocketBuffer::new(vec![0; 1024]),
    );
    let h = net.client.add_socket(raw).unwrap();
    connect_raw(&mut net, h, 40000);
    let mut conn = accept(&mut net, &mut l);
    let mut buf = [0u8; 64];
    assert_eq!(
        net.server.receive(&mut conn, &mut buf),
        Err(nb::Error::WouldBlock),
        "no data yet is WouldBlock, not Ok(0)"
    );

    let raw = net.client.sockets_mut().get_mut::<tcp::Socket>(h);
    raw.send_slice(b"hello").unwrap();
    raw.close(); // FIN after the data: half-close

    let n = net.until(1000, |net| ready(net.server.receive(&mut conn, &mut buf)));
    assert_eq!(&buf[..n], b"hello");
    let eof = net.until(1000, |net| ready(net.server.receive(&mut conn, &mut buf)));
    assert_eq!(eof, 0, "Ok(0) at EOF");
    assert_eq!(
        ready(net.server.receive(&mut conn, &mut buf)),
        Some(0),
        "EOF stays EOF"
    );

    assert_eq!(ready(net.server.send(&mut conn, b"bye")), Some(3));
    net.server.close(conn).unwrap();
    let mut reply = Vec::new();
    net.until(1000, |net| {
        let raw = net.client.sockets_mut().get_mut::<tcp::Socket>(h);
        match raw.recv_slice(&mut buf) {
            Ok(n) => {
                reply.extend_from_slice(&buf[..n]);
                None
            }
            Err(tcp::RecvError::Finished) => Some(()),
            Err(e) => panic!("{e}"),
        }
    });
    assert_eq!(reply, b"bye");
}

#[test]
fn a_reset_is_pipe_closed_for_receive_and_send_after_the_data_before_it() {
    let mut net: Net<2, 1> = Net::new(1024, options(1), options(1));
    let mut l = listener(&mut net.server);
    let h = raw_client(&mut net);
    let mut conn = accept(&mut net, &mut l);

    let raw = net.client.sockets_mut().get_mut::<tcp::Socket>(h);
    raw.send_slice(b"last words").unwrap();
    net.step();
    net.step();
    net.client.sockets_mut().get_mut::<tcp::Socket>(h).abort();

    let mut buf = [0u8; 64];
    let n = net.until(1000, |net| ready(net.server.receive(&mut conn, &mut buf)));
    assert_eq!(&buf[..n], b"last words", "data before the RST comes first");
    let err = net.until(1000, |net| failed(net.server.receive(&mut conn, &mut buf)));
    assert_eq!(err, Error::ConnectionClosed);
    assert_eq!(err.kind(), TcpErrorKind::PipeClosed);
    let err = failed(net.server.send(&mut conn, b"anyone?")).unwrap();
    assert_eq!(err.kind(), TcpErrorKind::PipeClosed);
    net.server.close(conn).unwrap();
    assert_eq!(
        net.server.available_sockets(),
        1,
        "a reset socket is reusable"
    );
}

#[test]
fn send_takes_what_fits_and_nothing_is_lost() {
    let mut net: Net<2, 1> = Net::new(1024, options(1), options(1));
    let mut l = listener(&mut net.server);
    let mut client = connect(&mut net);
    let mut conn = accept(&mut net, &mut l);

    let data = Rng::new(9).bytes(10_000);
    let first = ready(net.server.send(&mut conn, &data)).unwrap();
    assert_eq!(first, 1024, "a partial send: the transmit buffer's size");
    assert_eq!(
        net.server.send(&mut conn, &data[first..]),
        Err(nb::Error::WouldBlock),
        "a full transmit buffer is WouldBlock"
    );

    // The client does not read: the window closes and the server stays blocked.
    for _ in 0..50 {
        net.step();
    }
    let mut sent = first;
    while let Some(n) = ready(net.server.send(&mut conn, &data[sent..])) {
        sent += n;
    }
    assert!(sent < data.len());

    let mut received = Vec::new();
    let mut buf = [0u8; 333];
    net.until(10_000, |net| {
        if sent < data.len() {
            if let Some(n) = ready(net.server.send(&mut conn, &data[sent..])) {
                sent += n;
            }
        }
        if let Some(n) = ready(net.client.receive(&mut client, &mut buf)) {
            received.extend_from_slice(&buf[..n]);
        }
        (received.len() == data.len()).then_some(())
    });
    assert!(received == data, "byte-exact after partial sends");
}

#[test]
fn echoes_a_mebibyte_of_random_data_byte_exact() {
    let mut net: Net<2, 1> = Net::new(4096, options(1), options(1));
    let mut l = listener(&mut net.server);
    let mut client = connect(&mut net);
    let mut echo = Echo::new(accept(&mut net, &mut l));
    let mut rng = Rng::new(0x5eed);
    let data = rng.bytes(1 << 20);
    let echoed = exchange(&mut net, &mut client, &mut echo, &data, &mut rng);
    assert!(echoed == data, "echo differs from what was sent");
}

#[test]
fn connecting_to_a_closed_port_fails_and_the_socket_can_retry() {
    let mut net: Net<2, 1> = Net::new(1024, options(1), options(1));
    let mut socket = net.client.socket().unwrap();
    let err = net.until(1000, |net| {
        failed(net.client.connect(&mut socket, server_addr()))
    });
    assert_eq!(err, Error::ConnectFailed);

    let mut l = listener(&mut net.server);
    net.until(1000, |net| {
        ready(net.client.connect(&mut socket, server_addr()))
    });
    accept(&mut net, &mut l);
}

#[test]
fn connect_times_out_when_nobody_answers() {
    let mut client_options = options(1);
    client_options.connect_timeout = Some(Duration::from_secs(3));
    let mut net: Net<2, 1> = Net::new(1024, options(1), client_options);
    net.cut.set(true);
    let mut socket = net.client.socket().unwrap();
    let start = net.now;
    let err = net.until(10_000, |net| {
        failed(net.client.connect(&mut socket, server_addr()))
    });
    assert_eq!(err, Error::ConnectFailed);
    let waited = net.now - start;
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_secs(5),
        "{waited}"
    );
    net.client.close(socket).unwrap();
    net.step();
    assert_eq!(net.client.available_sockets(), 1);
}

#[test]
fn a_peer_that_never_finishes_closing_does_not_keep_its_socket() {
    let mut server_options = options(1);
    server_options.reclaim_after = Duration::from_secs(1);
    // No keep-alive or timeout: only reclaiming can free the socket.
    server_options.keep_alive = None;
    server_options.timeout = None;
    let mut net: Net<2, 2> = Net::new(1024, server_options, options(1));
    let mut l = listener(&mut net.server);

    // The first client never closes its side, so the server's close stops in FIN-WAIT-2.
    let _stuck = raw_client(&mut net);
    let first = accept(&mut net, &mut l);
    net.server.close(first).unwrap();
    for _ in 0..50 {
        net.step();
    }
    // A second client takes the other listening socket; nothing is free to re-arm.
    let _second = connect(&mut net);
    let _served = accept(&mut net, &mut l);
    assert_eq!(net.server.listening(&l), Ok(0));

    let waited = net.until(3000, |net| {
        (net.server.listening(&l) == Ok(1)).then_some(net.now)
    });
    assert!(waited.total_millis() >= 1000);
    let third = connect(&mut net);
    let _ = accept(&mut net, &mut l);
    net.client.close(third).unwrap();
}

#[test]
fn closing_a_listener_returns_its_sockets() {
    let mut net: Net<4, 1> = Net::new(1024, options(3), options(1));
    let l = listener(&mut net.server);
    assert_eq!(net.server.listening(&l), Ok(3));
    assert_eq!(net.server.available_sockets(), 1);
    net.server.close(l).unwrap();
    net.step();
    assert_eq!(net.server.available_sockets(), 4);
    // The port can be listened on again.
    let l = listener(&mut net.server);
    assert_eq!(net.server.listening(&l), Ok(3));
}

#[test]
fn a_second_listener_on_the_same_port_is_refused() {
    let mut net: Net<4, 1> = Net::new(1024, options(1), options(1));
    let _l = listener(&mut net.server);
    let mut other = net.server.socket().unwrap();
    net.server.bind(&mut other, PORT).unwrap();
    assert_eq!(net.server.listen(&mut other), Err(Error::AddressInUse));
}

#[test]
fn the_pool_runs_out_and_comes_back() {
    let mut net: Net<2, 1> = Net::new(1024, options(1), options(1));
    let a = net.server.socket().unwrap();
    let b = net.server.socket().unwrap();
    assert_eq!(net.server.socket(), Err(Error::NoFreeSocket));
    net.server.close(a).unwrap();
    let c = net.server.socket().unwrap();
    net.server.close(b).unwrap();
    net.server.close(c).unwrap();
}

#[test]
fn data_calls_on_a_listener_or_unconnected_socket_are_invalid_state() {
    let mut net: Net<2, 1> = Net::new(1024, options(1), options(1));
    let mut l = listener(&mut net.server);
    let mut buf = [0u8; 4];
    assert_eq!(
        net.server.receive(&mut l, &mut buf),
        Err(nb::Error::Other(Error::InvalidState))
    );
    let mut open = net.server.socket().unwrap();
    assert_eq!(
        net.server.send(&mut open, b"x"),
        Err(nb::Error::Other(Error::InvalidState))
    );
    assert_eq!(
        net.server.accept(&mut open).map(|_| ()),
        Err(nb::Error::Other(Error::InvalidState))
    );
}

#[test]
#[cfg(feature = "ipv6")]
fn connects_over_ipv6_and_ipv4_mapped_addresses() {
    use echo_smoltcp::smoltcp::wire::{IpCidr, Ipv6Address};
    use std::net::SocketAddr;

    let mut net: Net<3, 2> = Net::new(1024, options(2), options(1));
    let v6 = |host| IpCidr::new(Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, host).into(), 64);
    let server = net.server.iface_mut();
    server.update_ip_addrs(|addrs| addrs.push(v6(1)).unwrap());
    let client = net.client.iface_mut();
    client.update_ip_addrs(|addrs| addrs.push(v6(2)).unwrap());
    let mut l = listener(&mut net.server);

    let v6: SocketAddr = format!("[fd00::1]:{PORT}").parse().unwrap();
    let mut a = net.client.socket().unwrap();
    net.until(1000, |net| ready(net.client.connect(&mut a, v6)));
    let (_, from) = net.until(1000, |net| ready(net.server.accept(&mut l)));
    assert_eq!(from.ip(), "fd00::2".parse::<std::net::IpAddr>().unwrap());

    let mapped: SocketAddr = format!("[::ffff:10.0.0.1]:{PORT}").parse().unwrap();
    let mut b = net.client.socket().unwrap();
    // smoltcp sends at most one neighbor request (here ARP after NDISC) per second.
    net.until(3000, |net| ready(net.client.connect(&mut b, mapped)));
    let (conn, from) = net.until(1000, |net| ready(net.server.accept(&mut l)));
    assert_eq!(from.ip(), std::net::IpAddr::from([10, 0, 0, 2]));
    assert_eq!(
        net.server.local_addr(&conn),
        Some(SocketAddr::from(([10, 0, 0, 1], PORT)))
    );
    assert_eq!(net.server.remote_addr(&conn), Some(from));
}

#[test]
fn the_socket_set_refuses_sockets_beyond_its_storage() {
    let mut net: Net<2, 1> = Net::new(1024, options(1), options(1));
    // `stack()` leaves two spare entries.
    for expected in [true, true, false] {
        let raw = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 64]),
            tcp::SocketBuffer::new(vec![0; 64]),
        );
        let added = net.client.add_socket(raw);
        assert_eq!(added.is_ok(), expected, "{added:?}");
        if !expected {
            assert_eq!(added, Err(Error::SocketSetFull));
        }
    }
}

#[test]
fn a_connection_waiting_in_the_backlog_survives_the_connect_timeout() {
    let mut net: Net<2, 1> = Net::new(1024, options(1), options(1));
    let mut l = listener(&mut net.server);
    let mut client = connect(&mut net);
    // Idle in the backlog for longer than the 10 s connect timeout, then accepted.
    for _ in 0..15_000 {
        net.step();
    }
    let mut echo = Echo::new(accept(&mut net, &mut l));
    let echoed = exchange(
        &mut net,
        &mut client,
        &mut echo,
        b"still here",
        &mut Rng::new(1),
    );
    assert_eq!(echoed, b"still here");
}
