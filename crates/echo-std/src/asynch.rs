//! [`AsyncStack`]: the host's TCP for the async echo roles ([`echo::asynch`]): edge-nal 0.7's
//! `TcpBind`/`TcpAccept` and [`BindAddress`] for the server, embedded-nal-async 0.9's
//! `TcpConnect` for the client, on async-io; its sockets are edge-nal-std's.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use std::{fmt, io};

use async_io::{Async, Timer};
use async_lock::{Semaphore, SemaphoreGuard};
use echo::asynch::edge_nal::{Close, Readable, TcpAccept, TcpBind, TcpShutdown, TcpSplit};
use echo::asynch::embedded_io_async::{ErrorType, Read, Write};
use echo::asynch::embedded_nal_async::TcpConnect;
use echo::asynch::BindAddress;
use edge_nal_std::TcpSocket;

use crate::stack::{
    bound, human, is_transient_accept_error, listen, lock, reachable, unmapped, ReadAhead,
    DEFAULT_BACKLOG, DEFAULT_CONNECT_TIMEOUT,
};
use crate::Error;

/// The host's TCP/IP stack for the async echo roles, on async-io: edge-nal's [`TcpBind`] (its
/// [`Acceptor`] is this crate's own), [`BindAddress`], and embedded-nal-async's
/// [`TcpConnect`]. Its connections ([`Connection`]) are edge-nal-std's sockets, with this
/// crate's [`Error`] (the operation and the peer in every message, as [`StdStack`]'s).
///
/// It binds, listens and connects as [`StdStack`] does: the address it was configured with in
/// place of the unspecified one the echo server asks for, `SO_REUSEADDR`, the listen backlog
/// asked for, port 0 for any free port (and [`BindAddress`] then says which), a connect
/// timeout, IPv4 peers of a dual-stack listener shown as IPv4.
///
/// # Why its own acceptor, not edge-nal-std's
/// - **The backlog and the bind address.** edge-nal-std binds through
///   `std::net::TcpListener::bind`: the backlog is std's 128, with no way to ask for the
///   tutorial's `listen(3)` (`--backlog`), and without `SO_REUSEADDR` a server restarted right
///   away cannot bind its port again. This acceptor binds through socket2 with both, like
///   [`StdStack`].
/// - **Port 0 and the address on the screen.** edge-nal's `TcpBind` has no call for the bound
///   address, and edge-nal-std's acceptor does not show its listener; this one does
///   ([`Acceptor::local_addr`]), which [`BindAddress`] needs to show the real port and, for a
///   wildcard bind, this machine's own address (the same answer as [`StdStack`]'s
///   [`LocalAddress`](echo::LocalAddress)).
/// - **A peer that resets before it is accepted.** edge-nal-std's `accept` asks the accepted
///   socket for its peer (`peer_addr()`) after `accept(2)`; when that peer already reset,
///   Linux hands the connection out all the same and `peer_addr()` fails, so one hostile
///   client turns into an accept error, which the echo server reports as
///   [`Event::ListenFailed`](echo::Event::ListenFailed) and answers with a backoff of that
///   accept. This acceptor uses the address `accept(2)` returns: that connection is served
///   and ends alone (its first read sees the reset), and the errors `accept(2)` returns for
///   one aborted connection are skipped, as [`StdStack`] does.
///
/// [`StdStack`]: crate::StdStack
#[derive(Debug)]
pub struct AsyncStack {
    bind_address: IpAddr,
    backlog: u32,
    connect_timeout: Duration,
    accept_limit: Option<usize>,
    received: AtomicU64,
    sent: AtomicU64,
}

impl AsyncStack {
    /// A stack that binds `0.0.0.0`, listens with a backlog of [`DEFAULT_BACKLOG`] and gives
    /// connects [`DEFAULT_CONNECT_TIMEOUT`], as [`StdStack::new`](crate::StdStack::new).
    pub fn new() -> Self {
        Self {
            bind_address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            backlog: DEFAULT_BACKLOG,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            accept_limit: None,
            received: AtomicU64::new(0),
            sent: AtomicU64::new(0),
        }
    }

    /// Makes [`TcpBind::bind`] of an unspecified address (what the echo server asks for) bind
    /// `address` instead, with the port asked for (e.g. `127.0.0.1`, or `::` for both
    /// families where the system allows it). A specific address is bound as asked.
    pub fn with_bind_address(mut self, address: IpAddr) -> Self {
        self.bind_address = address;
        self
    }

    /// Makes the listener queue up to `backlog` connections not yet accepted.
    pub fn with_backlog(mut self, backlog: u32) -> Self {
        self.backlog = backlog;
        self
    }

    /// Makes a connect that has not completed after `timeout` fail.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Makes each acceptor hand out at most `limit` connections at once (`None`: no limit):
    /// an `accept` waits, without taking a connection from the system, while `limit` of its
    /// connections are alive, so further clients wait in the backlog. For a server whose
    /// client count is chosen at run time over an [`AsyncEchoServer`] whose `N` is a
    /// constant: see [`Board::serve`](crate::Board::serve).
    ///
    /// [`AsyncEchoServer`]: echo::asynch::AsyncEchoServer
    pub fn with_accept_limit(mut self, limit: Option<usize>) -> Self {
        self.accept_limit = limit;
        self
    }

    pub(crate) fn set_accept_limit(&mut self, limit: Option<usize>) -> Option<usize> {
        core::mem::replace(&mut self.accept_limit, limit)
    }

    /// The address that binding an unspecified address binds.
    pub fn bind_address(&self) -> IpAddr {
        self.bind_address
    }

    /// Bytes read from all this stack's connections so far (a board's live summary: the async
    /// roles give their counters only when they return).
    pub fn bytes_received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Bytes written to all this stack's connections so far.
    pub fn bytes_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    fn connection<'a>(
        &'a self,
        stream: Async<TcpStream>,
        peer: SocketAddr,
        permit: Option<SemaphoreGuard<'a>>,
    ) -> Connection<'a> {
        Connection {
            socket: TcpSocket::new(stream),
            peer,
            stack: self,
            _permit: permit,
            ahead: Mutex::default(),
        }
    }
}

impl Default for AsyncStack {
    fn default() -> Self {
        Self::new()
    }
}

impl TcpBind for AsyncStack {
    type Error = Error;
    type Accept<'a>
        = Acceptor<'a>
    where
        Self: 'a;

    /// Binds `local` (the stack's bind address if `local`'s is unspecified) with
    /// `SO_REUSEADDR` and listens with the stack's backlog.
    async fn bind(&self, local: SocketAddr) -> Result<Acceptor<'_>, Error> {
        let address = match local.ip().is_unspecified() {
            true => SocketAddr::new(self.bind_address, local.port()),
            false => local,
        };
        let socket = bound(address).map_err(|e| Error::new(format!("bind {address}"), e))?;
        listen(&socket, self.backlog)?;
        let listener = Async::new(TcpListener::from(socket))
            .map_err(|e| Error::new(format!("listen on {address}"), e))?;
        Ok(Acceptor {
            listener,
            stack: self,
            permits: self.accept_limit.map(Semaphore::new),
        })
    }
}

impl BindAddress for AsyncStack {
    /// Where clients reach the acceptor: its real port, and this machine's own address for a
    /// wildcard bind (what [`StdStack`](crate::StdStack) answers too); `None` if the system
    /// cannot tell the listener's address.
    fn bound_address(&self, acceptor: &Acceptor<'_>, _requested: SocketAddr) -> Option<SocketAddr> {
        acceptor.local_addr().ok().map(reachable)
    }
}

/// A listening socket of an [`AsyncStack`]: edge-nal's [`TcpAccept`], `accept` awaited by any
/// number of tasks at once.
#[derive(Debug)]
pub struct Acceptor<'a> {
    listener: Async<TcpListener>,
    stack: &'a AsyncStack,
    /// One permit per connection handed out, with [`AsyncStack::with_accept_limit`].
    permits: Option<Semaphore>,
}

impl Acceptor<'_> {
    /// The address the listener is bound to: after binding port 0, the port the system chose.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.get_ref().local_addr().map(unmapped)
    }
}

impl TcpAccept for Acceptor<'_> {
    type Error = Error;
    type Socket<'b>
        = Connection<'b>
    where
        Self: 'b;

    /// The next connection and its peer's address, as `accept(2)` gives it (see
    /// [`AsyncStack`]: never asked of the socket afterwards); errors that concern one aborted
    /// connection are skipped. With an accept limit, waits first until fewer connections than
    /// the limit are alive.
    async fn accept(&self) -> Result<(SocketAddr, Connection<'_>), Error> {
        let permit = match &self.permits {
            Some(permits) => Some(permits.acquire().await),
            None => None,
        };
        loop {
            let accepted = when_ready(
                || self.listener.readable(),
                || self.listener.get_ref().accept(),
            )
            .await;
            match accepted.and_then(|(stream, peer)| Ok((Async::new(stream)?, peer))) {
                Ok((stream, peer)) => {
                    let peer = unmapped(peer);
                    return Ok((peer, self.stack.connection(stream, peer, permit)));
                }
                Err(e) if is_transient_accept_error(&e) => continue,
                Err(e) => return Err(Error::new("accept", e)),
            }
        }
    }
}

impl TcpConnect for AsyncStack {
    type Error = Error;
    type Connection<'a>
        = Connection<'a>
    where
        Self: 'a;

    /// Connects to `remote`, failing after the stack's connect timeout.
    async fn connect<'a>(&'a self, remote: SocketAddr) -> Result<Connection<'a>, Error> {
        let timeout = async {
            Timer::after(self.connect_timeout).await;
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("timed out after {}", human(self.connect_timeout)),
            ))
        };
        let stream = futures_lite::future::or(Async::<TcpStream>::connect(remote), timeout)
            .await
            .map_err(|e| Error::new(format!("connect to {remote}"), e))?;
        Ok(self.connection(stream, remote, None))
    }
}

/// A TCP connection of an [`AsyncStack`], accepted or connected: an edge-nal-std
/// [`TcpSocket`] whose errors name the operation and the peer ([`Error`]), whose
/// [`abort`](TcpShutdown::abort) resets the connection, and whose bytes the stack counts.
/// Its reads and writes are this crate's own: a system call only once the reactor reports
/// the socket ready (see `when_ready`), reads through a read-ahead. Closed when dropped.
pub struct Connection<'a> {
    socket: TcpSocket,
    peer: SocketAddr,
    stack: &'a AsyncStack,
    /// Given back when the connection is dropped, so that the acceptor may hand out another.
    _permit: Option<SemaphoreGuard<'a>>,
    /// Bytes read beyond a small read's buffer ([`READ_AHEAD`](crate::stack::READ_AHEAD), as
    /// [`StdStack`]'s receive): one `recvfrom` for up to 64 KiB where the echo reads 1 KiB at
    /// a time.
    ///
    /// [`StdStack`]: crate::StdStack
    ahead: Mutex<ReadAhead>,
}

impl Connection<'_> {
    /// The peer's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    fn half(&self) -> Half<'_> {
        Half {
            socket: &self.socket,
            peer: self.peer,
            stack: self.stack,
            ahead: &self.ahead,
        }
    }
}

impl fmt::Debug for Connection<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl ErrorType for Connection<'_> {
    type Error = Error;
}

impl Read for Connection<'_> {
    async fn read(&mut self, buffer: &mut [u8]) -> Result<usize, Error> {
        self.half().read(buffer).await
    }
}

impl Write for Connection<'_> {
    async fn write(&mut self, bytes: &[u8]) -> Result<usize, Error> {
        self.half().write(bytes).await
    }

    async fn flush(&mut self) -> Result<(), Error> {
        self.half().flush().await
    }
}

impl Readable for Connection<'_> {
    async fn readable(&mut self) -> Result<(), Error> {
        self.half().readable().await
    }
}

impl TcpSplit for Connection<'_> {
    type Read<'b>
        = Half<'b>
    where
        Self: 'b;
    type Write<'b>
        = Half<'b>
    where
        Self: 'b;

    fn split(&mut self) -> (Half<'_>, Half<'_>) {
        (self.half(), self.half())
    }
}

impl TcpShutdown for Connection<'_> {
    /// `shutdown(2)`: the FIN follows what the system still buffers.
    async fn close(&mut self, what: Close) -> Result<(), Error> {
        self.socket
            .close(what)
            .await
            .map_err(|e| Error::new(format!("close the connection with {}", self.peer), e))
    }

    /// Makes the close a reset (`SO_LINGER` 0): the RST goes out when the connection is
    /// dropped, which the echo roles do right after. (edge-nal-std's own `abort` does
    /// nothing, and a dropped std socket sends a FIN.)
    async fn abort(&mut self) -> Result<(), Error> {
        socket2::SockRef::from(self.socket.get_ref())
            .set_linger(Some(Duration::ZERO))
            .map_err(|e| Error::new(format!("reset the connection with {}", self.peer), e))
    }
}

/// A half of a [`Connection`] ([`TcpSplit`]); reads and writes of both halves may be awaited
/// at once.
pub struct Half<'a> {
    socket: &'a TcpSocket,
    peer: SocketAddr,
    stack: &'a AsyncStack,
    ahead: &'a Mutex<ReadAhead>,
}

impl fmt::Debug for Half<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Half")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl ErrorType for Half<'_> {
    type Error = Error;
}

impl Half<'_> {
    /// The error of `doing` (`"receive from"`) with the peer.
    fn failed(&self, doing: &str, error: io::Error) -> Error {
        Error::new(format!("{doing} {}", self.peer), error)
    }
}

impl Read for Half<'_> {
    async fn read(&mut self, buffer: &mut [u8]) -> Result<usize, Error> {
        let socket: &Async<TcpStream> = self.socket;
        let stream = socket.get_ref();
        let ahead = self.ahead;
        let read = || lock(ahead).receive(buffer, |into| receive(stream, into));
        match when_ready(|| socket.readable(), read).await {
            Ok(read) => {
                self.stack
                    .received
                    .fetch_add(read as u64, Ordering::Relaxed);
                Ok(read)
            }
            Err(e) => Err(self.failed("receive from", e)),
        }
    }
}

impl Write for Half<'_> {
    async fn write(&mut self, bytes: &[u8]) -> Result<usize, Error> {
        let socket: &Async<TcpStream> = self.socket;
        let stream = socket.get_ref();
        let write = || send(stream, bytes);
        match when_ready(|| socket.writable(), write).await {
            Ok(written) => {
                self.stack.sent.fetch_add(written as u64, Ordering::Relaxed);
                Ok(written)
            }
            Err(e) => Err(self.failed("send to", e)),
        }
    }

    async fn flush(&mut self) -> Result<(), Error> {
        let mut socket = self.socket;
        let flushed = socket.flush().await;
        flushed.map_err(|e| self.failed("send to", e))
    }
}

impl Readable for Half<'_> {
    async fn readable(&mut self) -> Result<(), Error> {
        if lock(self.ahead).holds() {
            return Ok(());
        }
        let mut socket = self.socket;
        let readable = socket.readable().await;
        readable.map_err(|e| self.failed("wait for data from", e))
    }
}

/// `recv(2)` into `buffer`, without blocking (the socket is non-blocking).
///
/// A system call of its own (rustix), not the C library's `recv`: async-io runs a thread of
/// its own, and in a process of several threads the C library brackets every `recv` and
/// `send` with cancellation bookkeeping that the echo never uses.
#[cfg(unix)]
fn receive(stream: &TcpStream, buffer: &mut [u8]) -> io::Result<usize> {
    Ok(rustix::net::recv(stream, buffer, rustix::net::RecvFlags::empty())?.0)
}

/// `send(2)` of `bytes`, without blocking; see [`receive`].
#[cfg(unix)]
fn send(stream: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    Ok(rustix::net::send(
        stream,
        bytes,
        rustix::net::SendFlags::NOSIGNAL,
    )?)
}

#[cfg(not(unix))]
fn receive(mut stream: &TcpStream, buffer: &mut [u8]) -> io::Result<usize> {
    io::Read::read(&mut stream, buffer)
}

#[cfg(not(unix))]
fn send(mut stream: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    io::Write::write(&mut stream, bytes)
}

/// `operation` (a non-blocking system call) once now, then again each time the reactor reports
/// the readiness that `ready` (made anew each time) waits for, until it does not block.
///
/// async-io's own `read`, `write` and `accept` try their system call every time they are
/// polled, and the async server polls every connection and every pending accept whenever any
/// of them is woken (they share one task): a pass woken by one busy connection cost a failing
/// `recvfrom` for every idle connection and an `accept4` for every pending accept. Waiting on
/// the reactor's readiness instead makes a pass over idle sockets a check of a flag each.
async fn when_ready<T, R>(
    mut ready: impl FnMut() -> R,
    mut operation: impl FnMut() -> io::Result<T>,
) -> io::Result<T>
where
    R: Future<Output = io::Result<()>>,
{
    loop {
        match operation() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => ready().await?,
            done => return done,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::net::{Ipv6Addr, Shutdown};
    use std::time::Instant;

    use echo::asynch::embedded_io_async::{Error as _, ErrorKind};
    use futures_lite::future::or;

    use super::*;

    const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn loopback_stack() -> AsyncStack {
        AsyncStack::new().with_bind_address(LOOPBACK)
    }

    /// What the echo server asks a stack for: the unspecified address, port 0.
    fn any_port() -> SocketAddr {
        SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0)
    }

    /// Runs `future` to its end, failing the test after 5 s.
    fn within<T>(future: impl Future<Output = T>) -> T {
        let timeout = async {
            Timer::after(Duration::from_secs(5)).await;
            None
        };
        async_io::block_on(or(async { Some(future.await) }, timeout)).expect("took over 5 s")
    }

    /// Whether `future` is still pending after `wait`.
    fn still_pending<T>(future: impl Future<Output = T>, wait: Duration) -> bool {
        let timeout = async {
            Timer::after(wait).await;
            None
        };
        async_io::block_on(or(async { Some(future.await) }, timeout)).is_none()
    }

    fn reset(stream: TcpStream) {
        socket2::SockRef::from(&stream)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(stream);
    }

    use std::future::Future;

    #[test]
    fn binds_the_configured_address_in_place_of_the_unspecified_one_and_reports_the_real_port() {
        let stack = loopback_stack();
        let acceptor = within(stack.bind(any_port())).unwrap();
        let local = acceptor.local_addr().unwrap();
        assert_eq!(local.ip(), LOOPBACK);
        assert_ne!(local.port(), 0);
        assert_eq!(stack.bound_address(&acceptor, any_port()), Some(local));
    }

    #[test]
    fn a_specific_address_is_bound_as_asked() {
        let stack = AsyncStack::new();
        let acceptor = within(stack.bind(SocketAddr::new(LOOPBACK, 0))).unwrap();
        assert_eq!(acceptor.local_addr().unwrap().ip(), LOOPBACK);
    }

    #[test]
    fn a_wildcard_acceptor_is_reached_where_the_non_blocking_stack_says() {
        let stack = AsyncStack::new();
        let acceptor = within(stack.bind(any_port())).unwrap();
        let bound = acceptor.local_addr().unwrap();
        assert!(bound.ip().is_unspecified());
        let reachable = stack.bound_address(&acceptor, any_port()).unwrap();
        let own = crate::stack::own_address(Ipv4Addr::UNSPECIFIED.into());
        assert_eq!(reachable, SocketAddr::new(own, bound.port()));
        assert!(!reachable.ip().is_unspecified());
        // A client can connect to the address shown.
        TcpStream::connect(reachable).unwrap();
    }

    #[test]
    fn a_port_in_use_is_a_bind_error_that_names_the_address() {
        let taken = TcpListener::bind((LOOPBACK, 0)).unwrap();
        let address = taken.local_addr().unwrap();
        let stack = loopback_stack();
        let error = within(stack.bind(SocketAddr::new(
            Ipv4Addr::UNSPECIFIED.into(),
            address.port(),
        )))
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("bind {address}: Address already in use (os error 98)")
        );
    }

    #[test]
    fn the_listener_queues_only_the_backlog_asked_for() {
        let stack = loopback_stack().with_backlog(1);
        let acceptor = within(stack.bind(any_port())).unwrap();
        let address = acceptor.local_addr().unwrap();
        let mut queued = Vec::new();
        while let Ok(stream) = TcpStream::connect_timeout(&address, Duration::from_millis(200)) {
            queued.push(stream);
            // std's own listeners queue 128.
            assert!(queued.len() < 8, "the backlog of 1 was not used");
        }
        assert!(!queued.is_empty());
    }

    #[test]
    fn accept_gives_the_peer_address_and_a_connection_that_echoes_and_counts() {
        let stack = loopback_stack();
        let acceptor = within(stack.bind(any_port())).unwrap();
        let mut client = TcpStream::connect(acceptor.local_addr().unwrap()).unwrap();
        let (peer, mut connection) = within(acceptor.accept()).unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        assert_eq!(connection.peer(), peer);
        client.write_all(b"hello").unwrap();
        let mut buffer = [0; 16];
        let n = within(connection.read(&mut buffer)).unwrap();
        assert_eq!(&buffer[..n], b"hello");
        assert_eq!(within(connection.write(&buffer[..n])).unwrap(), n);
        let mut echo = [0; 5];
        client.read_exact(&mut echo).unwrap();
        assert_eq!(&echo, b"hello");
        assert_eq!((stack.bytes_received(), stack.bytes_sent()), (5, 5));
        client.shutdown(Shutdown::Write).unwrap();
        assert_eq!(
            within(connection.read(&mut buffer)).unwrap(),
            0,
            "end of stream"
        );
    }

    #[test]
    fn small_reads_get_every_byte_in_order_through_the_read_ahead_then_the_end() {
        let stack = loopback_stack();
        let acceptor = within(stack.bind(any_port())).unwrap();
        let mut client = TcpStream::connect(acceptor.local_addr().unwrap()).unwrap();
        let (_, mut connection) = within(acceptor.accept()).unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let sent = data.clone();
        let writer = std::thread::spawn(move || {
            client.write_all(&sent).unwrap();
            client.shutdown(Shutdown::Write).unwrap();
            client
        });
        let mut received = Vec::new();
        // Odd sizes, so reads end inside what was read ahead.
        let mut buffer = [0; 1000];
        loop {
            match within(connection.read(&mut buffer)).unwrap() {
                0 => break,
                n => received.extend_from_slice(&buffer[..n]),
            }
        }
        drop(writer.join().unwrap());
        assert!(received == data, "bytes lost or reordered");
        assert_eq!(stack.bytes_received(), data.len() as u64);
    }

    #[test]
    fn readable_is_ready_at_once_while_bytes_read_ahead_are_waiting() {
        let stack = loopback_stack();
        let acceptor = within(stack.bind(any_port())).unwrap();
        let mut client = TcpStream::connect(acceptor.local_addr().unwrap()).unwrap();
        let (_, mut connection) = within(acceptor.accept()).unwrap();
        client.write_all(b"0123456789").unwrap();
        let mut first = [0; 4];
        assert_eq!(within(connection.read(&mut first)).unwrap(), 4);
        // The kernel holds nothing more: only the read-ahead can make this ready.
        within(connection.readable()).unwrap();
        let mut rest = [0; 16];
        assert_eq!(within(connection.read(&mut rest)).unwrap(), 6);
        assert_eq!(&rest[..6], b"456789");
        assert!(still_pending(
            connection.readable(),
            Duration::from_millis(100)
        ));
    }

    #[test]
    fn a_peer_that_reset_before_it_was_accepted_is_accepted_with_its_address() {
        let stack = loopback_stack();
        let acceptor = within(stack.bind(any_port())).unwrap();
        let address = acceptor.local_addr().unwrap();
        let hostile = TcpStream::connect(address).unwrap();
        let hostile_address = hostile.local_addr().unwrap();
        reset(hostile);
        std::thread::sleep(Duration::from_millis(50));
        let (peer, mut connection) = within(acceptor.accept()).unwrap();
        assert_eq!(peer, hostile_address);
        let error = within(connection.read(&mut [0; 8])).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::ConnectionReset, "{error}");
        // The next client is accepted as usual.
        let client = TcpStream::connect(address).unwrap();
        let (peer, _) = within(acceptor.accept()).unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
    }

    /// Why the acceptor is this crate's own: edge-nal-std's fails on the same peer (if this
    /// test fails, edge-nal-std changed, and the `AsyncStack` docs must say so).
    #[test]
    fn edge_nal_std_turns_a_peer_that_reset_before_it_was_accepted_into_an_accept_error() {
        // Its acceptor does not tell its port: take one that is free now.
        let address = TcpListener::bind((LOOPBACK, 0))
            .unwrap()
            .local_addr()
            .unwrap();
        let stack = edge_nal_std::Stack::new();
        let acceptor = within(stack.bind(address)).unwrap();
        reset(TcpStream::connect(address).unwrap());
        std::thread::sleep(Duration::from_millis(50));
        let accepted = within(acceptor.accept());
        let error = accepted.err().expect("edge-nal-std accepted it");
        assert_eq!(error.kind(), io::ErrorKind::NotConnected);
    }

    #[test]
    fn a_dual_stack_acceptor_reports_ipv4_peers_as_ipv4() {
        let stack = AsyncStack::new().with_bind_address(IpAddr::V6(Ipv6Addr::UNSPECIFIED));
        let acceptor = within(stack.bind(any_port())).unwrap();
        let port = acceptor.local_addr().unwrap().port();
        let client = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
        let (peer, connection) = within(acceptor.accept()).unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        assert!(peer.is_ipv4() && connection.peer().is_ipv4());
    }

    #[test]
    fn an_accept_limit_holds_further_clients_in_the_backlog_until_a_connection_ends() {
        let stack = loopback_stack().with_accept_limit(Some(1));
        let acceptor = within(stack.bind(any_port())).unwrap();
        let address = acceptor.local_addr().unwrap();
        let first = TcpStream::connect(address).unwrap();
        let second = TcpStream::connect(address).unwrap();
        let (_, connection) = within(acceptor.accept()).unwrap();
        assert!(
            still_pending(acceptor.accept(), Duration::from_millis(200)),
            "a second connection was handed out"
        );
        drop(connection);
        let (peer, _) = within(acceptor.accept()).unwrap();
        assert_eq!(peer, second.local_addr().unwrap());
        drop(first);
    }

    #[test]
    fn close_sends_the_fin_after_what_was_written_and_abort_resets() {
        let stack = loopback_stack();
        let acceptor = within(stack.bind(any_port())).unwrap();
        let address = acceptor.local_addr().unwrap();

        let mut graceful = TcpStream::connect(address).unwrap();
        let (_, mut connection) = within(acceptor.accept()).unwrap();
        within(connection.write(b"last words")).unwrap();
        within(connection.close(Close::Both)).unwrap();
        drop(connection);
        let mut received = Vec::new();
        graceful.read_to_end(&mut received).unwrap();
        assert_eq!(received, b"last words");

        let mut aborted = TcpStream::connect(address).unwrap();
        let (_, mut connection) = within(acceptor.accept()).unwrap();
        within(connection.abort()).unwrap();
        drop(connection);
        let error = aborted.read(&mut [0; 8]).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);
    }

    #[test]
    fn connects_and_a_refused_connect_names_the_address() {
        let listener = TcpListener::bind((LOOPBACK, 0)).unwrap();
        let address = listener.local_addr().unwrap();
        let stack = AsyncStack::new();
        let mut connection = within(stack.connect(address)).unwrap();
        assert_eq!(connection.peer(), address);
        let (mut accepted, _) = listener.accept().unwrap();
        within(connection.write(b"hi")).unwrap();
        let mut buffer = [0; 2];
        accepted.read_exact(&mut buffer).unwrap();
        assert_eq!(&buffer, b"hi");
        drop(listener);
        let error = within(stack.connect(address)).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::ConnectionRefused);
        assert!(
            error
                .to_string()
                .starts_with(&format!("connect to {address}: ")),
            "{error}"
        );
    }

    #[test]
    fn a_connect_that_hangs_times_out() {
        let (_listener, address, _queued) = crate::stack::tests::full_listener();
        let stack = AsyncStack::new().with_connect_timeout(Duration::from_millis(300));
        let started = Instant::now();
        let error = within(stack.connect(address)).unwrap_err();
        let took = started.elapsed();
        assert_eq!(
            error.to_string(),
            format!("connect to {address}: timed out after 300 ms")
        );
        assert!(took >= Duration::from_millis(300), "{took:?}");
        assert!(took < Duration::from_secs(3), "{took:?}");
    }
}
