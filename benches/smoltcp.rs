//! What the embedded-nal layer costs on smoltcp: 64 MiB echoed on smoltcp's in-process
//! `Loopback`, through `echo_smoltcp::Stack` + `echo::EchoServer`, against the same traffic
//! through raw smoltcp sockets echoing in the same way. Same interface, same TCP buffers,
//! Nagle off on both, the same load client logic; the two run alternately and the medians of
//! the time per MiB are compared. 64 MiB and 15 rounds (about a second in all), not 16 MiB
//! and 9: a 16 MiB run takes about 7 ms, and one preemption on a shared VM moved the ratio by
//! 0.1 or more.
//!
//! `cargo bench --bench smoltcp` (target: ratio <= 1.10).

use std::net::SocketAddr;
use std::time::{Duration, Instant as WallClock};

use echo::{EchoServer, Role, ServerConfig, Slot};
use echo_smoltcp::embedded_nal::{nb, TcpClientStack};
use echo_smoltcp::{Stack, TcpOptions};
use smoltcp::iface::{Config, Interface, SocketSet, SocketStorage};
use smoltcp::phy::{Loopback, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr, Ipv4Address};

const PORT: u16 = 5001;
/// TCP rx and tx buffer of every socket.
const TCP_BUFFER: usize = 16 * 1024;
/// The echo server's buffer per connection (the tutorial's recv(1024)).
const ECHO_BUFFER: usize = 1024;
/// What the load client writes per call.
const CHUNK: usize = 4096;
const ROUNDS: usize = 15;

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        println!("smoltcp: bench");
        return;
    }
    let total: usize = if std::env::var_os("ECHO_BENCH_QUICK").is_some() {
        2 << 20
    } else {
        64 << 20
    };
    let data: Vec<u8> = (0..total).map(|i| (i * 7 % 251) as u8).collect();
    echo_through_stack(&data[..1 << 20]); // warm-up
    raw_smoltcp_echo(&data[..1 << 20]);
    let (mut ours, mut raw) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        ours.push(echo_through_stack(&data));
        raw.push(raw_smoltcp_echo(&data));
    }
    let per_mib = |runs: &mut Vec<Duration>| {
        runs.sort();
        runs[runs.len() / 2].as_secs_f64() * 1e3 / (total as f64 / (1 << 20) as f64)
    };
    let (ours, raw) = (per_mib(&mut ours), per_mib(&mut raw));
    let ratio = ours / raw;
    println!();
    println!("| measurement | echo-smoltcp + echo | raw smoltcp | ratio | target | met |");
    println!("|---|---:|---:|---:|---|---|");
    println!(
        "| ms per MiB echoed on Loopback ({} MiB, median of {ROUNDS}) | {ours:.3} | {raw:.3} | {ratio:.3} | <= 1.10x | {} |",
        total >> 20,
        if ratio <= 1.10 { "yes" } else { "NO" }
    );
}

fn clock(start: WallClock) -> Instant {
    Instant::from_micros(start.elapsed().as_micros() as i64)
}

fn interface(device: &mut Loopback, now: Instant) -> Interface {
    let config = Config::new(EthernetAddress([2, 0, 0, 0, 0, 1]).into());
    let mut iface = Interface::new(config, device, now);
    iface.update_ip_addrs(|addrs| {
        addrs
            .push(IpCidr::new(IpAddress::v4(127, 0, 0, 1), 8))
            .unwrap()
    });
    iface
}

/// The load client's progress, the same for both sides.
struct Load<'d> {
    data: &'d [u8],
    sent: usize,
    checked: usize,
}

impl Load<'_> {
    fn check(&mut self, echoed: &[u8]) {
        assert_eq!(
            echoed,
            &self.data[self.checked..self.checked + echoed.len()],
            "echo differs at byte {}",
            self.checked
        );
        self.checked += echoed.len();
    }
    fn done(&self) -> bool {
        self.checked == self.data.len()
    }
    fn next_chunk(&self) -> &[u8] {
        &self.data[self.sent..(self.sent + CHUNK).min(self.data.len())]
    }
}

fn echo_through_stack(data: &[u8]) -> Duration {
    let start = WallClock::now();
    let device = Loopback::new(Medium::Ethernet);
    let iface_config = Config::new(EthernetAddress([2, 0, 0, 0, 0, 1]).into());
    let mut storage = [SocketStorage::EMPTY; 3];
    let mut rx = [[0u8; TCP_BUFFER]; 3];
    let mut tx = [[0u8; TCP_BUFFER]; 3];
    let [r0, r1, r2] = &mut rx;
    let [t0, t1, t2] = &mut tx;
    let buffers = [
        (&mut r0[..], &mut t0[..]),
        (&mut r1[..], &mut t1[..]),
        (&mut r2[..], &mut t2[..]),
    ];
    let mut options = TcpOptions::default();
    options.backlog = 1;
    let mut stack = Stack::new(
        device,
        iface_config,
        &mut storage,
        buffers,
        options,
        clock(start),
    )
    .unwrap();
    stack.set_ipv4(
        smoltcp::wire::Ipv4Cidr::new(Ipv4Address::new(127, 0, 0, 1), 8),
        None,
    );

    let mut slots = [const { Slot::new() }; 1];
    let mut echo_buffer = [0u8; ECHO_BUFFER];
    let mut server = EchoServer::new(
        ServerConfig::new().with_port(PORT),
        &mut slots,
        &mut echo_buffer,
    );
    let mut client = stack.socket().unwrap();
    let remote = SocketAddr::from(([127, 0, 0, 1], PORT));
    let mut load = Load {
        data,
        sent: 0,
        checked: 0,
    };
    let mut connected = false;
    let mut read = [0u8; CHUNK];
    let timing = WallClock::now();
    while !load.done() {
        let now = clock(start);
        stack.poll(now);
        server
            .poll(
                &mut stack,
                echo::Instant::from_micros(now.total_micros() as u64),
                |_| {},
            )
            .unwrap();
        if !connected {
            connected = stack.connect(&mut client, remote).is_ok();
            continue;
        }
        if load.sent < data.len() {
            match stack.send(&mut client, load.next_chunk()) {
                Ok(n) => load.sent += n,
                Err(nb::Error::WouldBlock) => {}
                Err(error) => panic!("send: {error:?}"),
            }
        }
        match stack.receive(&mut client, &mut read) {
            Ok(n) => load.check(&read[..n]),
            Err(nb::Error::WouldBlock) => {}
            Err(error) => panic!("receive: {error:?}"),
        }
    }
    timing.elapsed()
}

fn raw_smoltcp_echo(data: &[u8]) -> Duration {
    let start = WallClock::now();
    let mut device = Loopback::new(Medium::Ethernet);
    let mut iface = interface(&mut device, clock(start));
    let mut storage = [SocketStorage::EMPTY; 3];
    let mut sockets = SocketSet::new(&mut storage[..]);
    let mut rx = [[0u8; TCP_BUFFER]; 2];
    let mut tx = [[0u8; TCP_BUFFER]; 2];
    let [r0, r1] = &mut rx;
    let [t0, t1] = &mut tx;
    let mut listener = tcp::Socket::new(
        tcp::SocketBuffer::new(&mut r0[..]),
        tcp::SocketBuffer::new(&mut t0[..]),
    );
    listener.set_nagle_enabled(false);
    listener.listen(PORT).unwrap();
    let server = sockets.add(listener);
    let mut connecting = tcp::Socket::new(
        tcp::SocketBuffer::new(&mut r1[..]),
        tcp::SocketBuffer::new(&mut t1[..]),
    );
    connecting.set_nagle_enabled(false);
    connecting
        .connect(iface.context(), (IpAddress::v4(127, 0, 0, 1), PORT), 49152)
        .unwrap();
    let client = sockets.add(connecting);

    let mut load = Load {
        data,
        sent: 0,
        checked: 0,
    };
    // The raw server echoes like the core: read only when nothing is pending, and up to
    // ROUNDS_PER_TURN rounds (a read and its send) per poll while bytes move.
    let mut echo_buffer = [0u8; ECHO_BUFFER];
    let (mut pending_start, mut pending_end) = (0, 0);
    let mut read = [0u8; CHUNK];
    let timing = WallClock::now();
    while !load.done() {
        iface.poll(clock(start), &mut device, &mut sockets);
        let socket = sockets.get_mut::<tcp::Socket>(server);
        for _ in 0..echo::ROUNDS_PER_TURN {
            let mut moved = false;
            if pending_start == pending_end && socket.can_recv() {
                pending_end = socket.recv_slice(&mut echo_buffer).unwrap();
                pending_start = 0;
                moved |= pending_end > 0;
            }
            if pending_start < pending_end && socket.can_send() {
                let sent = socket
                    .send_slice(&echo_buffer[pending_start..pending_end])
                    .unwrap();
                pending_start += sent;
                moved |= sent > 0;
            }
            if !moved {
                break;
            }
        }
        let socket = sockets.get_mut::<tcp::Socket>(client);
        if !socket.may_send() {
            continue;
        }
        if load.sent < data.len() {
            load.sent += socket.send_slice(load.next_chunk()).unwrap();
        }
        if socket.can_recv() {
            let n = socket.recv_slice(&mut read).unwrap();
            load.check(&read[..n]);
        }
    }
    timing.elapsed()
}
