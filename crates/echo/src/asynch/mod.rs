//! The echo roles as futures, for firmware built on async stacks (embassy-net, esp-radio with
//! esp-rtos, edge-nal-std on a PC). Feature `async`.
//!
//! - [`AsyncEchoServer`] over edge-nal 0.7's [`TcpBind`](edge_nal::TcpBind) and
//!   [`TcpAccept`](edge_nal::TcpAccept) (embedded-nal-async has no server side), plus
//!   [`BindAddress`] for the address the screen shows.
//! - [`AsyncEchoClient`] over embedded-nal-async 0.9's
//!   [`TcpConnect`](embedded_nal_async::TcpConnect).
//! - [`Clock`]: the board's time and timers (embassy-time, async-io, ...).
//! - [`AsyncRole`]: what both are to a board, so that one loop runs either.
//!
//! Both report the same [`Event`]s as the non-blocking roles, through a plain
//! (not async) callback: the echo never waits for the display. Feed a
//! [`Screen`](crate::Screen) from the callback and draw it from another task or loop.
//!
//! # Which one to pick
//! The non-blocking [`Role`](crate::Role)s need a stack with embedded-nal 0.9's
//! non-blocking traits (`echo-std`'s `StdStack`, `echo-smoltcp`, smoltcp-nal) and a loop that
//! polls them; they need no executor, and the whole server state is the caller's slots and
//! buffer. Pick them for a bare-metal loop, or beside other work in one super-loop.
//!
//! The async roles are for firmware that already runs an executor (embassy, esp-rtos): the
//! server is one future that holds `N + BACKLOG` accepts pending at once (embassy-net refuses
//! a connection that finds no socket accepting, so accepting one after another would refuse
//! clients), each connection echoing in its own branch of the future. The future's size is
//! fixed at compile time (`N` and `BACKLOG` are const generics); nothing is allocated.
//!
//! ```no_run
//! use echo::asynch::{AsyncEchoServer, BindAddress, Clock};
//! use echo::{Screen, ServerConfig};
//! use core::cell::RefCell;
//!
//! async fn serve<B: BindAddress, K: Clock>(stack: &B, clock: &K, screen: &RefCell<Screen<echo::ServerLayout>>) {
//!     let mut buffer = [0u8; 3 * echo::DEFAULT_BUFFER_SIZE];
//!     let mut server = AsyncEchoServer::<3>::new(ServerConfig::new(), &mut buffer);
//!     // A display task draws `screen` when it changes; the echo never waits for it.
//!     server.run(stack, clock, |event| screen.borrow_mut().update(&event)).await;
//! }
//! ```
//!
//! # Stack contract
//! - `read` returning `Ok(0)` is the end of the stream (embedded-io's rule; the non-blocking
//!   roles' [`ZeroRead`](crate::ZeroRead) does not apply). `write` may be partial.
//! - An error whose [`kind`](embedded_io_async::Error::kind) is `ConnectionReset`,
//!   `ConnectionAborted`, `BrokenPipe` or `NotConnected` means the peer is gone
//!   ([`CloseReason::PipeClosed`]); others end the connection
//!   as [`CloseReason::Failed`].
//! - `accept` may be awaited `N + BACKLOG` times at once, each getting its own connection. An
//!   `accept` error is reported as [`Event::ListenFailed`] and
//!   that accept is tried again after the [`relisten`](crate::ServerConfig::relisten) backoff;
//!   the connections being served and the other accepts go on.
//! - The server ends every connection explicitly, never by dropping it: after the peer's end
//!   of stream (everything echoed first), an idle timeout or a stop, with a graceful
//!   [`close`](edge_nal::TcpShutdown::close) (`Close::Both`), waited for [`LINGER`] at most
//!   and then left to the stack to finish (aborting would lose an echo still in flight on a
//!   slow link); after an error, or a close that failed, with
//!   [`abort`](edge_nal::TcpShutdown::abort).
//! - embedded-nal-async has no close: its connections close when dropped. The client flushes
//!   (allowed [`LINGER`]) and drops. Whether the peer then sees a FIN depends on the stack:
//!   embassy-net's `TcpClient` removes the socket before its FIN leaves; `echo-embassy`'s
//!   stack keeps it until the FIN is sent.

mod client;
mod server;

#[cfg(test)]
mod testing;

use core::cell::{Cell, RefCell};
use core::future::{poll_fn, Future};
use core::net::SocketAddr;
use core::task::Poll;

use embassy_futures::select::{select3, Either3};
use embedded_io_async::{ErrorKind, Read, Write};

use crate::event::{CloseReason, ConnId, Event};
use crate::role::Stats;
use crate::rules::{close_reason, Activity, ConnIds, Failures, Greeting, ROUNDS_PER_TURN};
use crate::time::{Duration, Instant};

pub use client::AsyncEchoClient;
pub use server::AsyncEchoServer;

pub use edge_nal;
pub use embedded_io_async;
pub use embedded_nal_async;

/// How long the roles wait for a graceful close (and the client for its last flush) before
/// they leave it to the stack and let the connection go.
pub const LINGER: Duration = Duration::from_secs(5);

/// The board's monotonic clock and its timers, as the async roles need them.
///
/// On embassy: `Instant::from_micros(embassy_time::Instant::now().as_micros())` and
/// `embassy_time::Timer::at(...)`. `echo-std` implements it with async-io's `Timer`.
#[allow(async_fn_in_trait)]
pub trait Clock {
    /// Now.
    fn now(&self) -> Instant;

    /// Completes at `deadline` (at once if it has passed).
    async fn sleep_until(&self, deadline: Instant);
}

impl<T: Clock> Clock for &T {
    fn now(&self) -> Instant {
        (**self).now()
    }

    async fn sleep_until(&self, deadline: Instant) {
        (**self).sleep_until(deadline).await
    }
}

/// An async echo role, [`AsyncEchoServer`] or [`AsyncEchoClient`], as a board runs it on
/// stack `S`: the async counterpart of [`Role`](crate::Role), so that one board loop runs
/// either.
///
/// ```no_run
/// use echo::asynch::{AsyncRole, Clock};
/// use echo::{Layout, Screen};
/// use core::cell::RefCell;
///
/// /// Runs `role` until `stop`, feeding `screen` (which another task draws).
/// async fn run<S, R, L>(
///     stack: &S,
///     role: &mut R,
///     clock: &impl Clock,
///     stop: impl core::future::Future,
///     screen: &RefCell<Screen<L>>,
/// ) -> Result<(), echo::Error<R::Error>>
/// where
///     R: AsyncRole<S>,
///     L: Layout,
/// {
///     role.run_until(stack, clock, stop, |event| screen.borrow_mut().update(&event)).await
/// }
/// ```
#[allow(async_fn_in_trait)]
pub trait AsyncRole<S> {
    /// The stack's error.
    type Error: embedded_io_async::Error;

    /// Connections the role holds at once, waiting ones included: the sockets it may take
    /// from a pool (the server's `N + BACKLOG` accepts, the client's one connection).
    const CONNECTIONS: usize;

    /// Runs until the role is done or `stop` completes (every connection is then closed),
    /// reporting every event to `on_event`. `Err` only when the client's last allowed
    /// connection attempt failed; the server never returns one.
    async fn run_until<K, X, F>(
        &mut self,
        stack: &S,
        clock: &K,
        stop: X,
        on_event: F,
    ) -> Result<(), crate::Error<Self::Error>>
    where
        K: Clock,
        X: Future,
        F: FnMut(Event<'_, Self::Error>);

    /// Counters, as of the end of the last run.
    fn stats(&self) -> Stats;
}

impl<S, const N: usize, const BACKLOG: usize> AsyncRole<S> for AsyncEchoServer<'_, N, BACKLOG>
where
    S: BindAddress,
{
    type Error = <S as edge_nal::TcpBind>::Error;
    const CONNECTIONS: usize = N + BACKLOG;

    async fn run_until<K, X, F>(
        &mut self,
        stack: &S,
        clock: &K,
        stop: X,
        on_event: F,
    ) -> Result<(), crate::Error<Self::Error>>
    where
        K: Clock,
        X: Future,
        F: FnMut(Event<'_, Self::Error>),
    {
        AsyncEchoServer::run_until(self, stack, clock, stop, on_event).await;
        Ok(())
    }

    fn stats(&self) -> Stats {
        AsyncEchoServer::stats(self)
    }
}

impl<S> AsyncRole<S> for AsyncEchoClient<'_>
where
    S: embedded_nal_async::TcpConnect,
{
    type Error = <S as embedded_nal_async::TcpConnect>::Error;
    const CONNECTIONS: usize = 1;

    async fn run_until<K, X, F>(
        &mut self,
        stack: &S,
        clock: &K,
        stop: X,
        on_event: F,
    ) -> Result<(), crate::Error<Self::Error>>
    where
        K: Clock,
        X: Future,
        F: FnMut(Event<'_, Self::Error>),
    {
        AsyncEchoClient::run_until(self, stack, clock, stop, on_event).await
    }

    fn stats(&self) -> Stats {
        AsyncEchoClient::stats(self)
    }
}

/// The address clients reach a bound acceptor at, which edge-nal has no call for: the
/// tutorial's `IP:PORT` on the screen, in [`Event::Listening`].
///
/// The async counterpart of [`LocalAddress`](crate::LocalAddress): the board's own address for
/// an acceptor bound to the unspecified address, and the real port (also when port 0 was
/// asked for). `None` when the stack does not know; the server then reports `requested`.
/// `echo-std`'s and `echo-embassy`'s stacks implement it; for another crate's stack, wrap it in
/// a type of your own that implements edge-nal's `TcpBind` (by delegating) and this.
pub trait BindAddress: edge_nal::TcpBind {
    /// Where clients reach `acceptor`, bound to `requested`.
    fn bound_address(
        &self,
        acceptor: &Self::Accept<'_>,
        requested: SocketAddr,
    ) -> Option<SocketAddr>;
}

/// What waiting for an operation ended with.
pub(crate) enum Waited<T> {
    /// It completed.
    Done(T),
    /// The deadline came first.
    Deadline,
    /// The role was asked to stop first.
    Stopped,
}

/// What a role's futures share while it runs: the clock, the callback, the counters. Only
/// borrowed between awaits, never across one.
pub(crate) struct Shared<'k, K, F> {
    pub(crate) clock: &'k K,
    on_event: RefCell<F>,
    stats: Cell<Stats>,
    ids: Cell<ConnIds>,
    failures: Cell<Failures>,
    stopping: Cell<bool>,
}

impl<'k, K: Clock, F> Shared<'k, K, F> {
    pub(crate) fn new(clock: &'k K, on_event: F, stats: Stats) -> Self {
        Shared {
            clock,
            on_event: RefCell::new(on_event),
            stats: Cell::new(stats),
            ids: Cell::new(ConnIds::default()),
            failures: Cell::new(Failures::default()),
            stopping: Cell::new(false),
        }
    }

    /// Reports `event`.
    pub(crate) fn emit<E>(&self, event: Event<'_, E>)
    where
        F: FnMut(Event<'_, E>),
    {
        (self.on_event.borrow_mut())(event)
    }

    pub(crate) fn stats(&self) -> Stats {
        self.stats.get()
    }

    fn update_stats(&self, change: impl FnOnce(&mut Stats)) {
        let mut stats = self.stats.get();
        change(&mut stats);
        self.stats.set(stats);
    }

    pub(crate) fn update_failures<T>(&self, change: impl FnOnce(&mut Failures) -> T) -> T {
        let mut failures = self.failures.get();
        let result = change(&mut failures);
        self.failures.set(failures);
        result
    }

    /// A connection opened: its number, and the connections open now.
    pub(crate) fn opened(&self) -> (ConnId, usize) {
        let mut ids = self.ids.get();
        let conn = ids.next();
        self.ids.set(ids);
        self.update_stats(|stats| {
            stats.opened();
            stats.open += 1;
        });
        self.update_failures(Failures::reset);
        (conn, self.stats.get().open)
    }

    /// A connection closed: the connections open now.
    pub(crate) fn closed(&self) -> usize {
        self.update_stats(|stats| stats.open -= 1);
        self.stats.get().open
    }

    /// From now on every stoppable wait ends as [`Waited::Stopped`].
    pub(crate) fn stop(&self) {
        self.stopping.set(true);
    }

    /// Whether [`stop`](Self::stop) was called.
    pub(crate) fn stopped(&self) -> bool {
        self.stopping.get()
    }

    /// Waits for `op`, until `deadline` if any; if `stoppable`, also until [`stop`](Self::stop).
    pub(crate) async fn wait<T>(
        &self,
        op: impl Future<Output = T>,
        deadline: Option<Instant>,
        stoppable: bool,
    ) -> Waited<T> {
        // A stop wins over an operation that would complete at once: the echo of a peer that
        // never pauses never waits, so it would never see the stop below.
        if stoppable && self.stopping.get() {
            return Waited::Stopped;
        }
        let timer = async {
            match deadline {
                Some(deadline) => self.clock.sleep_until(deadline).await,
                None => core::future::pending().await,
            }
        };
        // The stop is set by the role itself just before it polls its futures again (see
        // `run_until`), so this needs no waker.
        let stopped = poll_fn(|_| match stoppable && self.stopping.get() {
            true => Poll::Ready(()),
            false => Poll::Pending,
        });
        match select3(op, timer, stopped).await {
            Either3::First(done) => Waited::Done(done),
            Either3::Second(()) => Waited::Deadline,
            Either3::Third(()) => Waited::Stopped,
        }
    }

    /// Sleeps `duration`; `false` if stopped first.
    pub(crate) async fn sleep(&self, duration: Duration) -> bool {
        let until = self.clock.now() + duration;
        !matches!(
            self.wait(self.clock.sleep_until(until), None, true).await,
            Waited::Stopped
        )
    }

    /// The echo of one connection, the same rules as the non-blocking [`Link`](crate::link):
    /// sends `greeting` first (the client's; empty for the server), then reads and writes back
    /// what it read, every byte and in order, reading no more until it is written. Returns
    /// why the connection ended; the caller closes it.
    pub(crate) async fn echo<T, E>(
        &self,
        socket: &mut T,
        conn: ConnId,
        greeting: &[u8],
        buffer: &mut [u8],
        idle_timeout: Option<Duration>,
    ) -> CloseReason<E>
    where
        T: Read<Error = E> + Write<Error = E>,
        E: embedded_io_async::Error,
        F: FnMut(Event<'_, E>),
    {
        let mut activity = Activity::new(self.clock.now());
        let mut sent = Greeting::default();
        while !sent.rest(greeting).is_empty() {
            let rest = sent.rest(greeting);
            match self.write(socket, rest, &mut activity, idle_timeout).await {
                Ok(n) => sent.sent(n),
                Err(reason) => return reason,
            }
        }
        let mut rounds = 0u32;
        loop {
            rounds += 1;
            if rounds.is_multiple_of(ROUNDS_PER_TURN) {
                yield_now().await;
            }
            let deadline = activity.deadline(idle_timeout);
            let n = match self.wait(socket.read(buffer), deadline, true).await {
                Waited::Done(Ok(0)) => return CloseReason::Eof,
                Waited::Done(Ok(n)) => n,
                Waited::Done(Err(error)) => return io_close_reason(error),
                Waited::Deadline => return CloseReason::IdleTimeout,
                Waited::Stopped => return CloseReason::Shutdown,
            };
            self.moved(&mut activity, idle_timeout);
            self.update_stats(|stats| stats.received(n));
            self.emit(Event::Received {
                conn,
                bytes: &buffer[..n],
            });
            let mut start = 0;
            while start < n {
                match self
                    .write(socket, &buffer[start..n], &mut activity, idle_timeout)
                    .await
                {
                    Ok(written) => start += written,
                    Err(reason) => return reason,
                }
            }
        }
    }

    /// Bytes moved just now. The clock is read only when there is an idle timeout to count: it
    /// would be read twice every echo round, and reading it is not free everywhere.
    fn moved(&self, activity: &mut Activity, idle_timeout: Option<Duration>) {
        if idle_timeout.is_some() {
            activity.moved(self.clock.now());
        }
    }

    /// One `write` of what is left of `bytes`: how many went (at least one).
    async fn write<T, E>(
        &self,
        socket: &mut T,
        bytes: &[u8],
        activity: &mut Activity,
        idle_timeout: Option<Duration>,
    ) -> Result<usize, CloseReason<E>>
    where
        T: Write<Error = E>,
        E: embedded_io_async::Error,
    {
        let deadline = activity.deadline(idle_timeout);
        match self.wait(socket.write(bytes), deadline, true).await {
            // embedded-io: `Ok(0)` for a non-empty buffer means nothing can be written again.
            Waited::Done(Ok(0)) => Err(CloseReason::PipeClosed),
            Waited::Done(Ok(n)) => {
                self.moved(activity, idle_timeout);
                self.update_stats(|stats| stats.sent(n));
                Ok(n)
            }
            Waited::Done(Err(error)) => Err(io_close_reason(error)),
            Waited::Deadline => Err(CloseReason::IdleTimeout),
            Waited::Stopped => Err(CloseReason::Shutdown),
        }
    }
}

/// Lets the executor run other work once: pending on the first poll, after waking itself.
async fn yield_now() {
    let mut yielded = false;
    poll_fn(|cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}

/// What an I/O error ends a connection as: the embedded-io kinds of a peer that reset or went
/// away are [`CloseReason::PipeClosed`].
fn io_close_reason<E: embedded_io_async::Error>(error: E) -> CloseReason<E> {
    let gone = matches!(
        error.kind(),
        ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::BrokenPipe
            | ErrorKind::NotConnected
    );
    close_reason(error, gone)
}
