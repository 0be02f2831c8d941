//! A scripted `TcpFullStack` for the tests: each peer says what it sends, in which chunk sizes,
//! when the stack says WouldBlock, how much each send takes, and how the stream ends.

extern crate std;

use core::net::{Ipv4Addr, SocketAddr};
use std::collections::VecDeque;
use std::vec;
use std::vec::Vec;

use embedded_nal::{TcpClientStack, TcpError, TcpErrorKind, TcpFullStack};

use crate::stack::LocalAddress;

/// The mock's own address, which `local_address` reports.
pub(crate) const LOCAL_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// The port the mock chooses for a socket bound to port 0.
pub(crate) const CHOSEN_PORT: u16 = 40404;

/// An error of the mock stack.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct MockError {
    pub kind: TcpErrorKind,
    pub what: &'static str,
}

impl MockError {
    pub(crate) const PIPE_CLOSED: MockError = MockError {
        kind: TcpErrorKind::PipeClosed,
        what: "pipe closed",
    };
    pub(crate) const fn other(what: &'static str) -> Self {
        MockError {
            kind: TcpErrorKind::Other,
            what,
        }
    }
}

impl TcpError for MockError {
    fn kind(&self) -> TcpErrorKind {
        self.kind
    }
}

/// How a peer's stream ends once its bytes are delivered.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum End {
    /// The peer stays connected and silent.
    Open,
    /// `receive` returns `Ok(0)` (std convention).
    Zero,
    /// `receive` returns a `PipeClosed` error (smoltcp-nal convention).
    PipeClosed,
    /// `receive` fails with another error.
    Fail(MockError),
}

/// The far end of one connection, as a script.
#[derive(Clone, Debug)]
pub(crate) struct Peer {
    pub addr: SocketAddr,
    /// What the peer sends.
    pub sends: Vec<u8>,
    /// The most one `receive` returns, cycled.
    pub recv_sizes: Vec<usize>,
    /// Whether a `receive` call reports WouldBlock before any data, cycled.
    pub recv_blocks: Vec<bool>,
    /// How much each `send` takes, cycled; 0 is WouldBlock.
    pub send_sizes: Vec<usize>,
    /// What happens after all of `sends` was received.
    pub end: End,
    /// Every `send` fails with this.
    pub send_error: Option<MockError>,
    /// The stack returns `Ok(0)` rather than WouldBlock when no data is available
    /// (smoltcp-nal 0.7).
    pub zero_when_empty: bool,
}

impl Peer {
    pub(crate) fn new(port: u16, sends: &[u8]) -> Self {
        Peer {
            addr: SocketAddr::from(([10, 0, 0, 2], port)),
            sends: sends.to_vec(),
            recv_sizes: vec![usize::MAX],
            recv_blocks: vec![false],
            send_sizes: vec![usize::MAX],
            end: End::Zero,
            send_error: None,
            zero_when_empty: false,
        }
    }

    pub(crate) fn end(mut self, end: End) -> Self {
        self.end = end;
        self
    }
}

/// One socket's state in the mock.
#[derive(Debug)]
pub(crate) struct Conn {
    pub peer: Peer,
    read: usize,
    recv_calls: usize,
    send_calls: usize,
    /// What the code under test sent to the peer.
    pub received_by_peer: Vec<u8>,
    pub closed: bool,
}

impl Conn {
    fn new(peer: Peer) -> Self {
        Conn {
            peer,
            read: 0,
            recv_calls: 0,
            send_calls: 0,
            received_by_peer: Vec::new(),
            closed: false,
        }
    }

    /// How many of the peer's bytes were read.
    pub(crate) fn read(&self) -> usize {
        self.read
    }

    /// How many times `receive` was called.
    pub(crate) fn recv_calls(&self) -> usize {
        self.recv_calls
    }
}

#[derive(Debug)]
enum Socket {
    New,
    Bound(u16),
    Listener(u16),
    Connecting {
        would_block: usize,
        outcome: Result<Peer, MockError>,
    },
    Conn(Conn),
    Closed,
}

/// A connection attempt's script for the client.
pub(crate) struct Outgoing {
    pub would_block: usize,
    pub outcome: Result<Peer, MockError>,
}

/// The scripted stack. Socket handles are indices into `sockets`.
#[derive(Default)]
pub(crate) struct MockStack {
    sockets: Vec<Socket>,
    /// What the listener's `accept` returns next; empty is WouldBlock.
    pub incoming: VecDeque<Result<Peer, MockError>>,
    /// What the client's next connection attempts meet; empty is WouldBlock forever.
    pub outgoing: VecDeque<Outgoing>,
    pub fail_bind: Option<MockError>,
    pub fail_socket: Option<MockError>,
    pub fail_listen: Option<MockError>,
    /// `local_address` answers `None`, as a stack without an address yet.
    pub address_unknown: bool,
    pub bound_ports: Vec<u16>,
    /// Connections in the order they were accepted or connected.
    pub conns: Vec<usize>,
}

impl MockStack {
    pub(crate) fn conn(&self, index: usize) -> &Conn {
        match &self.sockets[self.conns[index]] {
            Socket::Conn(conn) => conn,
            other => panic!("socket {index} is not a connection: {other:?}"),
        }
    }

    pub(crate) fn open_listeners(&self) -> usize {
        self.sockets
            .iter()
            .filter(|s| matches!(s, Socket::Listener(_)))
            .count()
    }

    /// Sockets neither closed nor connections: new, bound or listening.
    pub(crate) fn open_sockets(&self) -> usize {
        self.sockets
            .iter()
            .filter(|s| matches!(s, Socket::New | Socket::Bound(_) | Socket::Listener(_)))
            .count()
    }

    fn add(&mut self, socket: Socket) -> usize {
        self.sockets.push(socket);
        self.sockets.len() - 1
    }

    fn conn_mut(&mut self, socket: usize) -> &mut Conn {
        match &mut self.sockets[socket] {
            Socket::Conn(conn) => {
                assert!(!conn.closed, "I/O on closed socket {socket}");
                conn
            }
            other => panic!("I/O on socket {socket} which is {other:?}"),
        }
    }

    fn connect_peer(&mut self, peer: Peer) -> usize {
        let index = self.add(Socket::Conn(Conn::new(peer)));
        self.conns.push(index);
        index
    }
}

fn cycled<T: Copy>(items: &[T], call: usize) -> T {
    items[call % items.len()]
}

impl TcpClientStack for MockStack {
    type TcpSocket = usize;
    type Error = MockError;

    fn socket(&mut self) -> Result<usize, MockError> {
        match self.fail_socket {
            Some(error) => Err(error),
            None => Ok(self.add(Socket::New)),
        }
    }

    fn connect(&mut self, socket: &mut usize, _remote: SocketAddr) -> nb::Result<(), MockError> {
        if let Socket::New = self.sockets[*socket] {
            let Some(Outgoing {
                would_block,
                outcome,
            }) = self.outgoing.pop_front()
            else {
                return Err(nb::Error::WouldBlock);
            };
            self.sockets[*socket] = Socket::Connecting {
                would_block,
                outcome,
            };
        }
        match core::mem::replace(&mut self.sockets[*socket], Socket::Closed) {
            Socket::Connecting {
                would_block: 0,
                outcome,
            } => match outcome {
                Ok(peer) => {
                    self.sockets[*socket] = Socket::Conn(Conn::new(peer));
                    self.conns.push(*socket);
                    Ok(())
                }
                Err(error) => Err(nb::Error::Other(error)),
            },
            Socket::Connecting {
                would_block,
                outcome,
            } => {
                self.sockets[*socket] = Socket::Connecting {
                    would_block: would_block - 1,
                    outcome,
                };
                Err(nb::Error::WouldBlock)
            }
            other => panic!("connect on {other:?}"),
        }
    }

    fn send(&mut self, socket: &mut usize, buffer: &[u8]) -> nb::Result<usize, MockError> {
        let conn = self.conn_mut(*socket);
        if let Some(error) = conn.peer.send_error {
            return Err(nb::Error::Other(error));
        }
        let take = cycled(&conn.peer.send_sizes, conn.send_calls).min(buffer.len());
        conn.send_calls += 1;
        if take == 0 && !buffer.is_empty() {
            return Err(nb::Error::WouldBlock);
        }
        conn.received_by_peer.extend_from_slice(&buffer[..take]);
        Ok(take)
    }

    fn receive(&mut self, socket: &mut usize, buffer: &mut [u8]) -> nb::Result<usize, MockError> {
        let conn = self.conn_mut(*socket);
        let call = conn.recv_calls;
        conn.recv_calls += 1;
        let nothing = if conn.peer.zero_when_empty {
            Ok(0)
        } else {
            Err(nb::Error::WouldBlock)
        };
        if cycled(&conn.peer.recv_blocks, call) {
            return nothing;
        }
        let left = conn.peer.sends.len() - conn.read;
        if left > 0 {
            let n = left
                .min(buffer.len())
                .min(cycled(&conn.peer.recv_sizes, call));
            buffer[..n].copy_from_slice(&conn.peer.sends[conn.read..conn.read + n]);
            conn.read += n;
            return Ok(n);
        }
        match conn.peer.end {
            End::Open => nothing,
            End::Zero => Ok(0),
            End::PipeClosed => Err(nb::Error::Other(MockError::PIPE_CLOSED)),
            End::Fail(error) => Err(nb::Error::Other(error)),
        }
    }

    fn close(&mut self, socket: usize) -> Result<(), MockError> {
        match &mut self.sockets[socket] {
            Socket::Conn(conn) => conn.closed = true,
            other => *other = Socket::Closed,
        }
        Ok(())
    }
}

impl TcpFullStack for MockStack {
    fn bind(&mut self, socket: &mut usize, port: u16) -> Result<(), MockError> {
        if let Some(error) = self.fail_bind {
            return Err(error);
        }
        self.bound_ports.push(port);
        self.sockets[*socket] = Socket::Bound(port);
        Ok(())
    }

    fn listen(&mut self, socket: &mut usize) -> Result<(), MockError> {
        if let Some(error) = self.fail_listen {
            return Err(error);
        }
        let Socket::Bound(port) = self.sockets[*socket] else {
            panic!("listen on a socket that is not bound");
        };
        self.sockets[*socket] = Socket::Listener(port);
        Ok(())
    }

    fn accept(&mut self, socket: &mut usize) -> nb::Result<(usize, SocketAddr), MockError> {
        assert!(
            matches!(self.sockets[*socket], Socket::Listener(_)),
            "accept on a socket that is not listening"
        );
        match self.incoming.pop_front() {
            None => Err(nb::Error::WouldBlock),
            Some(Err(error)) => Err(nb::Error::Other(error)),
            Some(Ok(peer)) => {
                let addr = peer.addr;
                Ok((self.connect_peer(peer), addr))
            }
        }
    }
}

impl LocalAddress for MockStack {
    fn local_address(&self, socket: &usize) -> Option<SocketAddr> {
        let Socket::Listener(port) = self.sockets[*socket] else {
            return None;
        };
        let port = if port == 0 { CHOSEN_PORT } else { port };
        (!self.address_unknown).then_some(SocketAddr::from((LOCAL_IP, port)))
    }
}
