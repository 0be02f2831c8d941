//! What the echo roles report to the board: the input of the screen and of logs.

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
    /// The application shut the role down.
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

/// Something that happened in [`EchoServer`](crate::EchoServer) or
/// [`EchoClient`](crate::EchoClient) during one `poll`.
///
/// `E` is the stack's error type. `Received` borrows the bytes just read: they are also the
/// bytes being echoed, untouched.
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event<'a, E> {
    /// The server's socket is bound and listening on `port`.
    Listening {
        /// The port asked for (0 if the stack chose one).
        port: u16,
    },
    /// The server accepted a connection.
    Accepted {
        /// The new connection.
        conn: ConnId,
        /// The client's address.
        peer: SocketAddr,
    },
    /// Bytes arrived on `conn`; they are being echoed back as they are.
    Received {
        /// The connection they came on.
        conn: ConnId,
        /// The bytes, exactly as read.
        bytes: &'a [u8],
    },
    /// A server connection ended; its slot is free again.
    Closed {
        /// The connection that ended.
        conn: ConnId,
        /// Why.
        reason: CloseReason<E>,
    },
    /// The client starts connection attempt number `attempt` (1 for the first).
    Connecting {
        /// The server.
        remote: SocketAddr,
        /// Attempt number since the last established connection, from 1.
        attempt: u32,
    },
    /// The client's connection is established; the greeting goes out next.
    Connected {
        /// The connection.
        conn: ConnId,
        /// The server.
        remote: SocketAddr,
    },
    /// A connection attempt failed and the client tries again after `retry_in`.
    ConnectFailed {
        /// What failed.
        error: Error<E>,
        /// The wait before the next attempt.
        retry_in: Duration,
    },
    /// The client's connection ended.
    Disconnected {
        /// The connection that ended.
        conn: ConnId,
        /// Why.
        reason: CloseReason<E>,
    },
}
