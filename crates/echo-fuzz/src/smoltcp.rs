//! `echo-smoltcp`'s stack serving the echo server while frames chosen by the fuzzer arrive
//! from the peers' side: TCP segments to the server from a few hosts (among them the server's
//! own address and one off its subnet) with any flags, sequence numbers, options and data,
//! segments that answer what the stack last sent (so that connections get established and
//! carry data), ARP, and raw frames.
//!
//! Properties: no panic; once the peers are quiet (twenty minutes of virtual time, past the
//! stack's keep-alive, timeout and handshake timeout of every socket in turn), every pool
//! socket is back in the pool or listening, and none is held by the server.

use std::collections::VecDeque;

use echo::{EchoServer, Role, ServerConfig, Slot};
use echo_smoltcp::{Stack, TcpOptions};
use smoltcp::iface::{Config, SocketStorage};
use smoltcp::phy::{self, Checksum, ChecksumCapabilities, Device, DeviceCapabilities, Medium};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, IpAddress, IpProtocol, Ipv4Address, Ipv4Cidr, Ipv4Packet, Ipv4Repr, TcpControl,
    TcpPacket, TcpRepr, TcpSeqNumber,
};

use crate::Bytes;

const SERVER_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
const PEER_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);
const SERVER_IP: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);
/// Where segments come from: two hosts on the subnet, the server itself (LAND), one off it.
const HOSTS: [Ipv4Address; 4] = [
    Ipv4Address::new(10, 0, 0, 2),
    Ipv4Address::new(10, 0, 0, 3),
    SERVER_IP,
    Ipv4Address::new(10, 9, 9, 9),
];
const PORT: u16 = 5001;
const POOL: usize = 4;

/// An Ethernet device whose received frames the harness queues, and which keeps what the
/// stack sends. It verifies no checksum, so that the fuzzer's frames reach TCP.
struct FuzzDevice {
    rx: VecDeque<Vec<u8>>,
    tx: Vec<Vec<u8>>,
}

struct RxToken(Vec<u8>);
struct TxToken<'a>(&'a mut Vec<Vec<u8>>);

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0; len];
        let result = f(&mut frame);
        self.0.push(frame);
        result
    }
}

impl Device for FuzzDevice {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _: Instant) -> Option<(RxToken, TxToken<'_>)> {
        let frame = self.rx.pop_front()?;
        Some((RxToken(frame), TxToken(&mut self.tx)))
    }

    fn transmit(&mut self, _: Instant) -> Option<TxToken<'_>> {
        Some(TxToken(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        let mut checksum = ChecksumCapabilities::default();
        checksum.ipv4 = Checksum::Tx;
        checksum.tcp = Checksum::Tx;
        checksum.udp = Checksum::Tx;
        checksum.icmpv4 = Checksum::Tx;
        caps.checksum = checksum;
        caps
    }
}

/// The last segment the stack sent to a peer: what an answer must acknowledge.
#[derive(Clone, Copy)]
struct Sent {
    to: (Ipv4Address, u16),
    seq: TcpSeqNumber,
    ack: Option<TcpSeqNumber>,
    len: usize,
}

/// The TCP segments among the frames the stack sent.
fn sent_segments(frames: &[Vec<u8>]) -> Vec<Sent> {
    let mut sent = Vec::new();
    for frame in frames {
        let Ok(ethernet) = EthernetFrame::new_checked(&frame[..]) else {
            continue;
        };
        if ethernet.ethertype() != EthernetProtocol::Ipv4 {
            continue;
        }
        let Ok(ip) = Ipv4Packet::new_checked(ethernet.payload()) else {
            continue;
        };
        if ip.next_header() != IpProtocol::Tcp {
            continue;
        }
        let Ok(tcp) = TcpPacket::new_checked(ip.payload()) else {
            continue;
        };
        let len = tcp.payload().len() + usize::from(tcp.syn()) + usize::from(tcp.fin());
        sent.push(Sent {
            to: (ip.dst_addr(), tcp.dst_port()),
            seq: tcp.seq_number(),
            ack: tcp.ack().then(|| tcp.ack_number()),
            len,
        });
    }
    sent
}

/// An Ethernet frame carrying `ip` with `payload` (already emitted) to the server.
fn frame(src: Ipv4Address, protocol: IpProtocol, payload: &[u8]) -> Vec<u8> {
    let ip = Ipv4Repr {
        src_addr: src,
        dst_addr: SERVER_IP,
        next_header: protocol,
        payload_len: payload.len(),
        hop_limit: 64,
    };
    let ethernet = EthernetRepr {
        src_addr: PEER_MAC,
        dst_addr: SERVER_MAC,
        ethertype: EthernetProtocol::Ipv4,
    };
    let mut bytes = vec![0; ethernet.buffer_len() + ip.buffer_len() + payload.len()];
    let mut eth_frame = EthernetFrame::new_unchecked(&mut bytes[..]);
    ethernet.emit(&mut eth_frame);
    let mut packet = Ipv4Packet::new_unchecked(eth_frame.payload_mut());
    ip.emit(&mut packet, &ChecksumCapabilities::default());
    packet.payload_mut().copy_from_slice(payload);
    bytes
}

/// A TCP segment from `src` described by the input; if `answer` is given, its sequence and
/// acknowledgment numbers continue that conversation.
fn segment(bytes: &mut Bytes<'_>, answer: Option<Sent>) -> Vec<u8> {
    let host = HOSTS[usize::from(bytes.byte()) % HOSTS.len()];
    let src_port = 40000 + u16::from(bytes.byte() % 4);
    let flags = bytes.byte();
    let (src, src_port, seq, ack) = match answer {
        Some(sent) => (
            sent.to.0,
            sent.to.1,
            sent.ack.unwrap_or(TcpSeqNumber(0)),
            Some(sent.seq + sent.len),
        ),
        None => (
            host,
            src_port,
            TcpSeqNumber(bytes.u32() as i32),
            (flags & 0x10 != 0).then(|| TcpSeqNumber(bytes.u32() as i32)),
        ),
    };
    let control = match flags & 0x07 {
        0 | 1 => TcpControl::None,
        2 => TcpControl::Syn,
        3 => TcpControl::Fin,
        4 => TcpControl::Rst,
        _ => TcpControl::Psh,
    };
    let dst_port = if flags & 0x80 != 0 { bytes.u16() } else { PORT };
    let len = usize::from(bytes.byte());
    let payload = bytes.take(len);
    let tcp = TcpRepr {
        src_port,
        dst_port,
        control,
        seq_number: seq,
        ack_number: ack,
        window_len: bytes.u16(),
        window_scale: (flags & 0x20 != 0).then(|| bytes.byte() % 16),
        max_seg_size: (flags & 0x40 != 0).then(|| bytes.u16()),
        sack_permitted: flags & 0x08 != 0,
        sack_ranges: [None, None, None],
        timestamp: None,
        payload,
    };
    let mut tcp_bytes = vec![0; tcp.buffer_len()];
    tcp.emit(
        &mut TcpPacket::new_unchecked(&mut tcp_bytes[..]),
        &IpAddress::Ipv4(src),
        &IpAddress::Ipv4(SERVER_IP),
        &ChecksumCapabilities::default(),
    );
    frame(src, IpProtocol::Tcp, &tcp_bytes)
}

/// An ARP request or reply about one of the hosts.
fn arp(bytes: &mut Bytes<'_>) -> Vec<u8> {
    let host = HOSTS[usize::from(bytes.byte()) % HOSTS.len()];
    let operation = match bytes.byte() % 2 {
        0 => ArpOperation::Request,
        _ => ArpOperation::Reply,
    };
    let arp = ArpRepr::EthernetIpv4 {
        operation,
        source_hardware_addr: PEER_MAC,
        source_protocol_addr: host,
        target_hardware_addr: SERVER_MAC,
        target_protocol_addr: SERVER_IP,
    };
    let ethernet = EthernetRepr {
        src_addr: PEER_MAC,
        dst_addr: SERVER_MAC,
        ethertype: EthernetProtocol::Arp,
    };
    let mut frame = vec![0; ethernet.buffer_len() + arp.buffer_len()];
    let mut eth_frame = EthernetFrame::new_unchecked(&mut frame[..]);
    ethernet.emit(&mut eth_frame);
    arp.emit(&mut ArpPacket::new_unchecked(eth_frame.payload_mut()));
    frame
}

type FuzzStack<'a> = Stack<'a, FuzzDevice, POOL>;

/// One turn of the loop a board runs: the stack, the server, the stack again (to send).
fn turn<'a>(stack: &mut FuzzStack<'a>, server: &mut EchoServer<'_, FuzzStack<'a>>, now: Instant) {
    stack.poll(now);
    let echo_now = echo::Instant::from_micros(now.total_micros() as u64);
    server
        .poll(stack, echo_now, |_| {})
        .expect("the server's poll never fails");
    stack.poll(now);
}

/// The server on a 4-socket pool with a backlog of 2, under the fuzzer's frames.
pub fn check(data: &[u8]) {
    let mut bytes = Bytes::new(data);
    let device = FuzzDevice {
        rx: VecDeque::new(),
        tx: Vec::new(),
    };
    let mut config = Config::new(SERVER_MAC.into());
    config.random_seed = 0x5eed;
    let mut storage: Vec<SocketStorage<'_>> = (0..POOL).map(|_| SocketStorage::EMPTY).collect();
    let mut memory = vec![0u8; POOL * 2 * 512];
    let mut chunks = memory.chunks_exact_mut(512);
    let buffers: [(&mut [u8], &mut [u8]); POOL] = std::array::from_fn(|_| {
        let rx = chunks.next().expect("rx buffer");
        let tx = chunks.next().expect("tx buffer");
        (rx, tx)
    });
    let options = TcpOptions::new().with_backlog(2);
    let mut now = Instant::ZERO;
    let mut stack = Stack::new(device, config, &mut storage[..], buffers, options, now)
        .expect("the storage holds the pool");
    stack.set_ipv4(Ipv4Cidr::new(SERVER_IP, 24), None);

    let mut slots = [const { Slot::new() }; 2];
    let mut echo = [0u8; 2 * 64];
    let config = ServerConfig::new().with_port(PORT);
    let mut server = EchoServer::new(config, &mut slots, &mut echo);
    let mut last_sent: Vec<Sent> = Vec::new();

    for _ in 0..2_000 {
        if bytes.is_empty() {
            break;
        }
        let frame = match bytes.byte() % 8 {
            0..=2 => Some(segment(&mut bytes, None)),
            3 | 4 => {
                // Answer one of the segments the stack sent.
                let pick = usize::from(bytes.byte());
                let answer = (!last_sent.is_empty()).then(|| last_sent[pick % last_sent.len()]);
                Some(segment(&mut bytes, answer))
            }
            5 => Some(arp(&mut bytes)),
            6 => {
                let len = usize::from(bytes.u16() % 1514);
                Some(bytes.take(len).to_vec())
            }
            _ => {
                now += Duration::from_millis(u64::from(bytes.u16()));
                None
            }
        };
        if let Some(frame) = frame {
            stack.device_mut().rx.push_back(frame);
        }
        turn(&mut stack, &mut server, now);
        let sent = std::mem::take(&mut stack.device_mut().tx);
        let segments = sent_segments(&sent);
        if !segments.is_empty() {
            last_sent = segments;
        }
    }

    // The peers go quiet for twenty minutes, time enough for every connection to end: each
    // of the four sockets may hold one whose peer vanished, and a connection that waited in
    // the backlog gets its own timeout again once accepted (smoltcp restarts the timeout when
    // the application writes to an empty transmit buffer, here the echo of what it received).
    for step in 0..300u64 {
        now += Duration::from_secs(if step < 60 { 1 } else { 5 });
        turn(&mut stack, &mut server, now);
        stack.device_mut().tx.clear();
    }
    let listener = server.listener().expect("the server listens");
    let listening = stack.listening(listener).expect("a live listener");
    assert_eq!(
        server.stats().open,
        0,
        "the server still holds a connection"
    );
    assert_eq!(
        stack.free_sockets() + listening,
        POOL,
        "sockets lost to the pool: {} free, {} listening of {}",
        stack.free_sockets(),
        listening,
        POOL
    );
    assert_eq!(listening, 2, "the backlog is back");
}
