//! `EchoServer` and `EchoClient` against [`FuzzStack`], a stack whose every answer comes from
//! the fuzzer's bytes.
//!
//! Properties: no panic; no I/O on a socket the role closed or on one it never opened; every
//! peer gets back exactly a prefix of what it sent (the client's server: of the greeting, then
//! of what it sent), in order.

use std::net::SocketAddr;

use echo::{
    ClientConfig, Duration, EchoClient, EchoServer, Instant, LocalAddress, Reconnect, Role,
    ServerConfig, Slot, ZeroRead,
};
use embedded_nal::{TcpClientStack, TcpError, TcpErrorKind, TcpFullStack};

use crate::Bytes;

/// An error of [`FuzzStack`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FuzzError(TcpErrorKind);

impl TcpError for FuzzError {
    fn kind(&self) -> TcpErrorKind {
        self.0
    }
}

const PIPE_CLOSED: FuzzError = FuzzError(TcpErrorKind::PipeClosed);
const OTHER: FuzzError = FuzzError(TcpErrorKind::Other);

/// The far end of one connection.
#[derive(Debug, Default)]
pub struct Peer {
    /// What the peer sends.
    pub sends: Vec<u8>,
    read: usize,
    /// What the role sent it.
    pub echoed: Vec<u8>,
}

#[derive(Debug)]
enum Socket {
    New,
    Bound,
    Listening,
    Connection(usize),
    Closed,
}

/// A `TcpFullStack` whose answers the fuzzer's bytes choose.
pub struct FuzzStack<'a> {
    bytes: Bytes<'a>,
    sockets: Vec<Socket>,
    /// Every connection ever opened, in order.
    pub peers: Vec<Peer>,
    zero_read: ZeroRead,
}

impl<'a> FuzzStack<'a> {
    fn new(bytes: Bytes<'a>, zero_read: ZeroRead) -> Self {
        FuzzStack {
            bytes,
            sockets: Vec::new(),
            peers: Vec::new(),
            zero_read,
        }
    }

    fn open(&mut self, socket: Socket) -> usize {
        self.sockets.push(socket);
        self.sockets.len() - 1
    }

    /// A new peer sending up to 255 bytes of the input.
    fn peer(&mut self) -> usize {
        let len = usize::from(self.bytes.byte());
        let sends = self.bytes.take(len).to_vec();
        self.peers.push(Peer {
            sends,
            ..Peer::default()
        });
        self.peers.len() - 1
    }

    /// The peer behind `socket`, which must be an open connection.
    fn connection(&self, socket: usize) -> usize {
        match self.sockets[socket] {
            Socket::Connection(peer) => peer,
            ref other => panic!("I/O on socket {socket}, which is {other:?}"),
        }
    }

    /// "No data now", in the stack's convention.
    fn nothing(&self) -> nb::Result<usize, FuzzError> {
        match self.zero_read {
            ZeroRead::Eof => Err(nb::Error::WouldBlock),
            ZeroRead::NoData => Ok(0),
        }
    }

    /// End of stream, in the stack's convention.
    fn end(&self) -> nb::Result<usize, FuzzError> {
        match self.zero_read {
            ZeroRead::Eof => Ok(0),
            ZeroRead::NoData => Err(nb::Error::Other(PIPE_CLOSED)),
        }
    }
}

impl TcpClientStack for FuzzStack<'_> {
    type TcpSocket = usize;
    type Error = FuzzError;

    fn socket(&mut self) -> Result<usize, FuzzError> {
        match self.bytes.byte() % 16 {
            0 => Err(OTHER),
            _ => Ok(self.open(Socket::New)),
        }
    }

    fn connect(&mut self, socket: &mut usize, _: SocketAddr) -> nb::Result<(), FuzzError> {
        assert!(
            matches!(self.sockets[*socket], Socket::New),
            "connect on socket {socket}, which is {:?}",
            self.sockets[*socket]
        );
        match self.bytes.byte() % 4 {
            0 => Err(nb::Error::WouldBlock),
            1 => Err(nb::Error::Other(OTHER)),
            _ => {
                let peer = self.peer();
                self.sockets[*socket] = Socket::Connection(peer);
                Ok(())
            }
        }
    }

    fn send(&mut self, socket: &mut usize, buffer: &[u8]) -> nb::Result<usize, FuzzError> {
        let peer = self.connection(*socket);
        let choice = self.bytes.byte();
        match choice % 8 {
            0 => Err(nb::Error::WouldBlock),
            1 => Err(nb::Error::Other(PIPE_CLOSED)),
            2 => Err(nb::Error::Other(OTHER)),
            3 => {
                // Partial.
                let n = buffer.len().min(usize::from(choice / 8));
                self.peers[peer].echoed.extend_from_slice(&buffer[..n]);
                if n == 0 && !buffer.is_empty() {
                    return Err(nb::Error::WouldBlock);
                }
                Ok(n)
            }
            _ => {
                self.peers[peer].echoed.extend_from_slice(buffer);
                Ok(buffer.len())
            }
        }
    }

    fn receive(&mut self, socket: &mut usize, buffer: &mut [u8]) -> nb::Result<usize, FuzzError> {
        let peer = self.connection(*socket);
        let choice = self.bytes.byte();
        let left = self.peers[peer].sends.len() - self.peers[peer].read;
        if left == 0 {
            return match choice % 4 {
                0 | 3 => self.nothing(),
                1 => self.end(),
                _ => Err(nb::Error::Other(OTHER)),
            };
        }
        match choice % 8 {
            0 => self.nothing(),
            1 => Err(nb::Error::Other(OTHER)),
            // Reset before everything arrived.
            2 => Err(nb::Error::Other(PIPE_CLOSED)),
            _ => {
                let n = left.min(buffer.len()).min(1 + usize::from(choice / 8));
                let Peer { sends, read, .. } = &mut self.peers[peer];
                buffer[..n].copy_from_slice(&sends[*read..*read + n]);
                *read += n;
                Ok(n)
            }
        }
    }

    fn close(&mut self, socket: usize) -> Result<(), FuzzError> {
        assert!(
            !matches!(self.sockets[socket], Socket::Closed),
            "socket {socket} closed twice"
        );
        self.sockets[socket] = Socket::Closed;
        match self.bytes.byte() % 16 {
            0 => Err(OTHER),
            _ => Ok(()),
        }
    }
}

impl TcpFullStack for FuzzStack<'_> {
    fn bind(&mut self, socket: &mut usize, _port: u16) -> Result<(), FuzzError> {
        assert!(matches!(self.sockets[*socket], Socket::New));
        match self.bytes.byte() % 16 {
            0 => Err(OTHER),
            _ => {
                self.sockets[*socket] = Socket::Bound;
                Ok(())
            }
        }
    }

    fn listen(&mut self, socket: &mut usize) -> Result<(), FuzzError> {
        assert!(matches!(self.sockets[*socket], Socket::Bound));
        match self.bytes.byte() % 16 {
            0 => Err(OTHER),
            _ => {
                self.sockets[*socket] = Socket::Listening;
                Ok(())
            }
        }
    }

    fn accept(&mut self, socket: &mut usize) -> nb::Result<(usize, SocketAddr), FuzzError> {
        assert!(
            matches!(self.sockets[*socket], Socket::Listening),
            "accept on socket {socket}, which is {:?}",
            self.sockets[*socket]
        );
        match self.bytes.byte() % 8 {
            0..=3 => Err(nb::Error::WouldBlock),
            7 => Err(nb::Error::Other(OTHER)),
            _ => {
                let peer = self.peer();
                let connection = self.open(Socket::Connection(peer));
                Ok((
                    connection,
                    SocketAddr::from(([10, 0, 0, 2], 40000 + peer as u16)),
                ))
            }
        }
    }
}

impl LocalAddress for FuzzStack<'_> {
    fn local_address(&self, _socket: &usize) -> Option<SocketAddr> {
        Some(SocketAddr::from(([10, 0, 0, 1], 5001)))
    }
}

/// Polls `role` until the input runs out (or the role finishes), with time moving by what the
/// input says, sometimes restarting or shutting it down.
fn run<'a, R: Role<FuzzStack<'a>>>(role: &mut R, stack: &mut FuzzStack<'a>) {
    let mut now = Instant::ZERO;
    for _ in 0..20_000 {
        if stack.bytes.is_empty() || role.is_finished() {
            break;
        }
        let choice = stack.bytes.byte();
        now = now + Duration::from_millis(u64::from(choice % 64));
        match choice {
            0xFF => role.restart(stack, |_| {}),
            0xFE => role.shutdown(stack, |_| {}),
            _ => {
                // A client that gives up returns its error: then it is finished.
                let _ = role.poll(stack, now, |_| {});
            }
        }
    }
    role.shutdown(stack, |_| {});
}

/// The settings both roles take from the first byte.
fn settings(byte: u8) -> (ZeroRead, Option<Duration>) {
    let zero_read = match byte & 1 {
        0 => ZeroRead::Eof,
        _ => ZeroRead::NoData,
    };
    let idle = (byte & 2 != 0).then(|| Duration::from_millis(u64::from(byte >> 2) * 10));
    (zero_read, idle)
}

/// The server: 1 to 3 slots of 1 to 64 bytes.
pub fn check_server(data: &[u8]) {
    let mut bytes = Bytes::new(data);
    let (zero_read, idle) = settings(bytes.byte());
    let shape = bytes.byte();
    let clients = 1 + usize::from(shape % 3);
    let share = 1 + usize::from(shape / 4);
    let mut stack = FuzzStack::new(bytes, zero_read);
    let mut slots: Vec<Slot<usize>> = (0..clients).map(|_| Slot::new()).collect();
    let mut buffer = vec![0u8; clients * share];
    let config = ServerConfig::new()
        .with_zero_read(zero_read)
        .with_idle_timeout(idle);
    let mut server = EchoServer::new(config, &mut slots, &mut buffer);
    run(&mut server, &mut stack);
    for (index, peer) in stack.peers.iter().enumerate() {
        assert!(
            peer.sends.starts_with(&peer.echoed),
            "connection {index} got {:?} back for {:?}",
            peer.echoed,
            peer.sends
        );
    }
    assert_eq!(server.stats().open, 0, "shut down, nothing open");
}

/// The client's greeting (none, short, the tutorial's) and reconnection (none, or up to 15
/// retries 5 to 50 ms apart), from one byte; the async client takes the same.
pub(crate) fn client_shape(shape: u8) -> (&'static [u8], Option<Reconnect>) {
    let greeting: &[u8] = match shape % 3 {
        0 => b"",
        1 => b"hi",
        _ => echo::DEFAULT_GREETING.as_bytes(),
    };
    let reconnect = (shape & 4 != 0).then(|| {
        Reconnect::new()
            .with_max_retries(Some(u32::from(shape >> 4)))
            .with_backoff(echo::Backoff::new(
                Duration::from_millis(5),
                Duration::from_millis(50),
            ))
    });
    (greeting, reconnect)
}

/// The client, with or without reconnection, buffer of 1 to 64 bytes.
pub fn check_client(data: &[u8]) {
    let mut bytes = Bytes::new(data);
    let (zero_read, idle) = settings(bytes.byte());
    let shape = bytes.byte();
    let (greeting, reconnect) = client_shape(shape);
    let mut stack = FuzzStack::new(bytes, zero_read);
    let mut buffer = vec![0u8; 1 + usize::from(shape >> 2) % 64];
    let config = ClientConfig::new(SocketAddr::from(([10, 0, 0, 1], 5001)))
        .with_greeting(greeting)
        .with_zero_read(zero_read)
        .with_idle_timeout(idle)
        .with_connect_timeout(Some(Duration::from_millis(100)))
        .with_reconnect(reconnect);
    let mut client = EchoClient::new(config, &mut buffer);
    run(&mut client, &mut stack);
    for (index, peer) in stack.peers.iter().enumerate() {
        let mut expected = greeting.to_vec();
        expected.extend_from_slice(&peer.sends);
        assert!(
            expected.starts_with(&peer.echoed),
            "connection {index} got {:?}, not a prefix of the greeting and then {:?}",
            peer.echoed,
            peer.sends
        );
    }
}
