//! The rules both the non-blocking roles (`EchoServer`, `EchoClient`) and the async ones
//! (`asynch`) follow, in one place: when a connection is idle, what the counters count, how
//! far the greeting got, and what an I/O error means for a connection.

use crate::backoff::Backoff;
use crate::client::Reconnect;
use crate::event::{CloseReason, ConnId};
use crate::role::Stats;
use crate::time::{millis, Duration, Instant};

/// Echo rounds (a read and the writes of what it read) one connection runs in its turn: in
/// one `poll` of the non-blocking roles, before it yields to the executor in the async ones.
/// A busy connection moves its bytes back to back, as a task per connection does (one round
/// per connection and pass made every peer wake once per pass), and the other connections,
/// the display and a stop still come after at most this many rounds: 256 KiB with the
/// tutorial's 1 KiB buffer, 16 MiB with a 64 KiB one. A stack whose reads and writes complete
/// at once while data flows (std sockets, embassy-net with a full buffer) would otherwise let
/// one busy peer starve the rest.
///
/// Measured on the host (8 connections, 64 KiB buffers, server CPU per byte against tokio's
/// one thread in the same run, README "Performance"): a turn of 32 rounds cost 4 to 10% more
/// CPU than one of 256, which was as good as 512 or no limit at all; 1 round per pass, 1.5x.
pub const ROUNDS_PER_TURN: u32 = 256;

/// When bytes last moved on a connection, in either direction: the idle timeout's clock.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Activity {
    last: Instant,
}

impl Activity {
    pub(crate) fn new(now: Instant) -> Self {
        Activity { last: now }
    }

    /// Bytes moved at `now`.
    pub(crate) fn moved(&mut self, now: Instant) {
        self.last = now;
    }

    /// When the connection becomes idle for `timeout`, if nothing moves before.
    pub(crate) fn deadline(&self, timeout: Option<Duration>) -> Option<Instant> {
        timeout.map(|timeout| self.last + timeout)
    }

    /// Whether nothing moved for `timeout` (never, without a timeout).
    pub(crate) fn is_idle(&self, now: Instant, timeout: Option<Duration>) -> bool {
        timeout.is_some_and(|timeout| now - self.last >= timeout)
    }
}

impl Stats {
    /// A connection opened.
    pub(crate) fn opened(&mut self) {
        self.connections += 1;
    }

    /// `n` bytes were read from a peer.
    pub(crate) fn received(&mut self, n: usize) {
        self.bytes_received += n as u64;
    }

    /// `n` bytes were handed back to the stack.
    pub(crate) fn sent(&mut self, n: usize) {
        self.bytes_sent += n as u64;
    }
}

/// Numbers for connections, in the order they opened.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ConnIds {
    next: u32,
}

impl ConnIds {
    pub(crate) fn next(&mut self) -> ConnId {
        let id = ConnId(self.next);
        self.next = self.next.wrapping_add(1);
        id
    }
}

/// How much of the greeting went: it goes first, whole, before any echo.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Greeting {
    sent: usize,
}

impl Greeting {
    /// What is left of `greeting` to send.
    pub(crate) fn rest<'g>(&self, greeting: &'g [u8]) -> &'g [u8] {
        &greeting[self.sent.min(greeting.len())..]
    }

    /// `n` more bytes of it went.
    pub(crate) fn sent(&mut self, n: usize) {
        self.sent += n;
    }
}

/// What an I/O error ends a connection as: a peer that reset or went away is `PipeClosed`,
/// anything else `Failed`.
pub(crate) fn close_reason<E>(error: E, peer_gone: bool) -> CloseReason<E> {
    match peer_gone {
        true => CloseReason::PipeClosed,
        false => CloseReason::Failed(error),
    }
}

/// Failures in a row of what a role keeps trying: the server's listening, the client's
/// connection attempts. A success resets them.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Failures {
    count: u32,
}

impl Failures {
    /// The number of the next attempt, from 1.
    pub(crate) fn attempt(&self) -> u32 {
        self.count.saturating_add(1)
    }

    /// It worked: the next failure waits the shortest time again.
    pub(crate) fn reset(&mut self) {
        self.count = 0;
    }

    /// Listening on `port` failed once more: the wait before listening again.
    pub(crate) fn relisten(&mut self, port: u16, relisten: Backoff) -> Duration {
        self.count = self.count.saturating_add(1);
        let retry_in = relisten.delay(self.count);
        warn!(
            "listening on port {} failed; again in {} ms",
            u32::from(port),
            millis(retry_in)
        );
        retry_in
    }

    /// A connection attempt failed: the wait before the next one, or `None` when `reconnect`
    /// allows none.
    pub(crate) fn reconnect(&mut self, reconnect: Option<Reconnect>) -> Option<Duration> {
        self.count = self.count.saturating_add(1);
        let retry = reconnect.filter(|r| r.max_retries.is_none_or(|max| self.count <= max));
        match retry {
            Some(reconnect) => {
                let retry_in = reconnect.backoff.delay(self.count);
                warn!(
                    "connection attempt {} failed; retrying in {} ms",
                    self.count,
                    millis(retry_in)
                );
                Some(retry_in)
            }
            None => {
                warn!("connection attempt {} failed; giving up", self.count);
                None
            }
        }
    }
}

/// The wait before connecting again after an established connection ended, or `None` when the
/// client is then finished.
pub(crate) fn after_disconnect(reconnect: Option<Reconnect>) -> Option<Duration> {
    reconnect
        .filter(|reconnect| reconnect.after_disconnect)
        .map(|reconnect| reconnect.backoff.initial)
}
