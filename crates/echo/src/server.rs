//! The tutorial's TCP server, done right: several clients, nothing lost, nothing blocking, a
//! listener that recovers by itself.

use core::net::{Ipv4Addr, SocketAddr};

use embedded_nal::TcpFullStack;

use crate::addr::Address;
use crate::backoff::Backoff;
use crate::error::Error;
use crate::event::{CloseReason, ConnId, Event};
use crate::link::{Link, Pumped};
use crate::role::{Role, Stats};
use crate::rules::{ConnIds, Failures};
use crate::stack::{LocalAddress, ZeroRead};
use crate::time::{Duration, Instant};

/// The tutorial's port.
pub const DEFAULT_PORT: u16 = 5001;
/// How many clients the examples serve at once. (The tutorial's `listen(3)` is not this: it
/// sets the backlog of clients waiting to be accepted, and the tutorial serves one at a time.)
pub const DEFAULT_MAX_CLIENTS: usize = 3;
/// The tutorial's `recv(1024)`: the examples' echo buffer per connection.
pub const DEFAULT_BUFFER_SIZE: usize = 1024;

/// How an [`EchoServer`] behaves. The number of clients is the number of slots it is given.
///
/// Start from [`ServerConfig::new`] (or `default()`) and change what differs:
/// `ServerConfig::new().with_port(7)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct ServerConfig {
    /// The port to bind (0: the stack chooses, where it can). Default [`DEFAULT_PORT`].
    pub port: u16,
    /// Close a connection when nothing moved in either direction for this long. Default
    /// `None`: a silent client keeps its slot until the stack sees it gone.
    pub idle_timeout: Option<Duration>,
    /// What the stack means by `receive` returning `Ok(0)`. Default [`ZeroRead::Eof`].
    pub zero_read: ZeroRead,
    /// The waits before listening again after the listener failed. Default
    /// [`Backoff::DEFAULT`].
    pub relisten: Backoff,
}

impl ServerConfig {
    /// The tutorial's server: port 5001, no idle timeout.
    pub const fn new() -> Self {
        ServerConfig {
            port: DEFAULT_PORT,
            idle_timeout: None,
            zero_read: ZeroRead::Eof,
            relisten: Backoff::DEFAULT,
        }
    }

    /// With [`port`](Self::port).
    pub const fn with_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// With [`idle_timeout`](Self::idle_timeout).
    pub const fn with_idle_timeout(mut self, idle_timeout: Option<Duration>) -> Self {
        self.idle_timeout = idle_timeout;
        self
    }

    /// With [`zero_read`](Self::zero_read).
    pub const fn with_zero_read(mut self, zero_read: ZeroRead) -> Self {
        self.zero_read = zero_read;
        self
    }

    /// With [`relisten`](Self::relisten).
    pub const fn with_relisten(mut self, relisten: Backoff) -> Self {
        self.relisten = relisten;
        self
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig::new()
    }
}

/// Room for one client connection. Create them with [`Slot::new`], e.g.
/// `[const { Slot::new() }; 3]`, or collect a `Vec` of them.
pub struct Slot<T> {
    conn: Option<Served<T>>,
}

impl<T> Slot<T> {
    /// An empty slot.
    pub const fn new() -> Self {
        Slot { conn: None }
    }
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Slot::new()
    }
}

struct Served<T> {
    id: ConnId,
    peer: SocketAddr,
    link: Link<T>,
}

/// Where the listening socket is.
enum Listener<T> {
    /// Not listening: the next `poll` listens.
    Closed,
    Listening(T),
    /// Listening failed: the first `poll` from `until` listens again.
    Backoff {
        until: Instant,
    },
    /// Shut down: nothing more happens.
    Finished,
}

impl<T> Listener<T> {
    fn name(&self) -> &'static str {
        match self {
            Listener::Closed => "closed",
            Listener::Listening(_) => "listening",
            Listener::Backoff { .. } => "backoff",
            Listener::Finished => "finished",
        }
    }
}

/// A non-blocking TCP echo server over any [`TcpFullStack`]; run it through its [`Role`].
///
/// Serves as many clients at once as it has [`Slot`]s; further clients wait in the stack's
/// backlog until a slot frees. Each slot echoes through its share of the buffer, so memory is
/// fixed by the caller: `slots.len()` connections of `buffer.len() / slots.len()` bytes each.
///
/// ```no_run
/// # fn run<S>(stack: &mut S, now: echo::Instant) -> Result<(), echo::Error<S::Error>>
/// # where S: echo::embedded_nal::TcpFullStack + echo::LocalAddress {
/// use echo::{EchoServer, Role, Screen, ServerConfig, Slot};
///
/// let mut slots = [const { Slot::new() }; echo::DEFAULT_MAX_CLIENTS];
/// let mut buffer = [0u8; echo::DEFAULT_MAX_CLIENTS * echo::DEFAULT_BUFFER_SIZE];
/// let mut server = EchoServer::new(ServerConfig::new(), &mut slots, &mut buffer);
/// let mut screen = Screen::server();
/// server.poll(stack, now, |event| screen.update(&event))?;
/// # Ok(()) }
/// ```
pub struct EchoServer<'a, S>
where
    S: TcpFullStack,
{
    config: ServerConfig,
    listener: Listener<S::TcpSocket>,
    /// Listening attempts that failed since a connection was last accepted.
    failures: Failures,
    slots: &'a mut [Slot<S::TcpSocket>],
    buffer: &'a mut [u8],
    ids: ConnIds,
    stats: Stats,
}

impl<'a, S> EchoServer<'a, S>
where
    S: TcpFullStack + LocalAddress,
{
    /// A server that will listen on its first `poll`.
    ///
    /// # Panics
    /// If `slots` is empty or `buffer` is smaller than one byte per slot.
    pub fn new(
        config: ServerConfig,
        slots: &'a mut [Slot<S::TcpSocket>],
        buffer: &'a mut [u8],
    ) -> Self {
        assert!(!slots.is_empty(), "an echo server needs at least one slot");
        assert!(
            buffer.len() >= slots.len(),
            "the echo buffer needs at least one byte per slot"
        );
        let stats = Stats::new(slots.len());
        EchoServer {
            config,
            listener: Listener::Closed,
            failures: Failures::default(),
            slots,
            buffer,
            ids: ConnIds::default(),
            stats,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The listening socket, if the server is listening.
    pub fn listener(&self) -> Option<&S::TcpSocket> {
        match &self.listener {
            Listener::Listening(socket) => Some(socket),
            _ => None,
        }
    }

    fn open(&self) -> usize {
        self.slots.iter().filter(|slot| slot.conn.is_some()).count()
    }

    /// Echoes on every open connection; closes those that ended, failed or idled too long.
    fn serve<F>(&mut self, stack: &mut S, now: Instant, on_event: &mut F) -> bool
    where
        F: FnMut(Event<'_, S::Error>),
    {
        let share = self.buffer.len() / self.slots.len();
        let mut progress = false;
        for index in 0..self.slots.len() {
            let Some(served) = self.slots[index].conn.as_mut() else {
                continue;
            };
            let buffer = &mut self.buffer[index * share..(index + 1) * share];
            let id = served.id;
            let outcome = if served.link.is_idle(now, self.config.idle_timeout) {
                Pumped::Closed(CloseReason::IdleTimeout)
            } else {
                served.link.pump_turn(
                    stack,
                    buffer,
                    self.config.zero_read,
                    now,
                    &mut self.stats,
                    |bytes| on_event(Event::Received { conn: id, bytes }),
                )
            };
            match outcome {
                Pumped::Idle => {}
                Pumped::Progress => progress = true,
                Pumped::Closed(reason) => {
                    self.close(stack, index, reason, on_event);
                    progress = true;
                }
            }
        }
        progress
    }

    /// Listens if due, then accepts while a slot is free. The only place the listener's
    /// state changes.
    fn poll_listener<F>(&mut self, stack: &mut S, now: Instant, on_event: &mut F) -> bool
    where
        F: FnMut(Event<'_, S::Error>),
    {
        let was = self.listener.name();
        let progress = match core::mem::replace(&mut self.listener, Listener::Finished) {
            Listener::Finished => false,
            Listener::Backoff { until } if now < until => {
                self.listener = Listener::Backoff { until };
                false
            }
            Listener::Closed | Listener::Backoff { .. } => {
                match self.listen(stack) {
                    Ok(socket) => {
                        let local = stack.local_address(&socket).unwrap_or(SocketAddr::new(
                            Ipv4Addr::UNSPECIFIED.into(),
                            self.config.port,
                        ));
                        info!("listening on {}", Address(local));
                        self.listener = Listener::Listening(socket);
                        on_event(Event::Listening { local });
                        self.accept(stack, now, on_event);
                    }
                    Err(error) => self.listen_failed(error, now, on_event),
                }
                true
            }
            Listener::Listening(socket) => {
                self.listener = Listener::Listening(socket);
                self.accept(stack, now, on_event)
            }
        };
        if self.listener.name() != was {
            debug!("listener: {} => {}", was, self.listener.name());
        }
        progress
    }

    fn listen(&mut self, stack: &mut S) -> Result<S::TcpSocket, Error<S::Error>> {
        let port = self.config.port;
        let mut socket = stack.socket().map_err(Error::Socket)?;
        let listening = match stack.bind(&mut socket, port) {
            Err(error) => Err(Error::Bind { port, error }),
            Ok(()) => stack
                .listen(&mut socket)
                .map_err(|error| Error::Listen { port, error }),
        };
        match listening {
            Ok(()) => Ok(socket),
            Err(error) => {
                // The error to report is the bind/listen one, not a failure to clean up.
                let _ = stack.close(socket);
                Err(error)
            }
        }
    }

    /// Accepts while a slot is free; on a failure of the listening socket, closes it and
    /// backs off.
    fn accept<F>(&mut self, stack: &mut S, now: Instant, on_event: &mut F) -> bool
    where
        F: FnMut(Event<'_, S::Error>),
    {
        let mut progress = false;
        while let Some(index) = self.slots.iter().position(|slot| slot.conn.is_none()) {
            let Listener::Listening(listener) = &mut self.listener else {
                break;
            };
            match stack.accept(listener) {
                Ok((socket, peer)) => {
                    let conn = self.ids.next();
                    self.stats.opened();
                    self.failures.reset();
                    info!("{} accepted from {}", conn.0, Address(peer));
                    self.slots[index].conn = Some(Served {
                        id: conn,
                        peer,
                        link: Link::new(socket, now),
                    });
                    let open = self.open();
                    on_event(Event::Opened { conn, peer, open });
                    progress = true;
                }
                Err(nb::Error::WouldBlock) => break,
                Err(nb::Error::Other(error)) => {
                    if let Listener::Listening(listener) =
                        core::mem::replace(&mut self.listener, Listener::Closed)
                    {
                        let _ = stack.close(listener);
                    }
                    self.listen_failed(Error::Accept(error), now, on_event);
                    return true;
                }
            }
        }
        progress
    }

    fn listen_failed<F>(&mut self, error: Error<S::Error>, now: Instant, on_event: &mut F)
    where
        F: FnMut(Event<'_, S::Error>),
    {
        let retry_in = self
            .failures
            .relisten(self.config.port, self.config.relisten);
        self.listener = Listener::Backoff {
            until: now + retry_in,
        };
        on_event(Event::ListenFailed {
            error: &error,
            retry_in,
        });
    }

    /// Closes the connection in slot `index` and reports it.
    fn close<F>(
        &mut self,
        stack: &mut S,
        index: usize,
        reason: CloseReason<S::Error>,
        on_event: &mut F,
    ) where
        F: FnMut(Event<'_, S::Error>),
    {
        let Some(served) = self.slots[index].conn.take() else {
            return;
        };
        debug!(
            "{} from {} closed: {} ({} bytes unsent)",
            served.id.0,
            Address(served.peer),
            reason.as_str(),
            served.link.unsent()
        );
        if stack.close(served.link.socket).is_err() {
            warn!("closing connection {} failed", served.id.0);
        }
        let open = self.open();
        on_event(Event::Closed {
            conn: served.id,
            reason,
            open,
        });
    }

    /// Closes every connection and the listening socket, leaving the listener `next`.
    fn close_all<F>(&mut self, stack: &mut S, next: Listener<S::TcpSocket>, on_event: &mut F)
    where
        F: FnMut(Event<'_, S::Error>),
    {
        for index in 0..self.slots.len() {
            self.close(stack, index, CloseReason::Shutdown, on_event);
        }
        if let Listener::Listening(socket) = core::mem::replace(&mut self.listener, next) {
            if stack.close(socket).is_err() {
                warn!("closing the listening socket failed");
            }
        }
        self.failures.reset();
    }
}

impl<S> Role<S> for EchoServer<'_, S>
where
    S: TcpFullStack + LocalAddress,
{
    /// In order: serves every open connection (echo, EOF, errors, idle timeout), listens if
    /// not listening (and the backoff after a failure has passed), then accepts while a slot is
    /// free. Never returns `Err`.
    fn poll<F>(
        &mut self,
        stack: &mut S,
        now: Instant,
        mut on_event: F,
    ) -> Result<bool, Error<S::Error>>
    where
        F: FnMut(Event<'_, S::Error>),
    {
        let served = self.serve(stack, now, &mut on_event);
        let listened = self.poll_listener(stack, now, &mut on_event);
        Ok(served | listened)
    }

    fn restart<F>(&mut self, stack: &mut S, mut on_event: F)
    where
        F: FnMut(Event<'_, S::Error>),
    {
        info!("restarting");
        self.close_all(stack, Listener::Closed, &mut on_event);
    }

    fn shutdown<F>(&mut self, stack: &mut S, mut on_event: F)
    where
        F: FnMut(Event<'_, S::Error>),
    {
        self.close_all(stack, Listener::Finished, &mut on_event);
    }

    /// The earliest idle timeout of the open connections, or the end of a backoff.
    fn next_deadline(&self) -> Option<Instant> {
        let backoff = match self.listener {
            Listener::Backoff { until } => Some(until),
            _ => None,
        };
        self.slots
            .iter()
            .filter_map(|slot| slot.conn.as_ref())
            .filter_map(|served| served.link.idle_deadline(self.config.idle_timeout))
            .chain(backoff)
            .min()
    }

    fn stats(&self) -> Stats {
        Stats {
            open: self.open(),
            ..self.stats
        }
    }

    fn is_finished(&self) -> bool {
        matches!(self.listener, Listener::Finished)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::rules::ROUNDS_PER_TURN;
    use crate::testing::{End, MockError, MockStack, Peer, CHOSEN_PORT, LOCAL_IP};
    use proptest::prelude::*;
    use std::vec;
    use std::vec::Vec;

    /// An event as the tests keep it: `Received` without its bytes (the stack records what
    /// was echoed), failures with their error.
    #[derive(Debug, Clone, PartialEq)]
    enum Seen {
        Listening(SocketAddr),
        ListenFailed(Error<MockError>, Duration),
        Opened(ConnId, SocketAddr, usize),
        Received(ConnId, usize),
        Closed(ConnId, CloseReason<MockError>, usize),
    }

    fn record(seen: &mut Vec<Seen>) -> impl FnMut(Event<'_, MockError>) + '_ {
        |event| {
            seen.push(match event {
                Event::Listening { local } => Seen::Listening(local),
                Event::ListenFailed { error, retry_in } => {
                    Seen::ListenFailed(error.clone(), retry_in)
                }
                Event::Opened { conn, peer, open } => Seen::Opened(conn, peer, open),
                Event::Received { conn, bytes } => Seen::Received(conn, bytes.len()),
                Event::Closed { conn, reason, open } => Seen::Closed(conn, reason, open),
                other => panic!("the server reported a client event: {other:?}"),
            })
        }
    }

    fn poll(
        server: &mut EchoServer<'_, MockStack>,
        stack: &mut MockStack,
        now: Instant,
        seen: &mut Vec<Seen>,
    ) -> bool {
        server
            .poll(stack, now, record(seen))
            .expect("the server's poll never fails")
    }

    fn polls(
        server: &mut EchoServer<'_, MockStack>,
        stack: &mut MockStack,
        times: usize,
        seen: &mut Vec<Seen>,
    ) {
        for _ in 0..times {
            poll(server, stack, Instant::ZERO, seen);
        }
    }

    fn closed(seen: &[Seen]) -> Vec<(ConnId, CloseReason<MockError>)> {
        seen.iter()
            .filter_map(|event| match event {
                Seen::Closed(conn, reason, _) => Some((*conn, reason.clone())),
                _ => None,
            })
            .collect()
    }

    fn listen_failures(seen: &[Seen]) -> Vec<(Error<MockError>, Duration)> {
        seen.iter()
            .filter_map(|event| match event {
                Seen::ListenFailed(error, retry_in) => Some((error.clone(), *retry_in)),
                _ => None,
            })
            .collect()
    }

    fn listenings(seen: &[Seen]) -> usize {
        seen.iter()
            .filter(|event| matches!(event, Seen::Listening(_)))
            .count()
    }

    fn peer(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 2], port))
    }

    #[test]
    fn listens_on_the_tutorial_port_and_echoes_in_order() {
        let mut stack = MockStack::default();
        stack
            .incoming
            .push_back(Ok(Peer::new(40000, b"hello board")));
        let mut slots = [const { Slot::new() }; DEFAULT_MAX_CLIENTS];
        let mut buffer = [0u8; 3 * 4];
        let mut server = EchoServer::new(ServerConfig::new(), &mut slots, &mut buffer);
        let mut seen = Vec::new();
        polls(&mut server, &mut stack, 10, &mut seen);

        assert_eq!(stack.bound_ports, [5001]);
        assert_eq!(stack.conn(0).received_by_peer, b"hello board");
        assert!(stack.conn(0).closed);
        assert_eq!(
            seen[..2],
            [
                Seen::Listening(SocketAddr::from((LOCAL_IP, 5001))),
                Seen::Opened(ConnId(0), peer(40000), 1),
            ]
        );
        assert_eq!(
            seen.last(),
            Some(&Seen::Closed(ConnId(0), CloseReason::Eof, 0))
        );
        let received: usize = seen
            .iter()
            .map(|event| match event {
                Seen::Received(ConnId(0), n) => *n,
                _ => 0,
            })
            .sum();
        assert_eq!(received, 11);
        assert_eq!(server.stats().bytes_sent, 11);
        assert_eq!(server.stats().connections, 1);
    }

    #[test]
    fn reports_the_port_the_stack_chose_and_its_address() {
        let mut stack = MockStack::default();
        let mut slots = [const { Slot::new() }; 1];
        let mut buffer = [0u8; 4];
        let mut server = EchoServer::new(ServerConfig::new().with_port(0), &mut slots, &mut buffer);
        let mut seen = Vec::new();
        poll(&mut server, &mut stack, Instant::ZERO, &mut seen);
        assert_eq!(
            seen,
            [Seen::Listening(SocketAddr::from((LOCAL_IP, CHOSEN_PORT)))]
        );
    }

    #[test]
    fn reports_the_unspecified_address_when_the_stack_does_not_know() {
        let mut stack = MockStack::default();
        stack.address_unknown = true;
        let mut slots = [const { Slot::new() }; 1];
        let mut buffer = [0u8; 4];
        let mut server = EchoServer::new(ServerConfig::new(), &mut slots, &mut buffer);
        let mut seen = Vec::new();
        poll(&mut server, &mut stack, Instant::ZERO, &mut seen);
        assert_eq!(seen, [Seen::Listening("0.0.0.0:5001".parse().unwrap())]);
    }

    #[test]
    fn counts_open_connections_in_its_events_and_stats() {
        let mut stack = MockStack::default();
        stack
            .incoming
            .push_back(Ok(Peer::new(40000, b"").end(End::Open)));
        stack.incoming.push_back(Ok(Peer::new(40001, b"bye")));
        let mut slots = [const { Slot::new() }; 3];
        let mut buffer = [0u8; 3 * 4];
        let mut server = EchoServer::new(ServerConfig::new(), &mut slots, &mut buffer);
        let mut seen = Vec::new();
        polls(&mut server, &mut stack, 5, &mut seen);
        let opened_and_closed: Vec<_> = seen
            .iter()
            .filter(|event| matches!(event, Seen::Opened(..) | Seen::Closed(..)))
            .cloned()
            .collect();
        assert_eq!(
            opened_and_closed,
            [
                Seen::Opened(ConnId(0), peer(40000), 1),
                Seen::Opened(ConnId(1), peer(40001), 2),
                Seen::Closed(ConnId(1), CloseReason::Eof, 1),
            ]
        );
        let stats = server.stats();
        assert_eq!((stats.open, stats.capacity, stats.connections), (1, 3, 2));
    }

    #[test]
    fn drops_nothing_on_partial_send_and_would_block() {
        let mut stack = MockStack::default();
        let mut peer = Peer::new(40000, b"0123456789abcdefghij");
        peer.send_sizes = vec![3, 0, 1, 0, 0];
        peer.recv_sizes = vec![7, 2];
        stack.incoming.push_back(Ok(peer));
        let mut slots = [const { Slot::new() }; 1];
        let mut buffer = [0u8; 8];
        let mut server = EchoServer::new(ServerConfig::new(), &mut slots, &mut buffer);
        polls(&mut server, &mut stack, 200, &mut Vec::new());
        assert_eq!(stack.conn(0).received_by_peer, b"0123456789abcdefghij");
    }

    #[test]
    fn a_busy_connection_echoes_a_turn_of_rounds_a_poll_and_the_others_theirs() {
        let mut stack = MockStack::default();
        for port in [40000, 40001] {
            let mut peer = Peer::new(port, &[b'x'; 4000]);
            peer.recv_sizes = vec![4];
            stack.incoming.push_back(Ok(peer));
        }
        let mut slots = [const { Slot::new() }; 2];
        let mut buffer = [0u8; 2 * 64];
        let mut server = EchoServer::new(ServerConfig::new(), &mut slots, &mut buffer);
        while stack.conns.len() < 2 {
            poll(&mut server, &mut stack, Instant::ZERO, &mut Vec::new());
        }
        let before = [stack.conn(0).read(), stack.conn(1).read()];
        poll(&mut server, &mut stack, Instant::ZERO, &mut Vec::new());
        let turn = ROUNDS_PER_TURN as usize * 4;
        for (conn, read) in before.into_iter().enumerate() {
            assert_eq!(stack.conn(conn).read() - read, turn, "conn {conn}");
            assert_eq!(
                stack.conn(conn).received_by_peer.len(),
                stack.conn(conn).read()
            );
        }
    }

    #[test]
    fn reads_nothing_more_while_an_echo_is_unsent() {
        let mut stack = MockStack::default();
        let mut peer = Peer::new(40000, &[7u8; 100]);
        peer.send_sizes = vec![0];
        stack.incoming.push_back(Ok(peer));
        let mut slots = [const { Slot::new() }; 1];
        let mut buffer = [0u8; 16];
        let mut server = EchoServer::new(ServerConfig::new(), &mut slots, &mut buffer);
        polls(&mut server, &mut stack, 50, &mut Vec::new());
        let conn = stack.conn(0);
        assert_eq!(conn.received_by_peer.len(), 0);
        assert_eq!(conn.read(), 16, "one buffer's worth read, then no more");
        assert_eq!(conn.recv_calls(), 1, "not even asked for more");
        assert!(!conn.closed, "a peer that does not read is not an error");
    }

    #[test]
    fn ends_on_pipe_closed_when_zero_read_means_no_data() {
        let mut stack = MockStack::default();
        let mut peer = Peer::new(40000, b"smoltcp-nal").end(End::PipeClosed);
        peer.zero_when_empty = true;
        peer.recv_blocks = vec![true, false];
        stack.incoming.push_back(Ok(peer));
        let mut slots = [const { Slot::new() }; 1];
        let mut buffer = [0u8; 4];
        let config = ServerConfig::new().with_zero_read(ZeroRead::NoData);
        let mut server = EchoServer::new(config, &mut slots, &mut buffer);
        let mut seen = Vec::new();
        polls(&mut server, &mut stack, 40, &mut seen);
        assert_eq!(stack.conn(0).received_by_peer, b"smoltcp-nal");
        assert_eq!(closed(&seen), [(ConnId(0), CloseReason::Eof)]);
    }

    #[test]
    fn zero_read_as_no_data_keeps_a_quiet_connection_open() {
        let mut stack = MockStack::default();
        let mut peer = Peer::new(40000, b"").end(End::Open);
        peer.zero_when_empty = true;
        stack.incoming.push_back(Ok(peer));
        let mut slots = [const { Slot::new() }; 1];
        let mut buffer = [0u8; 4];
        let config = ServerConfig::new().with_zero_read(ZeroRead::NoData);
        let mut server = EchoServer::new(config, &mut slots, &mut buffer);
        let mut seen = Vec::new();
        polls(&mut server, &mut stack, 10, &mut seen);
        assert!(closed(&seen).is_empty());
        assert_eq!(server.stats().open, 1);
    }

    #[test]
    fn accepts_beyond_max_clients_only_when_a_slot_frees() {
        let mut stack = MockStack::default();
        // The first client ends its stream on its 5th receive; the others stay.
        let mut first = Peer::new(40000, b"");
        first.recv_blocks = vec![true, true, true, true, false];
        stack.incoming.push_back(Ok(first));
        stack
            .incoming
            .push_back(Ok(Peer::new(40001, b"").end(End::Open)));
        stack
            .incoming
            .push_back(Ok(Peer::new(40002, b"").end(End::Open)));
        let mut slots = [const { Slot::new() }; 2];
        let mut buffer = [0u8; 8];
        let mut server = EchoServer::new(ServerConfig::new(), &mut slots, &mut buffer);
        let mut seen = Vec::new();
        polls(&mut server, &mut stack, 3, &mut seen);
        assert_eq!(server.stats().open, 2);
        assert_eq!(
            stack.incoming.len(),
            1,
            "the third client waits in the backlog"
        );

        polls(&mut server, &mut stack, 3, &mut seen);
        assert_eq!(server.stats().open, 2);
        assert!(stack.incoming.is_empty());
        let order: Vec<_> = seen
            .iter()
            .filter(|event| matches!(event, Seen::Closed(..) | Seen::Opened(ConnId(2), ..)))
            .cloned()
            .collect();
        assert_eq!(
            order,
            [
                Seen::Closed(ConnId(0), CloseReason::Eof, 1),
                Seen::Opened(ConnId(2), peer(40002), 2),
            ]
        );
    }

    #[test]
    fn closes_only_the_connection_that_was_idle_too_long() {
        let mut stack = MockStack::default();
        stack
            .incoming
            .push_back(Ok(Peer::new(40000, b"").end(End::Open)));
        let mut slots = [const { Slot::new() }; 2];
        let mut buffer = [0u8; 8];
        let config = ServerConfig::new().with_idle_timeout(Some(Duration::from_secs(10)));
        let mut server = EchoServer::new(config, &mut slots, &mut buffer);
        let mut seen = Vec::new();
        assert_eq!(
            server.next_deadline(),
            None,
            "no connection, nothing to time out"
        );
        poll(&mut server, &mut stack, Instant::from_millis(0), &mut seen);
        stack
            .incoming
            .push_back(Ok(Peer::new(40001, b"").end(End::Open)));
        poll(
            &mut server,
            &mut stack,
            Instant::from_millis(5_000),
            &mut seen,
        );
        assert_eq!(server.next_deadline(), Some(Instant::from_millis(10_000)));
        poll(
            &mut server,
            &mut stack,
            Instant::from_millis(9_999),
            &mut seen,
        );
        assert!(closed(&seen).is_empty());
        poll(
            &mut server,
            &mut stack,
            Instant::from_millis(10_000),
            &mut seen,
        );
        assert_eq!(closed(&seen), [(ConnId(0), CloseReason::IdleTimeout)]);
        assert!(stack.conn(0).closed);
        assert!(!stack.conn(1).closed);
        assert_eq!(server.stats().open, 1);
    }

    #[test]
    fn a_failing_connection_leaves_the_others_untouched() {
        let mut stack = MockStack::default();
        let mut broken = Peer::new(40000, b"doomed").end(End::Open);
        broken.send_error = Some(MockError::other("host unreachable"));
        stack.incoming.push_back(Ok(broken));
        stack.incoming.push_back(Ok(
            Peer::new(40001, b"healthy").end(End::Fail(MockError::other("reset")))
        ));
        stack.incoming.push_back(Ok(Peer::new(40002, b"fine")));
        let mut slots = [const { Slot::new() }; 3];
        let mut buffer = [0u8; 3 * 16];
        let mut server = EchoServer::new(ServerConfig::new(), &mut slots, &mut buffer);
        let mut seen = Vec::new();
        polls(&mut server, &mut stack, 10, &mut seen);
        let mut reasons = closed(&seen);
        reasons.sort_by_key(|(conn, _)| *conn);
        assert_eq!(
            reasons,
            [
                (
                    ConnId(0),
                    CloseReason::Failed(MockError::other("host unreachable"))
                ),
                (ConnId(1), CloseReason::Failed(MockError::other("reset"))),
                (ConnId(2), CloseReason::Eof),
            ]
        );
        assert_eq!(stack.conn(1).received_by_peer, b"healthy");
        assert_eq!(stack.conn(2).received_by_peer, b"fine");
    }

    #[test]
    fn a_peer_that_stopped_reading_closes_with_pipe_closed() {
        let mut stack = MockStack::default();
        let mut gone = Peer::new(40000, b"lost").end(End::Open);
        gone.send_error = Some(MockError::PIPE_CLOSED);
        stack.incoming.push_back(Ok(gone));
        let mut slots = [const { Slot::new() }; 1];
        let mut buffer = [0u8; 8];
        let mut server = EchoServer::new(ServerConfig::new(), &mut slots, &mut buffer);
        let mut seen = Vec::new();
        polls(&mut server, &mut stack, 3, &mut seen);
        assert_eq!(closed(&seen), [(ConnId(0), CloseReason::PipeClosed)]);
    }

    #[test]
    fn an_accept_failure_is_an_event_and_the_server_listens_again_after_a_backoff() {
        let mut stack = MockStack::default();
        stack
            .incoming
            .push_back(Ok(Peer::new(40000, b"").end(End::Open)));
        let mut slots = [const { Slot::new() }; 2];
        let mut buffer = [0u8; 8];
        let mut server = EchoServer::new(ServerConfig::new(), &mut slots, &mut buffer);
        let mut seen = Vec::new();
        poll(&mut server, &mut stack, Instant::ZERO, &mut seen);
        stack
            .incoming
            .push_back(Err(MockError::other("listener broke")));
        assert!(poll(&mut server, &mut stack, Instant::ZERO, &mut seen));
        assert_eq!(
            listen_failures(&seen),
            [(
                Error::Accept(MockError::other("listener broke")),
                Duration::from_millis(500)
            )]
        );
        assert_eq!(stack.open_listeners(), 0, "the broken listener is closed");
        assert!(server.listener().is_none());
        assert_eq!(
            server.stats().open,
            1,
            "the served connection is not touched"
        );
        assert!(!stack.conn(0).closed);
        assert_eq!(server.next_deadline(), Some(Instant::from_millis(500)));

        poll(
            &mut server,
            &mut stack,
            Instant::from_millis(499),
            &mut seen,
        );
        assert_eq!(listenings(&seen), 1, "not before the backoff");
        poll(
            &mut server,
            &mut stack,
            Instant::from_millis(500),
            &mut seen,
        );
        assert_eq!(listenings(&seen), 2);
        assert_eq!(stack.open_listeners(), 1);
        assert!(!server.is_finished());
    }

    #[test]
    fn a_bind_failure_is_retried_with_a_growing_backoff_until_it_works() {
        let mut stack = MockStack::default();
        stack.fail_bind = Some(MockError::other("address in use"));
        let mut slots = [const { Slot::new() }; 1];
        let mut buffer = [0u8; 8];
        let config = ServerConfig::new()
            .with_port(7)
            .with_relisten(Backoff::new(Duration::from_secs(1), Duration::from_secs(3)));
        let mut server = EchoServer::new(config, &mut slots, &mut buffer);
        let mut seen = Vec::new();
        let mut now = Instant::ZERO;
        for _ in 0..4 {
            assert!(poll(&mut server, &mut stack, now, &mut seen));
            now = server.next_deadline().expect("a backoff is due");
        }
        let waits: Vec<u64> = listen_failures(&seen)
            .iter()
            .map(|(error, wait)| {
                assert_eq!(
                    *error,
                    Error::Bind {
                        port: 7,
                        error: MockError::other("address in use")
                    }
                );
                wait.as_secs()
            })
            .collect();
        assert_eq!(waits, [1, 2, 3, 3]);
        assert_eq!(stack.open_listeners(), 0);

        stack.fail_bind = None;
        assert!(poll(&mut server, &mut stack, now, &mut seen));
        assert_eq!(stack.bound_ports, [7]);
        assert_eq!(listenings(&seen), 1);
    }

    #[test]
    fn a_socket_or_listen_failure_is_an_event_too() {
        let mut stack = MockStack::default();
        stack.fail_socket = Some(MockError::other("no free socket"));
        let mut slots = [const { Slot::new() }; 1];
        let mut buffer = [0u8; 8];
        let mut server = EchoServer::new(ServerConfig::new(), &mut slots, &mut buffer);
        let mut seen = Vec::new();
        poll(&mut server, &mut stack, Instant::ZERO, &mut seen);
        stack.fail_socket = None;
        stack.fail_listen = Some(MockError::other("listen refused"));
        let due = server.next_deadline().unwrap();
        poll(&mut server, &mut stack, due, &mut seen);
        assert_eq!(
            listen_failures(&seen),
            [
                (
                    Error::Socket(MockError::other("no free socket")),
                    Duration::from_millis(500)
                ),
                (
                    Error::Listen {
                        port: 5001,
                        error: MockError::other("listen refused")
                    },
                    Duration::from_millis(1000)
                ),
            ]
        );
        assert_eq!(
            stack.open_sockets(),
            0,
            "the socket that failed to listen is closed"
        );
    }

    #[test]
    fn an_accepted_connection_resets_the_backoff() {
        let mut stack = MockStack::default();
        let mut slots = [const { Slot::new() }; 2];
        let mut buffer = [0u8; 8];
        let mut server = EchoServer::new(ServerConfig::new(), &mut slots, &mut buffer);
        let mut seen = Vec::new();
        poll(&mut server, &mut stack, Instant::ZERO, &mut seen);
        stack.incoming.push_back(Err(MockError::other("first")));
        poll(&mut server, &mut stack, Instant::ZERO, &mut seen);
        stack
            .incoming
            .push_back(Ok(Peer::new(40000, b"").end(End::Open)));
        stack.incoming.push_back(Err(MockError::other("second")));
        let due = server.next_deadline().unwrap();
        poll(&mut server, &mut stack, due, &mut seen);
        let waits: Vec<Duration> = listen_failures(&seen).into_iter().map(|(_, w)| w).collect();
        assert_eq!(
            waits,
            [Duration::from_millis(500), Duration::from_millis(500)],
            "an accepted connection shows the listener worked"
        );
    }

    #[test]
    fn shutdown_closes_every_connection_and_the_listener_and_finishes() {
        let mut stack = MockStack::default();
        stack
            .incoming
            .push_back(Ok(Peer::new(40000, b"").end(End::Open)));
        stack
            .incoming
            .push_back(Ok(Peer::new(40001, b"").end(End::Open)));
        let mut slots = [const { Slot::new() }; 2];
        let mut buffer = [0u8; 8];
        let mut server = EchoServer::new(ServerConfig::new(), &mut slots, &mut buffer);
        let mut seen = Vec::new();
        polls(&mut server, &mut stack, 2, &mut seen);
        server.shutdown(&mut stack, record(&mut seen));
        assert_eq!(
            seen[seen.len() - 2..],
            [
                Seen::Closed(ConnId(0), CloseReason::Shutdown, 1),
                Seen::Closed(ConnId(1), CloseReason::Shutdown, 0),
            ]
        );
        assert!(stack.conn(0).closed && stack.conn(1).closed);
        assert_eq!(stack.open_listeners(), 0);
        assert!(server.is_finished());
        assert!(!poll(&mut server, &mut stack, Instant::ZERO, &mut seen));
        assert_eq!(
            stack.open_listeners(),
            0,
            "a finished server does not listen"
        );
    }

    #[test]
    fn restart_closes_every_connection_and_listens_again() {
        let mut stack = MockStack::default();
        stack
            .incoming
            .push_back(Ok(Peer::new(40000, b"").end(End::Open)));
        let mut slots = [const { Slot::new() }; 2];
        let mut buffer = [0u8; 8];
        let mut server = EchoServer::new(ServerConfig::new(), &mut slots, &mut buffer);
        let mut seen = Vec::new();
        polls(&mut server, &mut stack, 2, &mut seen);
        server.restart(&mut stack, record(&mut seen));
        assert_eq!(
            seen.last(),
            Some(&Seen::Closed(ConnId(0), CloseReason::Shutdown, 0))
        );
        assert_eq!(stack.open_listeners(), 0);
        assert!(!server.is_finished());
        poll(&mut server, &mut stack, Instant::ZERO, &mut seen);
        assert_eq!(stack.open_listeners(), 1);
        assert_eq!(listenings(&seen), 2);
    }

    /// One connection's script in the property test.
    fn peer_script() -> impl Strategy<Value = Peer> {
        (
            proptest::collection::vec(any::<u8>(), 0..600),
            proptest::collection::vec(1usize..200, 1..4),
            proptest::collection::vec(any::<bool>(), 1..4),
            proptest::collection::vec(0usize..200, 1..4),
            1usize..200,
            prop_oneof![Just(End::Zero), Just(End::PipeClosed)],
        )
            .prop_map(
                |(sends, recv_sizes, mut recv_blocks, mut send_sizes, progress, end)| {
                    // Every schedule lets bytes through eventually.
                    recv_blocks.push(false);
                    send_sizes.push(progress);
                    Peer {
                        recv_sizes,
                        recv_blocks,
                        send_sizes,
                        ..Peer::new(40000, &sends).end(end)
                    }
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn every_connection_gets_back_exactly_what_it_sent(
            peers in proptest::collection::vec(peer_script(), 1..6),
            max_clients in 1usize..4,
            share in 1usize..64,
            smoltcp_nal_style in any::<bool>(),
        ) {
            let mut stack = MockStack::default();
            for peer in &peers {
                let mut peer = peer.clone();
                if smoltcp_nal_style {
                    peer.zero_when_empty = true;
                    peer.end = End::PipeClosed;
                }
                stack.incoming.push_back(Ok(peer));
            }
            let mut slots: Vec<Slot<usize>> = (0..max_clients).map(|_| Slot::new()).collect();
            let mut buffer = vec![0u8; max_clients * share];
            let zero_read = if smoltcp_nal_style { ZeroRead::NoData } else { ZeroRead::Eof };
            let config = ServerConfig::new().with_zero_read(zero_read);
            let mut server = EchoServer::new(config, &mut slots, &mut buffer);
            let mut seen = Vec::new();
            for _ in 0..20_000 {
                poll(&mut server, &mut stack, Instant::ZERO, &mut seen);
                if closed(&seen).len() == peers.len() {
                    break;
                }
            }
            prop_assert_eq!(stack.conns.len(), peers.len());
            for (index, peer) in peers.iter().enumerate() {
                let conn = stack.conn(index);
                prop_assert_eq!(&conn.received_by_peer, &peer.sends);
                prop_assert!(conn.closed);
            }
            prop_assert!(closed(&seen).iter().all(|(_, reason)| *reason == CloseReason::Eof));
            let total: usize = peers.iter().map(|peer| peer.sends.len()).sum();
            prop_assert_eq!(server.stats().bytes_sent, total as u64);
        }
    }
}
