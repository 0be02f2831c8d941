//! [`Stack`]: embedded-nal TCP over smoltcp, on a fixed pool of caller-provided sockets.
//!
//! smoltcp has no accept queue: one listening socket takes one connection. So a listener
//! here is not a socket but a claim on the pool: `listen` with a backlog of `b` keeps `b`
//! pool sockets in LISTEN on the port. Each `poll` follows them through what smoltcp did:
//! a socket whose connection arrived is replaced in LISTEN by a free one; it goes back to
//! the pool if its connection dies before `accept` (reset, timed out, a handshake that
//! never finishes), and straight back to LISTEN if the SYN came from a source no reply
//! can reach. `accept` hands out the connection that arrived first. Closed sockets go
//! back to the pool and are reused as soon as smoltcp lets them be (CLOSED, or TIME-WAIT,
//! which smoltcp allows to reopen).
//!
//! Every pool socket has a slot with a role; `Stack::set_role` is the one place a role
//! changes. Handles carry the slot's generation, bumped each time the slot is handed out,
//! so a stale handle cannot act on a recycled socket.

use core::net::{IpAddr, SocketAddr};

use embedded_nal::{TcpClientStack, TcpFullStack};
use smoltcp::iface::{
    Config, Interface, PollIngressSingleResult, PollResult, SocketHandle, SocketSet, SocketStorage,
};
use smoltcp::phy::Device;
use smoltcp::socket::tcp::{self, State};
use smoltcp::socket::AnySocket;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{IpAddress, IpCidr, IpEndpoint, Ipv4Address, Ipv4Cidr};

use crate::Error;

/// First port of the IANA dynamic range, used for outgoing connections.
const EPHEMERAL_PORTS: u16 = 49152;

/// Tunables of the pooled TCP sockets, given to [`Stack::new`].
///
/// Start from [`TcpOptions::new`] (or `default()`) and change what differs:
/// `TcpOptions::new().with_backlog(3)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct TcpOptions {
    /// Sockets kept in LISTEN per listener by [`TcpFullStack::listen`]: how many clients
    /// can arrive at the same moment. Each connection that arrives takes its socket out of
    /// LISTEN, and the end of that [`Stack::poll`] puts a free pool socket in LISTEN in its
    /// place, so connections waiting for `accept` are bounded by the pool, not the backlog.
    /// Default 1; 0 counts as 1. [`Stack::listen_with_backlog`] sets it per listener.
    pub backlog: usize,
    /// Abort an outgoing connection still unanswered (SYN-SENT) after this long; `connect`
    /// then fails with [`Error::ConnectFailed`]. Default 10 s.
    pub connect_timeout: Option<Duration>,
    /// Abort a connection whose peer stays silent this long while data or keep-alives are
    /// outstanding (smoltcp's socket timeout): with `keep_alive` on, a connection ends
    /// `timeout` after the last segment from a peer that vanished. `receive` and `send`
    /// then fail with [`Error::ConnectionClosed`]; a connection still waiting to be
    /// accepted gives its socket back to the pool. Default 180 s: smoltcp backs its
    /// retransmissions off up to 60 s apart, so on a lossy link (WiFi) a shorter timeout ends
    /// live connections (RFC 1122 asks for at least 100 s; the README has the measurements).
    pub timeout: Option<Duration>,
    /// Send a keep-alive after this long idle, so that `timeout` also catches a peer that
    /// vanished while nothing was being sent. Default 20 s.
    pub keep_alive: Option<Duration>,
    /// A listening socket whose handshake is still unfinished this long after the SYN (the
    /// client vanished, or the source was spoofed, or never answers ARP) goes back to the
    /// pool, and nothing more is sent to that peer. Default 5 s.
    pub handshake_timeout: Duration,
    /// Nagle's algorithm (coalescing small writes while data is in flight). Default off:
    /// an echo answers small messages and wants them out at once.
    pub nagle: bool,
    /// A closed socket normally returns to the pool when its close handshake ends. One
    /// still closing after this long (peer never acknowledges, or never sends its FIN) is
    /// aborted when the pool has no other free socket. Default 5 s.
    pub reclaim_after: Duration,
}

impl TcpOptions {
    /// The defaults, as a `const`.
    pub const fn new() -> Self {
        Self {
            backlog: 1,
            connect_timeout: Some(Duration::from_secs(10)),
            timeout: Some(Duration::from_secs(180)),
            keep_alive: Some(Duration::from_secs(20)),
            handshake_timeout: Duration::from_secs(5),
            nagle: false,
            reclaim_after: Duration::from_secs(5),
        }
    }

    /// With [`backlog`](Self::backlog).
    pub const fn with_backlog(mut self, backlog: usize) -> Self {
        self.backlog = backlog;
        self
    }

    /// With [`connect_timeout`](Self::connect_timeout).
    pub const fn with_connect_timeout(mut self, connect_timeout: Option<Duration>) -> Self {
        self.connect_timeout = connect_timeout;
        self
    }

    /// With [`timeout`](Self::timeout).
    pub const fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// With [`keep_alive`](Self::keep_alive).
    pub const fn with_keep_alive(mut self, keep_alive: Option<Duration>) -> Self {
        self.keep_alive = keep_alive;
        self
    }

    /// With [`handshake_timeout`](Self::handshake_timeout).
    pub const fn with_handshake_timeout(mut self, handshake_timeout: Duration) -> Self {
        self.handshake_timeout = handshake_timeout;
        self
    }

    /// With [`nagle`](Self::nagle).
    pub const fn with_nagle(mut self, nagle: bool) -> Self {
        self.nagle = nagle;
        self
    }

    /// With [`reclaim_after`](Self::reclaim_after).
    pub const fn with_reclaim_after(mut self, reclaim_after: Duration) -> Self {
        self.reclaim_after = reclaim_after;
        self
    }
}

impl Default for TcpOptions {
    fn default() -> Self {
        Self::new()
    }
}

/// IPv4 settings from a DHCP lease ([`Stack::dhcpv4_lease`]).
#[cfg(feature = "dhcpv4")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct Ipv4Lease {
    /// Address and prefix given to the interface.
    pub address: Ipv4Cidr,
    /// Default gateway, if the server named one.
    pub gateway: Option<Ipv4Address>,
    /// First DNS server, if the server named one.
    pub dns: Option<Ipv4Address>,
}

/// A TCP socket of a [`Stack`]: a connection, or a listener after `listen`.
///
/// Not `Clone`: embedded-nal's `close` consumes it. It carries its slot's generation, so it
/// stops working once the slot has been recycled.
#[derive(Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TcpSocket {
    kind: Kind,
    index: u16,
    generation: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
enum Kind {
    /// Index into the socket pool.
    Connection,
    /// Index into the listener table.
    Listener,
}

/// What a pool socket is currently for.
///
/// `Listening` and `Arrived` follow the smoltcp state: [`Stack::poll`] brings them in step
/// after every frame and after the timers ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// In the pool; its smoltcp socket may still be closing, since `since`.
    Free { since: Instant },
    /// Handed out by `socket()`; `port` is set by `bind()` (0: not bound).
    Open { port: u16 },
    /// `connect()` called, handshake not yet seen complete; `port` as in `Open`.
    Connecting { port: u16 },
    /// A connection owned by the user: accepted, or connected.
    Connected,
    /// In LISTEN for the listener at this index.
    Listening { listener: u16 },
    /// Left LISTEN at `at` for the listener at this index: a connection arrived, and is
    /// handshaking or waiting to be accepted. Not owned by the user yet.
    Arrived { listener: u16, at: Instant },
}

impl Role {
    fn name(&self) -> &'static str {
        match self {
            Role::Free { .. } => "free",
            Role::Open { .. } => "open",
            Role::Connecting { .. } => "connecting",
            Role::Connected => "connected",
            Role::Listening { .. } => "listening",
            Role::Arrived { .. } => "arrived",
        }
    }

    /// The listener a listening or arrived socket belongs to.
    fn listener(&self) -> Option<u16> {
        match *self {
            Role::Listening { listener } | Role::Arrived { listener, .. } => Some(listener),
            _ => None,
        }
    }
}

struct Slot {
    socket: SocketHandle,
    generation: u16,
    role: Role,
}

#[derive(Clone, Copy)]
struct ListenerSlot {
    generation: u16,
    listening: Option<Listening>,
}

#[derive(Clone, Copy)]
struct Listening {
    port: u16,
    backlog: usize,
}

/// embedded-nal TCP client and server over a smoltcp interface and a pool of `N` sockets.
///
/// Owns the device, the [`Interface`] and the [`SocketSet`]; the board may add its own
/// sockets (a UDP DHCP server, say) through [`Stack::sockets_mut`] and serve them after
/// each [`Stack::poll`]. See the crate docs for the receive/send contract.
pub struct Stack<'a, D, const N: usize> {
    device: D,
    iface: Interface,
    sockets: SocketSet<'a>,
    storage_len: usize,
    slots: [Slot; N],
    listeners: [ListenerSlot; N],
    options: TcpOptions,
    now: Instant,
    next_port: u16,
    rearm_pending: bool,
    #[cfg(feature = "dhcpv4")]
    dhcp: Option<SocketHandle>,
    #[cfg(feature = "dhcpv4")]
    lease: Option<Ipv4Lease>,
}

impl<'a, D, const N: usize> Stack<'a, D, N>
where
    D: Device,
{
    /// Builds the interface from `config` on `device`, and a pool of `N` TCP sockets, one per
    /// `(rx, tx)` buffer pair, in a SocketSet over `storage`.
    ///
    /// `storage` needs at least `N` entries, plus one for DHCP and one per socket the board
    /// adds itself; [`Error::SocketSetFull`] otherwise. `config.random_seed` should be random:
    /// it seeds TCP sequence numbers and the first ephemeral port.
    pub fn new(
        mut device: D,
        config: Config,
        storage: &'a mut [SocketStorage<'a>],
        buffers: [(&'a mut [u8], &'a mut [u8]); N],
        options: TcpOptions,
        now: Instant,
    ) -> Result<Self, Error> {
        const { core::assert!(N <= u16::MAX as usize, "at most 65535 pooled sockets") };
        if storage.len() < N {
            return Err(Error::SocketSetFull);
        }
        let storage_len = storage.len();
        // Spread the first ephemeral port over the dynamic range from the seed.
        let next_port =
            EPHEMERAL_PORTS + (config.random_seed % u64::from(u16::MAX - EPHEMERAL_PORTS)) as u16;
        let iface = Interface::new(config, &mut device, now);
        let mut sockets = SocketSet::new(storage);
        let slots = buffers.map(|(rx, tx)| {
            let mut socket =
                tcp::Socket::new(tcp::SocketBuffer::new(rx), tcp::SocketBuffer::new(tx));
            socket.set_nagle_enabled(options.nagle);
            Slot {
                socket: sockets.add(socket),
                generation: 0,
                role: Role::Free { since: now },
            }
        });
        Ok(Self {
            device,
            iface,
            sockets,
            storage_len,
            slots,
            listeners: [ListenerSlot {
                generation: 0,
                listening: None,
            }; N],
            options,
            now,
            next_port,
            rearm_pending: false,
            #[cfg(feature = "dhcpv4")]
            dhcp: None,
            #[cfg(feature = "dhcpv4")]
            lease: None,
        })
    }

    /// Drives the interface: receives and sends frames, runs timers, DHCP, and keeps each
    /// listener's backlog in LISTEN. Call it, then the application's poll, repeatedly.
    ///
    /// Returns true when socket states or the IP configuration may have changed.
    pub fn poll(&mut self, now: Instant) -> bool {
        self.now = now;
        // Frame by frame rather than `Interface::poll`, to follow the listening sockets
        // between frames: a socket that took a SYN from its own address or from a source
        // no reply can reach listens again before the next frame looks for a listening
        // socket, and before egress answers it. Left to smoltcp, such a socket sends
        // SYN-ACKs nowhere (ARP requests for our own address), times out, and then keeps
        // the peer until an RST that can never leave is sent.
        self.iface.poll_maintenance(now);
        let mut changed = false;
        while self
            .iface
            .poll_ingress_single(now, &mut self.device, &mut self.sockets)
            != PollIngressSingleResult::None
        {
            changed = true;
            self.tend_backlog();
        }
        while self
            .iface
            .poll_egress(now, &mut self.device, &mut self.sockets)
            == PollResult::SocketStateChanged
        {
            changed = true;
        }
        #[cfg(feature = "dhcpv4")]
        let changed = self.poll_dhcpv4() | changed;
        // Egress ran the timers: handshakes and waiting connections may have timed out.
        self.tend_backlog();
        // Connections that arrived, and sockets freed since the last poll: listeners short
        // of sockets in LISTEN get free ones.
        self.rearm_all();
        changed
    }

    /// How long the board may wait before the next [`Stack::poll`] if no frame arrives
    /// (`None`: until a frame arrives; zero: at once).
    pub fn poll_delay(&mut self, now: Instant) -> Option<Duration> {
        let delay = self.iface.poll_delay(now, &self.sockets);
        // The stack's own timers: a handshake that may time out; a closing socket that a
        // listener short of sockets may reclaim.
        let ours = self
            .slots
            .iter()
            .filter_map(|slot| {
                let tcp = self.sockets.get::<tcp::Socket>(slot.socket);
                match slot.role {
                    Role::Arrived { at, .. } if tcp.state() == State::SynReceived => {
                        Some(at + self.options.handshake_timeout)
                    }
                    Role::Free { since } if self.rearm_pending && !reusable(tcp) => {
                        Some(since + self.options.reclaim_after)
                    }
                    _ => None,
                }
            })
            .min()
            .map(|at| if at > now { at - now } else { Duration::ZERO });
        match (delay, ours) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Gives the interface one IPv4 address (replacing any other) and a default gateway.
    pub fn set_ipv4(&mut self, address: Ipv4Cidr, gateway: Option<Ipv4Address>) {
        self.iface.update_ip_addrs(|addrs| {
            addrs.retain(|cidr| !matches!(cidr, IpCidr::Ipv4(_)));
            if addrs.push(IpCidr::Ipv4(address)).is_err() {
                warn!("no room for the IPv4 address on the interface");
            }
        });
        let routes = self.iface.routes_mut();
        match gateway {
            Some(gateway) => {
                if routes.add_default_ipv4_route(gateway).is_err() {
                    warn!("route table full: no default IPv4 route");
                }
            }
            None => {
                routes.remove_default_ipv4_route();
            }
        }
    }

    /// The interface's IPv4 address, if it has one.
    // Without `ipv6`, every address is IPv4 and clippy sees a plain `map`.
    #[cfg_attr(not(feature = "ipv6"), allow(clippy::unnecessary_find_map))]
    pub fn ipv4_address(&self) -> Option<Ipv4Cidr> {
        self.iface.ip_addrs().iter().find_map(|cidr| match cidr {
            IpCidr::Ipv4(v4) => Some(*v4),
            #[cfg(feature = "ipv6")]
            IpCidr::Ipv6(_) => None,
        })
    }

    /// Starts a DHCPv4 client (one more SocketSet entry). [`Stack::poll`] then applies each
    /// lease to the interface (address, default route) and removes it when it ends.
    #[cfg(feature = "dhcpv4")]
    pub fn enable_dhcpv4(&mut self) -> Result<(), Error> {
        if self.dhcp.is_some() {
            return Ok(());
        }
        self.dhcp = Some(self.add_socket(smoltcp::socket::dhcpv4::Socket::new())?);
        Ok(())
    }

    /// Adds the board's own socket (a UDP DHCP server, say) to the SocketSet;
    /// [`Error::SocketSetFull`] instead of smoltcp's panic when the storage is full.
    /// Serve it through [`Stack::sockets_mut`] after each [`Stack::poll`].
    pub fn add_socket<T>(&mut self, socket: T) -> Result<SocketHandle, Error>
    where
        T: AnySocket<'a>,
    {
        if self.sockets.iter().count() >= self.storage_len {
            return Err(Error::SocketSetFull);
        }
        Ok(self.sockets.add(socket))
    }

    /// The current DHCP lease, once the server has given one.
    #[cfg(feature = "dhcpv4")]
    pub fn dhcpv4_lease(&self) -> Option<Ipv4Lease> {
        self.lease
    }

    #[cfg(feature = "dhcpv4")]
    fn poll_dhcpv4(&mut self) -> bool {
        use smoltcp::socket::dhcpv4;
        let Some(handle) = self.dhcp else {
            return false;
        };
        let lease = match self.sockets.get_mut::<dhcpv4::Socket>(handle).poll() {
            None => return false,
            Some(dhcpv4::Event::Configured(config)) => Some(Ipv4Lease {
                address: config.address,
                gateway: config.router,
                dns: config.dns_servers.first().copied(),
            }),
            Some(dhcpv4::Event::Deconfigured) => None,
        };
        match lease {
            Some(lease) => {
                info!("DHCP lease {}", lease.address);
                self.set_ipv4(lease.address, lease.gateway);
            }
            None => {
                info!("DHCP lease lost");
                self.iface
                    .update_ip_addrs(|addrs| addrs.retain(|cidr| !matches!(cidr, IpCidr::Ipv4(_))));
                self.iface.routes_mut().remove_default_ipv4_route();
            }
        }
        self.lease = lease;
        true
    }

    /// Starts listening on the port given to `bind`, keeping `backlog` pool sockets in
    /// LISTEN (0 counts as 1). [`TcpFullStack::listen`] is this with [`TcpOptions::backlog`].
    ///
    /// `socket` becomes the listener handle for `accept` and `close`; the pool socket it
    /// held becomes the first listening one.
    pub fn listen_with_backlog(
        &mut self,
        socket: &mut TcpSocket,
        backlog: usize,
    ) -> Result<(), Error> {
        let index = self.connection(socket)?;
        let port = match self.slots[index].role {
            Role::Open { port } if port != 0 => port,
            _ => return Err(Error::InvalidState),
        };
        if self.listens_on(port) {
            return Err(Error::AddressInUse);
        }
        let l = self
            .listeners
            .iter()
            .position(|l| l.listening.is_none())
            .ok_or(Error::NoFreeSocket)?;
        let listener = &mut self.listeners[l];
        listener.generation = listener.generation.wrapping_add(1);
        listener.listening = Some(Listening {
            port,
            backlog: backlog.max(1),
        });
        *socket = TcpSocket {
            kind: Kind::Listener,
            index: l as u16,
            generation: listener.generation,
        };
        info!("listening on port {} (backlog {})", port, backlog.max(1));
        self.arm(index, l as u16);
        if !self.top_up(l) {
            self.rearm_pending = true;
        }
        Ok(())
    }

    /// How many pool sockets are in LISTEN for `listener` right now.
    pub fn listening(&self, listener: &TcpSocket) -> Result<usize, Error> {
        let l = self.listener(listener)?;
        Ok(self
            .slots
            .iter()
            .filter(|slot| {
                slot.role == Role::Listening { listener: l }
                    && self.sockets.get::<tcp::Socket>(slot.socket).state() == State::Listen
            })
            .count())
    }

    /// How many pool sockets are back in the pool: free, or still closing (one closing for
    /// longer than [`TcpOptions::reclaim_after`] is aborted when a socket is needed). With the
    /// sockets listening, the pool minus the user's connections.
    pub fn free_sockets(&self) -> usize {
        self.slots
            .iter()
            .filter(|slot| matches!(slot.role, Role::Free { .. }))
            .count()
    }

    /// How many pool sockets could be handed out right now without cutting a close
    /// handshake short (free, and CLOSED or TIME-WAIT).
    pub fn available_sockets(&self) -> usize {
        self.slots
            .iter()
            .filter(|slot| {
                matches!(slot.role, Role::Free { .. })
                    && !self.sockets.get::<tcp::Socket>(slot.socket).is_open()
            })
            .count()
    }

    /// The peer's address of a connection (`None` for a listener or before `connect`).
    pub fn remote_addr(&self, socket: &TcpSocket) -> Option<SocketAddr> {
        let index = self.connected(socket)?;
        let tcp = self.sockets.get::<tcp::Socket>(self.slots[index].socket);
        tcp.remote_endpoint().map(SocketAddr::from)
    }

    /// The local address of a connection (`None` before `connect`), or where clients reach a
    /// listener: the interface's IPv4 address and the listening port (`None` while the
    /// interface has no IPv4 address).
    pub fn local_addr(&self, socket: &TcpSocket) -> Option<SocketAddr> {
        if let Ok(l) = self.listener(socket) {
            let port = self.listeners[usize::from(l)].listening?.port;
            let ip = self.ipv4_address()?.address();
            return Some(SocketAddr::from((ip, port)));
        }
        let index = self.connected(socket)?;
        let tcp = self.sockets.get::<tcp::Socket>(self.slots[index].socket);
        tcp.local_endpoint().map(SocketAddr::from)
    }

    /// The smoltcp interface (addresses, routes).
    pub fn iface(&self) -> &Interface {
        &self.iface
    }

    /// The smoltcp interface, mutably: IPv6 addresses, routes, `context()` for the
    /// board's own sockets.
    pub fn iface_mut(&mut self) -> &mut Interface {
        &mut self.iface
    }

    /// The socket set: the pool, the DHCP socket, and any socket the board added.
    pub fn sockets(&self) -> &SocketSet<'a> {
        &self.sockets
    }

    /// The socket set, mutably, for the board to add and serve its own sockets.
    /// Do not touch the pool's TCP sockets through it.
    pub fn sockets_mut(&mut self) -> &mut SocketSet<'a> {
        &mut self.sockets
    }

    /// The interface and the socket set at once, for the board's own sockets: smoltcp's
    /// TCP `connect` needs `iface.context()` while the socket is borrowed.
    pub fn parts_mut(&mut self) -> (&mut Interface, &mut SocketSet<'a>) {
        (&mut self.iface, &mut self.sockets)
    }

    /// The device.
    pub fn device(&self) -> &D {
        &self.device
    }

    /// The device, mutably.
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    /// The one place a slot's role changes.
    fn set_role(&mut self, index: usize, role: Role) {
        let slot = &mut self.slots[index];
        debug!("socket {}: {} => {}", index, slot.role.name(), role.name());
        slot.role = role;
    }

    fn tcp_mut(&mut self, index: usize) -> &mut tcp::Socket<'a> {
        self.sockets.get_mut(self.slots[index].socket)
    }

    /// Hands slot `index` to the user with `role`, under a new generation.
    fn hand_out(&mut self, index: usize, role: Role) -> TcpSocket {
        let slot = &mut self.slots[index];
        slot.generation = slot.generation.wrapping_add(1);
        let generation = slot.generation;
        self.set_role(index, role);
        TcpSocket {
            kind: Kind::Connection,
            index: index as u16,
            generation,
        }
    }

    /// The pool index of a user-owned connection handle.
    fn connection(&self, socket: &TcpSocket) -> Result<usize, Error> {
        if socket.kind != Kind::Connection {
            return Err(Error::InvalidState);
        }
        let index = usize::from(socket.index);
        match self.slots.get(index) {
            Some(Slot {
                generation,
                role: Role::Open { .. } | Role::Connecting { .. } | Role::Connected,
                ..
            }) if *generation == socket.generation => Ok(index),
            _ => Err(Error::InvalidSocket),
        }
    }

    /// The pool index of a connection handle past `connect` (or accepted).
    fn connected(&self, socket: &TcpSocket) -> Option<usize> {
        let index = self.connection(socket).ok()?;
        match self.slots[index].role {
            Role::Connecting { .. } | Role::Connected => Some(index),
            _ => None,
        }
    }

    /// The listener-table index of a listener handle.
    fn listener(&self, socket: &TcpSocket) -> Result<u16, Error> {
        if socket.kind != Kind::Listener {
            return Err(Error::InvalidState);
        }
        match self.listeners.get(usize::from(socket.index)) {
            Some(ListenerSlot {
                generation,
                listening: Some(_),
            }) if *generation == socket.generation => Ok(socket.index),
            _ => Err(Error::InvalidSocket),
        }
    }

    /// The smoltcp socket of a connection that can carry data: promotes a finished
    /// handshake to `Connected`; `Open` (never connected) is an error.
    fn data_socket(&mut self, socket: &TcpSocket) -> Result<SocketHandle, Error> {
        let index = self.connection(socket)?;
        match self.slots[index].role {
            Role::Connected => {}
            Role::Connecting { .. } => self.settle(index),
            _ => return Err(Error::InvalidState),
        }
        Ok(self.slots[index].socket)
    }

    /// Promotes a `Connecting` slot whose handshake completed; leaves it otherwise.
    fn settle(&mut self, index: usize) {
        let (timeout, keep_alive) = (self.options.timeout, self.options.keep_alive);
        let tcp = self.tcp_mut(index);
        if !matches!(
            tcp.state(),
            State::SynSent | State::SynReceived | State::Closed
        ) {
            tcp.set_timeout(timeout);
            tcp.set_keep_alive(keep_alive);
            self.set_role(index, Role::Connected);
        }
    }

    /// A free pool socket that can be reopened now: one done closing if any; else one
    /// whose RST is still unsent (it is dropped); else the one closing longest, aborted,
    /// if it has been closing for `reclaim_after`.
    fn take_free_slot(&mut self) -> Option<usize> {
        let mut unsent_rst = None;
        let (mut oldest, mut oldest_since) = (None, self.now);
        for index in 0..N {
            let Role::Free { since } = self.slots[index].role else {
                continue;
            };
            let tcp = self.tcp_mut(index);
            if reusable(tcp) {
                return Some(index);
            }
            if tcp.state() == State::Closed {
                unsent_rst = Some(index);
            } else if since <= oldest_since {
                (oldest, oldest_since) = (Some(index), since);
            }
        }
        if unsent_rst.is_some() {
            return unsent_rst;
        }
        let index = oldest?;
        if self.now < oldest_since + self.options.reclaim_after {
            return None;
        }
        debug!("socket {}: reclaimed while still closing", index);
        self.tcp_mut(index).abort();
        Some(index)
    }

    /// Puts pool socket `index` in LISTEN for listener `l`, cutting short whatever it was
    /// doing (an RST smoltcp could not send yet is dropped), with the options of an
    /// established connection: it may wait a long time to be accepted.
    fn arm(&mut self, index: usize, l: u16) {
        let Some(Listening { port, .. }) = self.listeners[usize::from(l)].listening else {
            return;
        };
        let (timeout, keep_alive) = (self.options.timeout, self.options.keep_alive);
        let tcp = self.tcp_mut(index);
        tcp.set_timeout(timeout);
        tcp.set_keep_alive(keep_alive);
        tcp.abort();
        // Closed now, and `port` is not 0: `listen` cannot fail.
        let _ = tcp.listen(port);
        self.set_role(index, Role::Listening { listener: l });
    }

    /// Arms free sockets until listener `l` has `backlog` of them in LISTEN; false if the
    /// pool ran short.
    fn top_up(&mut self, l: usize) -> bool {
        let Some(Listening { backlog, .. }) = self.listeners[l].listening else {
            return true;
        };
        let tag = Role::Listening { listener: l as u16 };
        let mut listening = self.slots.iter().filter(|s| s.role == tag).count();
        while listening < backlog {
            let Some(index) = self.take_free_slot() else {
                return false;
            };
            self.arm(index, l as u16);
            listening += 1;
        }
        true
    }

    /// Follows the listeners' sockets through what smoltcp did with them: records when a
    /// connection arrived, or puts the socket straight back in LISTEN if no reply can
    /// reach its source; returns to the pool the socket of a connection that ended before
    /// `accept` (reset, timed out, handshake unfinished after `handshake_timeout`).
    fn tend_backlog(&mut self) {
        for index in 0..N {
            match self.slots[index].role {
                Role::Listening { listener } => {
                    let tcp = self.tcp_mut(index);
                    let (state, local, remote) =
                        (tcp.state(), tcp.local_endpoint(), tcp.remote_endpoint());
                    if state == State::Listen {
                        continue;
                    }
                    let answerable = match (local, remote) {
                        (Some(local), Some(remote)) => self.answerable(local.addr, remote.addr),
                        _ => true,
                    };
                    if answerable {
                        let at = self.now;
                        self.set_role(index, Role::Arrived { listener, at });
                    } else {
                        self.arm(index, listener);
                    }
                }
                Role::Arrived { listener, at } => {
                    let alive = match self.tcp_mut(index).state() {
                        State::SynReceived => self.now < at + self.options.handshake_timeout,
                        // Established (or already half-closed by the peer): waits for `accept`.
                        State::Established | State::CloseWait => true,
                        // Reset or timed out; or back in LISTEN after an RST in the handshake.
                        _ => false,
                    };
                    if !alive {
                        // Back to the pool without the peer: an RST that cannot leave (no
                        // ARP answer) would have it ask ARP every second until reused.
                        self.arm(index, listener);
                        self.tcp_mut(index).close();
                        self.set_role(index, Role::Free { since: self.now });
                    }
                }
                _ => {}
            }
        }
    }

    /// Whether a SYN from `addr` to our `local` address can be answered: `addr` is on one
    /// of the interface's subnets, or the interface has a route (a gateway may reach it).
    /// A SYN from its own destination (a LAND packet) is spoofed, unless both are a
    /// loopback address: our own connection over a loopback device.
    fn answerable(&mut self, local: IpAddress, addr: IpAddress) -> bool {
        if addr == local {
            return IpAddr::from(addr).is_loopback();
        }
        let mut reachable = self.iface.ip_addrs().iter().any(|c| c.contains_addr(&addr));
        self.iface.routes_mut().update(|routes| {
            reachable |= !routes.is_empty();
        });
        reachable
    }

    /// Whether a listener is on `port`.
    fn listens_on(&self, port: u16) -> bool {
        self.listeners
            .iter()
            .any(|l| matches!(l.listening, Some(l) if l.port == port))
    }

    fn rearm_all(&mut self) {
        let mut complete = true;
        for l in 0..N {
            complete &= self.top_up(l);
        }
        self.rearm_pending = !complete;
    }

    /// Picks a local port in the dynamic range not used by another pool socket.
    fn ephemeral_port(&mut self) -> u16 {
        loop {
            let port = self.next_port;
            self.next_port = port.checked_add(1).unwrap_or(EPHEMERAL_PORTS);
            // TIME-WAIT sockets keep their endpoints: avoid their ports too. LISTEN sockets
            // have no endpoint: the listeners' ports are checked on their own.
            let in_use = self.listens_on(port)
                || self.slots.iter().any(|slot| {
                    let tcp = self.sockets.get::<tcp::Socket>(slot.socket);
                    tcp.local_endpoint().is_some_and(|e| e.port == port)
                });
            if !in_use {
                return port;
            }
        }
    }
}

/// A smoltcp socket that can be reopened without cutting anything short: CLOSED with
/// its RST (if any) sent, or TIME-WAIT.
fn reusable(tcp: &tcp::Socket) -> bool {
    match tcp.state() {
        State::TimeWait => true,
        State::Closed => tcp.remote_endpoint().is_none(),
        _ => false,
    }
}

/// smoltcp's endpoint for `addr`; IPv4-mapped IPv6 addresses become IPv4.
fn endpoint(addr: SocketAddr) -> Result<IpEndpoint, Error> {
    let ip = match addr.ip() {
        IpAddr::V4(v4) => IpAddress::Ipv4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddress::Ipv4(v4),
            #[cfg(feature = "ipv6")]
            None => IpAddress::Ipv6(v6),
            #[cfg(not(feature = "ipv6"))]
            None => return Err(Error::Unaddressable),
        },
    };
    Ok(IpEndpoint::new(ip, addr.port()))
}

/// Error for a send or receive that smoltcp refused: still handshaking, or over.
fn not_yet_or_closed(state: State) -> nb::Error<Error> {
    match state {
        State::SynSent | State::SynReceived => nb::Error::WouldBlock,
        _ => nb::Error::Other(Error::ConnectionClosed),
    }
}

impl<D, const N: usize> TcpClientStack for Stack<'_, D, N>
where
    D: Device,
{
    type TcpSocket = TcpSocket;
    type Error = Error;

    /// Takes a free pool socket; [`Error::NoFreeSocket`] if none is.
    fn socket(&mut self) -> Result<TcpSocket, Error> {
        let index = self.take_free_slot().ok_or(Error::NoFreeSocket)?;
        Ok(self.hand_out(index, Role::Open { port: 0 }))
    }

    /// First call sends the SYN. `WouldBlock` while the handshake runs, `Ok` once
    /// established, [`Error::ConnectFailed`] if refused or timed out (the socket can then
    /// connect again, or be closed).
    fn connect(&mut self, socket: &mut TcpSocket, remote: SocketAddr) -> nb::Result<(), Error> {
        let index = self.connection(socket)?;
        match self.slots[index].role {
            Role::Open { port } => {
                let remote = endpoint(remote)?;
                let local_port = if port == 0 {
                    self.ephemeral_port()
                } else {
                    port
                };
                let connect_timeout = self.options.connect_timeout;
                let handle = self.slots[index].socket;
                let tcp = self.sockets.get_mut::<tcp::Socket>(handle);
                tcp.set_timeout(connect_timeout);
                tcp.set_keep_alive(None);
                tcp.connect(self.iface.context(), remote, local_port)
                    .map_err(|e| match e {
                        tcp::ConnectError::InvalidState => Error::InvalidState,
                        tcp::ConnectError::Unaddressable => Error::Unaddressable,
                    })?;
                self.set_role(index, Role::Connecting { port });
                Err(nb::Error::WouldBlock)
            }
            Role::Connecting { port } => {
                self.settle(index);
                match self.tcp_mut(index).state() {
                    State::SynSent | State::SynReceived => Err(nb::Error::WouldBlock),
                    State::Closed => {
                        self.set_role(index, Role::Open { port });
                        Err(nb::Error::Other(Error::ConnectFailed))
                    }
                    _ => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }

    /// `Ok(n)` with `n` bytes queued (maybe fewer than given), `WouldBlock` while the
    /// transmit buffer is full or the handshake runs, [`Error::ConnectionClosed`] once the
    /// connection cannot send (reset, timed out).
    fn send(&mut self, socket: &mut TcpSocket, buffer: &[u8]) -> nb::Result<usize, Error> {
        let handle = self.data_socket(socket)?;
        let tcp = self.sockets.get_mut::<tcp::Socket>(handle);
        match tcp.send_slice(buffer) {
            Ok(0) if !buffer.is_empty() => Err(nb::Error::WouldBlock),
            Ok(n) => Ok(n),
            Err(tcp::SendError::InvalidState) => Err(not_yet_or_closed(tcp.state())),
        }
    }

    /// `Ok(n > 0)` with data, `WouldBlock` when none has arrived yet, `Ok(0)` only at EOF
    /// (the peer's FIN, after all data was read) or for an empty `buffer`,
    /// [`Error::ConnectionClosed`] once reset or timed out.
    fn receive(&mut self, socket: &mut TcpSocket, buffer: &mut [u8]) -> nb::Result<usize, Error> {
        let handle = self.data_socket(socket)?;
        let tcp = self.sockets.get_mut::<tcp::Socket>(handle);
        match tcp.recv_slice(buffer) {
            Ok(0) if !buffer.is_empty() => Err(nb::Error::WouldBlock),
            Ok(n) => Ok(n),
            Err(tcp::RecvError::Finished) => Ok(0),
            Err(tcp::RecvError::InvalidState) => Err(not_yet_or_closed(tcp.state())),
        }
    }

    /// A connection sends its FIN after the queued data and returns to the pool once the
    /// close handshake ends. A listener aborts its listening and not-yet-accepted sockets.
    fn close(&mut self, socket: TcpSocket) -> Result<(), Error> {
        match socket.kind {
            Kind::Connection => {
                let index = self.connection(&socket)?;
                self.tcp_mut(index).close();
                self.set_role(index, Role::Free { since: self.now });
            }
            Kind::Listener => {
                let l = self.listener(&socket)?;
                for index in 0..N {
                    if self.slots[index].role.listener() == Some(l) {
                        self.tcp_mut(index).abort();
                        self.set_role(index, Role::Free { since: self.now });
                    }
                }
                self.listeners[usize::from(l)].listening = None;
                info!("listener {} closed", l);
            }
        }
        // A listener may be short of sockets; this one may do once it is done closing.
        self.rearm_pending = true;
        Ok(())
    }
}

impl<D, const N: usize> TcpFullStack for Stack<'_, D, N>
where
    D: Device,
{
    /// Records the local port for `listen` (or for `connect`, instead of an ephemeral one).
    fn bind(&mut self, socket: &mut TcpSocket, local_port: u16) -> Result<(), Error> {
        let index = self.connection(socket)?;
        match self.slots[index].role {
            Role::Open { .. } => {
                self.set_role(index, Role::Open { port: local_port });
                Ok(())
            }
            _ => Err(Error::InvalidState),
        }
    }

    /// [`Stack::listen_with_backlog`] with [`TcpOptions::backlog`].
    fn listen(&mut self, socket: &mut TcpSocket) -> Result<(), Error> {
        let backlog = self.options.backlog;
        self.listen_with_backlog(socket, backlog)
    }

    /// Hands out, of the listener's connections that completed their handshake, the one
    /// that arrived first; `WouldBlock` if none has. (Its socket was replaced in LISTEN
    /// when the connection arrived.)
    fn accept(&mut self, socket: &mut TcpSocket) -> nb::Result<(TcpSocket, SocketAddr), Error> {
        let l = self.listener(socket)?;
        let (mut first, mut earliest) = (None, Instant::from_micros(i64::MAX));
        for index in 0..N {
            let Role::Arrived { listener, at } = self.slots[index].role else {
                continue;
            };
            // Ties (arrived in one poll) go to the lower index, which smoltcp filled first.
            // Established (or already half-closed by the peer): a connection.
            if listener == l
                && at < earliest
                && matches!(
                    self.tcp_mut(index).state(),
                    State::Established | State::CloseWait
                )
            {
                (first, earliest) = (Some(index), at);
            }
        }
        let index = first.ok_or(nb::Error::WouldBlock)?;
        let tcp = self.tcp_mut(index);
        let remote = SocketAddr::from(tcp.remote_endpoint().ok_or(nb::Error::WouldBlock)?);
        Ok((self.hand_out(index, Role::Connected), remote))
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use smoltcp::phy::{Loopback, Medium};
    use smoltcp::wire::EthernetAddress;
    use std::vec;
    use std::vec::Vec;

    /// A stack of `N` sockets with 256-byte buffers on smoltcp's loopback device.
    fn loopback<const N: usize>() -> Stack<'static, Loopback, N> {
        let config = Config::new(EthernetAddress([2, 0, 0, 0, 0, 1]).into());
        let storage = Vec::leak((0..N).map(|_| SocketStorage::EMPTY).collect());
        let buffers = core::array::from_fn(|_| {
            (
                Vec::leak(vec![0u8; 256]) as &mut [u8],
                Vec::leak(vec![0u8; 256]) as &mut [u8],
            )
        });
        let device = Loopback::new(Medium::Ethernet);
        Stack::new(
            device,
            config,
            storage,
            buffers,
            TcpOptions::new(),
            Instant::ZERO,
        )
        .unwrap()
    }

    fn copy(socket: &TcpSocket) -> TcpSocket {
        TcpSocket {
            kind: socket.kind,
            index: socket.index,
            generation: socket.generation,
        }
    }

    #[test]
    fn a_stale_handle_cannot_touch_the_recycled_socket() {
        let mut stack = loopback::<1>();
        let first = stack.socket().unwrap();
        let mut stale = copy(&first);
        stack.close(first).unwrap();
        let second = stack.socket().unwrap();
        assert_eq!(second.index, stale.index, "the slot was recycled");
        assert_eq!(stack.bind(&mut stale, 80), Err(Error::InvalidSocket));
        assert_eq!(stack.close(stale), Err(Error::InvalidSocket));
        stack.close(second).unwrap();
    }

    #[test]
    fn a_stale_listener_handle_is_refused_after_close() {
        let mut stack = loopback::<2>();
        let mut listener = stack.socket().unwrap();
        stack.bind(&mut listener, 80).unwrap();
        stack.listen(&mut listener).unwrap();
        let mut stale = copy(&listener);
        stack.close(listener).unwrap();
        assert_eq!(
            stack.accept(&mut stale).map(|_| ()),
            Err(nb::Error::Other(Error::InvalidSocket))
        );
    }

    #[test]
    fn listen_needs_a_bound_port() {
        let mut stack = loopback::<1>();
        let mut socket = stack.socket().unwrap();
        assert_eq!(stack.listen(&mut socket), Err(Error::InvalidState));
    }

    #[test]
    fn storage_smaller_than_the_pool_is_refused() {
        let config = Config::new(EthernetAddress([2, 0, 0, 0, 0, 1]).into());
        let storage = Vec::leak(vec![SocketStorage::EMPTY]);
        let buffers: [(&mut [u8], &mut [u8]); 2] = core::array::from_fn(|_| {
            (
                Vec::leak(vec![0u8; 64]) as &mut [u8],
                Vec::leak(vec![0u8; 64]) as &mut [u8],
            )
        });
        let device = Loopback::new(Medium::Ethernet);
        let stack = Stack::new(
            device,
            config,
            storage,
            buffers,
            TcpOptions::new(),
            Instant::ZERO,
        );
        assert!(matches!(stack, Err(Error::SocketSetFull)));
    }

    #[test]
    fn ipv4_mapped_ipv6_addresses_become_ipv4() {
        let mapped: SocketAddr = "[::ffff:192.168.69.1]:5001".parse().unwrap();
        assert_eq!(
            endpoint(mapped),
            Ok(IpEndpoint::new(IpAddress::v4(192, 168, 69, 1), 5001))
        );
    }

    #[test]
    fn ephemeral_ports_stay_in_the_dynamic_range() {
        let mut stack = loopback::<1>();
        stack.next_port = u16::MAX;
        assert_eq!(stack.ephemeral_port(), u16::MAX);
        assert_eq!(stack.ephemeral_port(), EPHEMERAL_PORTS);
    }

    #[test]
    fn an_outgoing_connection_never_takes_a_port_the_stack_listens_on() {
        let mut stack = loopback::<2>();
        let mut listener = stack.socket().unwrap();
        stack.bind(&mut listener, 50_000).unwrap();
        stack.listen(&mut listener).unwrap();
        stack.next_port = 50_000;
        assert_eq!(stack.ephemeral_port(), 50_001);
    }

    #[test]
    fn set_ipv4_replaces_the_address_and_the_gateway() {
        let mut stack = loopback::<1>();
        let first = Ipv4Cidr::new(Ipv4Address::new(10, 0, 0, 2), 24);
        stack.set_ipv4(first, Some(Ipv4Address::new(10, 0, 0, 1)));
        let second = Ipv4Cidr::new(Ipv4Address::new(192, 168, 4, 2), 24);
        stack.set_ipv4(second, None);
        assert_eq!(stack.ipv4_address(), Some(second));
        assert_eq!(stack.iface().ip_addrs().len(), 1);
        assert!(stack
            .iface_mut()
            .routes_mut()
            .remove_default_ipv4_route()
            .is_none());
    }
}
