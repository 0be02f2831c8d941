//! The echo core over this stack on a link that loses and corrupts frames, as WiFi does, in
//! process and in virtual time: smoltcp's `FaultInjector` around both ends' devices drops 10%
//! of the frames and corrupts 1% (which its checksums then reject) in each direction. And the
//! server under 50 clients connecting at once.

mod common;

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;

use common::{lossy_stack, options, wire, LossyStack, Rng};
use echo::{
    ClientConfig, EchoClient, EchoServer, Event, Role, ServerConfig, Slot, DEFAULT_GREETING,
};
use echo_smoltcp::embedded_nal::{nb, TcpClientStack, TcpFullStack};
use echo_smoltcp::smoltcp::time::{Duration, Instant};
use echo_smoltcp::Error;

const PORT: u16 = 5001;

fn echo_now(now: Instant) -> echo::Instant {
    echo::Instant::from_micros(now.total_micros() as u64)
}

/// A server stack (10.0.0.1) and a client stack (10.0.0.2) on one wire, both lossy.
struct LossyNet<const S: usize, const C: usize> {
    server: LossyStack<S>,
    client: LossyStack<C>,
    now: Instant,
}

impl<const S: usize, const C: usize> LossyNet<S, C> {
    fn new(buffer: usize, backlog: usize, loss: u8, corrupt: u8) -> Self {
        let (a, b) = wire(&Rc::new(Cell::new(false)));
        LossyNet {
            server: lossy_stack(a, 1, buffer, options(backlog), loss, corrupt),
            client: lossy_stack(b, 2, buffer, options(1), loss, corrupt),
            now: Instant::ZERO,
        }
    }

    fn step(&mut self) {
        self.now += Duration::from_millis(1);
        self.server.poll(self.now);
        self.client.poll(self.now);
    }
}

/// Some for data, None for nothing yet; the error otherwise.
fn ready<T>(result: nb::Result<T, Error>) -> Result<Option<T>, Error> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(nb::Error::WouldBlock) => Ok(None),
        Err(nb::Error::Other(e)) => Err(e),
    }
}

/// Three raw clients send `size` random bytes each to the core server and read the echo;
/// returns the virtual time it took.
fn three_clients_through(loss: u8, corrupt: u8, size: usize) -> Duration {
    let mut net: LossyNet<6, 3> = LossyNet::new(8 * 1024, 3, loss, corrupt);
    let mut slots = [const { Slot::new() }; 3];
    let mut buffer = [0u8; 3 * 1024];
    let mut server = EchoServer::new(ServerConfig::new(), &mut slots, &mut buffer);
    let remote = SocketAddr::from(([10, 0, 0, 1], PORT));
    let mut rng = Rng::new(u64::from(loss) + 1);
    let mut clients: Vec<_> = (0..3)
        .map(|_| {
            (
                net.client.socket().unwrap(),
                rng.bytes(size),
                0usize,
                Vec::new(),
            )
        })
        .collect();
    let mut connected = [false; 3];
    let mut buf = vec![0u8; 2048];
    let mut most_at_once = 0;
    for _ in 0..10_000_000 {
        net.step();
        server
            .poll(&mut net.server, echo_now(net.now), |_| {})
            .unwrap();
        most_at_once = most_at_once.max(server.stats().open);
        for (index, (socket, data, sent, echoed)) in clients.iter_mut().enumerate() {
            if !connected[index] {
                connected[index] = ready(net.client.connect(socket, remote)).unwrap().is_some();
                continue;
            }
            if *sent < data.len() {
                let end = (*sent + rng.size(1400)).min(data.len());
                *sent += ready(net.client.send(socket, &data[*sent..end]))
                    .unwrap()
                    .unwrap_or(0);
            }
            if let Some(n) = ready(net.client.receive(socket, &mut buf)).unwrap() {
                echoed.extend_from_slice(&buf[..n]);
            }
        }
        if clients
            .iter()
            .all(|(_, data, _, echoed)| echoed.len() >= data.len())
        {
            break;
        }
    }
    for (index, (_, data, _, echoed)) in clients.iter().enumerate() {
        assert_eq!(echoed.len(), data.len(), "client {index}: echo incomplete");
        assert!(echoed == data, "client {index}: echo differs");
    }
    assert_eq!(most_at_once, 3, "the three were served together");
    net.now - Instant::ZERO
}

#[test]
fn three_clients_get_a_mebibyte_each_back_byte_exact_through_10_percent_loss() {
    let clean = three_clients_through(0, 0, 1 << 20);
    let lossy = three_clients_through(10, 1, 1 << 20);
    // The losses cost retransmissions, each 1 s or more in smoltcp: the faults were there.
    assert!(
        lossy > clean + Duration::from_secs(5),
        "clean link {clean}, lossy link {lossy}"
    );
}

#[test]
fn the_client_role_greets_and_echoes_a_mebibyte_byte_exact_through_10_percent_loss() {
    let mut net: LossyNet<2, 2> = LossyNet::new(8 * 1024, 1, 10, 1);
    let mut l = net.server.socket().unwrap();
    net.server.bind(&mut l, 6000).unwrap();
    net.server.listen(&mut l).unwrap();
    let mut buffer = [0u8; 1024];
    let config = ClientConfig::new(SocketAddr::from(([10, 0, 0, 1], 6000)))
        .with_connect_timeout(Some(echo::Duration::from_secs(30)));
    let mut client = EchoClient::new(config, &mut buffer);

    let data = Rng::new(11).bytes(1 << 20);
    let mut expected = DEFAULT_GREETING.as_bytes().to_vec();
    expected.extend_from_slice(&data);
    let (mut conn, mut sent, mut received) = (None, 0, Vec::new());
    let mut buf = vec![0u8; 2048];
    let mut ended = None;
    for _ in 0..10_000_000 {
        net.step();
        client
            .poll(&mut net.client, echo_now(net.now), |event| {
                if let Event::Closed { reason, .. } = event {
                    ended = Some(reason);
                }
            })
            .unwrap();
        if conn.is_none() {
            conn = ready(net.server.accept(&mut l)).unwrap().map(|(c, _)| c);
            continue;
        }
        let socket = conn.as_mut().unwrap();
        if sent < data.len() {
            let end = (sent + 1400).min(data.len());
            sent += ready(net.server.send(socket, &data[sent..end]))
                .unwrap_or_else(|e| panic!("{e:?} at {} after {sent} bytes", net.now))
                .unwrap_or(0);
        }
        if let Some(n) = ready(net.server.receive(socket, &mut buf)).unwrap() {
            received.extend_from_slice(&buf[..n]);
        }
        if received.len() >= expected.len() {
            break;
        }
    }
    assert_eq!(
        received.len(),
        expected.len(),
        "greeting and echo incomplete"
    );
    assert!(received == expected, "greeting or echo differs");
    assert_eq!(ended, None, "the client kept its connection");
    assert_eq!(client.stats().bytes_received, 1 << 20);
}

#[test]
fn fifty_clients_at_once_on_three_slots_and_a_backlog_of_three() {
    const CLIENTS: usize = 50;
    let mut net: LossyNet<6, CLIENTS> = LossyNet::new(512, 3, 0, 0);
    let mut slots = [const { Slot::new() }; 3];
    let mut buffer = [0u8; 3 * 256];
    let mut server = EchoServer::new(ServerConfig::new(), &mut slots, &mut buffer);
    let remote = SocketAddr::from(([10, 0, 0, 1], PORT));
    // Each client: its socket, then connected, served (echo back) or refused.
    #[derive(Clone, Copy, PartialEq, Debug)]
    enum Outcome {
        Waiting,
        Connected,
        Served,
        Refused,
    }
    let mut clients: Vec<_> = (0..CLIENTS)
        .map(|_| (Some(net.client.socket().unwrap()), Outcome::Waiting))
        .collect();
    let mut most_at_once = 0;
    let mut buf = [0u8; 64];
    for _ in 0..200_000 {
        net.step();
        server
            .poll(&mut net.server, echo_now(net.now), |_| {})
            .unwrap();
        most_at_once = most_at_once.max(server.stats().open);
        for (index, (socket, outcome)) in clients.iter_mut().enumerate() {
            let Some(s) = socket.as_mut() else { continue };
            let line = format!("client {index}\n");
            match *outcome {
                Outcome::Waiting => match net.client.connect(s, remote) {
                    Ok(()) => {
                        net.client.send(s, line.as_bytes()).unwrap();
                        *outcome = Outcome::Connected;
                    }
                    Err(nb::Error::WouldBlock) => {}
                    Err(nb::Error::Other(_)) => {
                        *outcome = Outcome::Refused;
                        net.client.close(socket.take().unwrap()).unwrap();
                    }
                },
                Outcome::Connected => match net.client.receive(s, &mut buf) {
                    Ok(n) if n > 0 => {
                        assert_eq!(&buf[..n], line.as_bytes(), "client {index}'s echo");
                        *outcome = Outcome::Served;
                        net.client.close(socket.take().unwrap()).unwrap();
                    }
                    Ok(_) | Err(nb::Error::WouldBlock) => {}
                    Err(nb::Error::Other(e)) => panic!("client {index}: {e:?}"),
                },
                Outcome::Served | Outcome::Refused => {}
            }
        }
        if clients.iter().all(|(socket, _)| socket.is_none()) {
            break;
        }
    }
    let served = clients
        .iter()
        .filter(|(_, o)| *o == Outcome::Served)
        .count();
    let refused = clients
        .iter()
        .filter(|(_, o)| *o == Outcome::Refused)
        .count();
    assert_eq!(
        served + refused,
        CLIENTS,
        "every client is served or refused"
    );
    // The three listening sockets take three of the SYNs that arrive together; the others
    // find no socket listening and are refused (RST) before the replacements listen.
    assert!(
        served >= 3,
        "at least the three that found a listening socket: {served}"
    );
    assert_eq!(most_at_once, 3, "never more than three served at once");

    // Quiet: every socket is back in the pool or listening, and a later client is served.
    for _ in 0..10_000 {
        net.step();
        server
            .poll(&mut net.server, echo_now(net.now), |_| {})
            .unwrap();
    }
    let listening = net.server.listening(server.listener().unwrap()).unwrap();
    assert_eq!(listening, 3);
    assert_eq!(net.server.free_sockets() + listening, 6, "no socket lost");
    let mut late = net.client.socket().unwrap();
    let mut served_late = false;
    for _ in 0..10_000 {
        net.step();
        server
            .poll(&mut net.server, echo_now(net.now), |_| {})
            .unwrap();
        if ready(net.client.connect(&mut late, remote))
            .unwrap()
            .is_some()
        {
            net.client.send(&mut late, b"late\n").unwrap();
            loop {
                net.step();
                server
                    .poll(&mut net.server, echo_now(net.now), |_| {})
                    .unwrap();
                if let Some(n) = ready(net.client.receive(&mut late, &mut buf)).unwrap() {
                    assert_eq!(&buf[..n], b"late\n");
                    served_late = true;
                    break;
                }
            }
            break;
        }
    }
    assert!(served_late, "a client after the rush is served");
}
