//! The tutorial's TCP server, done right: several clients, nothing lost, nothing blocking.

use core::net::SocketAddr;

use embedded_nal::TcpFullStack;

use crate::addr::Address;
use crate::error::Error;
use crate::event::{CloseReason, ConnId, Event};
use crate::link::{Link, Pumped, Stats, ZeroRead};
use crate::time::{Duration, Instant};

/// The tutorial's port.
pub const DEFAULT_PORT: u16 = 5001;
/// The tutorial's `listen(3)`: how many clients the examples serve at once.
pub const DEFAULT_MAX_CLIENTS: usize = 3;
/// The tutorial's `recv(1024)`: the examples' echo buffer per connection.
pub const DEFAULT_BUFFER_SIZE: usize = 1024;

/// How an [`EchoServer`] behaves. The number of clients is the number of slots it is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ServerConfig {
    /// The port to bind (0: the stack chooses, where it can).
    pub port: u16,
    /// Close a connection when nothing moved in either direction for this long.
    pub idle_timeout: Option<Duration>,
    /// What the stack means by `receive` returning `Ok(0)`.
    pub zero_read: ZeroRead,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            port: DEFAULT_PORT,
            idle_timeout: None,
            zero_read: ZeroRead::Eof,
        }
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
enum State<T> {
    /// Not listening: the next `poll` binds and listens.
    Closed,
    Listening(T),
}

/// A non-blocking TCP echo server over any [`TcpFullStack`].
///
/// Serves as many clients at once as it has [`Slot`]s; further clients wait in the stack's
/// backlog until a slot frees. Each slot echoes through its share of the buffer, so memory is
/// fixed by the caller: `slots.len()` connections of `buffer.len() / slots.len()` bytes each.
pub struct EchoServer<'a, S>
where
    S: TcpFullStack,
{
    config: ServerConfig,
    state: State<S::TcpSocket>,
    slots: &'a mut [Slot<S::TcpSocket>],
    buffer: &'a mut [u8],
    next_id: u32,
    stats: Stats,
}

impl<'a, S> EchoServer<'a, S>
where
    S: TcpFullStack,
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
        EchoServer {
            config,
            state: State::Closed,
            slots,
            buffer,
            next_id: 0,
            stats: Stats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// How many clients can be served at once.
    pub fn max_clients(&self) -> usize {
        self.slots.len()
    }

    /// How many clients are being served now.
    pub fn active(&self) -> usize {
        self.slots.iter().filter(|slot| slot.conn.is_some()).count()
    }

    /// Totals since the server was created.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// When the server next needs a `poll` even if the network is silent (the earliest idle
    /// timeout of its connections), so a board can sleep until then.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.slots
            .iter()
            .filter_map(|slot| slot.conn.as_ref())
            .filter_map(|served| served.link.idle_deadline(self.config.idle_timeout))
            .min()
    }

    /// The listening socket, to ask the stack e.g. which port it chose for port 0.
    pub fn listener(&self) -> Option<&S::TcpSocket> {
        match &self.state {
            State::Listening(socket) => Some(socket),
            State::Closed => None,
        }
    }

    /// Does all the work that can be done now without waiting; returns whether anything
    /// happened (call again at once if so, otherwise wait for the network or a timeout).
    ///
    /// In order: serves every open connection (echo, EOF, errors, idle timeout), listens if not
    /// listening, then accepts while a slot is free. Only a failure of the listening socket is
    /// an error; after one, the next `poll` listens again.
    pub fn poll<F>(
        &mut self,
        stack: &mut S,
        now: Instant,
        mut on_event: F,
    ) -> Result<bool, Error<S::Error>>
    where
        F: FnMut(Event<'_, S::Error>),
    {
        let mut progress = self.serve(stack, now, &mut on_event);

        if let State::Closed = self.state {
            self.listen(stack)?;
            on_event(Event::Listening {
                port: self.config.port,
            });
            progress = true;
        }
        progress |= self.accept(stack, now, &mut on_event)?;
        Ok(progress)
    }

    /// Closes every connection and the listening socket. A later `poll` listens again (e.g.
    /// after the board's network came back).
    pub fn shutdown<F>(&mut self, stack: &mut S, mut on_event: F)
    where
        F: FnMut(Event<'_, S::Error>),
    {
        for slot in self.slots.iter_mut() {
            if let Some(served) = slot.conn.take() {
                close_served(stack, served, CloseReason::Shutdown, &mut on_event);
            }
        }
        if let State::Listening(socket) = core::mem::replace(&mut self.state, State::Closed) {
            if stack.close(socket).is_err() {
                warn!("closing the listening socket failed");
            }
        }
    }

    fn serve<F>(&mut self, stack: &mut S, now: Instant, on_event: &mut F) -> bool
    where
        F: FnMut(Event<'_, S::Error>),
    {
        let share = self.buffer.len() / self.slots.len();
        let mut progress = false;
        for (slot, buffer) in self
            .slots
            .iter_mut()
            .zip(self.buffer.chunks_exact_mut(share))
        {
            let Some(served) = slot.conn.as_mut() else {
                continue;
            };
            let id = served.id;
            let outcome = if served.link.is_idle(now, self.config.idle_timeout) {
                Pumped::Closed(CloseReason::IdleTimeout)
            } else {
                served.link.pump(
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
                    if let Some(served) = slot.conn.take() {
                        close_served(stack, served, reason, on_event);
                    }
                    progress = true;
                }
            }
        }
        progress
    }

    fn listen(&mut self, stack: &mut S) -> Result<(), Error<S::Error>> {
        let port = self.config.port;
        let mut socket = stack.socket().map_err(Error::Socket)?;
        let listening = match stack.bind(&mut socket, port) {
            Err(error) => Err(Error::Bind { port, error }),
            Ok(()) => stack
                .listen(&mut socket)
                .map_err(|error| Error::Listen { port, error }),
        };
        match listening {
            Ok(()) => {
                info!("listening on port {}", u32::from(port));
                self.state = State::Listening(socket);
                Ok(())
            }
            Err(error) => {
                // The error to report is the bind/listen one, not a failure to clean up.
                let _ = stack.close(socket);
                Err(error)
            }
        }
    }

    fn accept<F>(
        &mut self,
        stack: &mut S,
        now: Instant,
        on_event: &mut F,
    ) -> Result<bool, Error<S::Error>>
    where
        F: FnMut(Event<'_, S::Error>),
    {
        let State::Listening(listener) = &mut self.state else {
            return Ok(false);
        };
        let mut progress = false;
        while let Some(slot) = self.slots.iter_mut().find(|slot| slot.conn.is_none()) {
            match stack.accept(listener) {
                Ok((socket, peer)) => {
                    let id = ConnId(self.next_id);
                    self.next_id = self.next_id.wrapping_add(1);
                    self.stats.connections += 1;
                    info!("{} accepted from {}", id.0, Address(peer));
                    slot.conn = Some(Served {
                        id,
                        peer,
                        link: Link::new(socket, now),
                    });
                    on_event(Event::Accepted { conn: id, peer });
                    progress = true;
                }
                Err(nb::Error::WouldBlock) => break,
                Err(nb::Error::Other(error)) => {
                    warn!("accept failed; listening again on the next poll");
                    if let State::Listening(listener) =
                        core::mem::replace(&mut self.state, State::Closed)
                    {
                        let _ = stack.close(listener);
                    }
                    return Err(Error::Accept(error));
                }
            }
        }
        Ok(progress)
    }
}

fn close_served<S, F>(
    stack: &mut S,
    served: Served<S::TcpSocket>,
    reason: CloseReason<S::Error>,
    on_event: &mut F,
) where
    S: TcpFullStack,
    F: FnMut(Event<'_, S::Error>),
{
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
    on_event(Event::Closed {
        conn: served.id,
        reason,
    });
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::testing::{End, MockError, MockStack, Peer};
    use proptest::prelude::*;
    use std::vec;
    use std::vec::Vec;

    type Seen = Vec<Event<'static, MockError>>;

    /// Events with `Received` bytes dropped (they borrow the server's buffer).
    fn record(seen: &mut Seen) -> impl FnMut(Event<'_, MockError>) + '_ {
        |event| {
            seen.push(match event {
                Event::Received { conn, .. } => Event::Received { conn, bytes: &[] },
                Event::Listening { port } => Event::Listening { port },
                Event::Accepted { conn, peer } => Event::Accepted { conn, peer },
                Event::Closed { conn, reason } => Event::Closed { conn, reason },
                other => panic!("server reported a client event: {other:?}"),
            })
        }
    }

    fn polls(
        server: &mut EchoServer<'_, MockStack>,
        stack: &mut MockStack,
        times: usize,
        seen: &mut Seen,
    ) {
        for _ in 0..times {
            server.poll(stack, Instant::ZERO, record(seen)).unwrap();
        }
    }

    fn closed(seen: &Seen) -> Vec<(ConnId, CloseReason<MockError>)> {
        seen.iter()
            .filter_map(|event| match event {
                Event::Closed { conn, reason } => Some((*conn, reason.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn listens_on_the_tutorial_port_and_echoes_in_order() {
        let mut stack = MockStack::default();
        stack
            .incoming
            .push_back(Ok(Peer::new(40000, b"hello board")));
        let mut slots = [const { Slot::new() }; DEFAULT_MAX_CLIENTS];
        let mut buffer = [0u8; 3 * 4];
        let mut server = EchoServer::new(ServerConfig::default(), &mut slots, &mut buffer);
        let mut seen = Seen::new();
        polls(&mut server, &mut stack, 10, &mut seen);

        assert_eq!(stack.bound_ports, [5001]);
        assert_eq!(stack.conn(0).received_by_peer, b"hello board");
        assert!(stack.conn(0).closed);
        assert_eq!(seen[0], Event::Listening { port: 5001 });
        assert_eq!(
            seen[1],
            Event::Accepted {
                conn: ConnId(0),
                peer: "10.0.0.2:40000".parse().unwrap()
            }
        );
        assert_eq!(closed(&seen), [(ConnId(0), CloseReason::Eof)]);
        assert_eq!(server.stats().bytes_sent, 11);
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
        let mut server = EchoServer::new(ServerConfig::default(), &mut slots, &mut buffer);
        polls(&mut server, &mut stack, 200, &mut Seen::new());
        assert_eq!(stack.conn(0).received_by_peer, b"0123456789abcdefghij");
    }

    #[test]
    fn reads_nothing_more_while_an_echo_is_unsent() {
        let mut stack = MockStack::default();
        let mut peer = Peer::new(40000, &[7u8; 100]);
        peer.send_sizes = vec![0];
        stack.incoming.push_back(Ok(peer));
        let mut slots = [const { Slot::new() }; 1];
        let mut buffer = [0u8; 16];
        let mut server = EchoServer::new(ServerConfig::default(), &mut slots, &mut buffer);
        polls(&mut server, &mut stack, 50, &mut Seen::new());
        assert_eq!(stack.conn(0).received_by_peer.len(), 0);
        assert!(!stack.conn(0).all_read());
        assert!(
            !stack.conn(0).closed,
            "a peer that does not read is not an error"
        );
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
        let config = ServerConfig {
            zero_read: ZeroRead::NoData,
            ..ServerConfig::default()
        };
        let mut server = EchoServer::new(config, &mut slots, &mut buffer);
        let mut seen = Seen::new();
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
        let config = ServerConfig {
            zero_read: ZeroRead::NoData,
            ..ServerConfig::default()
        };
        let mut server = EchoServer::new(config, &mut slots, &mut buffer);
        let mut seen = Seen::new();
        polls(&mut server, &mut stack, 10, &mut seen);
        assert!(closed(&seen).is_empty());
        assert_eq!(server.active(), 1);
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
        let mut server = EchoServer::new(ServerConfig::default(), &mut slots, &mut buffer);
        let mut seen = Seen::new();
        polls(&mut server, &mut stack, 3, &mut seen);
        assert_eq!(server.active(), 2);
        assert_eq!(
            stack.incoming.len(),
            1,
            "the third client waits in the backlog"
        );

        polls(&mut server, &mut stack, 3, &mut seen);
        assert_eq!(server.active(), 2);
        assert!(stack.incoming.is_empty());
        let order: Vec<_> = seen
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    Event::Closed { .. }
                        | Event::Accepted {
                            conn: ConnId(2),
                            ..
                        }
                )
            })
            .collect();
        assert!(matches!(
            order[..],
            [
                Event::Closed {
                    conn: ConnId(0),
                    ..
                },
                Event::Accepted {
                    conn: ConnId(2),
                    ..
                }
            ]
        ));
    }

    #[test]
    fn closes_only_the_connection_that_was_idle_too_long() {
        let mut stack = MockStack::default();
        stack
            .incoming
            .push_back(Ok(Peer::new(40000, b"").end(End::Open)));
        let mut slots = [const { Slot::new() }; 2];
        let mut buffer = [0u8; 8];
        let config = ServerConfig {
            idle_timeout: Some(Duration::from_secs(10)),
            ..ServerConfig::default()
        };
        let mut server = EchoServer::new(config, &mut slots, &mut buffer);
        let mut seen = Seen::new();
        assert_eq!(
            server.next_deadline(),
            None,
            "no connection, nothing to time out"
        );
        server
            .poll(&mut stack, Instant::from_millis(0), record(&mut seen))
            .unwrap();
        stack
            .incoming
            .push_back(Ok(Peer::new(40001, b"").end(End::Open)));
        server
            .poll(&mut stack, Instant::from_millis(5_000), record(&mut seen))
            .unwrap();
        assert_eq!(server.next_deadline(), Some(Instant::from_millis(10_000)));
        server
            .poll(&mut stack, Instant::from_millis(9_999), record(&mut seen))
            .unwrap();
        assert!(closed(&seen).is_empty());
        server
            .poll(&mut stack, Instant::from_millis(10_000), record(&mut seen))
            .unwrap();
        assert_eq!(closed(&seen), [(ConnId(0), CloseReason::IdleTimeout)]);
        assert!(stack.conn(0).closed);
        assert!(!stack.conn(1).closed);
        assert_eq!(server.active(), 1);
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
        let mut server = EchoServer::new(ServerConfig::default(), &mut slots, &mut buffer);
        let mut seen = Seen::new();
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
        let mut server = EchoServer::new(ServerConfig::default(), &mut slots, &mut buffer);
        let mut seen = Seen::new();
        polls(&mut server, &mut stack, 3, &mut seen);
        assert_eq!(closed(&seen), [(ConnId(0), CloseReason::PipeClosed)]);
    }

    #[test]
    fn a_listener_failure_is_returned_and_the_server_listens_again() {
        let mut stack = MockStack::default();
        stack
            .incoming
            .push_back(Ok(Peer::new(40000, b"").end(End::Open)));
        let mut slots = [const { Slot::new() }; 2];
        let mut buffer = [0u8; 8];
        let mut server = EchoServer::new(ServerConfig::default(), &mut slots, &mut buffer);
        let mut seen = Seen::new();
        server
            .poll(&mut stack, Instant::ZERO, record(&mut seen))
            .unwrap();
        stack
            .incoming
            .push_back(Err(MockError::other("listener broke")));
        let error = server
            .poll(&mut stack, Instant::ZERO, record(&mut seen))
            .unwrap_err();
        assert_eq!(error, Error::Accept(MockError::other("listener broke")));
        assert_eq!(stack.open_listeners(), 0);
        assert!(server.listener().is_none());
        assert_eq!(server.active(), 1, "the served connection is not touched");

        server
            .poll(&mut stack, Instant::ZERO, record(&mut seen))
            .unwrap();
        assert_eq!(stack.open_listeners(), 1);
        assert_eq!(
            seen.iter()
                .filter(|e| matches!(e, Event::Listening { .. }))
                .count(),
            2
        );
    }

    #[test]
    fn a_bind_failure_names_the_port_and_is_retried() {
        let mut stack = MockStack::default();
        stack.fail_bind = Some(MockError::other("address in use"));
        let mut slots = [const { Slot::new() }; 1];
        let mut buffer = [0u8; 8];
        let config = ServerConfig {
            port: 7,
            ..ServerConfig::default()
        };
        let mut server = EchoServer::new(config, &mut slots, &mut buffer);
        let error = server.poll(&mut stack, Instant::ZERO, |_| {}).unwrap_err();
        assert_eq!(
            error,
            Error::Bind {
                port: 7,
                error: MockError::other("address in use")
            }
        );
        stack.fail_bind = None;
        assert!(server.poll(&mut stack, Instant::ZERO, |_| {}).unwrap());
        assert_eq!(stack.bound_ports, [7]);
    }

    #[test]
    fn shutdown_closes_every_connection_and_the_listener() {
        let mut stack = MockStack::default();
        stack
            .incoming
            .push_back(Ok(Peer::new(40000, b"").end(End::Open)));
        stack
            .incoming
            .push_back(Ok(Peer::new(40001, b"").end(End::Open)));
        let mut slots = [const { Slot::new() }; 2];
        let mut buffer = [0u8; 8];
        let mut server = EchoServer::new(ServerConfig::default(), &mut slots, &mut buffer);
        let mut seen = Seen::new();
        polls(&mut server, &mut stack, 2, &mut seen);
        server.shutdown(&mut stack, record(&mut seen));
        assert_eq!(
            closed(&seen),
            [
                (ConnId(0), CloseReason::Shutdown),
                (ConnId(1), CloseReason::Shutdown)
            ]
        );
        assert!(stack.conn(0).closed && stack.conn(1).closed);
        assert_eq!(stack.open_listeners(), 0);
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
            let config = ServerConfig {
                zero_read: if smoltcp_nal_style { ZeroRead::NoData } else { ZeroRead::Eof },
                ..ServerConfig::default()
            };
            let mut server = EchoServer::new(config, &mut slots, &mut buffer);
            let mut seen = Seen::new();
            for _ in 0..20_000 {
                server.poll(&mut stack, Instant::ZERO, record(&mut seen)).unwrap();
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
