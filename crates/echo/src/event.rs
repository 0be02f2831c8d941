//! What the echo roles report to the board: the input of the screen and of logs.
//!
//! Three events are the same for both roles (a connection [opened](Event::Opened),
//! [received](Event::Received) bytes, [closed](Event::Closed)); the others exist only where
//! the roles differ: the server [listens](Event::Listening) and may see its listener
//! [fail](Event::ListenFailed), the client [connects](Event::Connecting) and may see an
//! attempt [fail](Event::ConnectFailed).

use core::fmt;
use core::net::SocketAddr;

use crate::error::Error;
use crate::time::Duration;

/// Identifies one connection for as long as the role runs (a counter, not a slot index).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ConnId(pub u32);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum CloseReason<E> {
    /// The peer finished sending (EOF) and everything it sent was handed back to the stack.
    Eof,
    /// The stack reported the connection closed while sending (`TcpErrorKind::PipeClosed`):
    /// the peer reset it or stopped reading. Bytes not yet sent could not be delivered.
    PipeClosed,
    /// Nothing moved in either direction for the configured idle timeout.
    IdleTimeout,
    /// The stack reported another error on this connection.
    Failed(E),
    /// The application closed it: [`Role::shutdown`](crate::Role::shutdown) or
    /// [`Role::restart`](crate::Role::restart).
    Shutdown,
}

impl<E> CloseReason<E> {
    /// A short name for logs and the screen.
    pub fn as_str(&self) -> &'static str {
        match self {
            CloseReason::Eof => "eof",
            CloseReason::PipeClosed => "pipe closed",
            CloseReason::IdleTimeout => "idle timeout",
            CloseReason::Failed(_) => "error",
            CloseReason::Shutdown => "shutdown",
        }
    }
}

/// Something that happened in a [`Role`](crate::Role) during one `poll` (or `shutdown`,
/// `restart`).
///
/// `E` is the stack's error type. `Received` borrows the bytes just read: they are also the
/// bytes being echoed, untouched.
#[derive(Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Event<'a, E> {
    /// A connection opened: the server accepted it, or the client's attempt succeeded (the
    /// client's greeting goes out next).
    Opened {
        /// The new connection.
        conn: ConnId,
        /// The other end: the server's client, or the client's server.
        peer: SocketAddr,
        /// Connections the role has open now, this one included.
        open: usize,
    },
    /// Bytes arrived on `conn`; they are being echoed back as they are.
    Received {
        /// The connection they came on.
        conn: ConnId,
        /// The bytes, exactly as read.
        bytes: &'a [u8],
    },
    /// A connection ended and its socket was closed.
    Closed {
        /// The connection that ended.
        conn: ConnId,
        /// Why.
        reason: CloseReason<E>,
        /// Connections the role has open now.
        open: usize,
    },
    /// Server: the listening socket is open; clients reach it at `local`.
    Listening {
        /// The address as the stack reports it
        /// ([`LocalAddress`](crate::LocalAddress)): the board's own address and the real
        /// port, also when port 0 was asked for.
        local: SocketAddr,
    },
    /// Server: opening the listening socket, or accepting on it, failed. The connections
    /// being served are not touched; the server listens again after `retry_in`.
    ListenFailed {
        /// What failed.
        error: &'a Error<E>,
        /// The wait before the next attempt (it grows while attempts keep failing).
        retry_in: Duration,
    },
    /// Client: connection attempt number `attempt` starts (1 for the first).
    Connecting {
        /// The server.
        remote: SocketAddr,
        /// Attempt number since the last established connection, from 1.
        attempt: u32,
    },
    /// Client: a connection attempt failed.
    ConnectFailed {
        /// What failed.
        error: &'a Error<E>,
        /// The wait before the next attempt; `None` when no attempt is left: the client is
        /// finished and `poll` returns `error`.
        retry_in: Option<Duration>,
    },
}
