//! A scripted async stack for the tests, and the executor that runs it: each peer says what
//! it sends, in which chunks, how much each write takes (or that it is pending), and how its
//! stream ends; time is virtual and moves only when nothing else can.

extern crate std;

use core::cell::{Cell, RefCell};
use core::fmt;
use core::future::{poll_fn, Future};
use core::net::{Ipv4Addr, SocketAddr};
use core::pin::pin;
use core::task::{Context, Poll, Waker};
use std::collections::VecDeque;
use std::vec::Vec;

use edge_nal::{Close, Readable, TcpAccept, TcpBind, TcpShutdown, TcpSplit};
use embedded_io_async::{ErrorKind, ErrorType, Read, Write};

use super::{BindAddress, Clock};
use crate::time::Instant;

/// The mock's own address, which `bound_address` reports.
pub(crate) const LOCAL_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

/// An error of the mock stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MockError(pub ErrorKind);

impl fmt::Display for MockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl core::error::Error for MockError {}

impl embedded_io_async::Error for MockError {
    fn kind(&self) -> ErrorKind {
        self.0
    }
}

/// How a peer's stream ends once all its bytes are delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// It stays connected and silent.
    Open,
    /// It sends its FIN: `read` returns `Ok(0)`.
    Fin,
    /// It resets the connection: `read` and `write` fail with `ConnectionReset`.
    Reset,
}

/// The far end of one connection, as a script.
#[derive(Clone, Debug)]
pub(crate) struct Peer {
    pub port: u16,
    pub sends: Vec<u8>,
    /// Sizes of the pieces the bytes arrive in, cycled.
    pub chunks: Vec<usize>,
    /// What successive `write` polls take, cycled: 0 is "pending", `n` at most `n` bytes.
    pub writes: Vec<usize>,
    pub end: End,
    /// It never reads: every `write` stays pending.
    pub stalls: bool,
    /// Its side of the close never finishes (its acknowledgements are lost or never sent).
    pub never_closes: bool,
}

impl Peer {
    pub(crate) fn new(port: u16, sends: &[u8]) -> Self {
        Peer {
            port,
            sends: sends.to_vec(),
            chunks: std::vec![usize::MAX],
            writes: std::vec![usize::MAX],
            end: End::Fin,
            stalls: false,
            never_closes: false,
        }
    }

    pub(crate) fn end(mut self, end: End) -> Self {
        self.end = end;
        self
    }

    pub(crate) fn chunks(mut self, chunks: &[usize]) -> Self {
        self.chunks = chunks.iter().map(|&c| c.max(1)).collect();
        self
    }

    pub(crate) fn writes(mut self, writes: &[usize]) -> Self {
        // At least one non-pending entry, so that writes finish.
        self.writes = writes.to_vec();
        if self.writes.iter().all(|&w| w == 0) {
            self.writes.push(usize::MAX);
        }
        self
    }

    pub(crate) fn stalls(mut self) -> Self {
        self.stalls = true;
        self
    }
}

/// One connection and what happened on it.
#[derive(Debug)]
pub(crate) struct Conn {
    pub peer: Peer,
    /// Bytes of `peer.sends` handed to the socket so far.
    delivered: usize,
    chunk_turn: usize,
    rx: VecDeque<u8>,
    ended: bool,
    write_turn: usize,
    /// What the peer got back.
    pub received: Vec<u8>,
    /// How the socket was ended: `close`, `abort`, or dropped without either.
    pub closed: Option<&'static str>,
    /// Polls of `close` so far.
    closing: u32,
    pub dropped: bool,
}

impl Conn {
    fn new(peer: Peer) -> Self {
        Conn {
            peer,
            delivered: 0,
            chunk_turn: 0,
            rx: VecDeque::new(),
            ended: false,
            write_turn: 0,
            received: Vec::new(),
            closed: None,
            closing: 0,
            dropped: false,
        }
    }

    /// Bytes the echo has read so far.
    pub(crate) fn read(&self) -> usize {
        self.delivered - self.rx.len()
    }

    fn reset(&self) -> bool {
        self.ended && self.peer.end == End::Reset
    }

    /// Hands the next piece of the peer's bytes to the socket; whether anything changed.
    fn deliver(&mut self) -> bool {
        if self.closed.is_some() || self.dropped || self.ended {
            return false;
        }
        if self.delivered < self.peer.sends.len() {
            let chunk = cycled(&self.peer.chunks, self.chunk_turn);
            self.chunk_turn += 1;
            let end = self
                .delivered
                .saturating_add(chunk)
                .min(self.peer.sends.len());
            self.rx.extend(&self.peer.sends[self.delivered..end]);
            self.delivered = end;
            return true;
        }
        if self.rx.is_empty() && self.peer.end != End::Open {
            self.ended = true;
            return true;
        }
        false
    }
}

fn cycled(items: &[usize], turn: usize) -> usize {
    items[turn % items.len()]
}

/// The scripted network, its virtual clock, and what the tests look at.
#[derive(Default)]
pub(crate) struct MockNet {
    now: Cell<u64>,
    /// Deadlines of the timers pending in the last poll.
    timers: RefCell<Vec<u64>>,
    /// Counts every completed operation, to tell a stuck future from a busy one.
    progress: Cell<u64>,
    pub conns: RefCell<Vec<Conn>>,
    /// Peers that connect to the server, in order, waiting to be accepted.
    incoming: RefCell<VecDeque<Peer>>,
    /// Errors the next `accept`s return, before any connection.
    accept_errors: RefCell<VecDeque<MockError>>,
    /// Errors the next `bind`s return.
    bind_errors: RefCell<VecDeque<MockError>>,
    /// The servers the client reaches, in order: a peer, an error, or `None` for a connect
    /// that never completes.
    outgoing: RefCell<VecDeque<Option<Result<Peer, MockError>>>>,
    /// Accept futures pending now, and the most at once.
    pub accepting: Cell<usize>,
    pub most_accepting: Cell<usize>,
    /// The most connections open at once.
    pub most_open: Cell<usize>,
}

impl MockNet {
    pub(crate) fn new() -> Self {
        MockNet::default()
    }

    pub(crate) fn now(&self) -> Instant {
        Instant::from_micros(self.now.get())
    }

    pub(crate) fn arrive(&self, peer: Peer) {
        self.incoming.borrow_mut().push_back(peer);
    }

    pub(crate) fn fail_accept(&self, error: MockError) {
        self.accept_errors.borrow_mut().push_back(error);
    }

    pub(crate) fn fail_bind(&self, error: MockError) {
        self.bind_errors.borrow_mut().push_back(error);
    }

    pub(crate) fn reachable(&self, outcome: Option<Result<Peer, MockError>>) {
        self.outgoing.borrow_mut().push_back(outcome);
    }

    pub(crate) fn conn(&self, index: usize) -> std::cell::Ref<'_, Conn> {
        std::cell::Ref::map(self.conns.borrow(), |conns| &conns[index])
    }

    pub(crate) fn open(&self) -> usize {
        self.conns
            .borrow()
            .iter()
            .filter(|c| c.closed.is_none() && !c.dropped)
            .count()
    }

    /// Whether every connection so far was closed or dropped, and none waits.
    pub(crate) fn all_done(&self) -> bool {
        self.open() == 0 && self.incoming.borrow().is_empty()
    }

    fn moved(&self) {
        self.progress.set(self.progress.get() + 1);
    }

    fn add(&self, peer: Peer) -> usize {
        let mut conns = self.conns.borrow_mut();
        conns.push(Conn::new(peer));
        drop(conns);
        self.most_open.set(self.most_open.get().max(self.open()));
        self.conns.borrow().len() - 1
    }

    /// The peers' turn: each delivers its next piece.
    fn step_peers(&self) -> bool {
        let mut any = false;
        for conn in self.conns.borrow_mut().iter_mut() {
            any |= conn.deliver();
        }
        any
    }
}

/// Runs `future` against `net`: polls it, lets the peers act, and moves the clock to the next
/// timer only when nothing else moved. `stop_when` is checked after every round; once true,
/// `stop` is set (pass [`stop()`] of it to `run_until`). Returns the output,
/// or `None` if the future is stuck (nothing can move and no timer is pending) or after
/// `max_rounds`.
pub(crate) fn drive<T>(
    net: &MockNet,
    stop: &Cell<bool>,
    future: impl Future<Output = T>,
    stop_when: impl Fn(&MockNet) -> bool,
    max_rounds: usize,
) -> Option<T> {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..max_rounds {
        let before = net.progress.get();
        net.timers.borrow_mut().clear();
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return Some(output);
        }
        let peers = net.step_peers();
        if stop_when(net) {
            stop.set(true);
            continue;
        }
        if peers || net.progress.get() != before {
            continue;
        }
        let next = net.timers.borrow().iter().copied().min();
        match next {
            Some(deadline) => net.now.set(net.now.get().max(deadline)),
            None => return None,
        }
    }
    None
}

/// A stop future for `run_until`: completes once `flag` is set.
pub(crate) fn stop(flag: &Cell<bool>) -> impl Future<Output = ()> + '_ {
    poll_fn(move |_| match flag.get() {
        true => Poll::Ready(()),
        false => Poll::Pending,
    })
}

impl Clock for MockNet {
    fn now(&self) -> Instant {
        MockNet::now(self)
    }

    async fn sleep_until(&self, deadline: Instant) {
        let deadline = deadline.as_micros();
        poll_fn(|_| {
            if self.now.get() >= deadline {
                Poll::Ready(())
            } else {
                self.timers.borrow_mut().push(deadline);
                Poll::Pending
            }
        })
        .await
    }
}

/// One end of a connection in the mock (also its own read and write halves).
pub(crate) struct MockSocket<'a> {
    net: &'a MockNet,
    index: usize,
}

impl Drop for MockSocket<'_> {
    fn drop(&mut self) {
        self.net.conns.borrow_mut()[self.index].dropped = true;
    }
}

impl ErrorType for MockSocket<'_> {
    type Error = MockError;
}

impl Read for MockSocket<'_> {
    async fn read(&mut self, buffer: &mut [u8]) -> Result<usize, MockError> {
        poll_fn(|_| {
            let mut conns = self.net.conns.borrow_mut();
            let conn = &mut conns[self.index];
            if conn.closed.is_some() {
                return Poll::Ready(Err(MockError(ErrorKind::NotConnected)));
            }
            if !conn.rx.is_empty() {
                let n = buffer.len().min(conn.rx.len());
                for (slot, byte) in buffer.iter_mut().zip(conn.rx.drain(..n)) {
                    *slot = byte;
                }
                drop(conns);
                self.net.moved();
                return Poll::Ready(Ok(n));
            }
            match (conn.ended, conn.peer.end) {
                (true, End::Fin) => Poll::Ready(Ok(0)),
                (true, End::Reset) => Poll::Ready(Err(MockError(ErrorKind::ConnectionReset))),
                _ => Poll::Pending,
            }
        })
        .await
    }
}

impl Write for MockSocket<'_> {
    async fn write(&mut self, bytes: &[u8]) -> Result<usize, MockError> {
        poll_fn(|_| {
            let mut conns = self.net.conns.borrow_mut();
            let conn = &mut conns[self.index];
            if conn.reset() {
                return Poll::Ready(Err(MockError(ErrorKind::ConnectionReset)));
            }
            if conn.closed.is_some() {
                return Poll::Ready(Err(MockError(ErrorKind::NotConnected)));
            }
            if conn.peer.stalls {
                return Poll::Pending;
            }
            let take = cycled(&conn.peer.writes, conn.write_turn);
            conn.write_turn += 1;
            if take == 0 || bytes.is_empty() {
                // A pending turn of the script: the next poll takes the next turn, so this
                // is not a stuck future.
                drop(conns);
                self.net.moved();
                return Poll::Pending;
            }
            let n = take.min(bytes.len());
            conn.received.extend_from_slice(&bytes[..n]);
            drop(conns);
            self.net.moved();
            Poll::Ready(Ok(n))
        })
        .await
    }

    async fn flush(&mut self) -> Result<(), MockError> {
        Ok(())
    }
}

impl Readable for MockSocket<'_> {
    async fn readable(&mut self) -> Result<(), MockError> {
        Ok(())
    }
}

impl TcpSplit for MockSocket<'_> {
    type Read<'b>
        = MockSocket<'b>
    where
        Self: 'b;
    type Write<'b>
        = MockSocket<'b>
    where
        Self: 'b;

    fn split(&mut self) -> (Self::Read<'_>, Self::Write<'_>) {
        unimplemented!("the echo does not split sockets")
    }
}

impl TcpShutdown for MockSocket<'_> {
    /// Takes a few polls, as a close handshake takes a round trip.
    async fn close(&mut self, _what: Close) -> Result<(), MockError> {
        poll_fn(|_| {
            let mut conns = self.net.conns.borrow_mut();
            let conn = &mut conns[self.index];
            conn.closing += 1;
            let hangs = conn.peer.never_closes;
            let done = conn.closing > 3 && !hangs;
            if done {
                conn.closed = Some("close");
            }
            drop(conns);
            if !hangs {
                self.net.moved();
            }
            match done {
                true => Poll::Ready(Ok(())),
                false => Poll::Pending,
            }
        })
        .await
    }

    async fn abort(&mut self) -> Result<(), MockError> {
        let mut conns = self.net.conns.borrow_mut();
        conns[self.index].closed = Some("abort");
        drop(conns);
        self.net.moved();
        Ok(())
    }
}

/// The mock's acceptor.
pub(crate) struct MockAcceptor<'a> {
    net: &'a MockNet,
}

/// Counts an accept future as pending for as long as it lives.
struct Accepting<'a>(&'a MockNet);

impl<'a> Accepting<'a> {
    fn new(net: &'a MockNet) -> Self {
        net.accepting.set(net.accepting.get() + 1);
        net.most_accepting
            .set(net.most_accepting.get().max(net.accepting.get()));
        Accepting(net)
    }
}

impl Drop for Accepting<'_> {
    fn drop(&mut self) {
        self.0.accepting.set(self.0.accepting.get() - 1);
    }
}

impl TcpAccept for MockAcceptor<'_> {
    type Error = MockError;
    type Socket<'b>
        = MockSocket<'b>
    where
        Self: 'b;

    async fn accept(&self) -> Result<(SocketAddr, MockSocket<'_>), MockError> {
        let _accepting = Accepting::new(self.net);
        poll_fn(|_| {
            if let Some(error) = self.net.accept_errors.borrow_mut().pop_front() {
                return Poll::Ready(Err(error));
            }
            let Some(peer) = self.net.incoming.borrow_mut().pop_front() else {
                return Poll::Pending;
            };
            let address = SocketAddr::new(Ipv4Addr::new(10, 0, 0, 2).into(), peer.port);
            let index = self.net.add(peer);
            self.net.moved();
            Poll::Ready(Ok((
                address,
                MockSocket {
                    net: self.net,
                    index,
                },
            )))
        })
        .await
    }
}

impl TcpBind for MockNet {
    type Error = MockError;
    type Accept<'a>
        = MockAcceptor<'a>
    where
        Self: 'a;

    async fn bind(&self, _local: SocketAddr) -> Result<MockAcceptor<'_>, MockError> {
        match self.bind_errors.borrow_mut().pop_front() {
            Some(error) => Err(error),
            None => Ok(MockAcceptor { net: self }),
        }
    }
}

impl BindAddress for MockNet {
    fn bound_address(&self, _: &MockAcceptor<'_>, requested: SocketAddr) -> Option<SocketAddr> {
        Some(SocketAddr::new(LOCAL_IP.into(), requested.port()))
    }
}

impl embedded_nal_async::TcpConnect for MockNet {
    type Error = MockError;
    type Connection<'a>
        = MockSocket<'a>
    where
        Self: 'a;

    async fn connect<'a>(&'a self, _remote: SocketAddr) -> Result<MockSocket<'a>, MockError> {
        let outcome = self.outgoing.borrow_mut().pop_front();
        match outcome {
            Some(Some(Ok(peer))) => {
                let index = self.add(peer);
                self.moved();
                Ok(MockSocket { net: self, index })
            }
            Some(Some(Err(error))) => Err(error),
            // Never completes: only a timeout or a stop ends it.
            Some(None) => core::future::pending().await,
            None => Err(MockError(ErrorKind::ConnectionRefused)),
        }
    }
}

/// Every event as short text, `Received` left out (tests look at the bytes instead).
pub(crate) fn describe(event: &crate::Event<'_, MockError>) -> Option<std::string::String> {
    use crate::Event;
    use std::format;
    Some(match event {
        Event::Opened { conn, peer, open } => format!("opened {conn} {peer} {open}"),
        Event::Received { .. } => return None,
        Event::Closed { conn, reason, open } => format!("closed {conn} {} {open}", reason.as_str()),
        Event::Listening { local } => format!("listening {local}"),
        Event::ListenFailed { error, retry_in } => {
            format!("listen failed: {error}; retry in {retry_in:?}")
        }
        Event::Connecting { remote, attempt } => format!("connecting {remote} #{attempt}"),
        Event::ConnectFailed { error, retry_in } => {
            format!("connect failed: {error}; retry in {retry_in:?}")
        }
    })
}
