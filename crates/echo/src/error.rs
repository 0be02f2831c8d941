//! The one error type of the crate.

use core::fmt;
use core::net::SocketAddr;

use crate::addr::Address;
use crate::time::{millis, Duration};

/// What went wrong, generic over the network stack's own error `E`.
///
/// The failures of a role as a whole: the server's listening socket, the client's connection
/// attempts. The server recovers from each by itself and reports it as
/// [`Event::ListenFailed`](crate::Event::ListenFailed); the client reports each as
/// [`Event::ConnectFailed`](crate::Event::ConnectFailed), and `poll` returns the last one
/// when no attempt is left. A failure of one connection is not an error of its role: it ends
/// that connection alone, reported as [`Event::Closed`](crate::Event::Closed).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error<E> {
    /// The stack could not create a socket.
    Socket(E),
    /// Binding the listening socket to `port` failed.
    Bind {
        /// The port asked for.
        port: u16,
        /// The stack's error.
        error: E,
    },
    /// Putting the bound socket into the listening state failed.
    Listen {
        /// The port of the listener.
        port: u16,
        /// The stack's error.
        error: E,
    },
    /// The listening socket failed while accepting; the server closes it and listens again.
    Accept(E),
    /// The stack refused or failed the connection to `remote`.
    Connect {
        /// The server the client tried to reach.
        remote: SocketAddr,
        /// The stack's error.
        error: E,
    },
    /// The connection to `remote` was not established within `after`.
    ConnectTimeout {
        /// The server the client tried to reach.
        remote: SocketAddr,
        /// The configured connect timeout.
        after: Duration,
    },
}

impl<E: fmt::Debug> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Socket(error) => write!(f, "cannot create a socket: {error:?}"),
            Error::Bind { port, error } => {
                write!(f, "cannot bind port {}: {error:?}", u32::from(*port))
            }
            Error::Listen { port, error } => {
                write!(f, "cannot listen on port {}: {error:?}", u32::from(*port))
            }
            Error::Accept(error) => write!(f, "the listening socket failed to accept: {error:?}"),
            Error::Connect { remote, error } => {
                write!(f, "cannot connect to {}: {error:?}", Address(*remote))
            }
            Error::ConnectTimeout { remote, after } => {
                write!(
                    f,
                    "connecting to {} timed out after {} ms",
                    Address(*remote),
                    millis(*after)
                )
            }
        }
    }
}

impl<E: fmt::Debug> core::error::Error for Error<E> {}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::ToString;

    #[test]
    fn display_names_what_went_wrong() {
        let bind: Error<&str> = Error::Bind {
            port: 5001,
            error: "AddrInUse",
        };
        assert_eq!(bind.to_string(), "cannot bind port 5001: \"AddrInUse\"");
        let timeout: Error<()> = Error::ConnectTimeout {
            remote: "10.0.0.1:5001".parse().unwrap(),
            after: Duration::from_secs(3),
        };
        assert_eq!(
            timeout.to_string(),
            "connecting to 10.0.0.1:5001 timed out after 3000 ms"
        );
    }
}
