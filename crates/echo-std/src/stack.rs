//! [`StdStack`]: embedded-nal's TCP traits over non-blocking std sockets, plus a readiness
//! wait so that a poll loop sleeps instead of spinning.
//!
//! Every socket is non-blocking and registered with one [`polling::Poller`] in oneshot mode.
//! A socket asks for readiness only after an operation on it returned `WouldBlock`
//! (receive or accept: readable; send or connect: writable), and that wish is dropped once
//! the readiness has been reported. So [`StdStack::wait`] never wakes for a socket that
//! always has room to write, nor again and again for data that the owner chose not to read
//! yet: each wake-up needs a fresh `WouldBlock` first.

use std::collections::HashMap;
use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use embedded_nal::{nb, TcpClientStack, TcpFullStack};
use polling::{Event, Events, Poller};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::Error;

/// The listen backlog used unless [`StdStack::with_backlog`] says otherwise: the tutorial's
/// `listen(3)`.
pub const DEFAULT_BACKLOG: u32 = 3;

/// How long a connect may stay in progress unless [`StdStack::with_connect_timeout`] says
/// otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How old the poller's readiness may be for `receive`, `send` and `accept` to trust it. A
/// socket whose last operation returned `WouldBlock`, and that the poller has not reported
/// ready since, answers `WouldBlock` again without a system call: a poll loop asks every
/// connection and the listener on every pass, and most of those calls would find nothing (an
/// `accept` that finds nobody even costs the kernel a socket allocation). When the
/// last look at the poller is older than this, the stack looks again (without waiting) first,
/// so a loop that keeps making progress and never waits still sees every socket.
pub const READINESS_REFRESH: Duration = Duration::from_millis(1);

/// Flags for every `send`: a reset peer must return `EPIPE`, not kill the process with
/// `SIGPIPE`.
#[cfg(any(target_os = "linux", target_os = "android"))]
const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL;
#[cfg(all(unix, not(any(target_os = "linux", target_os = "android"))))]
const SEND_FLAGS: libc::c_int = 0;
#[cfg(not(unix))]
const SEND_FLAGS: i32 = 0;

/// A TCP socket of a [`StdStack`]: a handle to a socket that the stack owns.
///
/// Give it back with [`TcpClientStack::close`]; a handle that is merely dropped leaves its
/// socket open until the stack is dropped.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TcpSocket {
    id: usize,
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
    poller: Arc<Poller>,
}

impl Notifier {
    /// Makes the current or the next [`StdStack::wait`] return at once.
    pub fn notify(&self) -> io::Result<()> {
        self.poller.notify()
    }
}

/// Which readiness a socket waits for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Interest {
    readable: bool,
    writable: bool,
}

impl Interest {
    const NONE: Self = Self {
        readable: false,
        writable: false,
    };

    fn event(self, key: usize) -> Event {
        match (self.readable, self.writable) {
            (true, true) => Event::all(key),
            (true, false) => Event::readable(key),
            (false, true) => Event::writable(key),
            (false, false) => Event::none(key),
        }
    }
}

enum State {
    /// Created by `socket()`: the OS socket is made by `bind` or `connect`, which know the
    /// address family.
    Unopened,
    Bound(Socket),
    Listening(Socket),
    Connecting {
        socket: Socket,
        deadline: Instant,
    },
    Connected {
        socket: Socket,
        peer: SocketAddr,
    },
}

impl State {
    fn socket(&self) -> Option<&Socket> {
        match self {
            State::Unopened => None,
            State::Bound(socket)
            | State::Listening(socket)
            | State::Connecting { socket, .. }
            | State::Connected { socket, .. } => Some(socket),
        }
    }
}

struct Entry {
    state: State,
    /// Readiness the socket's owner waits for: set by a `WouldBlock`, cleared when reported.
    wanted: Interest,
    /// What the poller is armed with; `None` while no OS socket is registered.
    armed: Option<Interest>,
}

/// The host's TCP/IP stack: [`TcpClientStack`] and [`TcpFullStack`] over non-blocking std
/// sockets (socket2), with [`wait`](Self::wait) on their readiness (polling).
///
/// Unlike a blocking std stack it binds the address it was configured with, listens with a
/// chosen backlog, connects without blocking and with a timeout, reports IPv4 peers as IPv4,
/// and never blocks in `receive`, `send` or `accept`:
///
/// - `receive`: `WouldBlock` while no data is there, `Ok(0)` only at end of stream, an error
///   of kind `PipeClosed` when the connection was reset or broken;
/// - `send`: may be partial; `WouldBlock` when the kernel buffer is full; `PipeClosed` when
///   the peer is gone (never `SIGPIPE`);
/// - `accept`: `WouldBlock` while nobody waits; a client that vanished before being accepted
///   is skipped, not reported;
/// - `connect`: `WouldBlock` while in progress, then `Ok(())`, or an error of kind `Other`
///   on refusal or after the connect timeout.
pub struct StdStack {
    poller: Arc<Poller>,
    events: Events,
    sockets: HashMap<usize, Entry>,
    next_id: usize,
    bind_address: IpAddr,
    backlog: u32,
    connect_timeout: Duration,
    nodelay: bool,
    /// When the poller's readiness was last read.
    refreshed: Instant,
    /// A look at the poller in the middle of a pass (see [`READINESS_REFRESH`]) found sockets
    /// ready, possibly ones the pass had already visited: the next `wait` must not sleep.
    ready_unseen: bool,
}

impl StdStack {
    /// A stack that binds `0.0.0.0`, listens with a backlog of [`DEFAULT_BACKLOG`] and gives
    /// connects [`DEFAULT_CONNECT_TIMEOUT`].
    pub fn new() -> Result<Self, Error> {
        let poller = Poller::new().map_err(|e| Error::new("create the readiness poller", e))?;
        Ok(Self {
            poller: Arc::new(poller),
            events: Events::new(),
            sockets: HashMap::new(),
            next_id: 0,
            bind_address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            backlog: DEFAULT_BACKLOG,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            nodelay: false,
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

    /// The address that `bind` uses.
    pub fn bind_address(&self) -> IpAddr {
        self.bind_address
    }

    /// A handle that wakes [`wait`](Self::wait) from another thread.
    pub fn notifier(&self) -> Notifier {
        Notifier {
            poller: Arc::clone(&self.poller),
        }
    }

    /// The local address of a bound, listening or connected socket: after binding port 0,
    /// the port that the system chose.
    pub fn local_addr(&self, socket: &TcpSocket) -> Result<SocketAddr, Error> {
        let entry = self.entry(socket)?;
        let os = entry
            .state
            .socket()
            .ok_or_else(|| Error::new("local address", io::ErrorKind::NotConnected.into()))?;
        os.local_addr()
            .map(|address| to_std(&address))
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
        let timeout = match core::mem::take(&mut self.ready_unseen) {
            true => Some(Duration::ZERO),
            false => timeout,
        };
        self.read_readiness(timeout)
    }

    /// Arms the poller with what each socket waits for and reads what is ready, waiting up to
    /// `timeout`.
    fn read_readiness(&mut self, timeout: Option<Duration>) -> Result<usize, Error> {
        let now = Instant::now();
        let connect_deadline = self
            .sockets
            .values()
            .filter_map(|entry| match entry.state {
                State::Connecting { deadline, .. } => Some(deadline.saturating_duration_since(now)),
                _ => None,
            })
            .min();
        let timeout = match (timeout, connect_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        for (&id, entry) in &mut self.sockets {
            let Some(os) = entry.state.socket() else {
                continue;
            };
            if entry.armed != Some(entry.wanted) {
                self.poller
                    .modify(os, entry.wanted.event(id))
                    .map_err(|e| Error::new("arm the readiness poller", e))?;
                entry.armed = Some(entry.wanted);
            }
        }
        self.events.clear();
        let ready = self
            .poller
            .wait(&mut self.events, timeout)
            .map_err(|e| Error::new("wait for socket readiness", e))?;
        for event in self.events.iter() {
            if let Some(entry) = self.sockets.get_mut(&event.key) {
                // Oneshot: the poller disarmed this socket when it reported it.
                entry.armed = Some(Interest::NONE);
                entry.wanted.readable &= !event.readable;
                entry.wanted.writable &= !event.writable;
            }
        }
        self.refreshed = Instant::now();
        Ok(ready)
    }

    /// Whether socket `id` is still known not to be ready for reading (`readable`) or
    /// writing, without a system call on it: see [`READINESS_REFRESH`].
    fn known_blocked(&mut self, id: usize, readable: bool) -> Result<bool, Error> {
        let blocked = |stack: &Self| {
            stack.sockets.get(&id).is_some_and(|entry| {
                if readable {
                    entry.wanted.readable
                } else {
                    entry.wanted.writable
                }
            })
        };
        if !blocked(self) {
            return Ok(false);
        }
        if self.refreshed.elapsed() >= READINESS_REFRESH
            && self.read_readiness(Some(Duration::ZERO))? > 0
        {
            self.ready_unseen = true;
        }
        Ok(blocked(self))
    }

    fn entry(&self, socket: &TcpSocket) -> Result<&Entry, Error> {
        self.sockets.get(&socket.id).ok_or_else(|| unknown(socket))
    }

    fn adopt(&mut self, socket: Socket, peer: SocketAddr) -> io::Result<TcpSocket> {
        socket.set_nonblocking(true)?;
        if self.nodelay {
            socket.set_tcp_nodelay(true)?;
        }
        let id = self.next_id;
        register(&self.poller, id, &socket)?;
        self.next_id += 1;
        self.sockets.insert(
            id,
            Entry {
                state: State::Connected { socket, peer },
                wanted: Interest::NONE,
                armed: Some(Interest::NONE),
            },
        );
        Ok(TcpSocket { id })
    }
}

impl Drop for StdStack {
    fn drop(&mut self) {
        for entry in self.sockets.values() {
            if let Some(os) = entry.state.socket() {
                let _ = self.poller.delete(os);
            }
        }
    }
}

impl core::fmt::Debug for StdStack {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("StdStack")
            .field("sockets", &self.sockets.len())
            .field("bind_address", &self.bind_address)
            .field("backlog", &self.backlog)
            .field("connect_timeout", &self.connect_timeout)
            .field("nodelay", &self.nodelay)
            .finish_non_exhaustive()
    }
}

fn register(poller: &Poller, id: usize, socket: &Socket) -> io::Result<()> {
    // SAFETY: every registered socket is owned by `StdStack::sockets` and deleted from the
    // poller before it is dropped: in `close`, after a failed connect, and in `Drop`.
    #[allow(unsafe_code)]
    unsafe {
        poller.add(socket, Event::none(id))
    }
}

fn open(poller: &Poller, id: usize, address: SocketAddr) -> io::Result<Socket> {
    let socket = nonblocking(address)?;
    register(poller, id, &socket)?;
    Ok(socket)
}

/// A non-blocking TCP socket of `address`'s family.
fn nonblocking(address: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_nonblocking(true)?;
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
    let socket = nonblocking(address)?;
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
        let id = self.next_id;
        self.next_id += 1;
        self.sockets.insert(
            id,
            Entry {
                state: State::Unopened,
                wanted: Interest::NONE,
                armed: None,
            },
        );
        Ok(TcpSocket { id })
    }

    fn connect(&mut self, socket: &mut TcpSocket, remote: SocketAddr) -> nb::Result<(), Error> {
        let operation = || format!("connect to {remote}");
        let entry = self
            .sockets
            .get_mut(&socket.id)
            .ok_or_else(|| unknown(socket))?;
        let outcome = match &entry.state {
            State::Unopened => {
                let os = open(&self.poller, socket.id, remote)
                    .map_err(|e| Error::new(operation(), e))?;
                entry.armed = Some(Interest::NONE);
                match os.connect(&remote.into()) {
                    Ok(()) => Ok(os),
                    Err(e) if is_in_progress(&e) => {
                        entry.state = State::Connecting {
                            socket: os,
                            deadline: Instant::now() + self.connect_timeout,
                        };
                        entry.wanted.writable = true;
                        return Err(nb::Error::WouldBlock);
                    }
                    Err(e) => Err((os, e)),
                }
            }
            State::Connecting {
                socket: os,
                deadline,
            } => {
                let failure = match os.take_error() {
                    Ok(Some(e)) | Err(e) => Some(e),
                    Ok(None) => match os.peer_addr() {
                        Ok(_) => None,
                        Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                            if Instant::now() < *deadline {
                                entry.wanted.writable = true;
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
                let State::Connecting { socket: os, .. } =
                    core::mem::replace(&mut entry.state, State::Unopened)
                else {
                    unreachable!("matched Connecting above");
                };
                entry.wanted = Interest::NONE;
                match failure {
                    None => Ok(os),
                    Some(e) => Err((os, e)),
                }
            }
            State::Connected { .. } => return Ok(()),
            State::Bound(_) | State::Listening(_) => {
                return Err(nb::Error::Other(wrong_state(operation())))
            }
        };
        match outcome {
            Ok(os) => {
                if self.nodelay {
                    let _ = os.set_tcp_nodelay(true);
                }
                entry.state = State::Connected {
                    socket: os,
                    peer: remote,
                };
                Ok(())
            }
            Err((os, e)) => {
                // Back to Unopened, so that connect may be tried again on this socket.
                let _ = self.poller.delete(&os);
                entry.state = State::Unopened;
                entry.armed = None;
                Err(nb::Error::Other(Error::new(operation(), e)))
            }
        }
    }

    fn send(&mut self, socket: &mut TcpSocket, buffer: &[u8]) -> nb::Result<usize, Error> {
        if self.known_blocked(socket.id, false)? {
            return Err(nb::Error::WouldBlock);
        }
        let entry = self
            .sockets
            .get_mut(&socket.id)
            .ok_or_else(|| unknown(socket))?;
        let (os, peer) = match &entry.state {
            State::Connected { socket, peer } => (socket, *peer),
            State::Connecting { .. } => return Err(nb::Error::WouldBlock),
            _ => return Err(nb::Error::Other(wrong_state("send".into()))),
        };
        if buffer.is_empty() {
            return Ok(0);
        }
        loop {
            match os.send_with_flags(buffer, SEND_FLAGS) {
                Ok(sent) => return Ok(sent),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    entry.wanted.writable = true;
                    return Err(nb::Error::WouldBlock);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(nb::Error::Other(Error::new(format!("send to {peer}"), e))),
            }
        }
    }

    /// Receives into `buffer`; an empty `buffer` receives nothing and returns `WouldBlock`
    /// (never `Ok(0)`, which means end of stream).
    fn receive(&mut self, socket: &mut TcpSocket, buffer: &mut [u8]) -> nb::Result<usize, Error> {
        if self.known_blocked(socket.id, true)? {
            return Err(nb::Error::WouldBlock);
        }
        let entry = self
            .sockets
            .get_mut(&socket.id)
            .ok_or_else(|| unknown(socket))?;
        let (mut os, peer) = match &entry.state {
            State::Connected { socket, peer } => (socket, *peer),
            State::Connecting { .. } => return Err(nb::Error::WouldBlock),
            _ => return Err(nb::Error::Other(wrong_state("receive".into()))),
        };
        if buffer.is_empty() {
            return Err(nb::Error::WouldBlock);
        }
        loop {
            match os.read(buffer) {
                Ok(received) => return Ok(received),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    entry.wanted.readable = true;
                    return Err(nb::Error::WouldBlock);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(nb::Error::Other(Error::new(
                        format!("receive from {peer}"),
                        e,
                    )))
                }
            }
        }
    }

    fn close(&mut self, socket: TcpSocket) -> Result<(), Error> {
        let entry = self
            .sockets
            .remove(&socket.id)
            .ok_or_else(|| unknown(&socket))?;
        if let Some(os) = entry.state.socket() {
            self.poller.delete(os).map_err(|e| Error::new("close", e))?;
        }
        Ok(())
    }
}

impl TcpFullStack for StdStack {
    fn bind(&mut self, socket: &mut TcpSocket, local_port: u16) -> Result<(), Error> {
        let address = SocketAddr::new(self.bind_address, local_port);
        let operation = || format!("bind {address}");
        if !matches!(self.entry(socket)?.state, State::Unopened) {
            return Err(wrong_state(operation()));
        }
        let os = bound(address).map_err(|e| Error::new(operation(), e))?;
        register(&self.poller, socket.id, &os).map_err(|e| Error::new(operation(), e))?;
        let entry = self
            .sockets
            .get_mut(&socket.id)
            .ok_or_else(|| unknown(socket))?;
        entry.state = State::Bound(os);
        entry.armed = Some(Interest::NONE);
        Ok(())
    }

    fn listen(&mut self, socket: &mut TcpSocket) -> Result<(), Error> {
        let entry = self
            .sockets
            .get_mut(&socket.id)
            .ok_or_else(|| unknown(socket))?;
        let State::Bound(os) = &entry.state else {
            return Err(wrong_state("listen".into()));
        };
        listen(os, self.backlog)?;
        let State::Bound(os) = core::mem::replace(&mut entry.state, State::Unopened) else {
            unreachable!("matched Bound above");
        };
        entry.state = State::Listening(os);
        Ok(())
    }

    fn accept(&mut self, socket: &mut TcpSocket) -> nb::Result<(TcpSocket, SocketAddr), Error> {
        if self.known_blocked(socket.id, true)? {
            return Err(nb::Error::WouldBlock);
        }
        let entry = self
            .sockets
            .get_mut(&socket.id)
            .ok_or_else(|| unknown(socket))?;
        let State::Listening(listener) = &mut entry.state else {
            return Err(nb::Error::Other(wrong_state("accept".into())));
        };
        let (client, address) = loop {
            match listener.accept() {
                Ok(accepted) => break accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    entry.wanted.readable = true;
                    return Err(nb::Error::WouldBlock);
                }
                Err(e) if is_transient_accept_error(&e) => continue,
                Err(e) => return Err(nb::Error::Other(Error::new("accept", e))),
            }
        };
        let peer = to_std(&address);
        let accepted = self
            .adopt(client, peer)
            .map_err(|e| Error::new(format!("accept {peer}"), e))?;
        Ok((accepted, peer))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::Write;
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
        let id = server.id();
        stack.close(server).unwrap();
        let stale = TcpSocket { id };
        assert!(stack.local_addr(&stale).is_err());
    }

    #[test]
    fn durations_read_like_a_person_wrote_them() {
        assert_eq!(human(Duration::from_secs(3)), "3 s");
        assert_eq!(human(Duration::from_millis(250)), "250 ms");
    }
}
