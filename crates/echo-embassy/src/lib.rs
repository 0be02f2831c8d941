//! echo's async roles on embassy-net: [`Tcp`] is edge-nal's `TcpBind`/`TcpAccept`,
//! embedded-nal-async's `TcpConnect` and echo's [`BindAddress`] over one
//! [`embassy_net::Stack`], with a pool of sockets that live as long as the stack; [`Clock`]
//! is echo's async clock on embassy-time.
//!
//! ```no_run
//! use echo::asynch::AsyncEchoServer;
//! use echo::ServerConfig;
//! use echo_embassy::{Clock, Tcp, TcpBuffers, TcpOptions};
//!
//! async fn serve(stack: embassy_net::Stack<'_>, buffers: &mut TcpBuffers<6>) {
//!     // Six sockets: three clients served, one accept pending while they are (the server's
//!     // default backlog), and two for closing connections to finish in.
//!     let tcp = Tcp::<6>::new(stack, buffers, TcpOptions::new());
//!     let mut buffer = [0u8; 3 * echo::DEFAULT_BUFFER_SIZE];
//!     let mut server = AsyncEchoServer::<3>::new(ServerConfig::new(), &mut buffer);
//!     server.run(&tcp, &Clock, |event| { /* the screen, the log */ }).await;
//! }
//! ```
//!
//! # Why not edge-nal-embassy
//! edge-nal-embassy 0.9.0 implements the same traits, with two faults this crate exists to
//! avoid:
//! - its `accept` returns the socket's *local* endpoint where edge-nal promises the peer's
//!   (the screen would show the board's own address for every client); here `accept`
//!   returns [`remote_endpoint`](embassy_net::tcp::TcpSocket::remote_endpoint);
//! - its sockets (like embassy-net's own `TcpClient`) are created per connection and
//!   removed from the stack when dropped, so a connection dropped before its FIN or RST left
//!   never tells the peer. Here the sockets belong to [`Tcp`] for as long as it lives: a
//!   dropped connection is closed (FIN) and the stack still sends it; the echo roles close
//!   or abort explicitly anyway.
//!
//! It adds what embassy-net leaves to the caller: a handshake that never completes (a
//! spoofed SYN, a client that vanished) gives its socket back after
//! [`TcpOptions::handshake_timeout`] instead of holding one of the few accepts for ever; a
//! connection reset before it was accepted is not an accept error, the accept goes on.
//!
//! # Sockets
//! embassy-net has no listen backlog: a connection that arrives when no socket is accepting
//! is refused. `AsyncEchoServer::<N, BACKLOG>` keeps `N + BACKLOG` accepts pending, each on a
//! socket of the pool; a socket whose connection ended returns to the pool once its close
//! handshake is over (TIME-WAIT counts as over). Give the pool more sockets than
//! `N + BACKLOG`, so that closing connections do not delay the next accepts (an accept waits
//! for a free socket); and count them all in embassy-net's `StackResources` (it panics when
//! full).
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use core::cell::{RefCell, RefMut};
use core::fmt;
use core::net::{IpAddr, SocketAddr};

use edge_nal::{Close, Readable, TcpAccept, TcpBind, TcpShutdown, TcpSplit};
use embassy_futures::join::join;
use embassy_net::tcp::{AcceptError, ConnectError, State, TcpReader, TcpSocket, TcpWriter};
use embassy_net::{IpEndpoint, IpListenEndpoint, Stack};
use embassy_time::{Instant as EmbassyInstant, Timer};
use embedded_io_async::{ErrorKind, ErrorType, Read, Write};

use echo::asynch::BindAddress;
use echo::{Duration, Instant};

pub use echo;
pub use embassy_net;

/// How long [`Tcp`] waits before looking again for a free socket when all are busy.
const CLAIM_RETRY: embassy_time::Duration = embassy_time::Duration::from_millis(50);

/// The receive and transmit buffers of a pool of `N` sockets, `RX` and `TX` bytes each.
///
/// Large (`N * (RX + TX)` bytes): put it in a `static` (`static_cell::StaticCell`) or on the
/// heap on a PC.
pub struct TcpBuffers<const N: usize, const RX: usize = 1024, const TX: usize = 1024> {
    rx: [[u8; RX]; N],
    tx: [[u8; TX]; N],
}

impl<const N: usize, const RX: usize, const TX: usize> TcpBuffers<N, RX, TX> {
    /// Zeroed buffers.
    pub const fn new() -> Self {
        TcpBuffers {
            rx: [[0; RX]; N],
            tx: [[0; TX]; N],
        }
    }
}

impl<const N: usize, const RX: usize, const TX: usize> Default for TcpBuffers<N, RX, TX> {
    fn default() -> Self {
        Self::new()
    }
}

/// The timeouts of the pool's sockets.
///
/// Start from [`TcpOptions::new`] (or `default()`) and change what differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TcpOptions {
    /// Abort a connection whose peer stays silent this long while data or keep-alives are
    /// outstanding (smoltcp's socket timeout). Default 180 s: smoltcp backs retransmissions
    /// off up to 60 s apart, so on a lossy link a shorter timeout ends live connections.
    pub timeout: Option<Duration>,
    /// Send a keep-alive after this long idle, so that `timeout` also catches a peer that
    /// vanished while nothing was being sent. Default 20 s.
    pub keep_alive: Option<Duration>,
    /// A socket accepting whose handshake is still unfinished this long after the SYN goes
    /// back to accepting. Default 5 s.
    pub handshake_timeout: Duration,
}

impl TcpOptions {
    /// The defaults, as a `const`.
    pub const fn new() -> Self {
        TcpOptions {
            timeout: Some(Duration::from_secs(180)),
            keep_alive: Some(Duration::from_secs(20)),
            handshake_timeout: Duration::from_secs(5),
        }
    }

    /// With [`timeout`](Self::timeout).
    pub const fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// With [`keep_alive`](Self::keep_alive).
    pub const fn with_keep_alive(mut self, keep_alive: Option<Duration>) -> Self {
        self.keep_alive = keep_alive;
        self
    }

    /// With [`handshake_timeout`](Self::handshake_timeout).
    pub const fn with_handshake_timeout(mut self, handshake_timeout: Duration) -> Self {
        self.handshake_timeout = handshake_timeout;
        self
    }
}

impl Default for TcpOptions {
    fn default() -> Self {
        Self::new()
    }
}

/// What went wrong on the pool's sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing: the connection was reset (or timed out).
    ConnectionReset,
    /// The peer refused the connection, or it failed before it was established.
    ConnectionRefused,
    /// The peer did not answer the connection attempt.
    TimedOut,
    /// No route to the peer (the interface has no address yet, or no gateway for it).
    NoRoute,
    /// Port 0 cannot be listened on: embassy-net does not choose a port.
    InvalidPort,
    /// An address of a family the stack was built without (IPv6).
    Unsupported,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::ConnectionReset => "connection reset",
            Error::ConnectionRefused => "connection refused",
            Error::TimedOut => "the peer did not answer",
            Error::NoRoute => "no route to the peer",
            Error::InvalidPort => "port 0 cannot be listened on",
            Error::Unsupported => "address family not supported by the stack",
        })
    }
}

impl core::error::Error for Error {}

impl embedded_io_async::Error for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Error::ConnectionReset => ErrorKind::ConnectionReset,
            Error::ConnectionRefused => ErrorKind::ConnectionRefused,
            Error::TimedOut => ErrorKind::TimedOut,
            Error::NoRoute => ErrorKind::AddrNotAvailable,
            Error::InvalidPort => ErrorKind::InvalidInput,
            Error::Unsupported => ErrorKind::Unsupported,
        }
    }
}

impl From<embassy_net::tcp::Error> for Error {
    fn from(error: embassy_net::tcp::Error) -> Self {
        match error {
            embassy_net::tcp::Error::ConnectionReset => Error::ConnectionReset,
        }
    }
}

impl From<ConnectError> for Error {
    fn from(error: ConnectError) -> Self {
        match error {
            ConnectError::NoRoute => Error::NoRoute,
            ConnectError::TimedOut => Error::TimedOut,
            ConnectError::InvalidState | ConnectError::ConnectionReset => Error::ConnectionRefused,
        }
    }
}

/// TCP over an embassy-net stack, for echo's async roles: a pool of `N` sockets that
/// accepts (edge-nal's [`TcpBind`]) and connects (embedded-nal-async's
/// [`TcpConnect`](embedded_nal_async::TcpConnect)). See the crate docs.
pub struct Tcp<'d, const N: usize> {
    stack: Stack<'d>,
    sockets: [RefCell<TcpSocket<'d>>; N],
    options: TcpOptions,
}

impl<'d, const N: usize> Tcp<'d, N> {
    /// `N` sockets on `stack`, with `buffers`.
    pub fn new<const RX: usize, const TX: usize>(
        stack: Stack<'d>,
        buffers: &'d mut TcpBuffers<N, RX, TX>,
        options: TcpOptions,
    ) -> Self {
        let mut pairs = buffers.rx.iter_mut().zip(buffers.tx.iter_mut());
        let sockets = core::array::from_fn(|_| {
            let (rx, tx) = pairs.next().expect("N buffer pairs");
            let mut socket = TcpSocket::new(stack, rx, tx);
            // An echo answers small messages: send them at once.
            socket.set_nagle_enabled(false);
            RefCell::new(socket)
        });
        Tcp {
            stack,
            sockets,
            options,
        }
    }

    /// The stack.
    pub fn stack(&self) -> Stack<'d> {
        self.stack
    }

    /// Sockets free now (not connected, not accepting, not closing).
    pub fn free_sockets(&self) -> usize {
        self.sockets
            .iter()
            .filter(|cell| cell.try_borrow().is_ok_and(|socket| is_free(&socket)))
            .count()
    }

    /// A free socket of the pool, waiting while every socket is busy.
    async fn claim(&self) -> Connection<'_, 'd> {
        loop {
            let released = || {
                self.sockets
                    .iter()
                    .filter_map(|cell| cell.try_borrow_mut().ok())
            };
            // None free: a socket whose close the echo left to the stack (past its linger)
            // is taken back, as echo-smoltcp's listener does when it is short of sockets.
            let free = released().find(|socket| is_free(socket)).or_else(|| {
                let mut closing = released().find(|socket| is_closing(socket))?;
                closing.abort();
                Some(closing)
            });
            if let Some(mut socket) = free {
                socket.set_timeout(self.options.timeout.map(embassy_duration));
                socket.set_keep_alive(self.options.keep_alive.map(embassy_duration));
                return Connection { socket };
            }
            Timer::after(CLAIM_RETRY).await;
        }
    }
}

/// Whether a pool socket can start a connection: closed, or in TIME-WAIT (which smoltcp
/// leaves for a new `listen` or `connect`).
fn is_free(socket: &TcpSocket<'_>) -> bool {
    matches!(socket.state(), State::Closed | State::TimeWait)
}

/// Whether a pool socket is closing: our FIN sent, the peer's acknowledgement or FIN still
/// awaited.
fn is_closing(socket: &TcpSocket<'_>) -> bool {
    matches!(
        socket.state(),
        State::FinWait1 | State::FinWait2 | State::Closing | State::LastAck
    )
}

fn embassy_duration(duration: Duration) -> embassy_time::Duration {
    embassy_time::Duration::from_micros(u64::try_from(duration.as_micros()).unwrap_or(u64::MAX))
}

fn socket_addr(endpoint: IpEndpoint) -> SocketAddr {
    SocketAddr::from(endpoint)
}

/// Accepts connections on one local endpoint, each on a socket of the pool.
pub struct Acceptor<'a, 'd, const N: usize> {
    tcp: &'a Tcp<'d, N>,
    local: IpListenEndpoint,
}

impl<'d, const N: usize> TcpBind for Tcp<'d, N> {
    type Error = Error;
    type Accept<'a>
        = Acceptor<'a, 'd, N>
    where
        Self: 'a;

    /// Listening happens in `accept`, per socket (embassy-net has no listening socket): this
    /// checks the endpoint.
    async fn bind(&self, local: SocketAddr) -> Result<Acceptor<'_, 'd, N>, Error> {
        if local.port() == 0 {
            return Err(Error::InvalidPort);
        }
        let addr = match local.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => None,
            IpAddr::V4(ip) => Some(ip.into()),
            IpAddr::V6(_) => return Err(Error::Unsupported),
        };
        Ok(Acceptor {
            tcp: self,
            local: IpListenEndpoint {
                addr,
                port: local.port(),
            },
        })
    }
}

impl<'d, const N: usize> TcpAccept for Acceptor<'_, 'd, N> {
    type Error = Error;
    type Socket<'a>
        = Connection<'a, 'd>
    where
        Self: 'a;

    /// Waits for a free socket, listens on it and returns the connection once established,
    /// with the peer's address. A handshake that does not finish within
    /// [`TcpOptions::handshake_timeout`], or a connection reset before it is returned, puts
    /// the socket back to listening: neither is an accept error.
    async fn accept(&self) -> Result<(SocketAddr, Connection<'_, 'd>), Error> {
        loop {
            let mut connection = self.tcp.claim().await;
            let socket = &mut connection.socket;
            socket.set_timeout(Some(embassy_duration(self.tcp.options.handshake_timeout)));
            match socket.accept(self.local).await {
                Ok(()) => {}
                Err(AcceptError::InvalidPort) => return Err(Error::InvalidPort),
                // The socket was free when claimed: a state smoltcp does not accept in is
                // a reset or a timeout that came in between. Start over.
                Err(AcceptError::InvalidState | AcceptError::ConnectionReset) => continue,
            }
            socket.set_timeout(self.tcp.options.timeout.map(embassy_duration));
            match socket.remote_endpoint() {
                Some(peer) if !is_free(socket) => return Ok((socket_addr(peer), connection)),
                // The handshake timed out or was reset: the connection never was.
                _ => continue,
            }
        }
    }
}

impl<const N: usize> BindAddress for Tcp<'_, N> {
    /// The interface's IPv4 address for an acceptor bound to the unspecified address;
    /// `None` while the interface has none (DHCP not done yet).
    fn bound_address(&self, _: &Acceptor<'_, '_, N>, requested: SocketAddr) -> Option<SocketAddr> {
        if !requested.ip().is_unspecified() {
            return Some(requested);
        }
        let config = self.stack.config_v4()?;
        Some(SocketAddr::new(
            IpAddr::V4(config.address.address()),
            requested.port(),
        ))
    }
}

impl<'d, const N: usize> embedded_nal_async::TcpConnect for Tcp<'d, N> {
    type Error = Error;
    type Connection<'a>
        = Connection<'a, 'd>
    where
        Self: 'a;

    /// Waits for a free socket and connects it. Dropping the returned connection closes it
    /// (FIN), and the stack still sends that FIN: the socket stays in the pool.
    async fn connect<'a>(&'a self, remote: SocketAddr) -> Result<Connection<'a, 'd>, Error> {
        let SocketAddr::V4(remote) = remote else {
            return Err(Error::Unsupported);
        };
        let mut connection = self.claim().await;
        connection.socket.connect(remote).await?;
        Ok(connection)
    }
}

/// One connection on a socket of the pool: embedded-io-async's `Read` and `Write`,
/// edge-nal's `TcpShutdown` (graceful `close`, `abort`), `TcpSplit` and `Readable`.
///
/// Dropping it aborts a handshake still under way and closes an established connection
/// (FIN); the stack sends either after the drop.
pub struct Connection<'a, 'd> {
    socket: RefMut<'a, TcpSocket<'d>>,
}

impl Connection<'_, '_> {
    /// The peer, while connected.
    pub fn remote(&self) -> Option<SocketAddr> {
        self.socket.remote_endpoint().map(socket_addr)
    }

    /// Reads and drops what the peer still sends, until its end of stream.
    async fn discard(reader: &mut TcpReader<'_>) -> Result<(), Error> {
        let mut scrap = [0u8; 64];
        while reader.read(&mut scrap).await? > 0 {}
        Ok(())
    }
}

impl Drop for Connection<'_, '_> {
    fn drop(&mut self) {
        match self.socket.state() {
            State::Closed | State::TimeWait => {}
            State::Listen | State::SynSent | State::SynReceived => self.socket.abort(),
            _ => self.socket.close(),
        }
    }
}

impl ErrorType for Connection<'_, '_> {
    type Error = Error;
}

impl Read for Connection<'_, '_> {
    async fn read(&mut self, buffer: &mut [u8]) -> Result<usize, Error> {
        Ok(self.socket.read(buffer).await?)
    }
}

impl Write for Connection<'_, '_> {
    async fn write(&mut self, bytes: &[u8]) -> Result<usize, Error> {
        Ok(self.socket.write(bytes).await?)
    }

    async fn flush(&mut self) -> Result<(), Error> {
        Ok(self.socket.flush().await?)
    }
}

impl Readable for Connection<'_, '_> {
    async fn readable(&mut self) -> Result<(), Error> {
        self.socket.wait_read_ready().await;
        Ok(())
    }
}

impl TcpShutdown for Connection<'_, '_> {
    /// `Close::Write` sends the FIN after what is queued and waits until the peer has it;
    /// `Close::Read` reads until the peer's end of stream; `Close::Both` does both at once.
    async fn close(&mut self, what: Close) -> Result<(), Error> {
        if matches!(what, Close::Write | Close::Both) {
            self.socket.close();
        }
        let (mut reader, mut writer) = self.socket.split();
        match what {
            Close::Write => Ok(writer.flush().await?),
            Close::Read => Self::discard(&mut reader).await,
            Close::Both => {
                let (flushed, read) = join(writer.flush(), Self::discard(&mut reader)).await;
                flushed?;
                read
            }
        }
    }

    /// Resets the connection and waits until the RST is sent.
    async fn abort(&mut self) -> Result<(), Error> {
        self.socket.abort();
        Ok(self.socket.flush().await?)
    }
}

/// The read half of a [`Connection`].
pub struct ReadHalf<'a>(TcpReader<'a>);

/// The write half of a [`Connection`].
pub struct WriteHalf<'a>(TcpWriter<'a>);

impl ErrorType for ReadHalf<'_> {
    type Error = Error;
}

impl Read for ReadHalf<'_> {
    async fn read(&mut self, buffer: &mut [u8]) -> Result<usize, Error> {
        Ok(self.0.read(buffer).await?)
    }
}

impl Readable for ReadHalf<'_> {
    async fn readable(&mut self) -> Result<(), Error> {
        self.0.wait_read_ready().await;
        Ok(())
    }
}

impl ErrorType for WriteHalf<'_> {
    type Error = Error;
}

impl Write for WriteHalf<'_> {
    async fn write(&mut self, bytes: &[u8]) -> Result<usize, Error> {
        Ok(self.0.write(bytes).await?)
    }

    async fn flush(&mut self) -> Result<(), Error> {
        Ok(self.0.flush().await?)
    }
}

impl TcpSplit for Connection<'_, '_> {
    type Read<'b>
        = ReadHalf<'b>
    where
        Self: 'b;
    type Write<'b>
        = WriteHalf<'b>
    where
        Self: 'b;

    fn split(&mut self) -> (ReadHalf<'_>, WriteHalf<'_>) {
        let (reader, writer) = self.socket.split();
        (ReadHalf(reader), WriteHalf(writer))
    }
}

/// echo's async [`Clock`](echo::asynch::Clock) on embassy-time.
#[derive(Clone, Copy, Debug, Default)]
pub struct Clock;

impl echo::asynch::Clock for Clock {
    fn now(&self) -> Instant {
        Instant::from_micros(EmbassyInstant::now().as_micros())
    }

    async fn sleep_until(&self, deadline: Instant) {
        Timer::at(EmbassyInstant::from_micros(deadline.as_micros())).await
    }
}
