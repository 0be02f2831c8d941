//! The async roles (`echo::asynch`) against [`FuzzNet`], an async stack whose every answer the
//! fuzzer's bytes choose (pending or ready, partial writes, end of stream, resets, errors,
//! accept, bind and connect failures, slow closes, the data), under an executor whose clock the
//! bytes move. When the bytes run out, the role is stopped.
//!
//! Properties: no panic; no I/O on a connection after its close or abort; every peer gets back
//! exactly a prefix of what it sent (the client's server: of the greeting, then of what it
//! sent), in order; the server never has more than `N` connections open and ends each one
//! explicitly (close or abort, never by dropping it); after the stop the role returns, with
//! nothing left open.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use echo::asynch::edge_nal::{Close, Readable, TcpAccept, TcpBind, TcpShutdown, TcpSplit};
use echo::asynch::embedded_io_async::{ErrorKind, ErrorType, Read, Write};
use echo::asynch::{AsyncEchoClient, AsyncEchoServer, BindAddress, Clock};
use echo::{ClientConfig, Duration, Event, Instant, ServerConfig};

use crate::Bytes;

/// An error of [`FuzzNet`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FuzzError(ErrorKind);

impl fmt::Display for FuzzError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl std::error::Error for FuzzError {}

impl echo::asynch::embedded_io_async::Error for FuzzError {
    fn kind(&self) -> ErrorKind {
        self.0
    }
}

/// One connection and how it ended.
#[derive(Debug, Default)]
pub struct Conn {
    /// What the peer sends.
    pub sends: Vec<u8>,
    read: usize,
    /// What the role sent it.
    pub echoed: Vec<u8>,
    /// `close`, `abort`, `closing` (a close was asked for, and its end left to the stack) or
    /// `dropped`; `None` while open.
    pub ended: Option<&'static str>,
    /// A close was asked for.
    closing: bool,
}

/// An async stack (edge-nal's `TcpBind`, embedded-nal-async's `TcpConnect`) and a clock, all
/// driven by the fuzzer's bytes.
pub struct FuzzNet<'a> {
    bytes: RefCell<Bytes<'a>>,
    now: Cell<u64>,
    /// Deadlines of the timers pending in the last poll.
    timers: RefCell<Vec<u64>>,
    /// Every connection ever opened, in order.
    pub conns: RefCell<Vec<Conn>>,
}

impl<'a> FuzzNet<'a> {
    fn new(bytes: Bytes<'a>) -> Self {
        FuzzNet {
            bytes: RefCell::new(bytes),
            now: Cell::new(0),
            timers: RefCell::new(Vec::new()),
            conns: RefCell::new(Vec::new()),
        }
    }

    fn byte(&self) -> u8 {
        self.bytes.borrow_mut().byte()
    }

    fn out_of_bytes(&self) -> bool {
        self.bytes.borrow().is_empty()
    }

    /// A new connection whose peer sends up to 255 bytes of the input.
    fn connection(&self) -> usize {
        let len = usize::from(self.byte());
        let sends = self.bytes.borrow_mut().take(len).to_vec();
        let mut conns = self.conns.borrow_mut();
        conns.push(Conn {
            sends,
            ..Conn::default()
        });
        conns.len() - 1
    }

    /// Panics if connection `index` was already ended.
    fn assert_open(&self, index: usize, what: &str) {
        if let Some(ended) = self.conns.borrow()[index].ended {
            panic!("{what} on connection {index} after its {ended}");
        }
    }
}

impl Clock for FuzzNet<'_> {
    fn now(&self) -> Instant {
        Instant::from_micros(self.now.get())
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

/// A connection of [`FuzzNet`] (also its own read and write halves).
pub struct FuzzSocket<'s, 'a> {
    net: &'s FuzzNet<'a>,
    index: usize,
}

impl Drop for FuzzSocket<'_, '_> {
    fn drop(&mut self) {
        let mut conns = self.net.conns.borrow_mut();
        let conn = &mut conns[self.index];
        if conn.ended.is_none() {
            conn.ended = Some(match conn.closing {
                true => "closing",
                false => "dropped",
            });
        }
    }
}

impl ErrorType for FuzzSocket<'_, '_> {
    type Error = FuzzError;
}

impl Read for FuzzSocket<'_, '_> {
    async fn read(&mut self, buffer: &mut [u8]) -> Result<usize, FuzzError> {
        self.net.assert_open(self.index, "read");
        poll_fn(|_| {
            let choice = self.net.byte();
            let mut conns = self.net.conns.borrow_mut();
            let conn = &mut conns[self.index];
            let left = conn.sends.len() - conn.read;
            match choice % 8 {
                0 | 1 => Poll::Pending,
                2 => Poll::Ready(Err(FuzzError(ErrorKind::Other))),
                3 => Poll::Ready(Err(FuzzError(ErrorKind::ConnectionReset))),
                _ if left == 0 => Poll::Ready(Ok(0)),
                _ => {
                    let n = left.min(buffer.len()).min(1 + usize::from(choice / 8));
                    buffer[..n].copy_from_slice(&conn.sends[conn.read..conn.read + n]);
                    conn.read += n;
                    Poll::Ready(Ok(n))
                }
            }
        })
        .await
    }
}

impl Write for FuzzSocket<'_, '_> {
    async fn write(&mut self, bytes: &[u8]) -> Result<usize, FuzzError> {
        self.net.assert_open(self.index, "write");
        poll_fn(|_| {
            let choice = self.net.byte();
            let mut conns = self.net.conns.borrow_mut();
            let conn = &mut conns[self.index];
            match choice % 8 {
                0 | 1 => Poll::Pending,
                2 => Poll::Ready(Err(FuzzError(ErrorKind::BrokenPipe))),
                3 => Poll::Ready(Err(FuzzError(ErrorKind::Other))),
                4 => {
                    // Partial.
                    let n = bytes.len().min(usize::from(choice / 8));
                    if n == 0 {
                        return Poll::Pending;
                    }
                    conn.echoed.extend_from_slice(&bytes[..n]);
                    Poll::Ready(Ok(n))
                }
                _ => {
                    conn.echoed.extend_from_slice(bytes);
                    Poll::Ready(Ok(bytes.len()))
                }
            }
        })
        .await
    }

    async fn flush(&mut self) -> Result<(), FuzzError> {
        self.net.assert_open(self.index, "flush");
        poll_fn(|_| match self.net.byte() % 4 {
            0 => Poll::Pending,
            1 => Poll::Ready(Err(FuzzError(ErrorKind::ConnectionReset))),
            _ => Poll::Ready(Ok(())),
        })
        .await
    }
}

impl Readable for FuzzSocket<'_, '_> {
    async fn readable(&mut self) -> Result<(), FuzzError> {
        Ok(())
    }
}

impl TcpSplit for FuzzSocket<'_, '_> {
    type Read<'b>
        = FuzzSocket<'b, 'b>
    where
        Self: 'b;
    type Write<'b>
        = FuzzSocket<'b, 'b>
    where
        Self: 'b;

    fn split(&mut self) -> (Self::Read<'_>, Self::Write<'_>) {
        unreachable!("the echo roles do not split connections")
    }
}

impl TcpShutdown for FuzzSocket<'_, '_> {
    /// Slow (pending while the bytes say so), or failing, or done.
    async fn close(&mut self, _what: Close) -> Result<(), FuzzError> {
        self.net.assert_open(self.index, "close");
        self.net.conns.borrow_mut()[self.index].closing = true;
        poll_fn(|_| match self.net.byte() % 4 {
            0 => Poll::Pending,
            1 => Poll::Ready(Err(FuzzError(ErrorKind::ConnectionReset))),
            _ => {
                self.net.conns.borrow_mut()[self.index].ended = Some("close");
                Poll::Ready(Ok(()))
            }
        })
        .await
    }

    async fn abort(&mut self) -> Result<(), FuzzError> {
        self.net.assert_open(self.index, "abort");
        self.net.conns.borrow_mut()[self.index].ended = Some("abort");
        Ok(())
    }
}

/// [`FuzzNet`]'s acceptor.
pub struct FuzzAcceptor<'s, 'a> {
    net: &'s FuzzNet<'a>,
}

impl<'a> TcpAccept for FuzzAcceptor<'_, 'a> {
    type Error = FuzzError;
    type Socket<'b>
        = FuzzSocket<'b, 'a>
    where
        Self: 'b;

    async fn accept(&self) -> Result<(SocketAddr, FuzzSocket<'_, 'a>), FuzzError> {
        poll_fn(|_| match self.net.byte() % 8 {
            0..=3 => Poll::Pending,
            7 => Poll::Ready(Err(FuzzError(ErrorKind::OutOfMemory))),
            _ => {
                let index = self.net.connection();
                let peer = SocketAddr::from(([10, 0, 0, 2], 40000 + index as u16));
                Poll::Ready(Ok((
                    peer,
                    FuzzSocket {
                        net: self.net,
                        index,
                    },
                )))
            }
        })
        .await
    }
}

impl<'a> TcpBind for FuzzNet<'a> {
    type Error = FuzzError;
    type Accept<'s>
        = FuzzAcceptor<'s, 'a>
    where
        Self: 's;

    async fn bind(&self, _local: SocketAddr) -> Result<FuzzAcceptor<'_, 'a>, FuzzError> {
        match self.byte() % 16 {
            0 => Err(FuzzError(ErrorKind::AddrInUse)),
            _ => Ok(FuzzAcceptor { net: self }),
        }
    }
}

impl BindAddress for FuzzNet<'_> {
    fn bound_address(&self, _: &FuzzAcceptor<'_, '_>, requested: SocketAddr) -> Option<SocketAddr> {
        Some(SocketAddr::from(([10, 0, 0, 1], requested.port())))
    }
}

impl<'a> echo::asynch::embedded_nal_async::TcpConnect for FuzzNet<'a> {
    type Error = FuzzError;
    type Connection<'s>
        = FuzzSocket<'s, 'a>
    where
        Self: 's;

    async fn connect<'s>(&'s self, _remote: SocketAddr) -> Result<FuzzSocket<'s, 'a>, FuzzError> {
        poll_fn(|_| match self.byte() % 4 {
            0 => Poll::Pending,
            1 => Poll::Ready(Err(FuzzError(ErrorKind::ConnectionRefused))),
            _ => Poll::Ready(Ok(FuzzSocket {
                index: self.connection(),
                net: self,
            })),
        })
        .await
    }
}

/// Polls `future` (which gets the stop flag's future) with time moving by what the bytes say;
/// once they run out, sets the stop and lets the clock jump to each timer. Panics if the role
/// does not return within 20,000 polls after its stop.
fn drive<T>(net: &FuzzNet<'_>, stop: &Cell<bool>, future: impl Future<Output = T>) -> T {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    let mut after_stop = 0;
    loop {
        net.timers.borrow_mut().clear();
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        if net.out_of_bytes() {
            stop.set(true);
            after_stop += 1;
            assert!(
                after_stop < 20_000,
                "the role did not return after its stop"
            );
            let next = net.timers.borrow().iter().copied().min();
            if let Some(deadline) = next {
                net.now.set(net.now.get().max(deadline));
            }
        } else {
            let step = u64::from(net.byte() % 64) * 1000;
            net.now.set(net.now.get() + step);
        }
    }
}

/// A stop future for `run_until`: completes once `flag` is set.
fn stopped(flag: &Cell<bool>) -> impl Future<Output = ()> + '_ {
    poll_fn(move |_| match flag.get() {
        true => Poll::Ready(()),
        false => Poll::Pending,
    })
}

/// The idle timeout both roles take from the first byte.
fn idle_timeout(byte: u8) -> Option<Duration> {
    (byte & 1 != 0).then(|| Duration::from_millis(u64::from(byte >> 1) * 10))
}

/// `AsyncEchoServer::<N, B>` with `share` bytes per client on `net` until the bytes run out.
fn serve<const N: usize, const B: usize>(net: &FuzzNet<'_>, idle: Option<Duration>, share: usize) {
    let stop = Cell::new(false);
    let most_open = Cell::new(0);
    let mut buffer = vec![0u8; N * share];
    let config = ServerConfig::new().with_idle_timeout(idle);
    let mut server = AsyncEchoServer::<N, B>::new(config, &mut buffer);
    let stats = drive(net, &stop, async {
        server
            .run_until(net, net, stopped(&stop), |event| {
                if let Event::Opened { open, .. } = event {
                    most_open.set(most_open.get().max(open));
                }
            })
            .await;
        server.stats()
    });
    assert!(
        most_open.get() <= N,
        "{} open at once, N = {N}",
        most_open.get()
    );
    assert_eq!(stats.open, 0, "stopped, nothing open");
    for (index, conn) in net.conns.borrow().iter().enumerate() {
        assert!(
            conn.sends.starts_with(&conn.echoed),
            "connection {index} got {:?} back for {:?}",
            conn.echoed,
            conn.sends
        );
        assert!(
            matches!(conn.ended, Some("close" | "closing" | "abort")),
            "connection {index} ended by {:?}, not closed or aborted",
            conn.ended
        );
    }
}

/// The server: 1 to 3 clients at once, 0 to 2 waiting, 1 to 64 bytes each.
pub fn check_server(data: &[u8]) {
    let mut bytes = Bytes::new(data);
    let idle = idle_timeout(bytes.byte());
    let shape = bytes.byte();
    let share = 1 + usize::from(shape >> 2);
    let net = FuzzNet::new(bytes);
    match shape % 4 {
        0 => serve::<1, 0>(&net, idle, share),
        1 => serve::<1, 2>(&net, idle, share),
        2 => serve::<2, 1>(&net, idle, share),
        _ => serve::<3, 1>(&net, idle, share),
    }
}

/// The client, with or without reconnection, buffer of 1 to 64 bytes.
pub fn check_client(data: &[u8]) {
    let mut bytes = Bytes::new(data);
    let idle = idle_timeout(bytes.byte());
    let shape = bytes.byte();
    let (greeting, reconnect) = crate::roles::client_shape(shape);
    let net = FuzzNet::new(bytes);
    let stop = Cell::new(false);
    let mut buffer = vec![0u8; 1 + usize::from(shape >> 2) % 64];
    let config = ClientConfig::new(SocketAddr::from(([10, 0, 0, 1], 5001)))
        .with_greeting(greeting)
        .with_idle_timeout(idle)
        .with_connect_timeout(Some(Duration::from_millis(100)))
        .with_reconnect(reconnect);
    let mut client = AsyncEchoClient::new(config, &mut buffer);
    let _ = drive(
        &net,
        &stop,
        client.run_until(&net, &net, stopped(&stop), |_| {}),
    );
    assert_eq!(client.stats().open, 0, "returned, nothing open");
    for (index, conn) in net.conns.borrow().iter().enumerate() {
        let mut expected = greeting.to_vec();
        expected.extend_from_slice(&conn.sends);
        assert!(
            expected.starts_with(&conn.echoed),
            "connection {index} got {:?}, not a prefix of the greeting and then {:?}",
            conn.echoed,
            conn.sends
        );
        assert!(conn.ended.is_some(), "connection {index} left open");
    }
}
