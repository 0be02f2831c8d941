//! One echoing connection: read, hand the same bytes back, never read past unsent bytes.
//!
//! Both roles use [`Link`]: the server for each accepted connection, the client for its one
//! connection. This is the only place that moves bytes.

use embedded_nal::{TcpClientStack, TcpError, TcpErrorKind};

use crate::event::CloseReason;
use crate::role::Stats;
use crate::rules::{close_reason, Activity, ROUNDS_PER_TURN};
use crate::stack::ZeroRead;
use crate::time::{Duration, Instant};

/// What one [`Link::pump`] did.
pub(crate) enum Pumped<E> {
    /// Nothing could move.
    Idle,
    /// Bytes moved.
    Progress,
    /// The connection is over; the caller closes the socket.
    Closed(CloseReason<E>),
}

/// An open, echoing connection. Its buffer lives with the role (one per slot).
pub(crate) struct Link<T> {
    pub(crate) socket: T,
    /// Received bytes not yet sent are `buffer[start..end]`.
    start: usize,
    end: usize,
    activity: Activity,
}

impl<T> Link<T> {
    pub(crate) fn new(socket: T, now: Instant) -> Self {
        Link {
            socket,
            start: 0,
            end: 0,
            activity: Activity::new(now),
        }
    }

    /// Bytes received and not yet handed back.
    pub(crate) fn unsent(&self) -> usize {
        self.end - self.start
    }

    /// When the link becomes idle for `timeout`, if nothing moves before.
    pub(crate) fn idle_deadline(&self, timeout: Option<Duration>) -> Option<Instant> {
        self.activity.deadline(timeout)
    }

    /// Whether nothing moved for `timeout` (never, without a timeout).
    pub(crate) fn is_idle(&self, now: Instant, timeout: Option<Duration>) -> bool {
        self.activity.is_idle(now, timeout)
    }

    /// The connection's turn: [`pump`](Self::pump) again while it makes progress, up to
    /// [`ROUNDS_PER_TURN`] rounds.
    pub(crate) fn pump_turn<S>(
        &mut self,
        stack: &mut S,
        buffer: &mut [u8],
        zero_read: ZeroRead,
        now: Instant,
        stats: &mut Stats,
        mut on_received: impl FnMut(&[u8]),
    ) -> Pumped<S::Error>
    where
        S: TcpClientStack<TcpSocket = T>,
    {
        let mut outcome = Pumped::Idle;
        for _ in 0..ROUNDS_PER_TURN {
            match self.pump(stack, buffer, zero_read, now, stats, &mut on_received) {
                Pumped::Progress => outcome = Pumped::Progress,
                Pumped::Idle => break,
                closed => return closed,
            }
        }
        outcome
    }

    /// Sends what is pending, then, only if nothing is pending, reads once and sends that.
    ///
    /// `on_received` sees every chunk as read, before it is echoed.
    pub(crate) fn pump<S>(
        &mut self,
        stack: &mut S,
        buffer: &mut [u8],
        zero_read: ZeroRead,
        now: Instant,
        stats: &mut Stats,
        on_received: impl FnOnce(&[u8]),
    ) -> Pumped<S::Error>
    where
        S: TcpClientStack<TcpSocket = T>,
    {
        let mut progress = false;
        if self.unsent() > 0 {
            match self.flush(stack, buffer, now, stats) {
                Ok(moved) => progress = moved,
                Err(reason) => return Pumped::Closed(reason),
            }
            if self.unsent() > 0 {
                // Backpressure: the peer is not taking its echo, so it gets no more reads.
                return if progress {
                    Pumped::Progress
                } else {
                    Pumped::Idle
                };
            }
        }

        match stack.receive(&mut self.socket, buffer) {
            Ok(0) => match zero_read {
                ZeroRead::Eof => return Pumped::Closed(CloseReason::Eof),
                ZeroRead::NoData => {}
            },
            Ok(n) => {
                self.start = 0;
                self.end = n;
                self.activity.moved(now);
                stats.received(n);
                on_received(&buffer[..n]);
                progress = true;
                if let Err(reason) = self.flush(stack, buffer, now, stats) {
                    return Pumped::Closed(reason);
                }
            }
            Err(nb::Error::WouldBlock) => {}
            // Nothing is pending here, so a peer that closed its side has had everything back.
            Err(nb::Error::Other(e)) if e.kind() == TcpErrorKind::PipeClosed => {
                return Pumped::Closed(CloseReason::Eof)
            }
            Err(nb::Error::Other(e)) => return Pumped::Closed(CloseReason::Failed(e)),
        }
        if progress {
            Pumped::Progress
        } else {
            Pumped::Idle
        }
    }

    /// Sends as much of the pending bytes as the stack takes now; `Ok(true)` if any went.
    fn flush<S>(
        &mut self,
        stack: &mut S,
        buffer: &[u8],
        now: Instant,
        stats: &mut Stats,
    ) -> Result<bool, CloseReason<S::Error>>
    where
        S: TcpClientStack<TcpSocket = T>,
    {
        self.send_from(stack, &buffer[self.start..self.end], now, stats)
            .map(|sent| {
                self.start += sent;
                if self.start == self.end {
                    self.start = 0;
                    self.end = 0;
                }
                sent > 0
            })
    }

    /// Sends from `bytes` (pending echo or the client's greeting); returns how many went.
    pub(crate) fn send_from<S>(
        &mut self,
        stack: &mut S,
        bytes: &[u8],
        now: Instant,
        stats: &mut Stats,
    ) -> Result<usize, CloseReason<S::Error>>
    where
        S: TcpClientStack<TcpSocket = T>,
    {
        match stack.send(&mut self.socket, bytes) {
            Ok(sent) => {
                if sent > 0 {
                    self.activity.moved(now);
                    stats.sent(sent);
                }
                Ok(sent)
            }
            Err(nb::Error::WouldBlock) => Ok(0),
            Err(nb::Error::Other(e)) => {
                let gone = e.kind() == TcpErrorKind::PipeClosed;
                Err(close_reason(e, gone))
            }
        }
    }
}
