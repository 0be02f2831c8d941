//! The soft access point's DHCP server: a phone that joins the board's network gets an address.
//!
//! [`DhcpServer`] wraps edge-dhcp's sans-io server with a fixed lease pool and the board's
//! options (its address as router, a /24 mask, no DNS). It sees datagrams, not sockets: the
//! firmware gives it what arrived on UDP port 67 and sends the [`Reply`] where it says. Packets
//! that do not decode, replies from other servers, requests addressed to another server and
//! requests without a message type get no answer.
//!
//! Leases: DISCOVER gets an OFFER of the client's current lease, else the address it asks for if
//! free, else the first free one (no OFFER when the pool is exhausted). REQUEST gets an ACK if
//! the address is in the pool and free or already the client's, else a NAK. RELEASE and DECLINE
//! free the client's lease. Expired leases are reused.

use core::net::{Ipv4Addr, SocketAddrV4};
use core::ops::RangeInclusive;

use edge_dhcp::{
    server::{Server, ServerOptions},
    DhcpOption, MessageType, Options, Packet,
};

mod serve;

pub use serve::serve;

/// The UDP port the server listens on.
pub const SERVER_PORT: u16 = 67;

/// The UDP port clients listen on.
pub const CLIENT_PORT: u16 = 68;

/// Big enough for any reply this server builds (a BOOTP packet is padded to 272 bytes; options
/// add a few dozen) and for the requests clients send (at most 576 bytes unless they negotiate).
pub const PACKET_SIZE: usize = 576;

/// Default lease time: two hours, like most home routers.
pub const DEFAULT_LEASE_SECS: u32 = 7200;

/// What the server answers, and where to send it.
#[derive(Debug, PartialEq, Eq)]
pub struct Reply<'a> {
    /// Destination: the relay if there is one, the client's current address if it has one,
    /// else the limited broadcast address (the client has no address to receive unicast on).
    pub to: SocketAddrV4,
    /// The encoded DHCP packet.
    pub packet: &'a [u8],
    /// The kind of reply (`Offer`, `Ack` or `Nak`).
    pub kind: MessageType,
    /// The address offered or acknowledged (unspecified for a NAK).
    pub address: Ipv4Addr,
}

/// A DHCP server for one /24 network with a pool of at most `N` leases.
///
/// `now` gives the time in seconds on any monotonic clock; it decides lease expiry.
pub struct DhcpServer<F, const N: usize> {
    server: Server<F, N>,
    ip: Ipv4Addr,
    lease_secs: u32,
}

impl<F, const N: usize> DhcpServer<F, N>
where
    F: FnMut() -> u64,
{
    /// A server at `ip` (also announced as the router) leasing the addresses of `pool`.
    ///
    /// # Panics
    /// If the pool is empty, holds more than `N` addresses or holds `ip`.
    pub fn new(now: F, ip: Ipv4Addr, pool: RangeInclusive<Ipv4Addr>) -> Self {
        let (start, end) = (u32::from(*pool.start()), u32::from(*pool.end()));
        assert!(start <= end, "empty DHCP pool");
        assert!(
            ((end - start) as usize) < N,
            "DHCP pool larger than the lease table"
        );
        assert!(
            !pool.contains(&ip),
            "DHCP pool holds the server's own address"
        );
        let mut server = Server::new(now, ip);
        server.range_start = *pool.start();
        server.range_end = *pool.end();
        DhcpServer {
            server,
            ip,
            lease_secs: DEFAULT_LEASE_SECS,
        }
    }

    /// Sets the lease time given to clients.
    pub fn with_lease_secs(mut self, secs: u32) -> Self {
        self.lease_secs = secs;
        self
    }

    /// The server's own address.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// Addresses currently leased (acknowledged; offers reserve nothing).
    pub fn leased(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.server.leases.keys().copied()
    }

    /// Handles one datagram received on port 67; `None` if it gets no answer.
    ///
    /// The reply is encoded into `out`, which should hold [`PACKET_SIZE`] bytes.
    pub fn handle<'o>(&mut self, datagram: &[u8], out: &'o mut [u8]) -> Option<Reply<'o>> {
        let request = match Packet::decode(datagram) {
            Ok(request) => request,
            Err(e) => {
                warn!("dhcp: ignored a bad packet: {}", e);
                return None;
            }
        };
        let mut gateway = [Ipv4Addr::UNSPECIFIED];
        let mut options = ServerOptions::new(self.ip, Some(&mut gateway));
        options.lease_duration_secs = self.lease_secs;
        let mut option_buf = Options::buf();
        let reply = self
            .server
            .handle_request(&mut option_buf, &options, &request)?;
        let kind = reply.options.iter().find_map(|option| match option {
            DhcpOption::MessageType(kind) => Some(kind),
            _ => None,
        })?;
        let address = reply.yiaddr;
        let to = destination(&request);
        match reply.encode(out) {
            Ok(packet) => {
                info!(
                    "dhcp: {} {} to {:02x?}",
                    kind,
                    address,
                    &request.chaddr[..6]
                );
                Some(Reply {
                    to,
                    packet,
                    kind,
                    address,
                })
            }
            Err(e) => {
                warn!("dhcp: reply does not fit: {}", e);
                None
            }
        }
    }
}

/// Where a reply to `request` goes (RFC 2131, 4.1).
///
/// The broadcast flag is not consulted: edge-dhcp 0.8 decodes it from the wrong bit, and
/// broadcasting whenever the client has no address is always deliverable.
fn destination(request: &Packet<'_>) -> SocketAddrV4 {
    if !request.giaddr.is_unspecified() {
        SocketAddrV4::new(request.giaddr, SERVER_PORT)
    } else if !request.ciaddr.is_unspecified() {
        SocketAddrV4::new(request.ciaddr, CLIENT_PORT)
    } else {
        SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use core::cell::Cell;

    const SERVER: Ipv4Addr = Ipv4Addr::new(192, 168, 4, 1);
    const FIRST: Ipv4Addr = Ipv4Addr::new(192, 168, 4, 2);
    const SECOND: Ipv4Addr = Ipv4Addr::new(192, 168, 4, 3);
    const PHONE: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
    const LAPTOP: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
    const TABLET: [u8; 6] = [0x02, 0, 0, 0, 0, 0x03];

    /// A server with a two-address pool whose clock reads `clock` (seconds).
    fn server(clock: &Cell<u64>) -> DhcpServer<impl FnMut() -> u64 + '_, 2> {
        DhcpServer::new(|| clock.get(), SERVER, FIRST..=SECOND).with_lease_secs(60)
    }

    /// A client's request packet, encoded as it goes on the wire.
    fn client_packet(
        mac: [u8; 6],
        ciaddr: Option<Ipv4Addr>,
        options: &[DhcpOption<'_>],
    ) -> ([u8; PACKET_SIZE], usize) {
        let mut packet =
            Packet::new_request(mac, 0x1234_5678, 0, None, true, Options::new(options));
        packet.ciaddr = ciaddr.unwrap_or(Ipv4Addr::UNSPECIFIED);
        let mut buf = [0u8; PACKET_SIZE];
        let len = packet.encode(&mut buf).unwrap().len();
        (buf, len)
    }

    const PARAMS: &[u8] = &[1, 3, 6];

    fn discover(mac: [u8; 6]) -> ([u8; PACKET_SIZE], usize) {
        client_packet(
            mac,
            None,
            &[
                DhcpOption::MessageType(MessageType::Discover),
                DhcpOption::ParameterRequestList(PARAMS),
            ],
        )
    }

    fn request(mac: [u8; 6], ip: Ipv4Addr) -> ([u8; PACKET_SIZE], usize) {
        client_packet(
            mac,
            None,
            &[
                DhcpOption::MessageType(MessageType::Request),
                DhcpOption::RequestedIpAddress(ip),
                DhcpOption::ServerIdentifier(SERVER),
                DhcpOption::ParameterRequestList(PARAMS),
            ],
        )
    }

    /// Runs a packet through the server: the reply's kind, address and destination.
    fn exchange<F: FnMut() -> u64>(
        server: &mut DhcpServer<F, 2>,
        (packet, len): ([u8; PACKET_SIZE], usize),
    ) -> Option<(MessageType, Ipv4Addr, SocketAddrV4)> {
        let mut out = [0u8; PACKET_SIZE];
        let reply = server.handle(&packet[..len], &mut out)?;
        // What goes on the wire decodes as a reply carrying the same facts.
        let decoded = Packet::decode(reply.packet).unwrap();
        assert!(decoded.reply);
        assert_eq!(decoded.xid, 0x1234_5678);
        assert_eq!(decoded.yiaddr, reply.address);
        Some((reply.kind, reply.address, reply.to))
    }

    fn reply_options(
        server: &mut DhcpServer<impl FnMut() -> u64, 2>,
    ) -> ([u8; PACKET_SIZE], usize) {
        let mut out = [0u8; PACKET_SIZE];
        let (packet, len) = discover(PHONE);
        let reply = server.handle(&packet[..len], &mut out).unwrap();
        let len = reply.packet.len();
        (out, len)
    }

    const BROADCAST: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT);

    #[test]
    fn discover_offer_request_ack() {
        let clock = Cell::new(0);
        let mut server = server(&clock);

        let offer = exchange(&mut server, discover(PHONE));
        assert_eq!(offer, Some((MessageType::Offer, FIRST, BROADCAST)));
        assert_eq!(server.leased().count(), 0, "an offer reserves nothing");

        let ack = exchange(&mut server, request(PHONE, FIRST));
        assert_eq!(ack, Some((MessageType::Ack, FIRST, BROADCAST)));
        assert!(server.leased().eq([FIRST]));
    }

    #[test]
    fn offer_carries_router_mask_lease_time_and_server_id() {
        let clock = Cell::new(0);
        let mut server = server(&clock);
        let (out, len) = reply_options(&mut server);
        let reply = Packet::decode(&out[..len]).unwrap();
        let options: std::vec::Vec<_> = reply.options.iter().collect();
        assert!(options.contains(&DhcpOption::MessageType(MessageType::Offer)));
        assert!(options.contains(&DhcpOption::ServerIdentifier(SERVER)));
        assert!(options.contains(&DhcpOption::IpAddressLeaseTime(60)));
        assert!(options.contains(&DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0))));
        let router = options.iter().find_map(|option| match option {
            DhcpOption::Router(routers) => routers.iter().next(),
            _ => None,
        });
        assert_eq!(router, Some(SERVER));
    }

    #[test]
    fn a_client_keeps_its_address() {
        let clock = Cell::new(0);
        let mut server = server(&clock);
        exchange(&mut server, request(PHONE, FIRST));
        exchange(&mut server, request(LAPTOP, SECOND));
        assert_eq!(
            exchange(&mut server, discover(LAPTOP)).map(|reply| reply.1),
            Some(SECOND)
        );
        assert_eq!(
            exchange(&mut server, request(PHONE, FIRST)).map(|reply| reply.0),
            Some(MessageType::Ack)
        );
    }

    #[test]
    fn exhausted_pool_offers_nothing_and_naks_taken_addresses() {
        let clock = Cell::new(0);
        let mut server = server(&clock);
        exchange(&mut server, request(PHONE, FIRST));
        exchange(&mut server, request(LAPTOP, SECOND));

        assert_eq!(exchange(&mut server, discover(TABLET)), None);
        assert_eq!(
            exchange(&mut server, request(TABLET, FIRST)),
            Some((MessageType::Nak, Ipv4Addr::UNSPECIFIED, BROADCAST))
        );
        assert_eq!(server.leased().count(), 2);
    }

    #[test]
    fn expired_lease_goes_to_the_next_client() {
        let clock = Cell::new(0);
        let mut server = server(&clock);
        exchange(&mut server, request(PHONE, FIRST));
        exchange(&mut server, request(LAPTOP, SECOND));

        clock.set(61);
        let offer = exchange(&mut server, discover(TABLET));
        assert_eq!(offer.map(|reply| reply.0), Some(MessageType::Offer));
        let ack = exchange(&mut server, request(TABLET, offer.unwrap().1));
        assert_eq!(ack.map(|reply| reply.0), Some(MessageType::Ack));
    }

    #[test]
    fn release_frees_the_address() {
        let clock = Cell::new(0);
        let mut server = server(&clock);
        exchange(&mut server, request(PHONE, FIRST));
        exchange(&mut server, request(LAPTOP, SECOND));
        let release = client_packet(
            PHONE,
            Some(FIRST),
            &[
                DhcpOption::MessageType(MessageType::Release),
                DhcpOption::ServerIdentifier(SERVER),
            ],
        );
        assert_eq!(exchange(&mut server, release), None, "RELEASE has no reply");
        assert_eq!(
            exchange(&mut server, discover(TABLET)).map(|reply| reply.1),
            Some(FIRST)
        );
    }

    #[test]
    fn addresses_outside_the_pool_are_refused() {
        let clock = Cell::new(0);
        let mut server = server(&clock);
        for outside in [
            SERVER,
            Ipv4Addr::new(192, 168, 4, 200),
            Ipv4Addr::new(10, 0, 0, 2),
        ] {
            assert_eq!(
                exchange(&mut server, request(PHONE, outside)).map(|reply| reply.0),
                Some(MessageType::Nak),
                "{outside}"
            );
        }
        assert_eq!(server.leased().count(), 0);
    }

    #[test]
    fn renewal_is_unicast_to_the_clients_address() {
        let clock = Cell::new(0);
        let mut server = server(&clock);
        exchange(&mut server, request(PHONE, FIRST));
        let renew = client_packet(
            PHONE,
            Some(FIRST),
            &[DhcpOption::MessageType(MessageType::Request)],
        );
        assert_eq!(
            exchange(&mut server, renew),
            Some((
                MessageType::Ack,
                FIRST,
                SocketAddrV4::new(FIRST, CLIENT_PORT)
            ))
        );
    }

    #[test]
    fn bad_packets_are_ignored() {
        let clock = Cell::new(0);
        let mut server = server(&clock);
        let mut out = [0u8; PACKET_SIZE];
        let (good, len) = discover(PHONE);

        // Truncated anywhere, empty, garbage.
        for cut in [0, 1, 10, 100, 235, 239, 241] {
            assert_eq!(server.handle(&good[..cut], &mut out), None, "cut at {cut}");
        }
        assert_eq!(server.handle(&[0xff; 300], &mut out), None);

        // Wrong hardware address length, wrong magic cookie.
        let mut bad = good;
        bad[2] = 16;
        assert_eq!(server.handle(&bad[..len], &mut out), None);
        let mut bad = good;
        bad[236] ^= 0xff;
        assert_eq!(server.handle(&bad[..len], &mut out), None);

        // A reply (another server's offer) is not a request.
        let mut bad = good;
        bad[0] = 2;
        assert_eq!(server.handle(&bad[..len], &mut out), None);

        // No message type; a request for another server.
        let no_type = client_packet(PHONE, None, &[DhcpOption::ParameterRequestList(PARAMS)]);
        assert_eq!(exchange(&mut server, no_type), None);
        let elsewhere = client_packet(
            PHONE,
            None,
            &[
                DhcpOption::MessageType(MessageType::Request),
                DhcpOption::RequestedIpAddress(FIRST),
                DhcpOption::ServerIdentifier(Ipv4Addr::new(192, 168, 4, 254)),
            ],
        );
        assert_eq!(exchange(&mut server, elsewhere), None);
        assert_eq!(server.leased().count(), 0);

        // The server still works afterwards.
        assert!(exchange(&mut server, discover(PHONE)).is_some());
    }

    #[test]
    #[should_panic(expected = "larger than the lease table")]
    fn pool_must_fit_the_lease_table() {
        DhcpServer::<_, 2>::new(|| 0, SERVER, FIRST..=Ipv4Addr::new(192, 168, 4, 4));
    }
}
