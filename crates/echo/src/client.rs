//! The tutorial's TCP client: connect, greet, echo whatever the server sends.

use core::net::SocketAddr;

use embedded_nal::TcpClientStack;

use crate::error::Error;
use crate::event::{CloseReason, ConnId, Event};
use crate::link::{Link, Pumped, Stats, ZeroRead};
use crate::time::{Duration, Instant};

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
                        info!("connected to {}", remote);
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
                    retry_in.as_millis() as u64
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
