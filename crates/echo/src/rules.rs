//! The rules both the non-blocking roles (`EchoServer`, `EchoClient`) and the async ones
//! (`asynch`) follow, in one place: when a connection is idle, what the counters count, how
//! far the greeting got, and what an I/O error means for a connection.

use crate::event::{CloseReason, ConnId};
use crate::role::Stats;
use crate::time::{Duration, Instant};

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
