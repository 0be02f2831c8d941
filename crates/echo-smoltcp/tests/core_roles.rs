//! The echo core's two roles running on this stack, in process: server and client on two
//! stacks joined by a virtual wire, and both on one stack over smoltcp's `Loopback`.

mod common;

use std::net::SocketAddr;

use common::{options, ready, Net, Rng};
use echo::{
    ClientConfig, CloseReason, EchoClient, EchoServer, Event, Role, ServerConfig, Slot,
    DEFAULT_GREETING,
};
use echo_smoltcp::embedded_nal::{TcpClientStack, TcpFullStack};
use echo_smoltcp::smoltcp::iface::{Config, SocketStorage};
use echo_smoltcp::smoltcp::phy::{Loopback, Medium};
use echo_smoltcp::smoltcp::time::{Duration, Instant};
use echo_smoltcp::smoltcp::wire::{EthernetAddress, Ipv4Address, Ipv4Cidr};
use echo_smoltcp::{Stack, TcpSocket};

const PORT: u16 = 5001;

fn echo_now(now: Instant) -> echo::Instant {
    echo::Instant::from_micros(now.total_micros() as u64)
}

/// One client of the core's server: sends `data` in random chunks, collects the echo.
struct Sender {
    socket: TcpSocket,
    data: Vec<u8>,
    sent: usize,
    echoed: Vec<u8>,
}

#[test]
fn core_server_echoes_random_data_to_three_clients_at_once() {
    let mut net: Net<6, 3> = Net::new(4096, options(3), options(1));
    let mut slots = [const { Slot::new() }; 3];
    let mut buffer = [0u8; 3 * 1024];
    let mut server = EchoServer::new(ServerConfig::default(), &mut slots, &mut buffer);
    let remote = SocketAddr::from(([10, 0, 0, 1], PORT));
    let mut rng = Rng::new(77);
    let mut accepted = 0;

    // Listen first, then all three connect before the server accepts any.
    server
        .poll(&mut net.server, echo_now(net.now), |_| ())
        .unwrap();
    let mut clients: Vec<Sender> = (0..3)
        .map(|i| Sender {
            socket: net.client.socket().unwrap(),
            data: rng.bytes(100_000 + i * 12_345),
            sent: 0,
            echoed: Vec::new(),
        })
        .collect();
    net.until(1000, |net| {
        let all = clients
            .iter_mut()
            .all(|c| ready(net.client.connect(&mut c.socket, remote)).is_some());
        all.then_some(())
    });

    let mut buf = vec![0u8; 1500];
    net.until(100_000, |net| {
        server
            .poll(&mut net.server, echo_now(net.now), |event| {
                if let Event::Opened { .. } = event {
                    accepted += 1;
                }
            })
            .unwrap();
        for c in &mut clients {
            if c.sent < c.data.len() {
                let end = (c.sent + rng.size(1400)).min(c.data.len());
                if let Some(n) = ready(net.client.send(&mut c.socket, &c.data[c.sent..end])) {
                    c.sent += n;
                }
            }
            if let Some(n) = ready(net.client.receive(&mut c.socket, &mut buf)) {
                c.echoed.extend_from_slice(&buf[..n]);
            }
        }
        clients
            .iter()
            .all(|c| c.echoed.len() == c.data.len())
            .then_some(())
    });
    assert_eq!(accepted, 3);
    assert_eq!(server.stats().open, 3);
    for c in &clients {
        assert!(c.echoed == c.data, "echo differs");
    }

    // Each client closes; the server sees EOF and frees the slot.
    let mut closed = Vec::new();
    for c in clients {
        net.client.close(c.socket).unwrap();
    }
    net.until(1000, |net| {
        server
            .poll(&mut net.server, echo_now(net.now), |event| {
                if let Event::Closed { reason, .. } = event {
                    closed.push(reason);
                }
            })
            .unwrap();
        (closed.len() == 3).then_some(())
    });
    assert!(closed.iter().all(|r| *r == CloseReason::Eof), "{closed:?}");
    assert_eq!(server.stats().open, 0);
}

#[test]
fn core_client_greets_echoes_and_finishes_when_the_server_closes() {
    let mut net: Net<2, 1> = Net::new(4096, options(1), options(1));
    let mut l = net.server.socket().unwrap();
    net.server.bind(&mut l, 6000).unwrap();
    net.server.listen(&mut l).unwrap();

    let mut config = ClientConfig::new(SocketAddr::from(([10, 0, 0, 1], 6000)));
    config.connect_timeout = Some(echo::Duration::from_secs(5));
    let mut buffer = [0u8; 1024];
    let mut client = EchoClient::new(config, &mut buffer);
    let mut events = Vec::new();

    let data = Rng::new(5).bytes(50_000);
    let (mut conn, mut greeting, mut sent, mut echoed) = (None, Vec::new(), 0, Vec::new());
    let mut buf = [0u8; 2048];
    net.until(50_000, |net| {
        client
            .poll(&mut net.client, echo_now(net.now), |event| {
                events.push(format!("{event:?}"));
            })
            .unwrap();
        if conn.is_none() {
            conn = ready(net.server.accept(&mut l)).map(|(c, _)| c);
            return None;
        }
        let c = conn.as_mut().unwrap();
        if greeting.len() < DEFAULT_GREETING.len() {
            if let Some(n) = ready(net.server.receive(c, &mut buf)) {
                greeting.extend_from_slice(&buf[..n]);
            }
            return None;
        }
        if sent < data.len() {
            if let Some(n) = ready(net.server.send(c, &data[sent..])) {
                sent += n;
            }
        }
        if let Some(n) = ready(net.server.receive(c, &mut buf)) {
            echoed.extend_from_slice(&buf[..n]);
        }
        (echoed.len() == data.len()).then_some(())
    });
    assert_eq!(greeting, DEFAULT_GREETING.as_bytes());
    assert!(echoed == data, "the client's echo differs");

    net.server.close(conn.take().unwrap()).unwrap();
    net.until(1000, |net| {
        client
            .poll(&mut net.client, echo_now(net.now), |event| {
                events.push(format!("{event:?}"));
            })
            .unwrap();
        client.is_finished().then_some(())
    });
    let last = events.last().unwrap();
    assert!(last.starts_with("Closed") && last.contains("Eof"), "{last}");
}

#[test]
fn both_roles_share_one_stack_over_smoltcp_loopback() {
    let device = Loopback::new(Medium::Ethernet);
    let config = Config::new(EthernetAddress([2, 0, 0, 0, 0, 9]).into());
    let mut storage = [SocketStorage::EMPTY; 3];
    let (mut rx, mut tx) = ([[0u8; 2048]; 3], [[0u8; 2048]; 3]);
    let [r0, r1, r2] = &mut rx;
    let [t0, t1, t2] = &mut tx;
    let buffers = [
        (&mut r0[..], &mut t0[..]),
        (&mut r1[..], &mut t1[..]),
        (&mut r2[..], &mut t2[..]),
    ];
    let mut now = Instant::ZERO;
    let mut stack = Stack::new(device, config, &mut storage, buffers, options(1), now).unwrap();
    stack.set_ipv4(Ipv4Cidr::new(Ipv4Address::new(127, 0, 0, 1), 8), None);

    let mut slots = [const { Slot::new() }; 1];
    let mut server_buffer = [0u8; 512];
    let mut server = EchoServer::new(ServerConfig::default(), &mut slots, &mut server_buffer);
    let mut client_buffer = [0u8; 512];
    let config = ClientConfig::new(SocketAddr::from(([127, 0, 0, 1], PORT)));
    let mut client = EchoClient::new(config, &mut client_buffer);

    // Server and client echo each other, so the greeting bounces until the client stops.
    let rounds = 20;
    for _ in 0..100_000 {
        now += Duration::from_millis(1);
        stack.poll(now);
        server.poll(&mut stack, echo_now(now), |_| ()).unwrap();
        client.poll(&mut stack, echo_now(now), |_| ()).unwrap();
        if client.stats().bytes_received >= (rounds * DEFAULT_GREETING.len()) as u64 {
            break;
        }
    }
    assert!(client.stats().bytes_received >= (rounds * DEFAULT_GREETING.len()) as u64);
    assert_eq!(
        client.stats().bytes_received % DEFAULT_GREETING.len() as u64,
        0
    );

    client.shutdown(&mut stack, |_| ());
    let mut reason = None;
    for _ in 0..1000 {
        now += Duration::from_millis(1);
        stack.poll(now);
        server
            .poll(&mut stack, echo_now(now), |event| {
                if let Event::Closed { reason: r, .. } = event {
                    reason = Some(r);
                }
            })
            .unwrap();
        if reason.is_some() {
            break;
        }
    }
    let reason = reason.expect("the server saw the client go");
    assert!(
        matches!(reason, CloseReason::Eof | CloseReason::PipeClosed),
        "{reason:?}"
    );
}

type ServerScreen = echo::Screen<echo::ServerLayout>;

/// Polls `server` once; its `Listening` addresses go to `listening`, every event to `screen`.
fn poll_server<S: TcpFullStack + echo::LocalAddress>(
    server: &mut EchoServer<'_, S>,
    stack: &mut S,
    now: Instant,
    listening: &mut Vec<SocketAddr>,
    screen: &mut ServerScreen,
) where
    S::Error: std::fmt::Debug,
{
    server
        .poll(stack, echo_now(now), |event| {
            if let Event::Listening { local } = event {
                listening.push(local);
            }
            screen.update(&event);
        })
        .unwrap();
}

#[test]
fn a_new_address_restarts_the_server_which_listens_and_shows_it() {
    let mut net: Net<4, 2> = Net::new(1024, options(1), options(1));
    let mut slots = [const { Slot::new() }; 1];
    let mut buffer = [0u8; 512];
    let mut server = EchoServer::new(ServerConfig::new(), &mut slots, &mut buffer);
    let mut screen = echo::Screen::server();
    let mut listening = Vec::new();
    poll_server(
        &mut server,
        &mut net.server,
        net.now,
        &mut listening,
        &mut screen,
    );
    let remote = SocketAddr::from(([10, 0, 0, 1], PORT));
    let mut old = net.client.socket().unwrap();
    net.until(1000, |net| {
        poll_server(
            &mut server,
            &mut net.server,
            net.now,
            &mut listening,
            &mut screen,
        );
        ready(net.client.connect(&mut old, remote))
    });
    net.until(1000, |net| {
        poll_server(
            &mut server,
            &mut net.server,
            net.now,
            &mut listening,
            &mut screen,
        );
        (server.stats().open == 1).then_some(())
    });
    assert_eq!(listening, [remote]);
    assert_eq!(screen.line(0).to_string(), "10.0.0.1:5001");
    assert_eq!(screen.line(1).to_string(), "1 client");

    // A new lease, with no link loss: the board restarts the role (echo-esp32's AddressWatch).
    net.server
        .set_ipv4(Ipv4Cidr::new(Ipv4Address::new(10, 0, 0, 7), 24), None);
    let mut closed = Vec::new();
    server.restart(&mut net.server, |event| {
        if let Event::Closed { reason, .. } = &event {
            closed.push(reason.clone());
        }
        screen.update(&event);
    });
    assert_eq!(
        closed,
        [CloseReason::Shutdown],
        "the old connection's slot is free"
    );
    net.step();
    poll_server(
        &mut server,
        &mut net.server,
        net.now,
        &mut listening,
        &mut screen,
    );
    let moved = SocketAddr::from(([10, 0, 0, 7], PORT));
    assert_eq!(listening, [remote, moved]);
    assert_eq!(screen.line(0).to_string(), "10.0.0.7:5001");
    assert_eq!(screen.line(1).to_string(), "accepting.....");

    // A client reaches the server at its new address (after smoltcp's 1 s pause between two
    // ARP requests of the client's stack).
    let mut new = net.client.socket().unwrap();
    net.until(3000, |net| {
        poll_server(
            &mut server,
            &mut net.server,
            net.now,
            &mut listening,
            &mut screen,
        );
        ready(net.client.connect(&mut new, moved))
    });
    net.until(1000, |net| {
        poll_server(
            &mut server,
            &mut net.server,
            net.now,
            &mut listening,
            &mut screen,
        );
        (server.stats().open == 1).then_some(())
    });
    assert_eq!(screen.line(1).to_string(), "1 client");
}
