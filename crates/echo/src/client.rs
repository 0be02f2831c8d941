//! The tutorial's TCP client: connect, greet, echo whatever the server sends.

use core::net::SocketAddr;

use embedded_nal::TcpClientStack;

use crate::addr::Address;
use crate::error::Error;
use crate::event::{CloseReason, ConnId, Event};
use crate::link::{Link, Pumped, Stats, ZeroRead};
use crate::time::{millis, Duration, Instant};

/// The tutorial's greeting.
pub const DEFAULT_GREETING: &str = "hello MicroPython, I am TCP Client";

/// When and how often the client tries again. Without one (the default, like the tutorial),
/// a failed attempt is final.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Reconnect {
    /// Attempts after a failed one, counted since the last established connection
    /// (`None`: forever).
    pub max_retries: Option<u32>,
    /// The wait after the first failure; it doubles on each further failure...
    pub initial_backoff: Duration,
    /// ...up to this.
    pub max_backoff: Duration,
    /// Also reconnect after an established connection ended (the server closed it, it was
    /// reset, or it was idle), not only after failed attempts.
    pub after_disconnect: bool,
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect {
            max_retries: None,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            after_disconnect: true,
        }
    }
}

impl Reconnect {
    /// The wait before attempt `failures + 1`, after `failures` failed ones (from 1).
    pub fn backoff(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.initial_backoff
            .checked_mul(1 << doublings)
            .map_or(self.max_backoff, |wait| wait.min(self.max_backoff))
    }
}

/// How an [`EchoClient`] behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ClientConfig<'g> {
    /// The server to connect to.
    pub remote: SocketAddr,
    /// Sent once after each connection is established, before any echo.
    pub greeting: &'g [u8],
    /// Give an attempt up after this long (`None`: wait as long as the stack does).
    pub connect_timeout: Option<Duration>,
    /// Close the connection when nothing moved in either direction for this long.
    pub idle_timeout: Option<Duration>,
    /// Try again after failures (`None`: the first failure is final).
    pub reconnect: Option<Reconnect>,
    /// What the stack means by `receive` returning `Ok(0)`.
    pub zero_read: ZeroRead,
}

impl ClientConfig<'static> {
    /// The tutorial's client for `remote`: default greeting, no timeouts, no reconnection.
    pub fn new(remote: SocketAddr) -> Self {
        ClientConfig {
            remote,
            greeting: DEFAULT_GREETING.as_bytes(),
            connect_timeout: None,
            idle_timeout: None,
            reconnect: None,
            zero_read: ZeroRead::Eof,
        }
    }
}

/// Where the client is. Changed only during [`EchoClient::poll`] and `shutdown`.
enum State<T> {
    /// The next poll starts an attempt.
    Idle,
    Connecting {
        socket: T,
        since: Instant,
    },
    Connected {
        id: ConnId,
        link: Link<T>,
        greeted: usize,
    },
    /// Waiting before the next attempt.
    Backoff {
        until: Instant,
    },
    /// Over: the connection ended or the attempts ran out, and no reconnection is configured.
    Finished,
}

impl<T> State<T> {
    fn name(&self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Connecting { .. } => "connecting",
            State::Connected { .. } => "connected",
            State::Backoff { .. } => "backoff",
            State::Finished => "finished",
        }
    }
}

/// A non-blocking TCP echo client over any [`TcpClientStack`].
pub struct EchoClient<'a, S>
where
    S: TcpClientStack,
{
    config: ClientConfig<'a>,
    buffer: &'a mut [u8],
    state: State<S::TcpSocket>,
    /// Failed attempts since the last established connection.
    failures: u32,
    next_id: u32,
    stats: Stats,
}

impl<'a, S> EchoClient<'a, S>
where
    S: TcpClientStack,
{
    /// A client that starts connecting on its first `poll`, echoing through `buffer`.
    ///
    /// # Panics
    /// If `buffer` is empty.
    pub fn new(config: ClientConfig<'a>, buffer: &'a mut [u8]) -> Self {
        assert!(!buffer.is_empty(), "the echo buffer cannot be empty");
        EchoClient {
            config,
            buffer,
            state: State::Idle,
            failures: 0,
            next_id: 0,
            stats: Stats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig<'a> {
        &self.config
    }

    /// Totals since the client was created.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Whether a connection is established.
    pub fn is_connected(&self) -> bool {
        matches!(self.state, State::Connected { .. })
    }

    /// Whether the client is done: its connection ended, or its attempts ran out, and it is
    /// not configured to reconnect.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Finished)
    }

    /// When the client next needs a `poll` even if the network is silent (backoff or connect
    /// timeout), so a board can sleep until then.
    pub fn next_deadline(&self) -> Option<Instant> {
        match &self.state {
            State::Backoff { until } => Some(*until),
            State::Connecting { since, .. } => {
                self.config.connect_timeout.map(|timeout| *since + timeout)
            }
            _ => None,
        }
    }

    /// Does all the work that can be done now; returns whether anything happened.
    ///
    /// Returns an error when an attempt failed and no further attempt is allowed; the client
    /// is then finished.
    pub fn poll<F>(
        &mut self,
        stack: &mut S,
        now: Instant,
        mut on_event: F,
    ) -> Result<bool, Error<S::Error>>
    where
        F: FnMut(Event<'_, S::Error>),
    {
        let was = self.state.name();
        let result = self.step(stack, now, &mut on_event);
        if self.state.name() != was {
            debug!("client: {} => {}", was, self.state.name());
        }
        result
    }

    /// One `poll`: the only place the state changes.
    fn step<F>(
        &mut self,
        stack: &mut S,
        now: Instant,
        on_event: &mut F,
    ) -> Result<bool, Error<S::Error>>
    where
        F: FnMut(Event<'_, S::Error>),
    {
        match core::mem::replace(&mut self.state, State::Finished) {
            State::Finished => Ok(false),
            State::Idle => {
                let remote = self.config.remote;
                on_event(Event::Connecting {
                    remote,
                    attempt: self.failures + 1,
                });
                match stack.socket() {
                    Ok(socket) => self.state = State::Connecting { socket, since: now },
                    Err(error) => {
                        return self
                            .attempt_failed(Error::Socket(error), now, on_event)
                            .map(|()| true)
                    }
                }
                Ok(true)
            }
            State::Backoff { until } => {
                let due = now >= until;
                self.state = if due {
                    State::Idle
                } else {
                    State::Backoff { until }
                };
                Ok(due)
            }
            State::Connecting { mut socket, since } => {
                let remote = self.config.remote;
                let outcome = match stack.connect(&mut socket, remote) {
                    Ok(()) => Ok(true),
                    Err(nb::Error::WouldBlock) => match self.config.connect_timeout {
                        Some(after) if now - since >= after => {
                            Err(Error::ConnectTimeout { remote, after })
                        }
                        _ => Ok(false),
                    },
                    Err(nb::Error::Other(error)) => Err(Error::Connect { remote, error }),
                };
                match outcome {
                    Ok(true) => {
                        let id = ConnId(self.next_id);
                        self.next_id = self.next_id.wrapping_add(1);
                        self.failures = 0;
                        self.stats.connections += 1;
                        info!("connected to {}", Address(remote));
                        self.state = State::Connected {
                            id,
                            link: Link::new(socket, now),
                            greeted: 0,
                        };
                        on_event(Event::Connected { conn: id, remote });
                        Ok(true)
                    }
                    Ok(false) => {
                        self.state = State::Connecting { socket, since };
                        Ok(false)
                    }
                    Err(error) => {
                        let _ = stack.close(socket);
                        self.attempt_failed(error, now, on_event).map(|()| true)
                    }
                }
            }
            State::Connected {
                id,
                mut link,
                greeted,
            } => {
                let (outcome, greeted) = self.echo(stack, &mut link, greeted, id, now, on_event);
                match outcome {
                    Pumped::Closed(reason) => {
                        debug!("connection {} ended: {}", id.0, reason.as_str());
                        if stack.close(link.socket).is_err() {
                            warn!("closing connection {} failed", id.0);
                        }
                        on_event(Event::Disconnected { conn: id, reason });
                        self.state = match self.config.reconnect {
                            Some(reconnect) if reconnect.after_disconnect => State::Backoff {
                                until: now + reconnect.initial_backoff,
                            },
                            _ => State::Finished,
                        };
                        Ok(true)
                    }
                    Pumped::Progress => {
                        self.state = State::Connected { id, link, greeted };
                        Ok(true)
                    }
                    Pumped::Idle => {
                        self.state = State::Connected { id, link, greeted };
                        Ok(false)
                    }
                }
            }
        }
    }

    /// Closes the connection (or attempt) and finishes the client.
    pub fn shutdown<F>(&mut self, stack: &mut S, mut on_event: F)
    where
        F: FnMut(Event<'_, S::Error>),
    {
        match core::mem::replace(&mut self.state, State::Finished) {
            State::Connecting { socket, .. } => {
                let _ = stack.close(socket);
            }
            State::Connected { id, link, .. } => {
                let _ = stack.close(link.socket);
                on_event(Event::Disconnected {
                    conn: id,
                    reason: CloseReason::Shutdown,
                });
            }
            State::Idle | State::Backoff { .. } | State::Finished => {}
        }
    }

    /// Drops the connection (or attempt, or wait) and connects again on the next `poll`, even
    /// when finished: for a board whose network went down and came back, where waiting for
    /// the stack to notice the dead connection would take its keep-alive timeout.
    pub fn restart<F>(&mut self, stack: &mut S, on_event: F)
    where
        F: FnMut(Event<'_, S::Error>),
    {
        self.shutdown(stack, on_event);
        self.failures = 0;
        self.state = State::Idle;
    }

    /// The greeting first, then the echo; returns the outcome and how much of the greeting went.
    fn echo<F>(
        &mut self,
        stack: &mut S,
        link: &mut Link<S::TcpSocket>,
        mut greeted: usize,
        id: ConnId,
        now: Instant,
        on_event: &mut F,
    ) -> (Pumped<S::Error>, usize)
    where
        F: FnMut(Event<'_, S::Error>),
    {
        if link.is_idle(now, self.config.idle_timeout) {
            return (Pumped::Closed(CloseReason::IdleTimeout), greeted);
        }
        let greeting = self.config.greeting;
        if greeted < greeting.len() {
            match link.send_from(stack, &greeting[greeted..], now, &mut self.stats) {
                Ok(0) => return (Pumped::Idle, greeted),
                Ok(sent) => {
                    greeted += sent;
                    if greeted < greeting.len() {
                        return (Pumped::Progress, greeted);
                    }
                }
                Err(reason) => return (Pumped::Closed(reason), greeted),
            }
        }
        let outcome = link.pump(
            stack,
            self.buffer,
            self.config.zero_read,
            now,
            &mut self.stats,
            |bytes| on_event(Event::Received { conn: id, bytes }),
        );
        (outcome, greeted)
    }

    /// Schedules the next attempt, or finishes with `error` when none is allowed.
    fn attempt_failed<F>(
        &mut self,
        error: Error<S::Error>,
        now: Instant,
        on_event: &mut F,
    ) -> Result<(), Error<S::Error>>
    where
        F: FnMut(Event<'_, S::Error>),
    {
        self.failures += 1;
        let retry = self
            .config
            .reconnect
            .filter(|reconnect| reconnect.max_retries.is_none_or(|max| self.failures <= max));
        match retry {
            Some(reconnect) => {
                let retry_in = reconnect.backoff(self.failures);
                warn!(
                    "connection attempt {} failed; retrying in {} ms",
                    self.failures,
                    millis(retry_in)
                );
                self.state = State::Backoff {
                    until: now + retry_in,
                };
                on_event(Event::ConnectFailed { error, retry_in });
                Ok(())
            }
            None => {
                warn!("connection attempt {} failed; giving up", self.failures);
                self.state = State::Finished;
                Err(error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::testing::{End, MockError, MockStack, Outgoing, Peer};
    use std::vec;
    use std::vec::Vec;

    fn remote() -> SocketAddr {
        "10.0.0.1:5001".parse().unwrap()
    }

    fn connects(peer: Peer) -> Outgoing {
        Outgoing {
            would_block: 2,
            outcome: Ok(peer),
        }
    }

    fn refused() -> Outgoing {
        Outgoing {
            would_block: 0,
            outcome: Err(MockError::other("connection refused")),
        }
    }

    /// Short event names, in order.
    fn run(
        client: &mut EchoClient<'_, MockStack>,
        stack: &mut MockStack,
        now: Instant,
        polls: usize,
    ) -> Vec<&'static str> {
        let mut seen = Vec::new();
        for _ in 0..polls {
            let _ = client.poll(stack, now, |event| {
                seen.push(match event {
                    Event::Connecting { .. } => "connecting",
                    Event::Connected { .. } => "connected",
                    Event::ConnectFailed { .. } => "connect failed",
                    Event::Received { .. } => "received",
                    Event::Disconnected {
                        reason: CloseReason::Eof,
                        ..
                    } => "disconnected: eof",
                    Event::Disconnected { .. } => "disconnected: other",
                    _ => "server event",
                })
            });
        }
        seen.dedup();
        seen
    }

    #[test]
    fn greets_then_echoes_and_finishes_when_the_server_closes() {
        let mut stack = MockStack::default();
        stack
            .outgoing
            .push_back(connects(Peer::new(5001, b"text from the server")));
        let mut buffer = [0u8; 8];
        let mut client = EchoClient::new(ClientConfig::new(remote()), &mut buffer);
        let seen = run(&mut client, &mut stack, Instant::ZERO, 30);
        assert_eq!(
            seen,
            ["connecting", "connected", "received", "disconnected: eof"]
        );
        let mut expected = DEFAULT_GREETING.as_bytes().to_vec();
        expected.extend_from_slice(b"text from the server");
        assert_eq!(stack.conn(0).received_by_peer, expected);
        assert!(stack.conn(0).closed);
        assert!(client.is_finished());
    }

    #[test]
    fn sends_all_of_the_greeting_through_partial_sends_before_echoing() {
        let mut stack = MockStack::default();
        let mut peer = Peer::new(5001, b"echo me");
        peer.send_sizes = vec![5, 0];
        stack.outgoing.push_back(connects(peer));
        let mut buffer = [0u8; 3];
        let mut client = EchoClient::new(ClientConfig::new(remote()), &mut buffer);
        run(&mut client, &mut stack, Instant::ZERO, 100);
        let mut expected = DEFAULT_GREETING.as_bytes().to_vec();
        expected.extend_from_slice(b"echo me");
        assert_eq!(stack.conn(0).received_by_peer, expected);
    }

    #[test]
    fn a_refused_connection_is_final_without_reconnect() {
        let mut stack = MockStack::default();
        stack.outgoing.push_back(refused());
        let mut buffer = [0u8; 8];
        let mut client = EchoClient::new(ClientConfig::new(remote()), &mut buffer);
        assert!(client.poll(&mut stack, Instant::ZERO, |_| {}).unwrap());
        let error = client.poll(&mut stack, Instant::ZERO, |_| {}).unwrap_err();
        assert_eq!(
            error,
            Error::Connect {
                remote: remote(),
                error: MockError::other("connection refused")
            }
        );
        assert!(client.is_finished());
        assert!(!client.poll(&mut stack, Instant::ZERO, |_| {}).unwrap());
    }

    #[test]
    fn gives_up_an_attempt_after_the_connect_timeout() {
        let mut stack = MockStack::default(); // no outgoing script: connect blocks forever
        let mut buffer = [0u8; 8];
        let config = ClientConfig {
            connect_timeout: Some(Duration::from_secs(3)),
            ..ClientConfig::new(remote())
        };
        let mut client = EchoClient::new(config, &mut buffer);
        client.poll(&mut stack, Instant::ZERO, |_| {}).unwrap();
        assert!(!client
            .poll(&mut stack, Instant::from_millis(2_999), |_| {})
            .unwrap());
        assert_eq!(client.next_deadline(), Some(Instant::from_millis(3_000)));
        let error = client
            .poll(&mut stack, Instant::from_millis(3_000), |_| {})
            .unwrap_err();
        assert_eq!(
            error,
            Error::ConnectTimeout {
                remote: remote(),
                after: Duration::from_secs(3)
            }
        );
    }

    #[test]
    fn retries_with_doubling_backoff_then_connects() {
        let mut stack = MockStack::default();
        stack.outgoing.push_back(refused());
        stack.outgoing.push_back(refused());
        stack
            .outgoing
            .push_back(connects(Peer::new(5001, b"").end(End::Open)));
        let mut buffer = [0u8; 8];
        let config = ClientConfig {
            reconnect: Some(Reconnect {
                max_retries: Some(2),
                ..Reconnect::default()
            }),
            ..ClientConfig::new(remote())
        };
        let mut client = EchoClient::new(config, &mut buffer);
        let mut waits = Vec::new();
        let mut now = Instant::ZERO;
        for _ in 0..40 {
            client
                .poll(&mut stack, now, |event| {
                    if let Event::ConnectFailed { retry_in, .. } = event {
                        waits.push(retry_in);
                    }
                })
                .unwrap();
            now = now + Duration::from_millis(100);
        }
        assert_eq!(
            waits,
            [Duration::from_millis(500), Duration::from_millis(1000)]
        );
        assert!(client.is_connected());
    }

    #[test]
    fn fails_once_the_retries_are_used_up() {
        let mut stack = MockStack::default();
        for _ in 0..3 {
            stack.outgoing.push_back(refused());
        }
        let mut buffer = [0u8; 8];
        let config = ClientConfig {
            reconnect: Some(Reconnect {
                max_retries: Some(2),
                initial_backoff: Duration::ZERO,
                ..Reconnect::default()
            }),
            ..ClientConfig::new(remote())
        };
        let mut client = EchoClient::new(config, &mut buffer);
        let mut failures = 0;
        let mut result = Ok(true);
        for _ in 0..20 {
            result = client.poll(&mut stack, Instant::ZERO, |event| {
                if let Event::ConnectFailed { .. } = event {
                    failures += 1
                }
            });
            if result.is_err() {
                break;
            }
        }
        assert_eq!(failures, 2);
        assert!(matches!(result, Err(Error::Connect { .. })));
        assert!(client.is_finished());
    }

    #[test]
    fn reconnects_after_the_server_closes_when_asked_to() {
        let mut stack = MockStack::default();
        stack.outgoing.push_back(connects(Peer::new(5001, b"one")));
        stack
            .outgoing
            .push_back(connects(Peer::new(5001, b"two").end(End::Open)));
        let mut buffer = [0u8; 8];
        let config = ClientConfig {
            reconnect: Some(Reconnect {
                initial_backoff: Duration::ZERO,
                ..Reconnect::default()
            }),
            ..ClientConfig::new(remote())
        };
        let mut client = EchoClient::new(config, &mut buffer);
        let seen = run(&mut client, &mut stack, Instant::ZERO, 40);
        assert_eq!(
            seen,
            [
                "connecting",
                "connected",
                "received",
                "disconnected: eof",
                "connecting",
                "connected",
                "received"
            ]
        );
        assert!(stack.conn(1).received_by_peer.ends_with(b"two"));
        assert_eq!(client.stats().connections, 2);
    }

    #[test]
    fn sees_the_end_of_stream_as_pipe_closed_when_zero_read_means_no_data() {
        let mut stack = MockStack::default();
        let mut peer = Peer::new(5001, b"nal").end(End::PipeClosed);
        peer.zero_when_empty = true;
        peer.recv_blocks = vec![true, false];
        stack.outgoing.push_back(connects(peer));
        let mut buffer = [0u8; 8];
        let config = ClientConfig {
            zero_read: ZeroRead::NoData,
            ..ClientConfig::new(remote())
        };
        let mut client = EchoClient::new(config, &mut buffer);
        let seen = run(&mut client, &mut stack, Instant::ZERO, 30);
        assert_eq!(
            seen,
            ["connecting", "connected", "received", "disconnected: eof"]
        );
        assert!(stack.conn(0).received_by_peer.ends_with(b"nal"));
    }

    #[test]
    fn restart_drops_the_connection_and_connects_again() {
        let mut stack = MockStack::default();
        stack
            .outgoing
            .push_back(connects(Peer::new(5001, b"").end(End::Open)));
        stack
            .outgoing
            .push_back(connects(Peer::new(5001, b"").end(End::Open)));
        let mut buffer = [0u8; 8];
        let mut client = EchoClient::new(ClientConfig::new(remote()), &mut buffer);
        run(&mut client, &mut stack, Instant::ZERO, 10);
        assert!(client.is_connected());
        let mut reasons = Vec::new();
        client.restart(&mut stack, |event| {
            if let Event::Disconnected { reason, .. } = event {
                reasons.push(reason);
            }
        });
        assert_eq!(reasons, [CloseReason::Shutdown]);
        assert!(stack.conn(0).closed);
        let seen = run(&mut client, &mut stack, Instant::ZERO, 10);
        assert_eq!(seen, ["connecting", "connected"]);
        assert!(client.is_connected());
        assert_eq!(stack.conns.len(), 2);
    }

    #[test]
    fn backoff_doubles_up_to_its_maximum() {
        let reconnect = Reconnect {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(5),
            ..Reconnect::default()
        };
        let waits: Vec<u64> = (1..=5).map(|n| reconnect.backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 5, 5]);
        assert_eq!(reconnect.backoff(200), Duration::from_secs(5));
    }
}
