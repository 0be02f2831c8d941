//! Fixtures for the in-process tests: two stacks on a virtual Ethernet wire, virtual time.
#![allow(dead_code)] // each test file uses its own part of the fixtures

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::Context;

use std::net::SocketAddr;

use echo_smoltcp::embassy_net_driver::{
    self as driver, Capabilities, Driver, HardwareAddress, LinkState,
};
use echo_smoltcp::embedded_nal::{TcpClientStack, TcpFullStack};
use echo_smoltcp::smoltcp::iface::{Config, SocketHandle, SocketStorage};
use echo_smoltcp::smoltcp::phy::{ChecksumCapabilities, Device, FaultInjector};
use echo_smoltcp::smoltcp::socket::tcp;
use echo_smoltcp::smoltcp::time::{Duration, Instant};
use echo_smoltcp::smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpAddress, IpProtocol,
    Ipv4Address, Ipv4Cidr, Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber,
};
use echo_smoltcp::{DriverDevice, Error, Stack, TcpOptions, TcpSocket};

type Frames = Rc<RefCell<VecDeque<Vec<u8>>>>;

/// One end of a virtual Ethernet cable, as an embassy-net-driver `Driver`.
pub struct WireEnd {
    mac: [u8; 6],
    inbox: Frames,
    outbox: Frames,
    cut: Rc<Cell<bool>>,
}

/// Two connected ends; frames sent while `cut` is set are lost.
pub fn wire(cut: &Rc<Cell<bool>>) -> (WireEnd, WireEnd) {
    let (a, b) = (Frames::default(), Frames::default());
    (
        WireEnd {
            mac: [2, 0, 0, 0, 0, 1],
            inbox: a.clone(),
            outbox: b.clone(),
            cut: cut.clone(),
        },
        WireEnd {
            mac: [2, 0, 0, 0, 0, 2],
            inbox: b,
            outbox: a,
            cut: cut.clone(),
        },
    )
}

pub struct Frame(Vec<u8>);

pub struct Sender<'a> {
    outbox: &'a Frames,
    cut: bool,
}

impl WireEnd {
    /// Puts `frame` in this end's inbox, as if it came down the wire.
    pub fn inject(&self, frame: Vec<u8>) {
        self.inbox.borrow_mut().push_back(frame);
    }

    /// Frames waiting in this end's inbox.
    pub fn waiting(&self) -> usize {
        self.inbox.borrow().len()
    }

    /// This end's MAC address.
    pub fn mac(&self) -> EthernetAddress {
        EthernetAddress(self.mac)
    }
}

impl driver::RxToken for Frame {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(mut self, f: F) -> R {
        f(&mut self.0)
    }
}

impl driver::TxToken for Sender<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0; len];
        let r = f(&mut frame);
        if !self.cut {
            self.outbox.borrow_mut().push_back(frame);
        }
        r
    }
}

impl Driver for WireEnd {
    type RxToken<'a> = Frame;
    type TxToken<'a> = Sender<'a>;

    fn receive(&mut self, _: &mut Context) -> Option<(Frame, Sender<'_>)> {
        let frame = self.inbox.borrow_mut().pop_front()?;
        let sender = Sender {
            outbox: &self.outbox,
            cut: self.cut.get(),
        };
        Some((Frame(frame), sender))
    }

    fn transmit(&mut self, _: &mut Context) -> Option<Sender<'_>> {
        Some(Sender {
            outbox: &self.outbox,
            cut: self.cut.get(),
        })
    }

    fn link_state(&mut self, _: &mut Context) -> LinkState {
        LinkState::Up
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::default();
        caps.max_transmission_unit = 1514;
        caps
    }

    fn hardware_address(&self) -> HardwareAddress {
        HardwareAddress::Ethernet(self.mac)
    }
}

pub type TestStack<const N: usize> = Stack<'static, DriverDevice<WireEnd>, N>;

/// A stack of `N` pooled sockets with `buffer`-byte rx and tx buffers, two spare
/// SocketSet entries, and address 10.0.0.`host`/24.
pub fn stack<const N: usize>(
    end: WireEnd,
    host: u8,
    buffer: usize,
    options: TcpOptions,
) -> TestStack<N> {
    let device = DriverDevice::new(end).unwrap();
    let mac = device.hardware_address();
    stack_on(device, mac, host, buffer, options)
}

/// A stack on a wire that loses `loss` percent of the frames each way and corrupts `corrupt`
/// percent (smoltcp's `FaultInjector`, seeded by `host`).
pub fn lossy_stack<const N: usize>(
    end: WireEnd,
    host: u8,
    buffer: usize,
    options: TcpOptions,
    loss: u8,
    corrupt: u8,
) -> LossyStack<N> {
    let device = DriverDevice::new(end).unwrap();
    let mac = device.hardware_address();
    let mut device = FaultInjector::new(device, u32::from(host) * 104_729);
    device.set_drop_chance(loss);
    device.set_corrupt_chance(corrupt);
    stack_on(device, mac, host, buffer, options)
}

pub type LossyStack<const N: usize> = Stack<'static, FaultInjector<DriverDevice<WireEnd>>, N>;

/// A stack of `N` pooled sockets over `device`, otherwise as [`stack`].
pub fn stack_on<D: Device, const N: usize>(
    device: D,
    mac: echo_smoltcp::smoltcp::wire::HardwareAddress,
    host: u8,
    buffer: usize,
    options: TcpOptions,
) -> Stack<'static, D, N> {
    let mut config = Config::new(mac);
    config.random_seed = u64::from(host) * 7919;
    let storage: &'static mut [SocketStorage<'static>] =
        Vec::leak((0..N + 2).map(|_| SocketStorage::EMPTY).collect());
    let buffers = core::array::from_fn(|_| {
        (
            Vec::leak(vec![0u8; buffer]) as &mut [u8],
            Vec::leak(vec![0u8; buffer]) as &mut [u8],
        )
    });
    let mut stack = Stack::new(device, config, storage, buffers, options, Instant::ZERO).unwrap();
    stack.set_ipv4(Ipv4Cidr::new(ip(host), 24), None);
    stack
}

pub fn ip(host: u8) -> Ipv4Address {
    Ipv4Address::new(10, 0, 0, host)
}

pub fn options(backlog: usize) -> TcpOptions {
    let mut options = TcpOptions::default();
    options.backlog = backlog;
    options
}

/// A server stack (10.0.0.1, `S` sockets) and a client stack (10.0.0.2, `C` sockets) on
/// one wire, polled together in virtual time.
pub struct Net<const S: usize, const C: usize> {
    pub server: TestStack<S>,
    pub client: TestStack<C>,
    pub now: Instant,
    pub cut: Rc<Cell<bool>>,
}

impl<const S: usize, const C: usize> Net<S, C> {
    pub fn new(buffer: usize, server: TcpOptions, client: TcpOptions) -> Self {
        let cut = Rc::new(Cell::new(false));
        let (a, b) = wire(&cut);
        Net {
            server: stack(a, 1, buffer, server),
            client: stack(b, 2, buffer, client),
            now: Instant::ZERO,
            cut,
        }
    }

    /// One millisecond of virtual time: both stacks poll once.
    pub fn step(&mut self) {
        self.now += Duration::from_millis(1);
        self.server.poll(self.now);
        self.client.poll(self.now);
    }

    /// Lets `duration` of virtual time pass in 10 ms steps (for timers of many seconds).
    pub fn idle(&mut self, duration: Duration) {
        let until = self.now + duration;
        while self.now < until {
            self.now += Duration::from_millis(10);
            self.server.poll(self.now);
            self.client.poll(self.now);
        }
    }

    /// Puts `frame` on the wire to the server, as if a third host sent it.
    pub fn to_server(&self, frame: Vec<u8>) {
        self.server.device().driver().inject(frame);
    }

    /// Steps until `f` gives a value; panics after `max_steps`.
    pub fn until<T>(&mut self, max_steps: usize, mut f: impl FnMut(&mut Self) -> Option<T>) -> T {
        for _ in 0..max_steps {
            if let Some(value) = f(self) {
                return value;
            }
            self.step();
        }
        panic!("nothing after {max_steps} steps");
    }
}

/// The server's listening port in the `Net` tests.
pub const PORT: u16 = 7;

pub fn server_addr() -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1], PORT))
}

pub fn listener<const N: usize>(stack: &mut TestStack<N>) -> TcpSocket {
    let mut socket = stack.socket().unwrap();
    stack.bind(&mut socket, PORT).unwrap();
    stack.listen(&mut socket).unwrap();
    socket
}

/// Starts a connection from the client stack and steps until it is established.
pub fn connect<const S: usize, const C: usize>(net: &mut Net<S, C>) -> TcpSocket {
    let mut socket = net.client.socket().unwrap();
    net.until(1000, |net| {
        ready(net.client.connect(&mut socket, server_addr()))
    });
    socket
}

pub fn accept<const S: usize, const C: usize>(net: &mut Net<S, C>, l: &mut TcpSocket) -> TcpSocket {
    net.until(1000, |net| ready(net.server.accept(l))).0
}

/// Connects the raw socket `h` of the client stack from `local_port` to the server and
/// steps until established.
pub fn connect_raw<const S: usize, const C: usize>(
    net: &mut Net<S, C>,
    h: SocketHandle,
    local_port: u16,
) {
    let (iface, sockets) = net.client.parts_mut();
    sockets
        .get_mut::<tcp::Socket>(h)
        .connect(
            iface.context(),
            (IpAddress::v4(10, 0, 0, 1), PORT),
            local_port,
        )
        .unwrap();
    net.until(1000, |net| {
        let raw = net.client.sockets().get::<tcp::Socket>(h);
        (raw.state() == tcp::State::Established).then_some(())
    });
}

/// A raw smoltcp socket of the client stack, connected to the server from port 40000.
pub fn raw_client<const S: usize, const C: usize>(net: &mut Net<S, C>) -> SocketHandle {
    let raw = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; 1024]),
        tcp::SocketBuffer::new(vec![0; 1024]),
    );
    let h = net.client.add_socket(raw).unwrap();
    connect_raw(net, h, 40000);
    h
}

/// An IPv4 packet carrying a TCP SYN from `from` to `to`, checksums filled.
pub fn syn_packet(from: (Ipv4Address, u16), to: (Ipv4Address, u16)) -> Vec<u8> {
    let tcp = TcpRepr {
        src_port: from.1,
        dst_port: to.1,
        control: TcpControl::Syn,
        seq_number: TcpSeqNumber(0x1234_5678),
        ack_number: None,
        window_len: 64240,
        window_scale: None,
        max_seg_size: Some(1460),
        sack_permitted: false,
        sack_ranges: [None, None, None],
        timestamp: None,
        payload: &[],
    };
    let ip = Ipv4Repr {
        src_addr: from.0,
        dst_addr: to.0,
        next_header: IpProtocol::Tcp,
        payload_len: tcp.buffer_len(),
        hop_limit: 64,
    };
    let checksums = ChecksumCapabilities::default();
    let mut packet = vec![0u8; ip.buffer_len() + tcp.buffer_len()];
    let mut ipv4 = Ipv4Packet::new_unchecked(&mut packet[..]);
    ip.emit(&mut ipv4, &checksums);
    let mut segment = TcpPacket::new_unchecked(ipv4.payload_mut());
    tcp.emit(&mut segment, &from.0.into(), &to.0.into(), &checksums);
    packet
}

/// `syn_packet` in an Ethernet frame from MAC `src` to MAC `dst`.
pub fn syn_frame(
    src: EthernetAddress,
    dst: EthernetAddress,
    from: (Ipv4Address, u16),
    to: (Ipv4Address, u16),
) -> Vec<u8> {
    let packet = syn_packet(from, to);
    let ethernet = EthernetRepr {
        src_addr: src,
        dst_addr: dst,
        ethertype: EthernetProtocol::Ipv4,
    };
    let mut frame = vec![0u8; ethernet.buffer_len() + packet.len()];
    let mut view = EthernetFrame::new_unchecked(&mut frame[..]);
    ethernet.emit(&mut view);
    view.payload_mut().copy_from_slice(&packet);
    frame
}

/// `Some` for a result, `None` for `WouldBlock`; panics on an error.
pub fn ready<T>(result: nb::Result<T, Error>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(nb::Error::WouldBlock) => None,
        Err(nb::Error::Other(e)) => panic!("unexpected error: {e}"),
    }
}

/// `Some(error)` once the call fails, `None` while it blocks; panics on success.
pub fn failed<T: std::fmt::Debug>(result: nb::Result<T, Error>) -> Option<Error> {
    match result {
        Ok(value) => panic!("expected an error, got {value:?}"),
        Err(nb::Error::WouldBlock) => None,
        Err(nb::Error::Other(e)) => Some(e),
    }
}

/// Deterministic bytes for byte-exact checks (xorshift64*).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `1..=max`.
    pub fn size(&mut self, max: usize) -> usize {
        1 + (self.next() % max as u64) as usize
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}
