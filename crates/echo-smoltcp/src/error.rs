//! The stack's error type.

use core::fmt;

use embedded_nal::{TcpError, TcpErrorKind};

/// What went wrong in a [`Stack`](crate::Stack) call or in building a
/// [`DriverDevice`](crate::DriverDevice).
///
/// Only [`Error::ConnectionClosed`] has the embedded-nal kind
/// [`TcpErrorKind::PipeClosed`]; every other variant is [`TcpErrorKind::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error {
    /// Every pooled socket is handed out, listening for a listener, or still closing.
    NoFreeSocket,
    /// The SocketSet's storage is full ([`Stack::new`](crate::Stack::new), [`Stack::add_socket`](crate::Stack::add_socket)).
    SocketSetFull,
    /// The handle does not name a live socket of this stack (stale, or from another stack).
    InvalidSocket,
    /// The call does not fit the socket's state: `send` on a listener, `accept` on a
    /// connection, `listen` before `bind`, `connect` twice to different peers...
    InvalidState,
    /// The connection is over for this direction: reset by the peer, timed out, or the
    /// send half is closed. embedded-nal kind [`TcpErrorKind::PipeClosed`].
    ConnectionClosed,
    /// The connection attempt failed: refused by the peer (RST) or timed out.
    ConnectFailed,
    /// The address cannot be used here: port 0, an IPv6 peer without the `ipv6` feature,
    /// or no local address to reach it from (for example DHCP has not configured one yet).
    Unaddressable,
    /// Another listener of this stack already listens on the port.
    AddressInUse,
    /// The driver's medium is not supported (IEEE 802.15.4, or IP without `medium-ip`).
    UnsupportedMedium,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::NoFreeSocket => "no free TCP socket in the pool",
            Error::SocketSetFull => "socket set storage is full",
            Error::InvalidSocket => "socket handle is not valid for this stack",
            Error::InvalidState => "operation not valid in the socket's state",
            Error::ConnectionClosed => "connection closed",
            Error::ConnectFailed => "connection attempt failed",
            Error::Unaddressable => "address cannot be used",
            Error::AddressInUse => "port already has a listener",
            Error::UnsupportedMedium => "network driver medium not supported",
        })
    }
}

impl core::error::Error for Error {}

impl TcpError for Error {
    fn kind(&self) -> TcpErrorKind {
        match self {
            Error::ConnectionClosed => TcpErrorKind::PipeClosed,
            _ => TcpErrorKind::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_connection_closed_is_pipe_closed() {
        assert_eq!(Error::ConnectionClosed.kind(), TcpErrorKind::PipeClosed);
        for other in [
            Error::NoFreeSocket,
            Error::SocketSetFull,
            Error::InvalidSocket,
            Error::InvalidState,
            Error::ConnectFailed,
            Error::Unaddressable,
            Error::AddressInUse,
            Error::UnsupportedMedium,
        ] {
            assert_eq!(other.kind(), TcpErrorKind::Other, "{other}");
        }
    }
}
