//! The smoltcp side: memory for the sockets, the stack over the radio, the access point's
//! DHCP server on UDP port 67.

use echo_esp32_logic::dhcp::{self, DhcpServer};
use echo_smoltcp::smoltcp::{
    iface::{Config, SocketHandle, SocketStorage},
    socket::{udp, AnySocket},
};
use echo_smoltcp::{DriverDevice, Stack, TcpOptions};
use esp_radio::wifi::Interface;

/// Receive buffer (and so TCP window) of each pooled socket.
pub const TCP_RX: usize = 1536;
/// Transmit buffer of each pooled socket.
pub const TCP_TX: usize = 1536;

/// SocketSet entries: up to 6 pooled TCP sockets, and the DHCP client (station) or the DHCP
/// server's two sockets (access point).
const STORAGE: usize = 8;

/// The stack the examples' echo roles run on: `N` pooled TCP sockets over the Wi-Fi interface.
pub type Net<'a, const N: usize> = Stack<'a, DriverDevice<Interface>, N>;

/// Memory for the network, meant to live in `main`'s stack frame (which never returns) rather
/// than in static RAM: socket table, `N` TCP buffer pairs, the DHCP server's UDP buffers.
pub struct NetMemory<'a, const N: usize> {
    storage: [SocketStorage<'a>; STORAGE],
    tcp: [[u8; TCP_RX + TCP_TX]; N],
    /// Filled in by the access point only: a station's `main` has no code to initialise it.
    dhcp: Option<dhcp::SocketMemory>,
}

impl<const N: usize> NetMemory<'_, N> {
    /// Zeroed memory for `N` TCP sockets (at most 6).
    pub const fn new() -> Self {
        const { assert!(N >= 1 && N + 2 <= STORAGE, "1 to 6 pooled TCP sockets") };
        NetMemory {
            storage: [SocketStorage::EMPTY; STORAGE],
            tcp: [[0; TCP_RX + TCP_TX]; N],
            dhcp: None,
        }
    }
}

impl<const N: usize> Default for NetMemory<'_, N> {
    fn default() -> Self {
        Self::new()
    }
}

/// A seed for the stack's initial sequence numbers and ephemeral ports, from the chip's RNG.
pub(crate) fn random_seed() -> u64 {
    let rng = esp_hal::rng::Rng::new();
    u64::from(rng.random()) << 32 | u64::from(rng.random())
}

/// The stack over `interface`, and the DHCP server's sockets if asked (the handle is the main
/// one's; the unicast one is the stack's other UDP socket).
pub(crate) fn stack<'a, const N: usize>(
    interface: Interface,
    memory: &'a mut NetMemory<'a, N>,
    dhcp_server: bool,
) -> (Net<'a, N>, Option<SocketHandle>) {
    let NetMemory { storage, tcp, dhcp } = memory;
    let device = DriverDevice::new(interface).expect("the Wi-Fi interface is Ethernet");
    let mut config = Config::new(device.hardware_address());
    config.random_seed = random_seed();
    let buffers = tcp.each_mut().map(|pair| pair.split_at_mut(TCP_RX));
    let now = crate::smoltcp_now();
    let mut stack = Stack::new(device, config, storage, buffers, TcpOptions::default(), now)
        .expect("the socket table holds the pool");
    let udp = dhcp_server.then(|| {
        // In this order: smoltcp hands a datagram to the first socket bound to its port.
        let (main, unicast) = dhcp::sockets(dhcp.insert(dhcp::SocketMemory::new()));
        let main = stack.add_socket(main).expect("the socket table has room");
        stack
            .add_socket(unicast)
            .expect("the socket table has room");
        main
    });
    (stack, udp)
}

/// Answers the DHCP requests that arrived; returns whether any did. `udp` is the main socket of
/// the two `stack` made for the server.
pub(crate) fn serve_dhcp<const N: usize, const L: usize>(
    stack: &mut Net<'_, N>,
    udp: SocketHandle,
    server: &mut DhcpServer<fn() -> u64, L>,
) -> bool {
    // The access point's only UDP sockets: `udp` and, added after it, the unicast one.
    let (mut main, mut unicast) = (None, None);
    for (handle, socket) in stack.sockets_mut().iter_mut() {
        match udp::Socket::downcast_mut(socket) {
            Some(socket) if handle == udp => main = Some(socket),
            Some(socket) => unicast = Some(socket),
            None => {}
        }
    }
    match (main, unicast) {
        (Some(main), Some(unicast)) => dhcp::serve(main, unicast, server),
        _ => false,
    }
}
