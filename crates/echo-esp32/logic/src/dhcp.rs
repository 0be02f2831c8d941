//! The soft access point's DHCP server: a phone that joins the board's network gets an address.
//!
//! [`DhcpServer`] leases a fixed pool of a /24 network and gives the board's settings (its
//! address as router, a /24 mask, no DNS). It sees datagrams, not sockets: [`serve`] (what the
//! firmware runs) gives it what arrived on UDP port 67 and sends the [`Reply`] where it says.
//! Packets that do not parse (see [`wire`]), replies from other servers and
//! requests addressed to another server get no answer.
//!
//! Leases (RFC 2131, 4.3), a client being named by its MAC address:
//! - DISCOVER gets an OFFER of the client's current or previous address, else of the address it
//!   asks for if free, else of a never-used address, else of the one whose lease ran out the
//!   longest ago; none when the pool is taken. An offer holds the address for
//!   [`OFFER_HOLD_SECS`], so that phones joining at once are offered different ones.
//! - REQUEST (option 50, else `ciaddr`) gets an ACK if the address is in the pool and free or
//!   already the client's, else a NAK.
//! - RELEASE ends the client's lease at once; the address stays the client's previous one until
//!   it goes to someone else.
//! - DECLINE (the client found the address in use) holds the address back from everyone for
//!   [`DECLINE_HOLD_SECS`].
//! - INFORM (a client with an address of its own) gets an ACK with the settings and no lease.
//!
//! Where replies go (RFC 2131, 4.1, for a server that no relay agent talks to): an OFFER or
//! ACK to the client's `ciaddr` if it has one on this network (it answers ARP there), else by
//! broadcast, as the client cannot receive unicast yet; a NAK always by broadcast, since its
//! `ciaddr` may now be another client's. Packets with `giaddr` set are ignored: no relay agent
//! serves the access point's network, and the pool is for that network only.
//!
//! Hostile packets. The access point may be open, so anyone in range can send anything; the
//! server keeps working for everyone else: a packet that does not parse gets no answer; a
//! forged `ciaddr` off the network gets at most a broadcast NAK; a reply to a `ciaddr` that
//! never answers ARP cannot hold up other replies ([`serve`] explains how); a DECLINE only
//! affects the sender's own address, for [`DECLINE_HOLD_SECS`]. What it cannot prevent is a
//! client taking many addresses under many made-up MAC addresses (a WPA2 passphrase keeps
//! strangers off the network).

use core::net::{Ipv4Addr, SocketAddrV4};
use core::ops::RangeInclusive;

mod leases;
mod serve;
pub mod wire;

pub use leases::LeaseState;
use leases::{Client, Leases, Mac};
pub use serve::{serve, sockets, SocketMemory};
pub use wire::MessageType;
use wire::{Answer, Request};

/// The UDP port the server listens on.
pub const SERVER_PORT: u16 = 67;

/// The UDP port clients listen on.
pub const CLIENT_PORT: u16 = 68;

/// Big enough for any reply this server builds ([`wire::REPLY_LEN`]) and for the requests
/// clients send (at most 576 bytes unless they negotiate).
pub const PACKET_SIZE: usize = 576;

/// Default lease time: two hours, like most home routers.
pub const DEFAULT_LEASE_SECS: u32 = 7200;

/// How long an OFFER reserves its address for the client: it normally asks for it within a
/// second; one that went elsewhere frees it after this.
pub const OFFER_HOLD_SECS: u32 = 60;

/// How long a declined address is held back (as dnsmasq does): long enough that the client
/// that declined it, retrying, is not offered it again; bounded because a decline cannot be
/// checked (a client can decline the address leased to it at will), so that declines cannot
/// take the pool away for long, and because the host that had the address may leave.
pub const DECLINE_HOLD_SECS: u32 = 600;

/// What the server answers, and where to send it.
#[derive(Debug, PartialEq, Eq)]
pub struct Reply<'a> {
    /// Destination: the client's address on this network if it has one (OFFER, ACK), else the
    /// limited broadcast address (always for a NAK).
    pub to: SocketAddrV4,
    /// The encoded DHCP packet.
    pub packet: &'a [u8],
    /// The kind of reply (`Offer`, `Ack` or `Nak`).
    pub kind: MessageType,
    /// The address offered or acknowledged (unspecified for a NAK or the ACK to an INFORM).
    pub address: Ipv4Addr,
}

/// A DHCP server for one /24 network with a pool of at most `N` leases.
///
/// `now` gives the time in seconds on any monotonic clock; it decides lease expiry.
pub struct DhcpServer<F, const N: usize> {
    now: F,
    ip: Ipv4Addr,
    leases: Leases<N>,
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
        DhcpServer {
            now,
            ip,
            leases: Leases::new(*pool.start(), (end - start) as usize + 1),
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

    /// Addresses currently leased (acknowledged and not run out; offers reserve but do not
    /// lease).
    pub fn leased(&mut self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        let now = (self.now)();
        self.leases.leased(now)
    }

    /// Every address of the pool and what it is doing (for tests, fuzzing and status pages).
    pub fn leases(&self) -> impl Iterator<Item = (Ipv4Addr, LeaseState)> + '_ {
        self.leases
            .slots()
            .map(|(address, state)| (address, *state))
    }

    /// Handles one datagram received on port 67; `None` if it gets no answer.
    ///
    /// The reply is encoded into `out`, which must hold [`wire::REPLY_LEN`] bytes.
    pub fn handle<'o>(&mut self, datagram: &[u8], out: &'o mut [u8]) -> Option<Reply<'o>> {
        let request = match Request::parse(datagram) {
            Ok(request) => request,
            Err(e) => {
                warn!("dhcp: ignored a bad packet: {}", e);
                return None;
            }
        };
        if !request.giaddr.is_unspecified() {
            warn!("dhcp: ignored a relayed packet (from {})", request.giaddr);
            return None;
        }
        if request.server_id.is_some_and(|server| server != self.ip) {
            return None;
        }
        let answer = self.answer(&request)?;
        let Some(packet) = answer.encode(&request, self.ip, out) else {
            warn!("dhcp: reply does not fit");
            return None;
        };
        info!(
            "dhcp: {} {} to {}",
            answer.kind,
            answer.yiaddr,
            Mac(request.chaddr)
        );
        Some(Reply {
            to: self.destination(&request, answer.kind),
            packet,
            kind: answer.kind,
            address: answer.yiaddr,
        })
    }

    /// What the server says to `request`, after updating the leases; `None`: nothing.
    fn answer(&mut self, request: &Request) -> Option<Answer> {
        let now = (self.now)();
        let client = request.chaddr;
        match request.kind {
            MessageType::Discover => self.offer(request, client, now),
            MessageType::Request => self.acknowledge(request, client, now),
            MessageType::Decline => {
                self.decline(request, client, now);
                None
            }
            MessageType::Release => {
                self.leases.release(request.ciaddr, client, now);
                None
            }
            MessageType::Inform => Some(Answer {
                kind: MessageType::Ack,
                yiaddr: Ipv4Addr::UNSPECIFIED,
                lease_secs: None,
            }),
            MessageType::Offer | MessageType::Ack | MessageType::Nak => None,
        }
    }

    fn offer(&mut self, request: &Request, client: Client, now: u64) -> Option<Answer> {
        let requested = request
            .requested_ip
            .filter(|&address| self.leases.available(address, client, now));
        let Some(address) = self
            .leases
            .binding(client)
            .or(requested)
            .or_else(|| self.leases.unused(now))
        else {
            warn!("dhcp: no free address for {}", Mac(client));
            return None;
        };
        self.leases
            .offer(address, client, now + u64::from(OFFER_HOLD_SECS));
        Some(Answer {
            kind: MessageType::Offer,
            yiaddr: address,
            lease_secs: Some(self.lease_secs),
        })
    }

    fn acknowledge(&mut self, request: &Request, client: Client, now: u64) -> Option<Answer> {
        let current = Some(request.ciaddr).filter(|address| !address.is_unspecified());
        let address = request.requested_ip.or(current)?;
        if !self.leases.available(address, client, now) {
            return Some(Answer {
                kind: MessageType::Nak,
                yiaddr: Ipv4Addr::UNSPECIFIED,
                lease_secs: None,
            });
        }
        self.leases
            .lease(address, client, now + u64::from(self.lease_secs));
        Some(Answer {
            kind: MessageType::Ack,
            yiaddr: address,
            lease_secs: Some(self.lease_secs),
        })
    }

    /// Where a reply of `kind` to `request` goes (see the module's documentation).
    ///
    /// A client without an address is answered by broadcast even when it clears the broadcast
    /// bit: 4.1's alternative, unicast to `chaddr` and `yiaddr`, needs an ARP entry that smoltcp
    /// does not let the server write.
    fn destination(&self, request: &Request, kind: MessageType) -> SocketAddrV4 {
        if kind != MessageType::Nak && self.on_link(request.ciaddr) {
            SocketAddrV4::new(request.ciaddr, CLIENT_PORT)
        } else {
            SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT)
        }
    }

    /// Whether `address` is another host's on the server's /24.
    fn on_link(&self, address: Ipv4Addr) -> bool {
        let [a, b, c, host] = address.octets();
        let [x, y, z, _] = self.ip.octets();
        [a, b, c] == [x, y, z] && host != 0 && host != 255 && address != self.ip
    }

    fn decline(&mut self, request: &Request, client: Client, now: u64) {
        let Some(address) = request.requested_ip else {
            return;
        };
        let until = now + u64::from(DECLINE_HOLD_SECS);
        if self.leases.decline(address, client, until) {
            warn!(
                "dhcp: {} declined by {}: in use by another host? Held back {} s",
                address,
                Mac(client),
                DECLINE_HOLD_SECS
            );
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use core::cell::Cell;
    use edge_dhcp::{DhcpOption, MessageType as Type, Options, Packet};

    const SERVER: Ipv4Addr = Ipv4Addr::new(192, 168, 4, 1);
    const FIRST: Ipv4Addr = Ipv4Addr::new(192, 168, 4, 2);
    const SECOND: Ipv4Addr = Ipv4Addr::new(192, 168, 4, 3);
    const PHONE: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
    const LAPTOP: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
    const TABLET: [u8; 6] = [0x02, 0, 0, 0, 0, 0x03];
    const CAMERA: [u8; 6] = [0x02, 0, 0, 0, 0, 0x04];

    /// A server with a two-address pool whose clock reads `clock` (seconds).
    fn server(clock: &Cell<u64>) -> DhcpServer<impl FnMut() -> u64 + '_, 2> {
        DhcpServer::new(|| clock.get(), SERVER, FIRST..=SECOND).with_lease_secs(60)
    }

    /// A client's packet, encoded by edge-dhcp (an encoder independent of the server's).
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
                DhcpOption::MessageType(Type::Discover),
                DhcpOption::ParameterRequestList(PARAMS),
            ],
        )
    }

    fn discover_asking_for(mac: [u8; 6], ip: Ipv4Addr) -> ([u8; PACKET_SIZE], usize) {
        client_packet(
            mac,
            None,
            &[
                DhcpOption::MessageType(Type::Discover),
                DhcpOption::RequestedIpAddress(ip),
            ],
        )
    }

    fn request(mac: [u8; 6], ip: Ipv4Addr) -> ([u8; PACKET_SIZE], usize) {
        client_packet(
            mac,
            None,
            &[
                DhcpOption::MessageType(Type::Request),
                DhcpOption::RequestedIpAddress(ip),
                DhcpOption::ServerIdentifier(SERVER),
                DhcpOption::ParameterRequestList(PARAMS),
            ],
        )
    }

    /// A REQUEST in the RENEWING form: `ciaddr`, no requested address, no server id.
    fn renew(mac: [u8; 6], ciaddr: Ipv4Addr) -> ([u8; PACKET_SIZE], usize) {
        client_packet(mac, Some(ciaddr), &[DhcpOption::MessageType(Type::Request)])
    }

    fn decline(mac: [u8; 6], ip: Ipv4Addr) -> ([u8; PACKET_SIZE], usize) {
        client_packet(
            mac,
            None,
            &[
                DhcpOption::MessageType(Type::Decline),
                DhcpOption::RequestedIpAddress(ip),
                DhcpOption::ServerIdentifier(SERVER),
            ],
        )
    }

    /// Runs a packet through the server: the reply's kind, address and destination.
    fn exchange<F: FnMut() -> u64>(
        server: &mut DhcpServer<F, 2>,
        packet: ([u8; PACKET_SIZE], usize),
    ) -> Option<(MessageType, Ipv4Addr, SocketAddrV4)> {
        let reply = decoded_reply(server, packet)?;
        Some((reply.0, reply.1, reply.2))
    }

    /// Runs a packet through the server; the reply as edge-dhcp decodes it, with its options.
    fn decoded_reply<F: FnMut() -> u64>(
        server: &mut DhcpServer<F, 2>,
        (packet, len): ([u8; PACKET_SIZE], usize),
    ) -> Option<(
        MessageType,
        Ipv4Addr,
        SocketAddrV4,
        std::vec::Vec<DhcpOption<'static>>,
    )> {
        let mut out = [0u8; PACKET_SIZE];
        let reply = server.handle(&packet[..len], &mut out)?;
        // What goes on the wire decodes as a reply carrying the same facts.
        let bytes: &'static [u8] = std::boxed::Box::leak(reply.packet.into());
        let decoded = Packet::decode(bytes).unwrap();
        assert!(decoded.reply);
        assert_eq!(decoded.xid, 0x1234_5678);
        assert_eq!(decoded.yiaddr, reply.address);
        assert_eq!(&decoded.chaddr[..6], &packet[28..34]);
        let options = decoded.options.iter().collect();
        Some((reply.kind, reply.address, reply.to, options))
    }

    const BROADCAST: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT);

    #[test]
    fn discover_offer_request_ack() {
        let clock = Cell::new(0);
        let mut server = server(&clock);

        let offer = exchange(&mut server, discover(PHONE));
        assert_eq!(offer, Some((MessageType::Offer, FIRST, BROADCAST)));
        assert_eq!(server.leased().count(), 0, "an offer leases nothing");

        let ack = exchange(&mut server, request(PHONE, FIRST));
        assert_eq!(ack, Some((MessageType::Ack, FIRST, BROADCAST)));
        assert!(server.leased().eq([FIRST]));
    }

    #[test]
    fn offer_carries_router_mask_lease_time_and_server_id() {
        let clock = Cell::new(0);
        let mut server = server(&clock);
        let (_, _, _, options) = decoded_reply(&mut server, discover(PHONE)).unwrap();
        assert!(options.contains(&DhcpOption::MessageType(Type::Offer)));
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
    fn clients_asking_at_once_are_offered_different_addresses() {
        let clock = Cell::new(0);
        let mut server = server(&clock);
        let phone = exchange(&mut server, discover(PHONE)).unwrap().1;
        let laptop = exchange(&mut server, discover(LAPTOP)).unwrap().1;
        assert_ne!(phone, laptop);
        assert_eq!(exchange(&mut server, discover(TABLET)), None, "both held");
        assert_eq!(
            exchange(&mut server, discover(PHONE)).unwrap().1,
            phone,
            "the same offer again"
        );

        clock.set(u64::from(OFFER_HOLD_SECS));
        let tablet = exchange(&mut server, discover(TABLET));
        assert_eq!(tablet.map(|reply| reply.0), Some(MessageType::Offer));
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
    fn a_discover_gets_the_clients_lease_before_the_address_it_asks_for() {
        let clock = Cell::new(0);
        let mut server = server(&clock);
        exchange(&mut server, request(PHONE, SECOND));
        assert_eq!(
            exchange(&mut server, discover_asking_for(PHONE, FIRST)).map(|reply| reply.1),
            Some(SECOND)
        );
        // Without a lease, the address asked for, if free.
        assert_eq!(
            exchange(&mut server, discover_asking_for(LAPTOP, FIRST)).map(|reply| reply.1),
            Some(FIRST)
        );
    }

    #[test]
    fn a_returning_client_gets_its_previous_address() {
        let clock = Cell::new(0);
        let mut server = server(&clock);
        exchange(&mut server, request(PHONE, SECOND));
        clock.set(100); // the lease ran out, nobody took the address
        assert_eq!(
            exchange(&mut server, discover(LAPTOP)).map(|reply| reply.1),
            Some(FIRST),
            "a new client gets a never-used address"
        );
        assert_eq!(
            exchange(&mut server, discover(PHONE)).map(|reply| reply.1),
            Some(SECOND)
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
    fn a_nak_carries_no_lease_time() {
        let clock = Cell::new(0);
        let mut server = server(&clock);
        exchange(&mut server, request(PHONE, FIRST));
        let (kind, _, _, options) = decoded_reply(&mut server, request(LAPTOP, FIRST)).unwrap();
        assert_eq!(kind, MessageType::Nak);
        assert_eq!(
            options,
            [
                DhcpOption::MessageType(Type::Nak),
                DhcpOption::ServerIdentifier(SERVER)
            ]
        );
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
                DhcpOption::MessageType(Type::Release),
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
    fn a_declined_address_is_offered_to_no_one_until_the_hold_ends() {
        let clock = Cell::new(0);
        let mut server = server(&clock);
        exchange(&mut server, request(PHONE, FIRST));
        assert_eq!(exchange(&mut server, decline(PHONE, FIRST)), None);
        assert_eq!(server.leased().count(), 0);

        assert_eq!(
            exchange(&mut server, discover(PHONE)).map(|reply| reply.1),
            Some(SECOND)
        );
        assert_eq!(
            exchange(&mut server, request(LAPTOP, FIRST)).map(|reply| reply.0),
            Some(MessageType::Nak)
        );
        clock.set(u64::from(DECLINE_HOLD_SECS) - 1);
        assert_eq!(
            exchange(&mut server, discover(TABLET)).map(|reply| reply.1),
            Some(SECOND),
            "the phone's offer ran out; the declined address is still held"
        );

        clock.set(u64::from(DECLINE_HOLD_SECS));
        assert_eq!(
            exchange(&mut server, discover(CAMERA)).map(|reply| reply.1),
            Some(FIRST)
        );
    }

    #[test]
    fn only_the_client_holding_an_address_can_decline_it() {
        let clock = Cell::new(0);
        let mut server = server(&clock);
        exchange(&mut server, request(PHONE, FIRST));
        assert_eq!(exchange(&mut server, decline(LAPTOP, FIRST)), None);
        assert!(server.leased().eq([FIRST]));
        assert_eq!(
            exchange(&mut server, renew(PHONE, FIRST)).map(|reply| reply.0),
            Some(MessageType::Ack)
        );
    }

    #[test]
    fn an_inform_gets_an_ack_with_the_settings_and_no_lease() {
        let clock = Cell::new(0);
        let mut server = server(&clock);
        let fixed = Ipv4Addr::new(192, 168, 4, 100);
        let inform = client_packet(
            PHONE,
            Some(fixed),
            &[
                DhcpOption::MessageType(Type::Inform),
                DhcpOption::ParameterRequestList(PARAMS),
            ],
        );
        let (kind, address, _, options) = decoded_reply(&mut server, inform).unwrap();
        assert_eq!((kind, address), (MessageType::Ack, Ipv4Addr::UNSPECIFIED));
        assert!(options.contains(&DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0))));
        assert!(options.contains(&DhcpOption::ServerIdentifier(SERVER)));
        assert!(!options
            .iter()
            .any(|option| matches!(option, DhcpOption::IpAddressLeaseTime(_))));
        assert_eq!(server.leased().count(), 0);
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
        assert_eq!(
            exchange(&mut server, renew(PHONE, FIRST)),
            Some((
                MessageType::Ack,
                FIRST,
                SocketAddrV4::new(FIRST, CLIENT_PORT)
            ))
        );
    }

    #[test]
    fn a_nak_is_broadcast_even_to_a_client_with_an_address() {
        let clock = Cell::new(0);
        let mut server = server(&clock);
        exchange(&mut server, request(PHONE, FIRST));
        // The laptop claims the phone's address: a NAK to FIRST would reach the phone.
        assert_eq!(
            exchange(&mut server, renew(LAPTOP, FIRST)),
            Some((MessageType::Nak, Ipv4Addr::UNSPECIFIED, BROADCAST))
        );
    }

    #[test]
    fn a_client_address_off_this_network_is_answered_by_broadcast() {
        let clock = Cell::new(0);
        let mut server = server(&clock);
        for elsewhere in [
            Ipv4Addr::new(172, 16, 0, 5),
            Ipv4Addr::new(192, 168, 5, 2),
            Ipv4Addr::new(192, 168, 4, 255),
            Ipv4Addr::new(192, 168, 4, 0),
            SERVER,
        ] {
            let inform = client_packet(
                PHONE,
                Some(elsewhere),
                &[DhcpOption::MessageType(Type::Inform)],
            );
            assert_eq!(
                exchange(&mut server, inform),
                Some((MessageType::Ack, Ipv4Addr::UNSPECIFIED, BROADCAST)),
                "{elsewhere}"
            );
        }
        assert_eq!(
            exchange(&mut server, renew(PHONE, Ipv4Addr::new(172, 16, 0, 5))),
            Some((MessageType::Nak, Ipv4Addr::UNSPECIFIED, BROADCAST))
        );
    }

    #[test]
    fn relayed_packets_get_no_answer() {
        let clock = Cell::new(0);
        let mut server = server(&clock);
        for relay in [Ipv4Addr::new(10, 9, 9, 9), Ipv4Addr::new(192, 168, 4, 200)] {
            for (packet, len) in [discover(PHONE), request(PHONE, FIRST)] {
                let mut relayed = Packet::decode(&packet[..len]).unwrap();
                relayed.giaddr = relay;
                let mut buf = [0u8; PACKET_SIZE];
                let len = relayed.encode(&mut buf).unwrap().len();
                assert_eq!(exchange(&mut server, (buf, len)), None, "{relay}");
            }
        }
        assert_eq!(server.leased().count(), 0);
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
                DhcpOption::MessageType(Type::Request),
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
