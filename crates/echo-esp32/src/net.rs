//! The smoltcp side: memory for the sockets, the stack over the radio, the access point's
//! DHCP server on UDP port 67.

use echo_esp32_logic::dhcp::{self, DhcpServer, PACKET_SIZE, SERVER_PORT};
use echo_smoltcp::smoltcp::{
    iface::{Config, SocketHandle, SocketStorage},
    socket::udp,
};
use echo_smoltcp::{DriverDevice, Stack, TcpOptions};
use esp_radio::wifi::Interface;

/// Receive buffer (and so TCP window) of each pooled socket.
pub const TCP_RX: usize = 1536;
/// Transmit buffer of each pooled socket.
pub const TCP_TX: usize = 1536;

/// SocketSet entries: up to 6 pooled TCP sockets, the DHCP client or server, one spare.
const STORAGE: usize = 8;

/// Requests the DHCP server keeps queued, and the bytes for them.
const DHCP_PACKETS: usize = 2;
const DHCP_BYTES: usize = DHCP_PACKETS * PACKET_SIZE;

/// The stack the examples' echo roles run on: `N` pooled TCP sockets over the Wi-Fi interface.
pub type Net<'a, const N: usize> = Stack<'a, DriverDevice<Interface>, N>;

/// Memory for the network, meant to live in `main`'s stack frame (which never returns) rather
/// than in static RAM: socket table, `N` TCP buffer pairs, the DHCP server's UDP buffers.
pub struct NetMemory<'a, const N: usize> {
    storage: [SocketStorage<'a>; STORAGE],
    tcp: [[u8; TCP_RX + TCP_TX]; N],
    udp_rx_meta: [udp::PacketMetadata; DHCP_PACKETS],
    udp_rx: [u8; DHCP_BYTES],
    udp_tx_meta: [udp::PacketMetadata; DHCP_PACKETS],
    udp_tx: [u8; DHCP_BYTES],
}

impl<const N: usize> NetMemory<'_, N> {
    /// Zeroed memory for `N` TCP sockets (at most 6).
    pub const fn new() -> Self {
        const { assert!(N >= 1 && N + 2 <= STORAGE, "1 to 6 pooled TCP sockets") };
        NetMemory {
            storage: [SocketStorage::EMPTY; STORAGE],
            tcp: [[0; TCP_RX + TCP_TX]; N],
            udp_rx_meta: [udp::PacketMetadata::EMPTY; DHCP_PACKETS],
            udp_rx: [0; DHCP_BYTES],
            udp_tx_meta: [udp::PacketMetadata::EMPTY; DHCP_PACKETS],
            udp_tx: [0; DHCP_BYTES],
        }
    }
}

impl<const N: usize> Default for NetMemory<'_, N> {
    fn default() -> Self {
        Self::new()
    }
}

/// The stack over `interface`, and the DHCP server's UDP socket bound to port 67 if asked.
pub(crate) fn stack<'a, const N: usize>(
    interface: Interface,
    memory: &'a mut NetMemory<'a, N>,
    dhcp_server: bool,
) -> (Net<'a, N>, Option<SocketHandle>) {
    let NetMemory {
        storage,
        tcp,
        udp_rx_meta,
        udp_rx,
        udp_tx_meta,
        udp_tx,
    } = memory;
    let device = DriverDevice::new(interface).expect("the Wi-Fi interface is Ethernet");
    let mut config = Config::new(device.hardware_address());
    let rng = esp_hal::rng::Rng::new();
    config.random_seed = u64::from(rng.random()) << 32 | u64::from(rng.random());
    let buffers = tcp.each_mut().map(|pair| pair.split_at_mut(TCP_RX));
    let now = crate::smoltcp_now();
    let mut stack = Stack::new(device, config, storage, buffers, TcpOptions::default(), now)
        .expect("the socket table holds the pool");
    let udp = dhcp_server.then(|| {
        let mut socket = udp::Socket::new(
            udp::PacketBuffer::new(&mut udp_rx_meta[..], &mut udp_rx[..]),
            udp::PacketBuffer::new(&mut udp_tx_meta[..], &mut udp_tx[..]),
        );
        socket.bind(SERVER_PORT).expect("port 67 is free");
        stack.add_socket(socket).expect("the socket table has room")
    });
    (stack, udp)
}

/// Answers the DHCP requests that arrived; returns whether any did.
pub(crate) fn serve_dhcp<const N: usize, const L: usize>(
    stack: &mut Net<'_, N>,
    udp: SocketHandle,
    server: &mut DhcpServer<fn() -> u64, L>,
) -> bool {
    dhcp::serve(stack.sockets_mut().get_mut::<udp::Socket>(udp), server)
}
