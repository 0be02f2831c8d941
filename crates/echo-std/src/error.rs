//! The host stack's error: what was being done, and the `io::Error` that stopped it.

use core::fmt;
use std::io;

use embedded_nal::{TcpError, TcpErrorKind};

/// An error of [`StdStack`](crate::StdStack): the operation that failed ("connect to
/// 127.0.0.1:5001") and the operating system's reason ("timed out after 3 s").
///
/// `kind()` is [`TcpErrorKind::PipeClosed`] when the peer reset or broke the connection,
/// so code generic over embedded-nal can tell a vanished peer from a local failure.
#[derive(Debug)]
pub struct Error {
    operation: String,
    kind: TcpErrorKind,
    source: io::Error,
}

impl Error {
    /// Wraps `source`, classifying it as [`TcpErrorKind::PipeClosed`] when it means that the
    /// connection is gone (reset, aborted, broken pipe, not connected).
    pub fn new(operation: impl Into<String>, source: io::Error) -> Self {
        let kind = match source.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::NotConnected => TcpErrorKind::PipeClosed,
            _ => TcpErrorKind::Other,
        };
        Self {
            operation: operation.into(),
            kind,
            source,
        }
    }

    /// What was being done, e.g. `connect to 127.0.0.1:5001`.
    pub fn operation(&self) -> &str {
        &self.operation
    }

    /// The operating system's error.
    pub fn io_error(&self) -> &io::Error {
        &self.source
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.operation, self.source)
    }
}

/// A copy says the same: the OS error code where there is one, else the kind and the text.
/// (The events of `echo-std server --threads N` cross from the loops to the display's
/// thread as copies.)
impl Clone for Error {
    fn clone(&self) -> Self {
        let source = match self.source.raw_os_error() {
            Some(code) => io::Error::from_raw_os_error(code),
            None => io::Error::new(self.source.kind(), self.source.to_string()),
        };
        Self {
            operation: self.operation.clone(),
            kind: self.kind,
            source,
        }
    }
}

// The io::Error is already part of Display, so it is not repeated as `source()`.
impl std::error::Error for Error {}

impl TcpError for Error {
    fn kind(&self) -> TcpErrorKind {
        self.kind
    }
}

/// For the async stack ([`AsyncStack`](crate::AsyncStack)): the `io::Error`'s kind, so that
/// the async echo roles tell a vanished peer (reset, aborted, broken pipe, not connected) from
/// a local failure.
impl echo::asynch::embedded_io_async::Error for Error {
    fn kind(&self) -> echo::asynch::embedded_io_async::ErrorKind {
        self.source.kind().into()
    }
}

impl From<Error> for io::Error {
    fn from(error: Error) -> Self {
        io::Error::new(error.source.kind(), error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_connections_are_pipe_closed() {
        for kind in [
            io::ErrorKind::ConnectionReset,
            io::ErrorKind::ConnectionAborted,
            io::ErrorKind::BrokenPipe,
            io::ErrorKind::NotConnected,
        ] {
            let error = Error::new("receive", io::Error::from(kind));
            assert_eq!(error.kind(), TcpErrorKind::PipeClosed, "{kind:?}");
        }
        let refused = Error::new("connect", io::ErrorKind::ConnectionRefused.into());
        assert_eq!(refused.kind(), TcpErrorKind::Other);
    }

    #[test]
    fn a_copy_says_the_same() {
        for source in [
            io::Error::from_raw_os_error(98),
            io::Error::new(io::ErrorKind::TimedOut, "timed out after 3 s"),
        ] {
            let error = Error::new("bind 127.0.0.1:5001", source);
            let copy = error.clone();
            assert_eq!(copy.to_string(), error.to_string());
            assert_eq!(copy.kind(), error.kind());
            assert_eq!(copy.io_error().kind(), error.io_error().kind());
        }
    }

    #[test]
    fn async_kinds_are_the_io_kinds() {
        use echo::asynch::embedded_io_async::{Error as AsyncError, ErrorKind};
        let reset = Error::new("receive", io::ErrorKind::ConnectionReset.into());
        assert_eq!(AsyncError::kind(&reset), ErrorKind::ConnectionReset);
        let refused = Error::new("connect", io::ErrorKind::ConnectionRefused.into());
        assert_eq!(AsyncError::kind(&refused), ErrorKind::ConnectionRefused);
    }

    #[test]
    fn display_says_what_and_why() {
        let error = Error::new(
            "connect to 127.0.0.1:5001",
            io::Error::new(io::ErrorKind::TimedOut, "timed out after 3 s"),
        );
        assert_eq!(
            error.to_string(),
            "connect to 127.0.0.1:5001: timed out after 3 s"
        );
    }
}
