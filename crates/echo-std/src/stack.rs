//! [`StdStack`]: embedded-nal's TCP traits over non-blocking std sockets, plus a readiness
//! wait so that a poll loop sleeps instead of spinning.
//!
//! Every socket is non-blocking and registered once, edge-triggered, for reading and writing,
//! with the stack's [`mio::Poll`] (epoll on Linux), as tokio does. The stack keeps what the
//! poller last said about each socket (a readiness cache): an operation that returns
//! `WouldBlock` marks the socket not ready for it, and only a readiness event marks it ready
//! again. So:
//!
//! - `receive`, `send` and `accept` on a socket known not to be ready answer `WouldBlock`
//!   without a system call: a poll loop asks every connection on every pass, and most of
//!   those calls would find nothing;
//! - [`StdStack::wait`] is one `epoll_wait` with its own timeout: no re-arming of sockets, no
//!   timer descriptor, nothing done per wait for sockets that are idle;
//! - `wait` returns only for what its caller waits for: a socket whose last operation
//!   returned `WouldBlock` became ready, a connect deadline, a [`Notifier`], the timeout. It
//!   sleeps on through the other events (a socket that always has room to write, more data
//!   on a socket its owner chose not to read yet).
//!
//! Bytes move between the kernel and the caller in large pieces, whatever the caller's
//! buffer: `receive` reads up to [`READ_AHEAD`] at once and hands out the rest from memory,
//! and `send` gathers small sends up to [`SEND_GATHER`] before one `sendto`. A poll loop that echoes a
//! buffer per connection and pass thus makes one system call per 64 KiB in and per 256 KiB
//! out, and wakes the peer's reader once per 256 KiB instead of once per buffer.
//!
//! mio rather than the `polling` crate: polling's `wait` re-arms its timer descriptor and its
//! notifier on every call (four system calls besides `epoll_wait`), mio's is `epoll_wait`
//! alone (timeouts in whole milliseconds, rounded up), and its `Waker` is never drained.
//!
//! The stacks of several poll loops on threads can serve one port together through a
//! [`SharedListener`].

use std::collections::VecDeque;
use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use embedded_nal::{nb, TcpClientStack, TcpFullStack};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use socket2::{Domain, Protocol, SockAddr, SockRef, Socket, Type};

use crate::Error;

/// The listen backlog used unless [`StdStack::with_backlog`] says otherwise: the tutorial's
/// `listen(3)`.
pub const DEFAULT_BACKLOG: u32 = 3;

/// How long a connect may stay in progress unless [`StdStack::with_connect_timeout`] says
/// otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How old the poller's readiness may be for `receive`, `send` and `accept` to trust it. A
/// socket whose last operation returned `WouldBlock`, and that the poller has not reported
/// ready since, answers `WouldBlock` again without a system call. When the last look at the
/// poller is older than this, the stack looks again (without waiting) first, so a loop that
/// keeps making progress and never waits still sees every socket.
pub const READINESS_REFRESH: Duration = Duration::from_millis(1);

/// How much a `receive` reads from the OS socket at least: a smaller buffer gets the first
/// bytes, and the next receives the rest without a system call. The echo core reads one
/// buffer per echo round: with 1 KiB buffers, one `recvfrom` for up to 64 KiB instead of 64,
/// and the peer's writes are taken off the kernel in large pieces (a larger read-ahead for
/// 64 KiB buffers only added copying). Flow control is unchanged: the stack reads only for a
/// `receive`, and only when nothing read ahead is left.
pub const READ_AHEAD: usize = 64 * 1024;

/// How many bytes given to `send` the stack gathers before it hands them to the kernel in one
/// system call (from [`SEND_DIRECT`] bytes on, a send goes straight to the kernel). The echo
/// core sends one buffer per echo round, and each `sendto` wakes the peer's reader again (on
/// a VM an interrupt to another core each time): with small buffers, one `sendto` for many
/// rounds. Gathered bytes leave sooner when a `receive` on the socket finds nothing more to
/// echo, when the stack waits or looks at the poller (at least every [`READINESS_REFRESH`] of
/// a busy loop), and when the socket closes; `receive` holds the end of stream back until
/// they have left.
pub const SEND_GATHER: usize = 256 * 1024;

/// Sends of at least this many bytes go straight to the kernel when nothing is gathered:
/// copying them costs more than the system calls and wake-ups it saves.
pub const SEND_DIRECT: usize = 16 * 1024;

/// Whether a short read or a partial write shows that the socket is drained or full, so
/// that the next operation need not return `WouldBlock` to learn it (a system call saved per
/// burst, and per round trip of a request and its answer). True where the poller is
/// edge-triggered and reports every arrival of data or room afterwards (epoll, kqueue), as
/// tokio assumes; not on Windows.
const EDGE_ON_SHORT: bool = !cfg!(windows);

/// Flags for every `send`: a reset peer must return `EPIPE`, not kill the process with
/// `SIGPIPE`.
#[cfg(any(target_os = "linux", target_os = "android"))]
const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL;
#[cfg(all(unix, not(any(target_os = "linux", target_os = "android"))))]
const SEND_FLAGS: libc::c_int = 0;
#[cfg(not(unix))]
const SEND_FLAGS: i32 = 0;

/// The poller's token of the [`Notifier`]; a socket's token is its slot.
const NOTIFIED: Token = Token(usize::MAX);

/// Readiness events read per `epoll_wait`; more are read by the next one.
const EVENTS: usize = 256;

/// A TCP socket of a [`StdStack`]: a handle to a socket that the stack owns.
///
/// Give it back with [`TcpClientStack::close`]; a handle that is merely dropped leaves its
/// socket open until the stack is dropped.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TcpSocket {
    id: usize,
    /// Where the stack keeps it (reused after `close`, unlike `id`).
    slot: usize,
}

impl TcpSocket {
    /// A number that names this socket for as long as its stack lives (for logs).
    pub fn id(&self) -> usize {
        self.id
    }
}

/// A handle that wakes [`StdStack::wait`] from another thread, e.g. a signal handler's.
#[derive(Clone, Debug)]
pub struct Notifier {
    waker: Arc<Waker>,
}

impl Notifier {
    /// Makes the current or the next [`StdStack::wait`] return at once.
    pub fn notify(&self) -> io::Result<()> {
        self.waker.wake()
    }
}

enum State {
    /// Created by `socket()`: the OS socket is made by `bind` or `connect`, which know the
    /// address family.
    Unopened,
    /// Bound, not yet listening: not registered with the poller.
    Bound(Socket),
    Listening {
        listener: TcpListener,
        /// Shared with the stacks of other loops ([`SharedListener`]).
        shared: bool,
    },
    Connecting {
        stream: TcpStream,
        deadline: Instant,
    },
    Connected {
        stream: TcpStream,
        peer: SocketAddr,
        /// Accepted through a [`SharedListener`], which counts it for this loop.
        shared: bool,
    },
}

struct Entry {
    id: usize,
    state: State,
    /// The readiness cache: false from a `WouldBlock` (or a connect in progress) until the
    /// poller reports the socket ready for reading (accepting), or writing (connecting).
    readable: bool,
    writable: bool,
    /// The poller reported the peer's end of stream, a hang-up or an error: from then on the
    /// kernel answers at once in that direction, and no further event will come, so a short
    /// read (partial write) no longer means that the socket is drained (full).
    read_closed: bool,
    write_closed: bool,
    /// Bytes read from the OS socket and not yet received: see [`READ_AHEAD`].
    read_ahead: ReadAhead,
    /// Bytes sent and not yet handed to the kernel: see [`SEND_GATHER`].
    gathered: Gathered,
}

impl Entry {
    fn new(id: usize, state: State) -> Self {
        Entry {
            id,
            state,
            readable: true,
            writable: true,
            read_closed: false,
            write_closed: false,
            read_ahead: ReadAhead::default(),
            gathered: Gathered::default(),
        }
    }

    /// Hands gathered bytes to the kernel while it takes them (not at all while the socket
    /// is known to be full); whether any went.
    fn flush(&mut self) -> io::Result<bool> {
        let State::Connected { stream, .. } = &self.state else {
            return Ok(false);
        };
        let mut moved = false;
        while self.gathered.start < self.gathered.bytes.len() && self.writable {
            let pending = &self.gathered.bytes[self.gathered.start..];
            match SockRef::from(stream).send_with_flags(pending, SEND_FLAGS) {
                Ok(sent) => {
                    moved |= sent > 0;
                    self.gathered.start += sent;
                    self.writable &= !(EDGE_ON_SHORT && !self.write_closed && sent < pending.len());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // The connection is gone; its receive or send reports it.
                    self.gathered.clear();
                    self.write_closed = true;
                    return Err(e);
                }
            }
        }
        if self.gathered.start == self.gathered.bytes.len() {
            self.gathered.clear();
        }
        Ok(moved)
    }
}

impl Entry {
    /// One `send` system call with `buffer`.
    fn send_now(&mut self, buffer: &[u8]) -> nb::Result<usize, io::Error> {
        let State::Connected { stream, .. } = &self.state else {
            return Err(nb::Error::WouldBlock);
        };
        loop {
            match SockRef::from(stream).send_with_flags(buffer, SEND_FLAGS) {
                Ok(sent) => {
                    // Partial: the kernel buffer is full, and the poller will say when it has
                    // room (no `WouldBlock` call needed to learn it).
                    self.writable &= !(EDGE_ON_SHORT && !self.write_closed && sent < buffer.len());
                    return Ok(sent);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.writable = false;
                    return Err(nb::Error::WouldBlock);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(nb::Error::Other(e)),
            }
        }
    }
}

/// Bytes given to `send` that the kernel has not taken yet: `bytes[start..]`.
#[derive(Default)]
struct Gathered {
    bytes: Vec<u8>,
    start: usize,
    /// In [`StdStack::gathering`].
    listed: bool,
}

impl Gathered {
    fn pending(&self) -> usize {
        self.bytes.len() - self.start
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.start = 0;
    }

    /// Takes what fits of `bytes` (up to [`SEND_GATHER`] pending); how many.
    fn push(&mut self, bytes: &[u8]) -> usize {
        if self.start > 0 && self.bytes.len() + bytes.len() > SEND_GATHER {
            self.bytes.drain(..self.start);
            self.start = 0;
        }
        let room = SEND_GATHER.saturating_sub(self.pending());
        let taken = bytes.len().min(room);
        self.bytes.extend_from_slice(&bytes[..taken]);
        taken
    }
}

/// What a receive into a buffer smaller than [`READ_AHEAD`] read beyond that buffer (both
/// stacks').
#[derive(Default)]
pub(crate) struct ReadAhead {
    /// Allocated by the first such receive.
    bytes: Vec<u8>,
    start: usize,
    end: usize,
}

impl ReadAhead {
    /// Whether it holds bytes not yet received.
    pub(crate) fn holds(&self) -> bool {
        self.start < self.end
    }

    /// Receives into `buffer` (not empty): what it holds first; else it reads the socket with
    /// `read`, into itself when `buffer` is smaller than [`READ_AHEAD`] (allocated then),
    /// straight into `buffer` otherwise. `Ok(0)` only when `read` says end of stream.
    pub(crate) fn receive(
        &mut self,
        buffer: &mut [u8],
        read: impl FnOnce(&mut [u8]) -> io::Result<usize>,
    ) -> io::Result<usize> {
        if self.holds() {
            return Ok(self.take(buffer));
        }
        if buffer.len() >= READ_AHEAD {
            return read(buffer);
        }
        if self.bytes.is_empty() {
            self.bytes = vec![0; READ_AHEAD];
        }
        let received = read(&mut self.bytes)?;
        self.start = 0;
        self.end = received;
        Ok(self.take(buffer))
    }

    /// Moves what it holds into `buffer`; how many bytes.
    pub(crate) fn take(&mut self, buffer: &mut [u8]) -> usize {
        let n = buffer.len().min(self.end - self.start);
        buffer[..n].copy_from_slice(&self.bytes[self.start..self.start + n]);
        self.start += n;
        n
    }
}

/// The host's TCP/IP stack: [`TcpClientStack`] and [`TcpFullStack`] over non-blocking std
/// sockets (socket2, mio), with [`wait`](Self::wait) on their readiness.
///
/// Unlike a blocking std stack it binds the address it was configured with, listens with a
/// chosen backlog, connects without blocking and with a timeout, reports IPv4 peers as IPv4,
/// and never blocks in `receive`, `send` or `accept`:
///
/// - `receive`: `WouldBlock` while no data is there, `Ok(0)` only at end of stream, an error
///   of kind `PipeClosed` when the connection was reset or broken;
/// - `send`: may be partial; `WouldBlock` when the stack's and the kernel's buffers are full;
///   `PipeClosed` when the peer is gone (never `SIGPIPE`). The stack gathers small sends
///   ([`SEND_GATHER`]): they reach the kernel when enough are there, when a `receive` on the
///   same socket finds nothing, when the stack waits or looks at the poller (at least every
///   [`READINESS_REFRESH`] of a loop that never waits), or when the socket closes. A caller
///   that sends and then neither receives nor waits must call [`wait`](Self::wait) (with
///   a zero timeout, say) for its bytes to leave;
/// - `accept`: `WouldBlock` while nobody waits; a client that vanished before being accepted
///   is skipped, not reported;
/// - `connect`: `WouldBlock` while in progress, then `Ok(())`, or an error of kind `Other`
///   on refusal or after the connect timeout.
pub struct StdStack {
    poll: Poll,
    events: Events,
    waker: Arc<Waker>,
    /// Sockets by slot; a closed socket's slot is reused.
    sockets: Vec<Option<Entry>>,
    free: Vec<usize>,
    next_id: usize,
    /// The deadlines of the connects in progress, by socket id.
    connecting: Vec<(usize, Instant)>,
    /// Slots of the sockets that have gathered bytes to send.
    gathering: Vec<usize>,
    bind_address: IpAddr,
    backlog: u32,
    connect_timeout: Duration,
    nodelay: bool,
    shared: Option<(SharedListener, usize)>,
    /// When the poller's readiness was last read.
    refreshed: Instant,
    /// A look at the poller in the middle of a pass (see [`READINESS_REFRESH`]) found sockets
    /// ready, possibly ones the pass had already visited, or the notifier: the next `wait`
    /// must not sleep.
    ready_unseen: bool,
}

impl StdStack {
    /// A stack that binds `0.0.0.0`, listens with a backlog of [`DEFAULT_BACKLOG`] and gives
    /// connects [`DEFAULT_CONNECT_TIMEOUT`].
    pub fn new() -> Result<Self, Error> {
        let poll = Poll::new().map_err(|e| Error::new("create the readiness poller", e))?;
        let waker = Waker::new(poll.registry(), NOTIFIED)
            .map_err(|e| Error::new("create the readiness poller", e))?;
        Ok(Self {
            poll,
            events: Events::with_capacity(EVENTS),
            waker: Arc::new(waker),
            sockets: Vec::new(),
            free: Vec::new(),
            next_id: 0,
            connecting: Vec::new(),
            gathering: Vec::new(),
            bind_address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            backlog: DEFAULT_BACKLOG,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            nodelay: false,
            shared: None,
            refreshed: Instant::now(),
            ready_unseen: false,
        })
    }

    /// Makes [`TcpFullStack::bind`] bind `address` (e.g. `127.0.0.1`, or `::` for both
    /// families where the system allows it).
    pub fn with_bind_address(mut self, address: IpAddr) -> Self {
        self.bind_address = address;
        self
    }

    /// Makes [`TcpFullStack::listen`] queue up to `backlog` connections not yet accepted.
    pub fn with_backlog(mut self, backlog: u32) -> Self {
        self.backlog = backlog;
        self
    }

    /// Makes a connect that has not completed after `timeout` fail.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sends small segments at once (`TCP_NODELAY`) on connected and accepted sockets.
    ///
    /// Off by default, as for std sockets: with a 1 KiB echo buffer, Nagle's coalescing
    /// triples the echo throughput on loopback. On, a message echoed in several pieces no
    /// longer waits for the peer's delayed acknowledgement (about 40 ms on Linux).
    pub fn with_nodelay(mut self, nodelay: bool) -> Self {
        self.nodelay = nodelay;
        self
    }

    /// Makes this stack the loop `index` of `shared`: its listening socket is the one of all
    /// the loops, and what it accepts goes to the loop that serves the fewest clients.
    ///
    /// # Panics
    /// If `index` is not one of `shared`'s loops, or another stack took it already.
    pub fn with_shared_listener(mut self, shared: SharedListener, index: usize) -> Self {
        let taken = shared.inner.loops[index]
            .waker
            .set(Arc::clone(&self.waker))
            .is_err();
        assert!(!taken, "loop {index} of the shared listener is taken");
        self.shared = Some((shared, index));
        self
    }

    /// The address that `bind` uses.
    pub fn bind_address(&self) -> IpAddr {
        self.bind_address
    }

    /// A handle that wakes [`wait`](Self::wait) from another thread.
    pub fn notifier(&self) -> Notifier {
        Notifier {
            waker: Arc::clone(&self.waker),
        }
    }

    /// The local address of a bound, listening or connected socket: after binding port 0,
    /// the port that the system chose.
    pub fn local_addr(&self, socket: &TcpSocket) -> Result<SocketAddr, Error> {
        let local = match &self.entry(socket)?.state {
            State::Unopened => Err(io::ErrorKind::NotConnected.into()),
            State::Bound(os) => os.local_addr().map(|address| to_std(&address)),
            State::Listening { listener, .. } => listener.local_addr(),
            State::Connecting { stream, .. } | State::Connected { stream, .. } => {
                stream.local_addr()
            }
        };
        local
            .map(unmapped)
            .map_err(|e| Error::new("local address", e))
    }

    /// Where clients reach a listening socket: its real address, with this machine's own
    /// address ([`own_address`]) in place of the unspecified one. What the screen shows as the
    /// tutorial's `IP:PORT` (through [`echo::LocalAddress`]).
    pub fn reachable_addr(&self, socket: &TcpSocket) -> Result<SocketAddr, Error> {
        self.local_addr(socket).map(reachable)
    }

    /// The peer of a connected socket.
    pub fn peer_addr(&self, socket: &TcpSocket) -> Result<SocketAddr, Error> {
        match &self.entry(socket)?.state {
            State::Connected { peer, .. } => Ok(*peer),
            _ => Err(Error::new(
                "peer address",
                io::ErrorKind::NotConnected.into(),
            )),
        }
    }

    /// Sleeps until a socket is ready for an operation that last returned `WouldBlock`, a
    /// connect in progress completes or reaches its timeout, [`Notifier::notify`] is called,
    /// or `timeout` (if any) has passed. Returns how many sockets became ready.
    ///
    /// Call it only after a pass over all sockets made no progress: readiness that was
    /// reported once is not reported again until an operation returns `WouldBlock` anew.
    pub fn wait(&mut self, timeout: Option<Duration>) -> Result<usize, Error> {
        let now = Instant::now();
        let mut deadline = timeout.and_then(|timeout| now.checked_add(timeout));
        if let Some(connect) = self.connecting.iter().map(|&(_, deadline)| deadline).min() {
            deadline = Some(deadline.map_or(connect, |d| d.min(connect)));
        }
        // Bytes that left free room a send was refused for: the loop has work.
        if core::mem::take(&mut self.ready_unseen) | self.flush_gathered() {
            deadline = Some(now);
        }
        loop {
            let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let (ready, notified) = self.read_readiness(remaining)?;
            let due = deadline.is_some_and(|d| self.refreshed >= d);
            if ready > 0 || notified || due {
                return Ok(ready);
            }
            // Only events nobody waits for: sleep on.
        }
    }

    /// Reads what the poller has, waiting up to `timeout`: how many sockets became ready for
    /// something they were known not to be ready for, and whether the notifier was called.
    fn read_readiness(&mut self, timeout: Option<Duration>) -> Result<(usize, bool), Error> {
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            // A signal: the caller looks at the time and waits again if need be.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::new("wait for socket readiness", e)),
        }
        self.refreshed = Instant::now();
        let mut ready = 0;
        let mut notified = false;
        for event in self.events.iter() {
            if event.token() == NOTIFIED {
                notified = true;
                continue;
            }
            let Some(Some(entry)) = self.sockets.get_mut(event.token().0) else {
                continue;
            };
            // An error or a hang-up is for the next operation to report, whichever it is.
            let failed = event.is_error();
            let readable = event.is_readable() || event.is_read_closed() || failed;
            let writable = event.is_writable() || event.is_write_closed() || failed;
            if (readable && !entry.readable) || (writable && !entry.writable) {
                ready += 1;
            }
            entry.readable |= readable;
            entry.writable |= writable;
            entry.read_closed |= event.is_read_closed() || failed;
            entry.write_closed |= event.is_write_closed() || failed;
        }
        Ok((ready, notified))
    }

    /// Whether `socket` is still known not to be ready for reading (`readable`) or writing,
    /// without a system call on it: see [`READINESS_REFRESH`].
    fn known_blocked(&mut self, socket: &TcpSocket, readable: bool) -> Result<bool, Error> {
        let blocked = |stack: &Self| {
            stack.entry(socket).is_ok_and(|entry| match readable {
                true => !entry.readable,
                false => !entry.writable,
            })
        };
        if !blocked(self) {
            return Ok(false);
        }
        if self.refreshed.elapsed() >= READINESS_REFRESH {
            let flushed = self.flush_gathered();
            let (ready, notified) = self.read_readiness(Some(Duration::ZERO))?;
            self.ready_unseen |= ready > 0 || notified || flushed;
        }
        Ok(blocked(self))
    }

    /// A receive found nothing: what was gathered to send on the socket leaves now (the
    /// echo of this burst is complete). `WouldBlock`, for the receive to return.
    fn nothing_to_receive(&mut self, socket: &TcpSocket) -> nb::Error<Error> {
        if let Ok(entry) = self.entry_mut(socket) {
            // A failure is the next operation's to report.
            let _ = entry.flush();
        }
        nb::Error::WouldBlock
    }

    /// Hands every socket's gathered bytes to the kernel, as far as it takes them; whether
    /// any went. A socket that failed reports it at its next operation.
    fn flush_gathered(&mut self) -> bool {
        let mut moved = false;
        let sockets = &mut self.sockets;
        self.gathering.retain(|&slot| {
            let Some(Some(entry)) = sockets.get_mut(slot) else {
                return false;
            };
            moved |= entry.flush().unwrap_or(false);
            entry.gathered.listed = entry.gathered.pending() > 0;
            entry.gathered.listed
        });
        moved
    }

    fn entry(&self, socket: &TcpSocket) -> Result<&Entry, Error> {
        match self.sockets.get(socket.slot) {
            Some(Some(entry)) if entry.id == socket.id => Ok(entry),
            _ => Err(unknown(socket)),
        }
    }

    fn entry_mut(&mut self, socket: &TcpSocket) -> Result<&mut Entry, Error> {
        entry_mut(&mut self.sockets, socket)
    }

    /// Keeps `state` in a free slot and registers its OS socket there.
    fn insert(&mut self, mut state: State) -> io::Result<TcpSocket> {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.sockets.push(None);
                self.sockets.len() - 1
            }
        };
        if let Err(e) = register(&self.poll, &mut state, slot) {
            self.free.push(slot);
            return Err(e);
        }
        let id = self.next_id;
        self.next_id += 1;
        self.sockets[slot] = Some(Entry::new(id, state));
        Ok(TcpSocket { id, slot })
    }

    fn adopt(
        &mut self,
        stream: TcpStream,
        peer: SocketAddr,
        shared: bool,
    ) -> io::Result<TcpSocket> {
        if self.nodelay {
            stream.set_nodelay(true)?;
        }
        self.insert(State::Connected {
            stream,
            peer,
            shared,
        })
    }

    /// Lets go of an OS socket: out of the poller, out of the shared listener's counts.
    fn release(&mut self, id: usize, state: State) -> io::Result<()> {
        let registry = self.poll.registry();
        match state {
            State::Unopened | State::Bound(_) => Ok(()),
            State::Listening {
                mut listener,
                shared,
            } => {
                if shared {
                    if let Some((shared, _)) = &self.shared {
                        shared.detach();
                    }
                }
                registry.deregister(&mut listener)
            }
            State::Connecting { mut stream, .. } => {
                self.connecting.retain(|&(connecting, _)| connecting != id);
                registry.deregister(&mut stream)
            }
            State::Connected {
                mut stream, shared, ..
            } => {
                if shared {
                    if let Some((shared, index)) = &self.shared {
                        shared.closed(*index);
                    }
                }
                registry.deregister(&mut stream)
            }
        }
    }
}

impl Drop for StdStack {
    fn drop(&mut self) {
        // The poller goes with the stack; what the shared listener counts must not.
        let entries: Vec<Entry> = self.sockets.iter_mut().filter_map(Option::take).collect();
        for entry in entries {
            let _ = self.release(entry.id, entry.state);
        }
    }
}

impl core::fmt::Debug for StdStack {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("StdStack")
            .field("sockets", &(self.sockets.len() - self.free.len()))
            .field("bind_address", &self.bind_address)
            .field("backlog", &self.backlog)
            .field("connect_timeout", &self.connect_timeout)
            .field("nodelay", &self.nodelay)
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

fn entry_mut<'a>(
    sockets: &'a mut [Option<Entry>],
    socket: &TcpSocket,
) -> Result<&'a mut Entry, Error> {
    match sockets.get_mut(socket.slot) {
        Some(Some(entry)) if entry.id == socket.id => Ok(entry),
        _ => Err(unknown(socket)),
    }
}

/// Registers the OS socket of `state` (if it has one the poller can watch) under `slot`:
/// once, edge-triggered, for both directions.
fn register(poll: &Poll, state: &mut State, slot: usize) -> io::Result<()> {
    let registry = poll.registry();
    let interest = Interest::READABLE | Interest::WRITABLE;
    match state {
        State::Unopened | State::Bound(_) => Ok(()),
        State::Listening { listener, .. } => registry.register(listener, Token(slot), interest),
        State::Connecting { stream, .. } | State::Connected { stream, .. } => {
            registry.register(stream, Token(slot), interest)
        }
    }
}

/// A non-blocking TCP socket of `address`'s family.
fn open(address: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// A listening socket on `address`.
fn listening(address: SocketAddr, backlog: u32) -> io::Result<Socket> {
    let socket = bound(address)?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(socket)
}

fn unknown(socket: &TcpSocket) -> Error {
    Error::new(
        format!("socket #{}", socket.id),
        io::Error::new(io::ErrorKind::InvalidInput, "not a socket of this stack"),
    )
}

fn wrong_state(operation: String) -> Error {
    Error::new(
        operation,
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "socket is not in a state for this",
        ),
    )
}

/// A std address, IPv4-mapped IPv6 shown as the IPv4 address it is.
fn to_std(address: &SockAddr) -> SocketAddr {
    match address.as_socket() {
        Some(address) => unmapped(address),
        None => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
    }
}

/// `address`, an IPv4-mapped IPv6 one (a dual-stack listener's IPv4 peer) shown as the IPv4
/// address it is.
pub(crate) fn unmapped(address: SocketAddr) -> SocketAddr {
    match address {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => SocketAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// A non-blocking TCP socket bound to `address`, ready to listen: how both stacks' listeners
/// start.
pub(crate) fn bound(address: SocketAddr) -> io::Result<Socket> {
    let socket = open(address)?;
    // Servers restarted right away must be able to bind again: other OSes than Windows keep
    // the port in TIME_WAIT otherwise.
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.bind(&address.into())?;
    Ok(socket)
}

/// Makes a bound socket listen, queueing up to `backlog` connections not yet accepted.
pub(crate) fn listen(socket: &Socket, backlog: u32) -> Result<(), Error> {
    let backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
    socket
        .listen(backlog)
        .map_err(|e| Error::new(format!("listen with a backlog of {backlog}"), e))
}

/// Where clients reach a socket bound to `local`: this machine's own address
/// ([`own_address`]) in place of the unspecified one.
pub(crate) fn reachable(local: SocketAddr) -> SocketAddr {
    match local.ip().is_unspecified() {
        true => SocketAddr::new(own_address(local.ip()), local.port()),
        false => local,
    }
}

fn is_in_progress(error: &io::Error) -> bool {
    #[cfg(unix)]
    if error.raw_os_error() == Some(libc::EINPROGRESS) {
        return true;
    }
    error.kind() == io::ErrorKind::WouldBlock
}

/// Errors of `accept` that concern one pending connection, not the listener: the next
/// connection may be fine (see accept(2)).
pub(crate) fn is_transient_accept_error(error: &io::Error) -> bool {
    #[cfg(unix)]
    if error.raw_os_error() == Some(libc::EPROTO) {
        return true;
    }
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

/// "3 s", "250 ms": durations the way a person writes them in an error message.
pub(crate) fn human(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{} s", duration.as_secs())
    } else {
        format!("{} ms", duration.as_millis())
    }
}

impl echo::LocalAddress for StdStack {
    /// [`StdStack::reachable_addr`]; `None` if the system cannot tell the socket's address.
    fn local_address(&self, socket: &TcpSocket) -> Option<SocketAddr> {
        self.reachable_addr(socket).ok()
    }
}

/// This machine's own address in the family of `unspecified` (`0.0.0.0` or `::`), like the
/// tutorial's `sta.ifconfig()[0]`: the first address of an interface that is up, not loopback
/// and not link-local; the loopback address if there is none.
pub fn own_address(unspecified: IpAddr) -> IpAddr {
    let loopback = match unspecified {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
    };
    let interfaces = if_addrs::get_if_addrs().unwrap_or_default();
    interfaces
        .iter()
        .filter(|interface| interface.is_oper_up())
        .filter(|interface| !interface.is_loopback() && !interface.is_link_local())
        .map(|interface| interface.ip())
        .find(|ip| ip.is_ipv4() == loopback.is_ipv4())
        .unwrap_or(loopback)
}

impl TcpClientStack for StdStack {
    type TcpSocket = TcpSocket;
    type Error = Error;

    fn socket(&mut self) -> Result<TcpSocket, Error> {
        self.insert(State::Unopened)
            .map_err(|e| Error::new("create a socket", e))
    }

    fn connect(&mut self, socket: &mut TcpSocket, remote: SocketAddr) -> nb::Result<(), Error> {
        let operation = || format!("connect to {remote}");
        let entry = entry_mut(&mut self.sockets, socket)?;
        let stream = match &entry.state {
            State::Unopened => {
                let os = open(remote).map_err(|e| Error::new(operation(), e))?;
                match os.connect(&remote.into()) {
                    Ok(()) => {
                        let mut stream = TcpStream::from_std(os.into());
                        register_stream(&self.poll, &mut stream, socket.slot)
                            .map_err(|e| Error::new(operation(), e))?;
                        stream
                    }
                    Err(e) if is_in_progress(&e) => {
                        let deadline = Instant::now() + self.connect_timeout;
                        let mut stream = TcpStream::from_std(os.into());
                        register_stream(&self.poll, &mut stream, socket.slot)
                            .map_err(|e| Error::new(operation(), e))?;
                        entry.state = State::Connecting { stream, deadline };
                        entry.writable = false;
                        self.connecting.push((socket.id, deadline));
                        return Err(nb::Error::WouldBlock);
                    }
                    Err(e) => return Err(nb::Error::Other(Error::new(operation(), e))),
                }
            }
            State::Connecting { stream, deadline } => {
                let failure = match stream.take_error() {
                    Ok(Some(e)) | Err(e) => Some(e),
                    Ok(None) => match stream.peer_addr() {
                        Ok(_) => None,
                        Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                            if Instant::now() < *deadline {
                                entry.writable = false;
                                return Err(nb::Error::WouldBlock);
                            }
                            Some(io::Error::new(
                                io::ErrorKind::TimedOut,
                                format!("timed out after {}", human(self.connect_timeout)),
                            ))
                        }
                        Err(e) => Some(e),
                    },
                };
                let State::Connecting { mut stream, .. } =
                    core::mem::replace(&mut entry.state, State::Unopened)
                else {
                    unreachable!("matched Connecting above");
                };
                entry.readable = true;
                entry.writable = true;
                self.connecting.retain(|&(id, _)| id != socket.id);
                if let Some(e) = failure {
                    // Back to Unopened, so that connect may be tried again on this socket.
                    let _ = self.poll.registry().deregister(&mut stream);
                    return Err(nb::Error::Other(Error::new(operation(), e)));
                }
                stream
            }
            State::Connected { .. } => return Ok(()),
            State::Bound(_) | State::Listening { .. } => {
                return Err(nb::Error::Other(wrong_state(operation())))
            }
        };
        if self.nodelay {
            let _ = stream.set_nodelay(true);
        }
        entry.state = State::Connected {
            stream,
            peer: remote,
            shared: false,
        };
        Ok(())
    }

    /// Gathers the bytes, up to [`SEND_GATHER`], and hands them to the kernel once that many
    /// are there (or sooner: see [`SEND_GATHER`]). `WouldBlock` when the stack holds that
    /// many and the kernel takes none.
    fn send(&mut self, socket: &mut TcpSocket, buffer: &[u8]) -> nb::Result<usize, Error> {
        let entry = self.entry_mut(socket)?;
        let peer = match &entry.state {
            State::Connected { peer, .. } => *peer,
            State::Connecting { .. } => return Err(nb::Error::WouldBlock),
            _ => return Err(nb::Error::Other(wrong_state("send".into()))),
        };
        if buffer.is_empty() {
            return Ok(0);
        }
        let failed = |e| nb::Error::Other(Error::new(format!("send to {peer}"), e));
        // Nothing gathered, and a buffer as big as a gathering (nothing to gain by copying it)
        // or a socket the poller saw fail (let the kernel say how): straight to the kernel.
        if entry.gathered.pending() == 0 && (buffer.len() >= SEND_DIRECT || entry.write_closed) {
            if self.known_blocked(socket, false)? {
                return Err(nb::Error::WouldBlock);
            }
            return self
                .entry_mut(socket)?
                .send_now(buffer)
                .map_err(|e| match e {
                    nb::Error::WouldBlock => nb::Error::WouldBlock,
                    nb::Error::Other(e) => failed(e),
                });
        }
        if entry.gathered.pending() + buffer.len() > SEND_GATHER {
            entry.flush().map_err(failed)?;
        }
        let taken = entry.gathered.push(buffer);
        if entry.gathered.pending() >= SEND_GATHER {
            entry.flush().map_err(failed)?;
        }
        if entry.gathered.pending() > 0 && !entry.gathered.listed {
            entry.gathered.listed = true;
            self.gathering.push(socket.slot);
        }
        match taken {
            0 => {
                if self.known_blocked(socket, false)? {
                    return Err(nb::Error::WouldBlock);
                }
                // Room came since: try again.
                self.send(socket, buffer)
            }
            taken => Ok(taken),
        }
    }

    /// Receives into `buffer`; an empty `buffer` receives nothing and returns `WouldBlock`
    /// (never `Ok(0)`, which means end of stream).
    fn receive(&mut self, socket: &mut TcpSocket, buffer: &mut [u8]) -> nb::Result<usize, Error> {
        if let Ok(entry) = self.entry_mut(socket) {
            if entry.read_ahead.holds() && !buffer.is_empty() {
                return Ok(entry.read_ahead.take(buffer));
            }
        }
        if self.known_blocked(socket, true)? {
            return Err(self.nothing_to_receive(socket));
        }
        let entry = self.entry_mut(socket)?;
        let (mut stream, peer) = match &entry.state {
            State::Connected { stream, peer, .. } => (stream, *peer),
            State::Connecting { .. } => return Err(nb::Error::WouldBlock),
            _ => return Err(nb::Error::Other(wrong_state("receive".into()))),
        };
        if buffer.is_empty() {
            return Err(nb::Error::WouldBlock);
        }
        // What the kernel gave, of how much it was asked for: a short read drained it.
        let mut read = (0, 0);
        let outcome = entry.read_ahead.receive(buffer, |target| {
            let outcome = loop {
                match stream.read(target) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    outcome => break outcome,
                }
            };
            if let Ok(received) = outcome {
                read = (received, target.len());
            }
            outcome
        });
        match outcome {
            Ok(taken) => {
                let (received, asked) = read;
                // Short: the socket is drained, and the poller will say when more comes.
                entry.readable &=
                    !(EDGE_ON_SHORT && !entry.read_closed && received > 0 && received < asked);
                if taken == 0 && entry.gathered.pending() > 0 {
                    // The end of stream waits for the echo gathered before it; what the
                    // kernel does not take now leaves when the poller says it has room.
                    let _ = entry.flush();
                    if entry.gathered.pending() > 0 {
                        return Err(nb::Error::WouldBlock);
                    }
                }
                Ok(taken)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                entry.readable = false;
                Err(self.nothing_to_receive(socket))
            }
            Err(e) => Err(nb::Error::Other(Error::new(
                format!("receive from {peer}"),
                e,
            ))),
        }
    }

    /// Sends what is gathered as far as the kernel takes it; the rest is dropped with the
    /// socket.
    fn close(&mut self, socket: TcpSocket) -> Result<(), Error> {
        self.entry(&socket)?;
        let Some(mut entry) = self.sockets[socket.slot].take() else {
            unreachable!("found above");
        };
        entry.writable = true;
        let _ = entry.flush();
        self.free.push(socket.slot);
        self.release(entry.id, entry.state)
            .map_err(|e| Error::new("close", e))
    }
}

fn register_stream(poll: &Poll, stream: &mut TcpStream, slot: usize) -> io::Result<()> {
    poll.registry()
        .register(stream, Token(slot), Interest::READABLE | Interest::WRITABLE)
}

impl TcpFullStack for StdStack {
    /// Binds the configured address. With a [`SharedListener`], the first loop to bind a port
    /// also listens, and the others share its socket from then on: `listen` finds it
    /// listening.
    fn bind(&mut self, socket: &mut TcpSocket, local_port: u16) -> Result<(), Error> {
        let address = SocketAddr::new(self.bind_address, local_port);
        let operation = || format!("bind {address}");
        if !matches!(self.entry(socket)?.state, State::Unopened) {
            return Err(wrong_state(operation()));
        }
        let state = match &self.shared {
            Some((shared, _)) => {
                let listener = shared
                    .listener(local_port, address, self.backlog)
                    .map_err(|e| Error::new(operation(), e))?;
                let mut state = State::Listening {
                    listener: TcpListener::from_std(listener),
                    shared: true,
                };
                if let Err(e) = register(&self.poll, &mut state, socket.slot) {
                    shared.detach();
                    return Err(Error::new(operation(), e));
                }
                state
            }
            None => {
                let os = bound(address).map_err(|e| Error::new(operation(), e))?;
                State::Bound(os)
            }
        };
        let entry = self.entry_mut(socket)?;
        entry.state = state;
        entry.readable = true;
        Ok(())
    }

    fn listen(&mut self, socket: &mut TcpSocket) -> Result<(), Error> {
        let entry = entry_mut(&mut self.sockets, socket)?;
        match &entry.state {
            State::Listening { shared: true, .. } => return Ok(()),
            State::Bound(os) => listen(os, self.backlog)?,
            _ => return Err(wrong_state("listen".into())),
        }
        let State::Bound(os) = core::mem::replace(&mut entry.state, State::Unopened) else {
            unreachable!("matched Bound above");
        };
        let mut state = State::Listening {
            listener: TcpListener::from_std(os.into()),
            shared: false,
        };
        register(&self.poll, &mut state, socket.slot).map_err(|e| Error::new("listen", e))?;
        entry.state = state;
        Ok(())
    }

    /// Accepts the next client. With a [`SharedListener`], a client that another loop
    /// accepted for this one comes first; a client that this loop accepts goes to the loop
    /// that serves the fewest (this one when it is among them).
    fn accept(&mut self, socket: &mut TcpSocket) -> nb::Result<(TcpSocket, SocketAddr), Error> {
        let shared = match &self.entry(socket)?.state {
            State::Listening { shared: true, .. } => self.shared.clone(),
            _ => None,
        };
        if let Some((shared, index)) = &shared {
            if let Some((stream, peer)) = shared.take_handed(*index) {
                return self
                    .adopt(stream, peer, true)
                    .map(|accepted| (accepted, peer))
                    .map_err(|e| nb::Error::Other(Error::new(format!("accept {peer}"), e)));
            }
        }
        loop {
            if self.known_blocked(socket, true)? {
                return Err(nb::Error::WouldBlock);
            }
            let entry = self.entry_mut(socket)?;
            let State::Listening { listener, .. } = &entry.state else {
                return Err(nb::Error::Other(wrong_state("accept".into())));
            };
            let (stream, address) = match listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    entry.readable = false;
                    return Err(nb::Error::WouldBlock);
                }
                Err(e) if is_transient_accept_error(&e) => continue,
                Err(e) => return Err(nb::Error::Other(Error::new("accept", e))),
            };
            let peer = unmapped(address);
            if let Some((shared, index)) = &shared {
                if let Some(stream) = shared.place(*index, stream, peer) {
                    return self
                        .adopt(stream, peer, true)
                        .map(|accepted| (accepted, peer))
                        .map_err(|e| nb::Error::Other(Error::new(format!("accept {peer}"), e)));
                }
                // Handed to a loop that serves fewer clients: look for another one.
                continue;
            }
            return self
                .adopt(stream, peer, false)
                .map(|accepted| (accepted, peer))
                .map_err(|e| nb::Error::Other(Error::new(format!("accept {peer}"), e)));
        }
    }
}

/// One listening socket for the stacks of several poll loops, one loop a thread, that serve
/// one port together (`echo-std server --threads N`).
///
/// Each loop's [`StdStack`] ([`StdStack::with_shared_listener`]) binds and listens as usual:
/// the first creates the socket, the others share it, each with its own registration. Any
/// loop with a free client slot accepts; a client it accepts goes to the loop that serves the
/// fewest clients and still has room (through a queue and that loop's [`Notifier`]), so that
/// the loops share the work evenly and every slot of every loop is used before a client
/// waits in the backlog. The slots of a loop are its `capacity`: their sum is the server's
/// `--max-clients`.
///
/// Why one socket and not one per loop with `SO_REUSEPORT`: the kernel spreads connections
/// over such sockets by a hash of their addresses, whatever the loops' load. Eight
/// connections then often land five to three or six to two, so one loop does most of the
/// work; and a client can wait in the backlog of a full loop while another has free slots,
/// so `--max-clients` would no longer be the number of clients served at once. Handing over
/// costs a lock and a wake-up per connection, never anything per byte.
#[derive(Clone)]
pub struct SharedListener {
    inner: Arc<SharedInner>,
}

struct SharedInner {
    socket: Mutex<Option<SharedSocket>>,
    /// Held while a client's loop is chosen, so two loops never fill one slot twice.
    placing: Mutex<()>,
    loops: Vec<LoopShare>,
}

struct SharedSocket {
    /// The port asked for (0: the system chose `listener`'s).
    port: u16,
    listener: std::net::TcpListener,
    /// Stacks that listen on it now; it closes when the last one closes its copy.
    attached: usize,
}

/// A loop's part of a [`SharedListener`], on its own cache line: it is read on every pass of
/// its loop and written by the others only when they hand it a client.
#[repr(align(64))]
struct LoopShare {
    capacity: usize,
    /// Clients the loop serves, and those handed to it that it has not accepted yet.
    open: AtomicUsize,
    has_handed: AtomicBool,
    handed: Mutex<VecDeque<(TcpStream, SocketAddr)>>,
    waker: OnceLock<Arc<Waker>>,
}

impl SharedListener {
    /// A listener for one loop per item of `capacities`: the client slots of each.
    ///
    /// # Panics
    /// If there is no loop.
    pub fn new(capacities: impl IntoIterator<Item = usize>) -> Self {
        let loops: Vec<LoopShare> = capacities
            .into_iter()
            .map(|capacity| LoopShare {
                capacity,
                open: AtomicUsize::new(0),
                has_handed: AtomicBool::new(false),
                handed: Mutex::new(VecDeque::new()),
                waker: OnceLock::new(),
            })
            .collect();
        assert!(!loops.is_empty(), "a shared listener needs a loop");
        SharedListener {
            inner: Arc::new(SharedInner {
                socket: Mutex::new(None),
                placing: Mutex::new(()),
                loops,
            }),
        }
    }

    /// How many loops share it.
    pub fn loops(&self) -> usize {
        self.inner.loops.len()
    }

    /// A copy of the listening socket for `port`, created (bound and listening on `address`)
    /// if no stack has it open.
    fn listener(
        &self,
        port: u16,
        address: SocketAddr,
        backlog: u32,
    ) -> io::Result<std::net::TcpListener> {
        let mut socket = lock(&self.inner.socket);
        if let Some(shared) = socket.as_mut() {
            if shared.port != port {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("the loops listen on port {}", shared.port),
                ));
            }
            let copy = shared.listener.try_clone()?;
            shared.attached += 1;
            return Ok(copy);
        }
        let listener: std::net::TcpListener = listening(address, backlog)?.into();
        let copy = listener.try_clone()?;
        *socket = Some(SharedSocket {
            port,
            listener,
            attached: 1,
        });
        Ok(copy)
    }

    /// A stack closed its copy of the listening socket.
    fn detach(&self) {
        let mut socket = lock(&self.inner.socket);
        if let Some(shared) = socket.as_mut() {
            shared.attached -= 1;
            if shared.attached == 0 {
                *socket = None;
            }
        }
    }

    /// Chooses the loop for a client that loop `me` accepted: the one serving the fewest
    /// with room to spare, `me` on a tie. Returns the client if it is `me`'s, else hands it
    /// over.
    fn place(&self, me: usize, stream: TcpStream, peer: SocketAddr) -> Option<TcpStream> {
        let loops = &self.inner.loops;
        let chosen = {
            let _placing = lock(&self.inner.placing);
            let open = |index: usize| loops[index].open.load(Ordering::Acquire);
            let chosen = (0..loops.len())
                .filter(|&index| index == me || open(index) < loops[index].capacity)
                .min_by_key(|&index| (open(index), index != me))
                .unwrap_or(me);
            loops[chosen].open.fetch_add(1, Ordering::AcqRel);
            chosen
        };
        if chosen == me {
            return Some(stream);
        }
        let share = &loops[chosen];
        lock(&share.handed).push_back((stream, peer));
        share.has_handed.store(true, Ordering::Release);
        if let Some(waker) = share.waker.get() {
            // A failed wake-up only delays the client until that loop's next turn.
            let _ = waker.wake();
        }
        None
    }

    /// A client another loop handed to loop `me`, if any.
    fn take_handed(&self, me: usize) -> Option<(TcpStream, SocketAddr)> {
        let share = &self.inner.loops[me];
        if !share.has_handed.load(Ordering::Acquire) {
            return None;
        }
        let mut handed = lock(&share.handed);
        let client = handed.pop_front();
        share
            .has_handed
            .store(!handed.is_empty(), Ordering::Release);
        client
    }

    /// Loop `me` closed a client.
    fn closed(&self, me: usize) {
        self.inner.loops[me].open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl core::fmt::Debug for SharedListener {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let open: Vec<usize> = self
            .inner
            .loops
            .iter()
            .map(|share| share.open.load(Ordering::Relaxed))
            .collect();
        f.debug_struct("SharedListener")
            .field("open", &open)
            .finish_non_exhaustive()
    }
}

/// A poisoned lock only means another loop panicked; what it guards stays consistent.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::{Read as _, Write};
    use std::net::TcpStream;
    use std::thread;

    use embedded_nal::{TcpError, TcpErrorKind};

    use super::*;

    const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn loopback_stack() -> StdStack {
        StdStack::new().unwrap().with_bind_address(LOOPBACK)
    }

    fn listening(stack: &mut StdStack) -> (TcpSocket, SocketAddr) {
        let mut listener = stack.socket().unwrap();
        stack.bind(&mut listener, 0).unwrap();
        stack.listen(&mut listener).unwrap();
        let address = stack.local_addr(&listener).unwrap();
        (listener, address)
    }

    /// Retries `op` while it returns `WouldBlock`, sleeping on readiness in between; fails
    /// the test after 5 s.
    fn block<T>(
        stack: &mut StdStack,
        mut op: impl FnMut(&mut StdStack) -> nb::Result<T, Error>,
    ) -> Result<T, Error> {
        let give_up = Instant::now() + Duration::from_secs(5);
        loop {
            match op(stack) {
                Ok(value) => return Ok(value),
                Err(nb::Error::Other(e)) => return Err(e),
                Err(nb::Error::WouldBlock) => {
                    assert!(Instant::now() < give_up, "still WouldBlock after 5 s");
                    stack.wait(Some(Duration::from_millis(500))).unwrap();
                }
            }
        }
    }

    /// A stack with one accepted connection, and the std client at its other end.
    fn connected() -> (StdStack, TcpSocket, TcpStream) {
        let mut stack = loopback_stack();
        let (mut listener, address) = listening(&mut stack);
        let client = TcpStream::connect(address).unwrap();
        let (server, _) = block(&mut stack, |s| s.accept(&mut listener)).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        (stack, server, client)
    }

    fn reset(stream: TcpStream) {
        socket2::SockRef::from(&stream)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(stream);
    }

    fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
        let start = Instant::now();
        let value = f();
        (value, start.elapsed())
    }

    #[test]
    fn binds_the_configured_address_and_reports_the_real_port() {
        let mut stack = loopback_stack();
        let (_listener, address) = listening(&mut stack);
        assert_eq!(address.ip(), LOOPBACK);
        assert_ne!(address.port(), 0);
    }

    #[test]
    fn a_wildcard_listener_is_reached_at_this_machines_own_address() {
        let mut stack = StdStack::new()
            .unwrap()
            .with_bind_address(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let (listener, bound) = listening(&mut stack);
        assert!(bound.ip().is_unspecified());
        let reachable = echo::LocalAddress::local_address(&stack, &listener).unwrap();
        assert_eq!(reachable.port(), bound.port());
        assert!(reachable.is_ipv4() && !reachable.ip().is_unspecified());
        let own: Vec<IpAddr> = if_addrs::get_if_addrs()
            .unwrap()
            .iter()
            .map(|interface| interface.ip())
            .collect();
        assert!(
            own.contains(&reachable.ip()),
            "{reachable} is not one of {own:?}"
        );
        // A client can connect to the address shown.
        TcpStream::connect(reachable).unwrap();
    }

    #[test]
    fn a_listener_on_a_given_address_is_reached_there() {
        let mut stack = loopback_stack();
        let (listener, bound) = listening(&mut stack);
        let reachable = echo::LocalAddress::local_address(&stack, &listener);
        assert_eq!(reachable, Some(bound));
    }

    #[test]
    fn accept_would_block_until_a_client_connects_and_wait_wakes_for_it() {
        let mut stack = loopback_stack();
        let (mut listener, address) = listening(&mut stack);
        assert!(matches!(
            stack.accept(&mut listener),
            Err(nb::Error::WouldBlock)
        ));
        let client = TcpStream::connect(address).unwrap();
        let (ready, waited) = timed(|| stack.wait(Some(Duration::from_secs(5))).unwrap());
        assert_eq!(ready, 1);
        assert!(waited < Duration::from_secs(1), "{waited:?}");
        let (_server, peer) = stack.accept(&mut listener).unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
    }

    #[test]
    fn a_busy_loop_that_never_waits_still_accepts_new_clients() {
        let mut stack = loopback_stack();
        let (mut listener, address) = listening(&mut stack);
        assert!(stack.accept(&mut listener).is_err());
        let _client = TcpStream::connect(address).unwrap();
        let give_up = Instant::now() + Duration::from_secs(1);
        loop {
            match stack.accept(&mut listener) {
                Ok(_) => break,
                Err(nb::Error::WouldBlock) => assert!(Instant::now() < give_up, "never accepted"),
                Err(nb::Error::Other(e)) => panic!("{e}"),
            }
            thread::sleep(Duration::from_micros(100));
        }
    }

    #[test]
    fn dual_stack_listener_reports_ipv4_peers_as_ipv4() {
        let mut stack = StdStack::new()
            .unwrap()
            .with_bind_address(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED));
        let (mut listener, address) = listening(&mut stack);
        let client = TcpStream::connect((Ipv4Addr::LOCALHOST, address.port())).unwrap();
        let (server, peer) = block(&mut stack, |s| s.accept(&mut listener)).unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        assert!(peer.is_ipv4());
        assert_eq!(stack.peer_addr(&server).unwrap(), peer);
    }

    #[test]
    fn receive_would_block_then_returns_data_then_zero_at_end_of_stream() {
        let (mut stack, mut server, mut client) = connected();
        let mut buffer = [0; 16];
        assert!(matches!(
            stack.receive(&mut server, &mut buffer),
            Err(nb::Error::WouldBlock)
        ));
        client.write_all(b"hello").unwrap();
        let received = block(&mut stack, |s| s.receive(&mut server, &mut buffer)).unwrap();
        assert_eq!(&buffer[..received], b"hello");
        assert!(matches!(
            stack.receive(&mut server, &mut buffer),
            Err(nb::Error::WouldBlock)
        ));
        client.shutdown(std::net::Shutdown::Write).unwrap();
        let received = block(&mut stack, |s| s.receive(&mut server, &mut buffer)).unwrap();
        assert_eq!(received, 0);
    }

    #[test]
    fn end_of_stream_seen_with_the_last_data_is_not_lost_by_a_short_read() {
        let (mut stack, mut server, mut client) = connected();
        let mut buffer = [0; 16];
        assert!(stack.receive(&mut server, &mut buffer).is_err());
        client.write_all(b"last").unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        thread::sleep(Duration::from_millis(50));
        // One event for both; the read that follows is short, yet more (the end) is there.
        assert_eq!(stack.wait(Some(Duration::from_secs(5))).unwrap(), 1);
        assert_eq!(stack.receive(&mut server, &mut buffer).unwrap(), 4);
        assert_eq!(
            block(&mut stack, |s| s.receive(&mut server, &mut buffer)).unwrap(),
            0
        );
    }

    #[test]
    fn a_small_buffer_gets_the_rest_of_a_read_ahead_without_the_kernel() {
        let (mut stack, mut server, mut client) = connected();
        let data: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        client.write_all(&data).unwrap();
        let mut received = Vec::new();
        let mut buffer = [0; 1024];
        while received.len() < data.len() {
            let n = block(&mut stack, |s| s.receive(&mut server, &mut buffer)).unwrap();
            received.extend_from_slice(&buffer[..n]);
        }
        assert_eq!(received, data);
        assert!(matches!(
            stack.receive(&mut server, &mut buffer),
            Err(nb::Error::WouldBlock)
        ));
    }

    #[test]
    fn gathered_bytes_leave_when_a_receive_finds_nothing_or_at_close() {
        let (mut stack, mut server, mut client) = connected();
        assert_eq!(stack.send(&mut server, b"ping").unwrap(), 4);
        assert!(matches!(
            stack.receive(&mut server, &mut [0; 16]),
            Err(nb::Error::WouldBlock)
        ));
        let mut echo = [0; 4];
        client.read_exact(&mut echo).unwrap();
        assert_eq!(&echo, b"ping");
        assert_eq!(stack.send(&mut server, b"bye").unwrap(), 3);
        stack.close(server).unwrap();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"bye");
    }

    #[test]
    fn end_of_stream_comes_after_the_gathered_echo_has_left() {
        let (mut stack, mut server, client) = connected();
        let data: Vec<u8> = (0..4 << 20u32).map(|i| (i % 251) as u8).collect();
        let sent = data.clone();
        let peer = thread::spawn(move || {
            let mut writer = client.try_clone().unwrap();
            let writing = thread::spawn(move || {
                writer.write_all(&sent).unwrap();
                writer.shutdown(std::net::Shutdown::Write).unwrap();
            });
            // Late, so that the echo backs up into the stack first.
            thread::sleep(Duration::from_millis(200));
            let mut echo = Vec::new();
            let mut reader = client;
            reader.read_to_end(&mut echo).unwrap();
            writing.join().unwrap();
            echo
        });
        let mut buffer = [0; 1024];
        let mut pending: Vec<u8> = Vec::new();
        let give_up = Instant::now() + Duration::from_secs(10);
        loop {
            assert!(Instant::now() < give_up, "never saw the end of stream");
            if !pending.is_empty() {
                match stack.send(&mut server, &pending) {
                    Ok(n) => drop(pending.drain(..n)),
                    Err(nb::Error::WouldBlock) => {
                        stack.wait(Some(Duration::from_millis(100))).unwrap();
                    }
                    Err(nb::Error::Other(e)) => panic!("{e}"),
                }
                continue;
            }
            match stack.receive(&mut server, &mut buffer) {
                Ok(0) => break,
                Ok(n) => pending.extend_from_slice(&buffer[..n]),
                Err(nb::Error::WouldBlock) => {
                    stack.wait(Some(Duration::from_millis(100))).unwrap();
                }
                Err(nb::Error::Other(e)) => panic!("{e}"),
            }
        }
        // Everything received was handed back before the end of stream showed: closing now
        // loses nothing.
        stack.close(server).unwrap();
        let echo = peer.join().unwrap();
        assert_eq!(echo.len(), data.len());
        assert!(echo == data, "the echo differs");
    }

    #[test]
    fn a_busy_loop_that_never_waits_still_receives_new_data() {
        let (mut stack, mut server, mut client) = connected();
        let mut buffer = [0; 16];
        assert!(matches!(
            stack.receive(&mut server, &mut buffer),
            Err(nb::Error::WouldBlock)
        ));
        client.write_all(b"later").unwrap();
        let (received, took) = timed(|| loop {
            match stack.receive(&mut server, &mut buffer) {
                Ok(n) => break n,
                Err(nb::Error::WouldBlock) => continue,
                Err(e) => panic!("{e:?}"),
            }
        });
        assert_eq!(&buffer[..received], b"later");
        assert!(took < Duration::from_secs(1), "took {took:?}");
    }

    #[test]
    fn readiness_seen_in_the_middle_of_a_pass_is_not_slept_through() {
        let mut stack = loopback_stack();
        let (mut listener, address) = listening(&mut stack);
        let mut first_client = TcpStream::connect(address).unwrap();
        let (mut first, _) = block(&mut stack, |s| s.accept(&mut listener)).unwrap();
        let _second_client = TcpStream::connect(address).unwrap();
        let (mut second, _) = block(&mut stack, |s| s.accept(&mut listener)).unwrap();
        let mut buffer = [0; 16];

        // A pass: the first socket has nothing; data arrives; the second socket's receive
        // looks at the poller (the last look is old) and so sees the first one ready.
        assert!(matches!(
            stack.receive(&mut first, &mut buffer),
            Err(nb::Error::WouldBlock)
        ));
        assert!(matches!(
            stack.receive(&mut second, &mut buffer),
            Err(nb::Error::WouldBlock)
        ));
        stack.wait(Some(Duration::ZERO)).unwrap();
        first_client.write_all(b"now").unwrap();
        thread::sleep(READINESS_REFRESH * 50);
        assert!(matches!(
            stack.receive(&mut second, &mut buffer),
            Err(nb::Error::WouldBlock)
        ));

        // The pass made no progress, so the loop waits: it must not sleep.
        let (_, took) = timed(|| stack.wait(Some(Duration::from_secs(5))).unwrap());
        assert!(
            took < Duration::from_secs(1),
            "slept {took:?} with data waiting"
        );
        assert_eq!(stack.receive(&mut first, &mut buffer).unwrap(), 3);
    }

    #[test]
    fn receive_from_a_reset_peer_is_pipe_closed() {
        let (mut stack, mut server, client) = connected();
        reset(client);
        let mut buffer = [0; 16];
        let error = block(&mut stack, |s| s.receive(&mut server, &mut buffer)).unwrap_err();
        assert_eq!(error.kind(), TcpErrorKind::PipeClosed, "{error}");
    }

    #[test]
    fn send_stops_with_would_block_when_the_peer_does_not_read_and_loses_nothing() {
        let (mut stack, mut server, client) = connected();
        let chunk: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
        let mut sent = 0usize;
        loop {
            let offset = sent % chunk.len();
            match stack.send(&mut server, &chunk[offset..]) {
                Ok(n) => {
                    assert!(n > 0);
                    sent += n;
                }
                Err(nb::Error::WouldBlock) => break,
                Err(nb::Error::Other(e)) => panic!("{e}"),
            }
            assert!(sent < 256 << 20, "the kernel never said WouldBlock");
        }
        let total = sent + 1_000_000;
        let reader = thread::spawn(move || {
            let mut client = client;
            let mut received = vec![0; total];
            std::io::Read::read_exact(&mut client, &mut received).unwrap();
            received
        });
        while sent < total {
            let offset = sent % chunk.len();
            let end = chunk.len().min(offset + (total - sent));
            sent += block(&mut stack, |s| s.send(&mut server, &chunk[offset..end])).unwrap();
        }
        // The last bytes may still be gathered: a loop's wait sends them.
        while !reader.is_finished() {
            stack.wait(Some(Duration::from_millis(10))).unwrap();
        }
        let received = reader.join().unwrap();
        assert!(received
            .iter()
            .enumerate()
            .all(|(i, &byte)| byte == (i % 65536 % 251) as u8));
    }

    #[test]
    fn send_to_a_reset_peer_is_pipe_closed_and_raises_no_sigpipe() {
        let (mut stack, mut server, client) = connected();
        reset(client);
        let give_up = Instant::now() + Duration::from_secs(5);
        let error = loop {
            match stack.send(&mut server, &[0; 1024]) {
                Err(nb::Error::Other(e)) => break e,
                _ => assert!(Instant::now() < give_up, "send never failed"),
            }
            thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(error.kind(), TcpErrorKind::PipeClosed, "{error}");
    }

    #[test]
    fn connect_completes_without_blocking() {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let address = listener.local_addr().unwrap();
        let mut stack = StdStack::new().unwrap();
        let mut socket = stack.socket().unwrap();
        block(&mut stack, |s| s.connect(&mut socket, address)).unwrap();
        let (mut accepted, _) = listener.accept().unwrap();
        assert_eq!(stack.peer_addr(&socket).unwrap(), address);
        assert_eq!(stack.send(&mut socket, b"hi").unwrap(), 2);
        // Gathered: it leaves when the stack waits (or receives).
        stack.wait(Some(Duration::ZERO)).unwrap();
        let mut buffer = [0; 2];
        std::io::Read::read_exact(&mut accepted, &mut buffer).unwrap();
        assert_eq!(&buffer, b"hi");
    }

    #[test]
    fn refused_connect_is_an_error_that_names_the_address() {
        let address = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap();
        let mut stack = StdStack::new().unwrap();
        let mut socket = stack.socket().unwrap();
        let error = block(&mut stack, |s| s.connect(&mut socket, address)).unwrap_err();
        assert_eq!(error.kind(), TcpErrorKind::Other);
        assert_eq!(error.io_error().kind(), io::ErrorKind::ConnectionRefused);
        assert!(
            error
                .to_string()
                .starts_with(&format!("connect to {address}: ")),
            "{error}"
        );
        // The socket may try again.
        let again = block(&mut stack, |s| s.connect(&mut socket, address)).unwrap_err();
        assert_eq!(again.io_error().kind(), io::ErrorKind::ConnectionRefused);
    }

    /// A listener that never accepts, its queue full: Linux drops further SYNs, and a connect
    /// to its address stays in progress. Keep the three while connecting.
    pub(crate) fn full_listener() -> (Socket, SocketAddr, Vec<TcpStream>) {
        let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        listener
            .bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
            .unwrap();
        listener.listen(0).unwrap();
        let address = listener.local_addr().unwrap().as_socket().unwrap();
        let mut queued = Vec::new();
        while let Ok(stream) = TcpStream::connect_timeout(&address, Duration::from_millis(200)) {
            queued.push(stream);
            assert!(queued.len() < 16, "the listener queue never filled");
        }
        (listener, address, queued)
    }

    #[test]
    fn connect_times_out_when_the_listener_backlog_is_full() {
        let (_listener, address, _queued) = full_listener();
        let mut stack = StdStack::new()
            .unwrap()
            .with_connect_timeout(Duration::from_millis(300));
        let mut socket = stack.socket().unwrap();
        let (result, took) = timed(|| loop {
            match stack.connect(&mut socket, address) {
                Err(nb::Error::WouldBlock) => {
                    // No timeout given: the connect deadline alone must end the wait.
                    stack.wait(None).unwrap();
                }
                other => break other,
            }
        });
        let Err(nb::Error::Other(error)) = result else {
            panic!("connect did not time out: {result:?}");
        };
        assert_eq!(
            error.to_string(),
            format!("connect to {address}: timed out after 300 ms")
        );
        assert!(took >= Duration::from_millis(300), "{took:?}");
        assert!(took < Duration::from_secs(3), "{took:?}");
    }

    #[test]
    fn idle_wait_sleeps_for_its_whole_timeout() {
        let (mut stack, mut server, _client) = connected();
        assert_eq!(stack.send(&mut server, b"x").unwrap(), 1);
        assert!(matches!(
            stack.receive(&mut server, &mut [0; 8]),
            Err(nb::Error::WouldBlock)
        ));
        // The socket can be written to, but no send is waiting: that must not wake us.
        let (ready, waited) = timed(|| stack.wait(Some(Duration::from_millis(200))).unwrap());
        assert_eq!(ready, 0);
        assert!(waited >= Duration::from_millis(190), "{waited:?}");
    }

    #[test]
    fn readiness_is_reported_once_until_the_next_would_block() {
        let (mut stack, mut server, mut client) = connected();
        let mut buffer = [0; 8];
        assert!(stack.receive(&mut server, &mut buffer).is_err());
        client.write_all(b"data").unwrap();
        assert_eq!(stack.wait(Some(Duration::from_secs(5))).unwrap(), 1);
        // The owner leaves the data where it is (say its buffer is full): no busy wake-ups.
        let (ready, waited) = timed(|| stack.wait(Some(Duration::from_millis(200))).unwrap());
        assert_eq!(ready, 0);
        assert!(waited >= Duration::from_millis(190), "{waited:?}");
        assert_eq!(stack.receive(&mut server, &mut buffer).unwrap(), 4);
    }

    #[test]
    fn notifier_wakes_wait_from_another_thread() {
        let mut stack = loopback_stack();
        let notifier = stack.notifier();
        let waker = thread::spawn(move || {
            thread::sleep(Duration::from_millis(50));
            notifier.notify().unwrap();
        });
        let (_, waited) = timed(|| stack.wait(Some(Duration::from_secs(5))).unwrap());
        assert!(waited < Duration::from_secs(2), "{waited:?}");
        waker.join().unwrap();
    }

    #[test]
    fn closed_sockets_are_forgotten() {
        let (mut stack, server, _client) = connected();
        let (id, slot) = (server.id(), server.slot);
        stack.close(server).unwrap();
        let stale = TcpSocket { id, slot };
        assert!(stack.local_addr(&stale).is_err());
    }

    #[test]
    fn a_shared_listener_gives_each_client_to_the_loop_serving_the_fewest() {
        let shared = SharedListener::new([2, 2]);
        let mut stacks: Vec<StdStack> = (0..2)
            .map(|index| loopback_stack().with_shared_listener(shared.clone(), index))
            .collect();
        let (mut first, address) = listening(&mut stacks[0]);
        let (mut second, again) = listening(&mut stacks[1]);
        assert_eq!(address, again, "one socket for both loops");
        let a = TcpStream::connect(address).unwrap();
        let (_, peer) = block(&mut stacks[0], |s| s.accept(&mut first)).unwrap();
        assert_eq!(peer, a.local_addr().unwrap());
        // The first loop takes the next client off the socket, but serves one already.
        let b = TcpStream::connect(address).unwrap();
        thread::sleep(Duration::from_millis(50));
        stacks[0].wait(Some(Duration::ZERO)).unwrap();
        assert!(matches!(
            stacks[0].accept(&mut first),
            Err(nb::Error::WouldBlock)
        ));
        let (_, peer) = block(&mut stacks[1], |s| s.accept(&mut second)).unwrap();
        assert_eq!(peer, b.local_addr().unwrap());
        // The socket stays open while one loop still listens on it.
        stacks[0].close(first).unwrap();
        let c = TcpStream::connect(address).unwrap();
        let (_, peer) = block(&mut stacks[1], |s| s.accept(&mut second)).unwrap();
        assert_eq!(peer, c.local_addr().unwrap());
    }

    #[test]
    fn durations_read_like_a_person_wrote_them() {
        assert_eq!(human(Duration::from_secs(3)), "3 s");
        assert_eq!(human(Duration::from_millis(250)), "250 ms");
    }
}
