//! The tutorial's server as one future: accepts always pending, each connection echoing in
//! its own branch.

use core::cell::{Cell, RefCell};
use core::future::{poll_fn, Future};
use core::net::{Ipv4Addr, SocketAddr};
use core::pin::pin;
use core::task::{Poll, Waker};

use edge_nal::{Close, TcpAccept, TcpShutdown};
use embassy_futures::join::{join, join_array};
use embassy_futures::select::{select, Either};

use super::{BindAddress, Clock, Shared, Waited, LINGER};
use crate::addr::Address;
use crate::error::Error;
use crate::event::{CloseReason, Event};
use crate::role::Stats;
use crate::server::ServerConfig;

/// An async TCP echo server for up to `N` clients at once, with `BACKLOG` more waiting, over
/// any edge-nal stack that also says where clients reach it ([`BindAddress`]).
///
/// It keeps `N + BACKLOG` accepts pending at once (never one after another): on a stack
/// without a listen backlog (embassy-net), a connection that finds no accept pending is
/// refused. A connection accepted while `N` are being served waits, unread, until one ends
/// (the nb server's listen backlog does the same); the stack's receive window holds what it
/// sends meanwhile. So when all `N` are busy, `BACKLOG` accepts are still pending, and a
/// client arriving just as another leaves is not refused. On embassy-net each pending accept
/// holds a socket: give the stack `N + BACKLOG` sockets, plus a few for closing ones.
///
/// The same guarantees as [`EchoServer`](crate::EchoServer): every byte back in order; a
/// connection is not read again until its echo is written; after the peer's end of stream
/// everything is echoed, then the connection is closed; the idle timeout; a failing
/// connection or accept touches no other. [`ServerConfig::zero_read`] does not apply (see the
/// module's stack contract).
///
/// `buffer` is shared out as the non-blocking server does: `N` connections of
/// `buffer.len() / N` bytes each.
///
/// ```no_run
/// # async fn run<B: echo::asynch::BindAddress, K: echo::asynch::Clock>(stack: &B, clock: &K) {
/// use echo::asynch::AsyncEchoServer;
/// use echo::ServerConfig;
///
/// let mut buffer = [0u8; 3 * echo::DEFAULT_BUFFER_SIZE];
/// let mut server = AsyncEchoServer::<3>::new(ServerConfig::new(), &mut buffer);
/// server.run(stack, clock, |event| { /* the screen, the log */ }).await;
/// # }
/// ```
pub struct AsyncEchoServer<'a, const N: usize, const BACKLOG: usize = 1> {
    config: ServerConfig,
    buffer: &'a mut [u8],
    stats: Stats,
}

impl<'a, const N: usize, const BACKLOG: usize> AsyncEchoServer<'a, N, BACKLOG> {
    /// A server for `N` clients at once (and `BACKLOG` waiting), echoing through `buffer`.
    ///
    /// # Panics
    /// If `N` is 0 or `buffer` is smaller than one byte per client.
    pub fn new(config: ServerConfig, buffer: &'a mut [u8]) -> Self {
        assert!(N > 0, "an echo server needs room for at least one client");
        assert!(
            buffer.len() >= N,
            "the echo buffer needs at least one byte per client"
        );
        AsyncEchoServer {
            config,
            buffer,
            stats: Stats::new(N),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Counters, as of the end of the last run.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Serves forever: [`run_until`](Self::run_until) a stop that never comes.
    pub async fn run<B, K, F>(&mut self, stack: &B, clock: &K, on_event: F)
    where
        B: BindAddress,
        K: Clock,
        F: FnMut(Event<'_, B::Error>),
    {
        self.run_until(stack, clock, core::future::pending::<()>(), on_event)
            .await
    }

    /// Binds (again after a backoff while binding fails), then serves until `stop` completes;
    /// then closes every connection ([`CloseReason::Shutdown`], a graceful close allowed
    /// [`LINGER`]) and returns. Every event goes to `on_event`, never awaited.
    pub async fn run_until<B, K, F, X>(&mut self, stack: &B, clock: &K, stop: X, on_event: F)
    where
        B: BindAddress,
        K: Clock,
        F: FnMut(Event<'_, B::Error>),
        X: Future,
    {
        let shared = Shared::new(clock, on_event, Stats::new(N));
        let config = self.config;
        let mut stop = pin!(stop);
        let requested = SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), config.port);

        let acceptor = loop {
            match select(stack.bind(requested), stop.as_mut()).await {
                Either::First(Ok(acceptor)) => break acceptor,
                Either::First(Err(error)) => {
                    let error = Error::Bind {
                        port: config.port,
                        error,
                    };
                    let retry_in =
                        shared.update_failures(|f| f.relisten(config.port, config.relisten));
                    shared.emit(Event::ListenFailed {
                        error: &error,
                        retry_in,
                    });
                    let until = clock.now() + retry_in;
                    if let Either::Second(_) = select(clock.sleep_until(until), stop.as_mut()).await
                    {
                        self.stats = shared.stats();
                        return;
                    }
                }
                Either::Second(_) => {
                    self.stats = shared.stats();
                    return;
                }
            }
        };
        let local = stack
            .bound_address(&acceptor, requested)
            .unwrap_or(requested);
        info!("listening on {}", Address(local));
        shared.emit(Event::Listening { local });

        let share = self.buffer.len() / N;
        let shares = Shares::<N>::new(self.buffer.chunks_exact_mut(share));
        let served: [_; N] = core::array::from_fn(|_| serve(&shared, &config, &acceptor, &shares));
        let waiting: [_; BACKLOG] =
            core::array::from_fn(|_| serve(&shared, &config, &acceptor, &shares));
        let mut slots = pin!(join(join_array(served), join_array(waiting)));
        if let Either::Second(_) = select(slots.as_mut(), stop).await {
            // Each slot sees the stop at its next wait, closes its connection, and ends.
            shared.stop();
            slots.await;
        }
        self.stats = shared.stats();
    }
}

/// The `N` shares of the echo buffer, each lent to one connection at a time.
struct Shares<'b, const N: usize> {
    free: [Cell<Option<&'b mut [u8]>>; N],
    /// The branch waiting for a share (all branches run in one task: one waker).
    waiting: RefCell<Option<Waker>>,
}

impl<'b, const N: usize> Shares<'b, N> {
    fn new(mut chunks: impl Iterator<Item = &'b mut [u8]>) -> Self {
        Shares {
            free: core::array::from_fn(|_| Cell::new(chunks.next())),
            waiting: RefCell::new(None),
        }
    }

    /// A share, once one is free.
    async fn take(&self) -> &'b mut [u8] {
        poll_fn(|cx| {
            if let Some(share) = self.free.iter().find_map(Cell::take) {
                return Poll::Ready(share);
            }
            let mut waiting = self.waiting.borrow_mut();
            match waiting.as_ref() {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                _ => *waiting = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
        .await
    }

    fn give_back(&self, share: &'b mut [u8]) {
        if let Some(cell) = self.free.iter().find(|cell| {
            let empty = cell.take();
            let is_empty = empty.is_none();
            cell.set(empty);
            is_empty
        }) {
            cell.set(Some(share));
        }
        if let Some(waker) = self.waiting.borrow_mut().take() {
            waker.wake();
        }
    }
}

/// One of the `N + BACKLOG` branches: accept, wait for a share of the buffer, echo, close,
/// over again, until stopped.
async fn serve<'b, A, K, F, const N: usize>(
    shared: &Shared<'_, K, F>,
    config: &ServerConfig,
    acceptor: &A,
    shares: &Shares<'b, N>,
) where
    A: TcpAccept,
    K: Clock,
    F: FnMut(Event<'_, A::Error>),
{
    loop {
        let accepted = match shared.wait(acceptor.accept(), None, true).await {
            Waited::Done(accepted) => accepted,
            Waited::Deadline | Waited::Stopped => return,
        };
        let (peer, mut socket) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                let retry_in = shared.update_failures(|f| f.relisten(config.port, config.relisten));
                shared.emit(Event::ListenFailed {
                    error: &Error::Accept(error),
                    retry_in,
                });
                if !shared.sleep(retry_in).await {
                    return;
                }
                continue;
            }
        };
        let buffer = match shared.wait(shares.take(), None, true).await {
            Waited::Done(buffer) => buffer,
            // Stopped while waiting in the backlog: it was never opened, so no event.
            Waited::Deadline | Waited::Stopped => {
                end(shared, &mut socket, &CloseReason::<A::Error>::Shutdown).await;
                return;
            }
        };
        let (conn, open) = shared.opened();
        info!("{} accepted from {}", conn.0, Address(peer));
        shared.emit(Event::Opened { conn, peer, open });
        let reason = shared
            .echo(&mut socket, conn, &[], buffer, config.idle_timeout)
            .await;
        debug!(
            "{} from {} ended: {}",
            conn.0,
            Address(peer),
            reason.as_str()
        );
        end(shared, &mut socket, &reason).await;
        drop(socket);
        // Only now: a connection counts until it is closed, so at most `N` are open at once.
        shares.give_back(buffer);
        let open = shared.closed();
        shared.emit(Event::Closed { conn, reason, open });
        if shared.stopped() {
            return;
        }
    }
}

/// Closes a connection that ended for `reason`: gracefully when it ended in order (end of
/// stream, idle, stop), else it aborts it (as it does a graceful close that failed).
///
/// A graceful close is waited for [`LINGER`] at most, then left to the stack to finish: the
/// FIN follows the echo already queued, which over a lossy link can take longer than any
/// linger (every lost retransmission doubles the wait), and aborting then would reset the
/// connection and lose the end of the echo. The stack keeps the socket until its close ends
/// or its own timeout does (echo-embassy takes such a socket back when it has none free).
async fn end<T, K, F, E>(shared: &Shared<'_, K, F>, socket: &mut T, reason: &CloseReason<E>)
where
    T: TcpShutdown,
    K: Clock,
{
    let graceful = matches!(
        reason,
        CloseReason::Eof | CloseReason::IdleTimeout | CloseReason::Shutdown
    );
    if graceful {
        let deadline = Some(shared.clock.now() + LINGER);
        match shared
            .wait(socket.close(Close::Both), deadline, false)
            .await
        {
            Waited::Done(Ok(())) => return,
            Waited::Deadline | Waited::Stopped => {
                debug!("graceful close not done within the linger; the stack finishes it");
                return;
            }
            Waited::Done(Err(_)) => debug!("graceful close failed; aborting"),
        }
    }
    let deadline = Some(shared.clock.now() + LINGER);
    if !matches!(
        shared.wait(socket.abort(), deadline, false).await,
        Waited::Done(Ok(()))
    ) {
        warn!("aborting a connection failed");
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::asynch::testing::{describe, drive, stop, End, MockError, MockNet, Peer};
    use crate::time::Duration;
    use core::cell::{Cell, RefCell};
    use embedded_io_async::ErrorKind;
    use proptest::prelude::*;
    use std::string::String;
    use std::vec::Vec;
    use std::{format, vec};

    /// Runs a server for `N` clients (and `B` waiting) with `share` bytes each on `net` until
    /// `stop_when`; the events as text, and the stats if `run_until` returned.
    fn serve<const N: usize, const B: usize>(
        net: &MockNet,
        config: ServerConfig,
        share: usize,
        stop_when: impl Fn(&MockNet) -> bool,
    ) -> (Vec<String>, Option<Stats>) {
        let events = RefCell::new(Vec::new());
        let flag = Cell::new(false);
        let mut buffer = vec![0u8; N * share];
        let mut server = AsyncEchoServer::<N, B>::new(config, &mut buffer);
        let ran = drive(
            net,
            &flag,
            async {
                server
                    .run_until(net, net, stop(&flag), |event| {
                        events.borrow_mut().extend(describe(&event))
                    })
                    .await;
                server.stats()
            },
            stop_when,
            1_000_000,
        );
        (events.into_inner(), ran)
    }

    /// The most connections served at once, by the `open` count of the events.
    fn most_served(events: &[String]) -> usize {
        events
            .iter()
            .filter(|e| e.starts_with("opened "))
            .filter_map(|e| e.rsplit(' ').next()?.parse().ok())
            .max()
            .unwrap_or(0)
    }

    fn bytes(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[test]
    fn serves_several_clients_at_once_each_gets_back_what_it_sent() {
        let net = MockNet::new();
        let peers = [
            Peer::new(40000, &bytes(5000, 1))
                .chunks(&[7, 300, 1])
                .writes(&[0, 5, 1000]),
            Peer::new(40001, &bytes(3000, 2))
                .chunks(&[64])
                .writes(&[1, 0, 0, 33]),
            Peer::new(40002, b"hello \xff\xfe invalid UTF-8 comes back as it came"),
        ];
        for peer in &peers {
            net.arrive(peer.clone());
        }
        let (events, stats) = serve::<3, 1>(&net, ServerConfig::new(), 256, MockNet::all_done);
        let stats = stats.expect("the server returns after the stop");
        for (index, peer) in peers.iter().enumerate() {
            let conn = net.conn(index);
            assert_eq!(conn.received, peer.sends, "connection {index}");
            assert_eq!(conn.closed, Some("close"), "connection {index}");
        }
        assert_eq!(most_served(&events), 3, "served at once");
        assert_eq!(events[0], "listening 10.0.0.1:5001");
        for index in 0..3 {
            assert!(events.contains(&format!(
                "opened #{index} 10.0.0.2:{} {}",
                40000 + index,
                index + 1
            )));
        }
        assert_eq!(events.iter().filter(|e| e.contains(" eof ")).count(), 3);
        assert_eq!((stats.connections, stats.open), (3, 0));
        let total: usize = peers.iter().map(|p| p.sends.len()).sum();
        assert_eq!(stats.bytes_received, total as u64);
        assert_eq!(stats.bytes_sent, total as u64);
    }

    #[test]
    fn keeps_an_accept_pending_for_every_free_slot() {
        let net = MockNet::new();
        let (_, stats) = serve::<3, 2>(&net, ServerConfig::new(), 16, |net| {
            net.most_accepting.get() == 5
        });
        assert!(stats.is_some(), "stops while accepting");
        assert_eq!(net.most_accepting.get(), 5, "N + BACKLOG accepts at once");
        assert_eq!(net.accepting.get(), 0, "no accept is left behind");

        // All three served: the backlog's two accepts are still pending.
        let net = MockNet::new();
        for port in 0..3 {
            net.arrive(Peer::new(40000 + port, b"stay").end(End::Open));
        }
        let (events, stats) = serve::<3, 2>(&net, ServerConfig::new(), 16, |net| {
            let echoed = net.conns.borrow().iter().all(|c| c.received.len() == 4);
            echoed && net.open() == 3 && net.accepting.get() == 2
        });
        assert!(
            stats.is_some(),
            "two accepts pending while three are served"
        );
        assert_eq!(most_served(&events), 3);
        assert_eq!(net.accepting.get(), 0, "stopped");
    }

    #[test]
    fn more_clients_than_slots_are_served_in_turn() {
        let net = MockNet::new();
        for port in 0..7 {
            net.arrive(Peer::new(40000 + port, &bytes(100, port as u8)).chunks(&[9]));
        }
        let (events, stats) = serve::<2, 1>(&net, ServerConfig::new(), 32, MockNet::all_done);
        assert_eq!(stats.map(|s| s.connections), Some(7));
        assert_eq!(most_served(&events), 2, "served two at a time");
        assert_eq!(net.most_open.get(), 3, "and one more accepted, waiting");
        for index in 0..7 {
            assert_eq!(net.conn(index).received, bytes(100, index as u8));
        }
        assert!(events.iter().all(|e| !e.starts_with("listen failed")));
    }

    #[test]
    fn a_busy_connection_does_not_starve_the_others() {
        let net = MockNet::new();
        // All of it at once: every read and write of the first completes without waiting.
        net.arrive(Peer::new(40000, &bytes(200_000, 8)));
        net.arrive(Peer::new(40001, b"and me?"));
        let first_read_when_second_done = Cell::new(None);
        let (_, stats) = serve::<2, 0>(&net, ServerConfig::new(), 64, |net| {
            let conns = net.conns.borrow();
            if conns.len() == 2
                && conns[1].received == b"and me?"
                && first_read_when_second_done.get().is_none()
            {
                first_read_when_second_done.set(Some(conns[0].read()));
            }
            drop(conns);
            MockNet::all_done(net)
        });
        assert!(stats.is_some());
        let read = first_read_when_second_done
            .get()
            .expect("the second was echoed");
        assert!(
            read < 200_000,
            "the second waited for all of the first ({read} bytes)"
        );
        assert_eq!(net.conn(0).received, bytes(200_000, 8));
    }

    #[test]
    fn a_stop_ends_the_echo_of_a_peer_that_never_pauses() {
        let net = MockNet::new();
        // All of it at once: no read or write of the echo ever waits.
        net.arrive(Peer::new(40000, &bytes(2_000_000, 9)));
        let (events, stats) = serve::<1, 0>(&net, ServerConfig::new(), 64, |net| {
            net.conns
                .borrow()
                .first()
                .is_some_and(|c| c.read() >= 10_000)
        });
        assert!(stats.is_some(), "never stopped");
        let read = net.conn(0).read();
        assert!(
            read < 100_000,
            "the stop waited for the peer ({read} bytes read)"
        );
        assert!(
            events.iter().any(|e| e.starts_with("closed #0 shutdown")),
            "{events:?}"
        );
    }

    #[test]
    fn a_close_that_does_not_finish_within_the_linger_is_left_to_the_stack_not_aborted() {
        let net = MockNet::new();
        let mut slow = Peer::new(40000, b"the end of this echo is still in flight");
        slow.never_closes = true;
        net.arrive(slow);
        net.arrive(Peer::new(40001, b"next"));
        let (events, stats) = serve::<1, 0>(&net, ServerConfig::new(), 64, MockNet::all_done);
        assert!(stats.is_some(), "{events:?}");
        let first = net.conn(0);
        assert_eq!(first.received, b"the end of this echo is still in flight");
        assert_ne!(
            first.closed,
            Some("abort"),
            "reset: the echo in flight is lost"
        );
        assert!(first.dropped, "the slot stays taken");
        assert!(
            net.now() >= crate::Instant::from_millis(5_000),
            "linger shorter than LINGER"
        );
        assert_eq!(
            net.conn(1).received,
            b"next",
            "the slot was never given back"
        );
    }

    #[test]
    fn reads_no_more_until_its_echo_is_written() {
        let net = MockNet::new();
        net.arrive(
            Peer::new(40000, &bytes(10_000, 3))
                .chunks(&[100])
                .end(End::Open)
                .stalls(),
        );
        net.arrive(Peer::new(40001, &bytes(2000, 4)).chunks(&[50]));
        // No idle timeout: the stalled peer holds its slot, and nothing can move after the
        // other one is served.
        let (_, stats) = serve::<2, 1>(&net, ServerConfig::new(), 64, |_| false);
        assert_eq!(stats, None, "stuck on the stalled peer, as it should be");
        assert_eq!(net.conn(0).read(), 64, "one buffer read, none more");
        assert_eq!(
            net.conn(1).received,
            bytes(2000, 4),
            "the other one is served"
        );
    }

    #[test]
    fn idle_timeout_closes_only_the_silent_client() {
        let net = MockNet::new();
        net.arrive(Peer::new(40000, b"").end(End::Open));
        net.arrive(Peer::new(40001, &bytes(500, 5)).chunks(&[10]));
        let config = ServerConfig::new().with_idle_timeout(Some(Duration::from_secs(10)));
        let (events, stats) = serve::<2, 1>(&net, config, 64, MockNet::all_done);
        assert!(stats.is_some());
        assert!(
            events.contains(&String::from("closed #0 idle timeout 0")),
            "{events:?}"
        );
        assert_eq!(net.conn(0).closed, Some("close"));
        assert_eq!(net.conn(1).received, bytes(500, 5));
        assert!(net.now() >= crate::Instant::from_millis(10_000));
    }

    #[test]
    fn a_reset_ends_only_that_connection_and_is_aborted() {
        let net = MockNet::new();
        net.arrive(
            Peer::new(40000, &bytes(300, 6))
                .chunks(&[100])
                .end(End::Reset),
        );
        net.arrive(Peer::new(40001, &bytes(3000, 7)).chunks(&[10]));
        let (events, stats) = serve::<2, 1>(&net, ServerConfig::new(), 64, MockNet::all_done);
        assert!(stats.is_some());
        assert!(
            events.contains(&String::from("closed #0 pipe closed 1")),
            "{events:?}"
        );
        assert_eq!(net.conn(0).closed, Some("abort"));
        assert_eq!(
            net.conn(0).received,
            bytes(300, 6),
            "echoed up to the reset"
        );
        assert_eq!(net.conn(1).received, bytes(3000, 7));
        assert_eq!(net.conn(1).closed, Some("close"));
    }

    #[test]
    fn accept_failures_are_reported_and_retried_with_backoff() {
        let net = MockNet::new();
        net.fail_accept(MockError(ErrorKind::OutOfMemory));
        net.fail_accept(MockError(ErrorKind::OutOfMemory));
        net.arrive(Peer::new(40000, b"still served"));
        let (events, stats) = serve::<1, 0>(&net, ServerConfig::new(), 64, MockNet::all_done);
        assert!(stats.is_some());
        let failed =
            "listen failed: the listening socket failed to accept: MockError(OutOfMemory);";
        assert_eq!(
            events[..4],
            [
                String::from("listening 10.0.0.1:5001"),
                format!("{failed} retry in 500ms"),
                format!("{failed} retry in 1s"),
                String::from("opened #0 10.0.0.2:40000 1"),
            ]
        );
        assert_eq!(net.now(), crate::Instant::from_millis(1500));
        assert_eq!(net.conn(0).received, b"still served");
    }

    #[test]
    fn bind_failures_are_retried_until_bound() {
        let net = MockNet::new();
        net.fail_bind(MockError(ErrorKind::AddrInUse));
        net.arrive(Peer::new(40000, b"x"));
        let config = ServerConfig::new().with_port(7);
        let (events, _) = serve::<1, 1>(&net, config, 8, MockNet::all_done);
        assert_eq!(
            events[..2],
            [
                String::from(
                    "listen failed: cannot bind port 7: MockError(AddrInUse); retry in 500ms"
                ),
                String::from("listening 10.0.0.1:7"),
            ]
        );
    }

    #[test]
    fn a_stop_closes_every_connection_gracefully_and_returns() {
        let net = MockNet::new();
        net.arrive(Peer::new(40000, b"a").end(End::Open));
        net.arrive(Peer::new(40001, b"b").end(End::Open));
        let (events, stats) = serve::<3, 1>(&net, ServerConfig::new(), 8, |net| {
            net.open() == 2 && net.conns.borrow().iter().all(|c| c.received.len() == 1)
        });
        let stats = stats.expect("returns after the stop");
        assert_eq!(stats.open, 0);
        let closed: Vec<&String> = events.iter().filter(|e| e.starts_with("closed")).collect();
        assert_eq!(closed.len(), 2);
        assert!(closed.iter().all(|e| e.contains("shutdown")), "{closed:?}");
        assert_eq!(net.conn(0).closed, Some("close"));
        assert_eq!(net.conn(1).closed, Some("close"));
        assert_eq!(net.accepting.get(), 0);
    }

    /// A peer script from proptest's values.
    fn peer(port: u16, sends: Vec<u8>, chunks: Vec<usize>, writes: Vec<usize>) -> Peer {
        Peer::new(port, &sends).chunks(&chunks).writes(&writes)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Every connection gets back exactly what it sent, in order, whatever the chunking,
        /// the partial and pending writes, the number of clients and of slots.
        #[test]
        fn every_connection_gets_back_exactly_what_it_sent(
            scripts in proptest::collection::vec(
                (
                    proptest::collection::vec(any::<u8>(), 0..3000),
                    proptest::collection::vec(1usize..700, 1..5),
                    proptest::collection::vec(0usize..300, 1..5),
                ),
                1..6,
            ),
            slots in 1usize..4,
            backlog in 0usize..3,
            share in 1usize..200,
        ) {
            let net = MockNet::new();
            let peers: Vec<Peer> = scripts
                .into_iter()
                .enumerate()
                .map(|(i, (sends, chunks, writes))| peer(40000 + i as u16, sends, chunks, writes))
                .collect();
            for p in &peers {
                net.arrive(p.clone());
            }
            let config = ServerConfig::new();
            let done = MockNet::all_done;
            let (events, stats) = match (slots, backlog) {
                (1, 0) => serve::<1, 0>(&net, config, share, done),
                (1, 1) => serve::<1, 1>(&net, config, share, done),
                (1, _) => serve::<1, 2>(&net, config, share, done),
                (2, 0) => serve::<2, 0>(&net, config, share, done),
                (2, 1) => serve::<2, 1>(&net, config, share, done),
                (2, _) => serve::<2, 2>(&net, config, share, done),
                (_, 0) => serve::<3, 0>(&net, config, share, done),
                (_, 1) => serve::<3, 1>(&net, config, share, done),
                (_, _) => serve::<3, 2>(&net, config, share, done),
            };
            prop_assert!(stats.is_some());
            for (index, p) in peers.iter().enumerate() {
                let conn = net.conn(index);
                prop_assert_eq!(&conn.received, &p.sends);
                prop_assert_eq!(conn.closed, Some("close"));
            }
            prop_assert!(most_served(&events) <= slots);
            prop_assert!(net.most_open.get() <= slots + backlog);
        }
    }
}
