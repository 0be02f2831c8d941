//! The tutorial's TCP client: connect, greet, echo whatever the server sends.

use core::net::SocketAddr;

use embedded_nal::TcpClientStack;

use crate::addr::Address;
use crate::backoff::Backoff;
use crate::error::Error;
use crate::event::{CloseReason, ConnId, Event};
use crate::link::{Link, Pumped};
use crate::role::{Role, Stats};
use crate::rules::{after_disconnect, ConnIds, Failures, Greeting};
use crate::stack::ZeroRead;
use crate::time::{Duration, Instant};

/// The tutorial's greeting.
pub const DEFAULT_GREETING: &str = "hello MicroPython, I am TCP Client";

/// When and how often the client tries again. Without one (the default, like the tutorial),
/// a failed attempt is final.
///
/// Start from [`Reconnect::new`] (or `default()`) and change what differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct Reconnect {
    /// Attempts after a failed one, counted since the last established connection
    /// (`None`: forever). Default `None`.
    pub max_retries: Option<u32>,
    /// The waits between attempts. Default [`Backoff::DEFAULT`].
    pub backoff: Backoff,
    /// Also reconnect after an established connection ended (the server closed it, it was
    /// reset, or it was idle), not only after failed attempts. Default `true`.
    pub after_disconnect: bool,
}

impl Reconnect {
    /// Forever, 500 ms doubling to 30 s apart, also after a disconnection.
    pub const fn new() -> Self {
        Reconnect {
            max_retries: None,
            backoff: Backoff::DEFAULT,
            after_disconnect: true,
        }
    }

    /// With [`max_retries`](Self::max_retries).
    pub const fn with_max_retries(mut self, max_retries: Option<u32>) -> Self {
        self.max_retries = max_retries;
        self
    }

    /// With [`backoff`](Self::backoff).
    pub const fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// With [`after_disconnect`](Self::after_disconnect).
    pub const fn with_after_disconnect(mut self, after_disconnect: bool) -> Self {
        self.after_disconnect = after_disconnect;
        self
    }
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect::new()
    }
}

/// How an [`EchoClient`] behaves.
///
/// Start from [`ClientConfig::new`] and change what differs:
/// `ClientConfig::new(server).with_connect_timeout(Some(Duration::from_secs(5)))`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct ClientConfig<'g> {
    /// The server to connect to.
    pub remote: SocketAddr,
    /// Sent once after each connection is established, before any echo. Default
    /// [`DEFAULT_GREETING`].
    pub greeting: &'g [u8],
    /// Give an attempt up after this long (`None`, the default: wait as long as the stack
    /// does).
    pub connect_timeout: Option<Duration>,
    /// Close the connection when nothing moved in either direction for this long. Default
    /// `None`.
    pub idle_timeout: Option<Duration>,
    /// Try again after failures (`None`, the default: the first failure is final).
    pub reconnect: Option<Reconnect>,
    /// What the stack means by `receive` returning `Ok(0)`. Default [`ZeroRead::Eof`].
    pub zero_read: ZeroRead,
}

impl ClientConfig<'static> {
    /// The tutorial's client for `remote`: default greeting, no timeouts, no reconnection.
    pub const fn new(remote: SocketAddr) -> Self {
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

impl<'g> ClientConfig<'g> {
    /// With [`greeting`](Self::greeting).
    pub const fn with_greeting<'h>(self, greeting: &'h [u8]) -> ClientConfig<'h> {
        ClientConfig {
            remote: self.remote,
            greeting,
            connect_timeout: self.connect_timeout,
            idle_timeout: self.idle_timeout,
            reconnect: self.reconnect,
            zero_read: self.zero_read,
        }
    }

    /// With [`connect_timeout`](Self::connect_timeout).
    pub const fn with_connect_timeout(mut self, connect_timeout: Option<Duration>) -> Self {
        self.connect_timeout = connect_timeout;
        self
    }

    /// With [`idle_timeout`](Self::idle_timeout).
    pub const fn with_idle_timeout(mut self, idle_timeout: Option<Duration>) -> Self {
        self.idle_timeout = idle_timeout;
        self
    }

    /// With [`reconnect`](Self::reconnect).
    pub const fn with_reconnect(mut self, reconnect: Option<Reconnect>) -> Self {
        self.reconnect = reconnect;
        self
    }

    /// With [`zero_read`](Self::zero_read).
    pub const fn with_zero_read(mut self, zero_read: ZeroRead) -> Self {
        self.zero_read = zero_read;
        self
    }
}

/// Where the client is. Changed only in [`EchoClient::step`], `restart` and `shutdown`.
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
        greeting: Greeting,
    },
    /// Waiting before the next attempt.
    Backoff {
        until: Instant,
    },
    /// Over: the connection ended or the attempts ran out, and no reconnection is configured;
    /// or shut down.
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

/// A non-blocking TCP echo client over any [`TcpClientStack`]; run it through its [`Role`].
///
/// ```no_run
/// # fn run<S: echo::embedded_nal::TcpClientStack>(stack: &mut S, now: echo::Instant)
/// # -> Result<(), echo::Error<S::Error>> {
/// use echo::{ClientConfig, EchoClient, Role, Screen};
///
/// let server = "192.168.4.1:5001".parse().unwrap();
/// let mut buffer = [0u8; echo::DEFAULT_BUFFER_SIZE];
/// let mut client = EchoClient::new(ClientConfig::new(server), &mut buffer);
/// let mut screen = Screen::client();
/// client.poll(stack, now, |event| screen.update(&event))?;
/// # Ok(()) }
/// ```
pub struct EchoClient<'a, S>
where
    S: TcpClientStack,
{
    config: ClientConfig<'a>,
    buffer: &'a mut [u8],
    state: State<S::TcpSocket>,
    /// Failed attempts since the last established connection.
    failures: Failures,
    ids: ConnIds,
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
            failures: Failures::default(),
            ids: ConnIds::default(),
            stats: Stats::new(1),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig<'a> {
        &self.config
    }

    /// Whether a connection is established.
    pub fn is_connected(&self) -> bool {
        matches!(self.state, State::Connected { .. })
    }

    /// One `poll`: the only place the state changes while running.
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
                    attempt: self.failures.attempt(),
                });
                match stack.socket() {
                    Ok(socket) => self.state = State::Connecting { socket, since: now },
                    Err(error) => self.attempt_failed(Error::Socket(error), now, on_event)?,
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
                        let conn = self.ids.next();
                        self.failures.reset();
                        self.stats.opened();
                        info!("connected to {}", Address(remote));
                        self.state = State::Connected {
                            id: conn,
                            link: Link::new(socket, now),
                            greeting: Greeting::default(),
                        };
                        on_event(Event::Opened {
                            conn,
                            peer: remote,
                            open: 1,
                        });
                        Ok(true)
                    }
                    Ok(false) => {
                        self.state = State::Connecting { socket, since };
                        Ok(false)
                    }
                    Err(error) => {
                        let _ = stack.close(socket);
                        self.attempt_failed(error, now, on_event)?;
                        Ok(true)
                    }
                }
            }
            State::Connected {
                id,
                mut link,
                mut greeting,
            } => {
                let outcome = self.echo(stack, &mut link, &mut greeting, id, now, on_event);
                match outcome {
                    Pumped::Closed(reason) => {
                        close(stack, id, link, reason, on_event);
                        self.state = match after_disconnect(self.config.reconnect) {
                            Some(wait) => State::Backoff { until: now + wait },
                            None => State::Finished,
                        };
                        Ok(true)
                    }
                    Pumped::Progress => {
                        self.state = State::Connected { id, link, greeting };
                        Ok(true)
                    }
                    Pumped::Idle => {
                        self.state = State::Connected { id, link, greeting };
                        Ok(false)
                    }
                }
            }
        }
    }

    /// Closes the connection or the attempt, if any, and leaves the client in `next`.
    fn stop<F>(&mut self, stack: &mut S, next: State<S::TcpSocket>, on_event: &mut F)
    where
        F: FnMut(Event<'_, S::Error>),
    {
        match core::mem::replace(&mut self.state, next) {
            State::Connecting { socket, .. } => {
                let _ = stack.close(socket);
            }
            State::Connected { id, link, .. } => {
                close(stack, id, link, CloseReason::Shutdown, on_event)
            }
            State::Idle | State::Backoff { .. } | State::Finished => {}
        }
    }

    /// The greeting first, then the echo.
    fn echo<F>(
        &mut self,
        stack: &mut S,
        link: &mut Link<S::TcpSocket>,
        greeting: &mut Greeting,
        id: ConnId,
        now: Instant,
        on_event: &mut F,
    ) -> Pumped<S::Error>
    where
        F: FnMut(Event<'_, S::Error>),
    {
        if link.is_idle(now, self.config.idle_timeout) {
            return Pumped::Closed(CloseReason::IdleTimeout);
        }
        let rest = greeting.rest(self.config.greeting);
        if !rest.is_empty() {
            match link.send_from(stack, rest, now, &mut self.stats) {
                Ok(0) => return Pumped::Idle,
                Ok(sent) => {
                    greeting.sent(sent);
                    if !greeting.rest(self.config.greeting).is_empty() {
                        return Pumped::Progress;
                    }
                }
                Err(reason) => return Pumped::Closed(reason),
            }
        }
        link.pump_turn(
            stack,
            self.buffer,
            self.config.zero_read,
            now,
            &mut self.stats,
            |bytes| on_event(Event::Received { conn: id, bytes }),
        )
    }

    /// Schedules the next attempt, or finishes and returns `error` when none is allowed.
    fn attempt_failed<F>(
        &mut self,
        error: Error<S::Error>,
        now: Instant,
        on_event: &mut F,
    ) -> Result<(), Error<S::Error>>
    where
        F: FnMut(Event<'_, S::Error>),
    {
        match self.failures.reconnect(self.config.reconnect) {
            Some(retry_in) => {
                self.state = State::Backoff {
                    until: now + retry_in,
                };
                on_event(Event::ConnectFailed {
                    error: &error,
                    retry_in: Some(retry_in),
                });
                Ok(())
            }
            None => {
                self.state = State::Finished;
                on_event(Event::ConnectFailed {
                    error: &error,
                    retry_in: None,
                });
                Err(error)
            }
        }
    }
}

/// Closes the client's connection and reports it.
fn close<S, F>(
    stack: &mut S,
    conn: ConnId,
    link: Link<S::TcpSocket>,
    reason: CloseReason<S::Error>,
    on_event: &mut F,
) where
    S: TcpClientStack,
    F: FnMut(Event<'_, S::Error>),
{
    debug!("connection {} ended: {}", conn.0, reason.as_str());
    if stack.close(link.socket).is_err() {
        warn!("closing connection {} failed", conn.0);
    }
    on_event(Event::Closed {
        conn,
        reason,
        open: 0,
    });
}

impl<S> Role<S> for EchoClient<'_, S>
where
    S: TcpClientStack,
{
    /// Returns `Err` when an attempt failed and no further attempt is allowed; the client is
    /// then finished.
    fn poll<F>(
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

    /// Drops the connection (or attempt, or wait) and connects again on the next `poll`, even
    /// when finished: for a board whose network changed, where waiting for the stack to
    /// notice the dead connection would take its keep-alive timeout.
    fn restart<F>(&mut self, stack: &mut S, mut on_event: F)
    where
        F: FnMut(Event<'_, S::Error>),
    {
        self.stop(stack, State::Idle, &mut on_event);
        self.failures.reset();
    }

    /// Closes the connection (or attempt) and finishes the client.
    fn shutdown<F>(&mut self, stack: &mut S, mut on_event: F)
    where
        F: FnMut(Event<'_, S::Error>),
    {
        self.stop(stack, State::Finished, &mut on_event);
    }

    /// The end of a backoff, or of the connect timeout of an attempt.
    fn next_deadline(&self) -> Option<Instant> {
        match &self.state {
            State::Backoff { until } => Some(*until),
            State::Connecting { since, .. } => {
                self.config.connect_timeout.map(|timeout| *since + timeout)
            }
            _ => None,
        }
    }

    fn stats(&self) -> Stats {
        Stats {
            open: usize::from(self.is_connected()),
            ..self.stats
        }
    }

    fn is_finished(&self) -> bool {
        matches!(self.state, State::Finished)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::testing::{End, MockError, MockStack, Outgoing, Peer};
    use std::format;
    use std::string::String;
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

    /// Every event in order, as short text, and the first error `poll` returned (polling stops
    /// there).
    fn run(
        client: &mut EchoClient<'_, MockStack>,
        stack: &mut MockStack,
        now: Instant,
        polls: usize,
    ) -> (Vec<String>, Option<Error<MockError>>) {
        let mut seen = Vec::new();
        for _ in 0..polls {
            let polled = client.poll(stack, now, |event| {
                seen.push(match event {
                    Event::Connecting { attempt, .. } => format!("connecting {attempt}"),
                    Event::Opened { conn, peer, open } => format!("opened {conn} {peer} {open}"),
                    Event::ConnectFailed { retry_in, .. } => {
                        format!("connect failed, retry {retry_in:?}")
                    }
                    Event::Received { bytes, .. } => {
                        format!("received {}", String::from_utf8_lossy(bytes))
                    }
                    Event::Closed { conn, reason, open } => {
                        format!("closed {conn} {} {open}", reason.as_str())
                    }
                    other => panic!("the client reported a server event: {other:?}"),
                })
            });
            if let Err(error) = polled {
                return (seen, Some(error));
            }
        }
        (seen, None)
    }

    #[test]
    fn greets_then_echoes_and_finishes_when_the_server_closes() {
        let mut stack = MockStack::default();
        stack
            .outgoing
            .push_back(connects(Peer::new(5001, b"text from the server")));
        let mut buffer = [0u8; 8];
        let mut client = EchoClient::new(ClientConfig::new(remote()), &mut buffer);
        let (seen, error) = run(&mut client, &mut stack, Instant::ZERO, 30);
        assert_eq!(error, None);
        assert_eq!(
            seen,
            [
                "connecting 1",
                "opened #0 10.0.0.1:5001 1",
                "received text fro",
                "received m the se",
                "received rver",
                "closed #0 eof 0"
            ]
        );
        let mut expected = DEFAULT_GREETING.as_bytes().to_vec();
        expected.extend_from_slice(b"text from the server");
        assert_eq!(stack.conn(0).received_by_peer, expected);
        assert!(stack.conn(0).closed);
        assert!(client.is_finished());
        assert_eq!(client.stats().open, 0);
    }

    #[test]
    fn sends_all_of_the_greeting_through_partial_sends_before_echoing() {
        let mut stack = MockStack::default();
        let mut peer = Peer::new(5001, b"echo me");
        peer.send_sizes = vec![5, 0];
        stack.outgoing.push_back(connects(peer));
        let mut buffer = [0u8; 3];
        let mut client = EchoClient::new(ClientConfig::new(remote()), &mut buffer);
        let (_, error) = run(&mut client, &mut stack, Instant::ZERO, 100);
        assert_eq!(error, None);
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
        let (seen, error) = run(&mut client, &mut stack, Instant::ZERO, 5);
        assert_eq!(seen, ["connecting 1", "connect failed, retry None"]);
        assert_eq!(
            error,
            Some(Error::Connect {
                remote: remote(),
                error: MockError::other("connection refused")
            })
        );
        assert!(client.is_finished());
        assert!(!client.poll(&mut stack, Instant::ZERO, |_| {}).unwrap());
        assert_eq!(
            stack.open_sockets(),
            0,
            "the failed attempt's socket is closed"
        );
    }

    #[test]
    fn a_socket_failure_is_a_failed_attempt() {
        let mut stack = MockStack::default();
        stack.fail_socket = Some(MockError::other("no free socket"));
        let mut buffer = [0u8; 8];
        let config = ClientConfig::new(remote())
            .with_reconnect(Some(Reconnect::new().with_max_retries(Some(1))));
        let mut client = EchoClient::new(config, &mut buffer);
        let mut now = Instant::ZERO;
        let mut seen = Vec::new();
        let mut result = Ok(true);
        for _ in 0..10 {
            result = client.poll(&mut stack, now, |event| {
                if let Event::ConnectFailed { error, retry_in } = event {
                    seen.push((error.clone(), retry_in));
                }
            });
            if result.is_err() {
                break;
            }
            now = now + Duration::from_millis(250);
        }
        let failed = Error::Socket(MockError::other("no free socket"));
        assert_eq!(
            seen,
            [
                (failed.clone(), Some(Duration::from_millis(500))),
                (failed.clone(), None)
            ]
        );
        assert_eq!(result, Err(failed));
        assert!(client.is_finished());
    }

    #[test]
    fn gives_up_an_attempt_after_the_connect_timeout() {
        let mut stack = MockStack::default(); // no outgoing script: connect blocks forever
        let mut buffer = [0u8; 8];
        let config = ClientConfig::new(remote()).with_connect_timeout(Some(Duration::from_secs(3)));
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
        assert_eq!(
            stack.open_sockets(),
            0,
            "the timed-out attempt's socket is closed"
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
        let config = ClientConfig::new(remote())
            .with_reconnect(Some(Reconnect::new().with_max_retries(Some(2))));
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
            [
                Some(Duration::from_millis(500)),
                Some(Duration::from_millis(1000))
            ]
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
        let config = ClientConfig::new(remote()).with_reconnect(Some(
            Reconnect::new()
                .with_max_retries(Some(2))
                .with_backoff(Backoff::new(Duration::ZERO, Duration::ZERO)),
        ));
        let mut client = EchoClient::new(config, &mut buffer);
        let (seen, error) = run(&mut client, &mut stack, Instant::ZERO, 20);
        assert_eq!(
            seen,
            [
                "connecting 1",
                "connect failed, retry Some(0ns)",
                "connecting 2",
                "connect failed, retry Some(0ns)",
                "connecting 3",
                "connect failed, retry None",
            ]
        );
        assert!(matches!(error, Some(Error::Connect { .. })));
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
        let config = ClientConfig::new(remote()).with_reconnect(Some(
            Reconnect::new().with_backoff(Backoff::new(Duration::ZERO, Duration::ZERO)),
        ));
        let mut client = EchoClient::new(config, &mut buffer);
        let (seen, error) = run(&mut client, &mut stack, Instant::ZERO, 40);
        assert_eq!(error, None);
        assert_eq!(
            seen,
            [
                "connecting 1",
                "opened #0 10.0.0.1:5001 1",
                "received one",
                "closed #0 eof 0",
                "connecting 1",
                "opened #1 10.0.0.1:5001 1",
                "received two"
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
        let config = ClientConfig::new(remote()).with_zero_read(ZeroRead::NoData);
        let mut client = EchoClient::new(config, &mut buffer);
        let (seen, error) = run(&mut client, &mut stack, Instant::ZERO, 30);
        assert_eq!(error, None);
        assert_eq!(
            seen,
            [
                "connecting 1",
                "opened #0 10.0.0.1:5001 1",
                "received nal",
                "closed #0 eof 0"
            ]
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
            if let Event::Closed { reason, .. } = event {
                reasons.push(reason);
            }
        });
        assert_eq!(reasons, [CloseReason::Shutdown]);
        assert!(stack.conn(0).closed);
        let (seen, _) = run(&mut client, &mut stack, Instant::ZERO, 10);
        assert_eq!(seen, ["connecting 1", "opened #1 10.0.0.1:5001 1"]);
        assert!(client.is_connected());
        assert_eq!(stack.conns.len(), 2);
    }

    #[test]
    fn shutdown_closes_an_attempt_in_progress_and_finishes() {
        let mut stack = MockStack::default(); // connect blocks forever
        let mut buffer = [0u8; 8];
        let mut client = EchoClient::new(ClientConfig::new(remote()), &mut buffer);
        run(&mut client, &mut stack, Instant::ZERO, 3);
        assert_eq!(stack.open_sockets(), 1);
        client.shutdown(&mut stack, |_| panic!("no connection, no event"));
        assert_eq!(stack.open_sockets(), 0);
        assert!(client.is_finished());
    }

    #[test]
    fn closes_the_connection_when_idle_too_long() {
        let mut stack = MockStack::default();
        stack
            .outgoing
            .push_back(connects(Peer::new(5001, b"").end(End::Open)));
        let mut buffer = [0u8; 8];
        let config = ClientConfig::new(remote()).with_idle_timeout(Some(Duration::from_secs(2)));
        let mut client = EchoClient::new(config, &mut buffer);
        run(&mut client, &mut stack, Instant::ZERO, 5);
        assert!(client.is_connected());
        let (seen, _) = run(&mut client, &mut stack, Instant::from_millis(2_000), 1);
        assert_eq!(seen, ["closed #0 idle timeout 0"]);
        assert!(client.is_finished());
    }
}
