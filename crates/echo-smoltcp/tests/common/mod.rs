//! Fixtures for the in-process tests: two stacks on a virtual Ethernet wire, virtual time.
#![allow(dead_code)] // each test file uses its own part of the fixtures

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::Context;

use echo_smoltcp::embassy_net_driver::{
    self as driver, Capabilities, Driver, HardwareAddress, LinkState,
};
use echo_smoltcp::smoltcp::iface::{Config, SocketStorage};
use echo_smoltcp::smoltcp::time::{Duration, Instant};
use echo_smoltcp::smoltcp::wire::{Ipv4Address, Ipv4Cidr};
use echo_smoltcp::{DriverDevice, Error, Stack, TcpOptions};

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
    let mut config = Config::new(device.hardware_address());
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
