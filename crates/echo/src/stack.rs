//! What `echo` needs of a network stack beyond the embedded-nal traits: the meaning of
//! `Ok(0)` ([`ZeroRead`]) and the listener's address ([`LocalAddress`]). The whole contract is
//! in the crate docs, "Stack contract".

use core::net::SocketAddr;

use embedded_nal::TcpClientStack;

/// What `receive` returning `Ok(0)` means for a stack. See the crate docs, "Stack contract".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ZeroRead {
    /// `Ok(0)` is end of stream, as with std sockets (std-embedded-nal, `echo-std`,
    /// `echo-smoltcp`). No data yet is `WouldBlock`.
    #[default]
    Eof,
    /// `Ok(0)` means "no data yet" and end of stream is an error of kind `PipeClosed`, as with
    /// smoltcp-nal 0.7.
    NoData,
}

/// The address clients reach a listening socket at, which embedded-nal 0.9 has no call for.
///
/// [`EchoServer`](crate::EchoServer) reports it in [`Event::Listening`](crate::Event::Listening)
/// and the screen shows it as the tutorial's `IP:PORT`. A stack answers with its real port
/// (also when it chose one for port 0) and, for a socket bound to the unspecified address,
/// the board's own address (the tutorial's `sta.ifconfig()[0]`); `None` when it does not know
/// (no address yet), in which case the server reports the unspecified address and the port
/// it asked for.
///
/// `echo-std`'s and `echo-smoltcp`'s stacks implement it. For a stack type of another crate,
/// wrap it in a type of your own that implements both embedded-nal's traits and this one.
pub trait LocalAddress: TcpClientStack {
    /// Where clients reach `socket` (a listening socket), if the stack knows.
    fn local_address(&self, socket: &Self::TcpSocket) -> Option<SocketAddr>;
}
