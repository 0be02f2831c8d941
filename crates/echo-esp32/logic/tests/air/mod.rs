//! A Wi-Fi access point and its phones as smoltcp interfaces sharing one simulated channel
//! ("the air"), in virtual time.
//!
//! - [`Ap`]: 192.168.4.1/24 with the DHCP server's sockets made and added as the firmware does
//!   (`dhcp::sockets`), served by `dhcp::serve` after each poll of its interface, as the
//!   firmware's loop does.
//! - [`Phone`]: smoltcp's own DHCP client, the well-behaved phone.
//! - [`Handset`]: a UDP socket on port 68 that sends hand-made DHCP packets (any field, any
//!   option bytes) and keeps what it receives: the hostile or unusual peer.
//!
//! Every frame one station sends reaches every other station (smoltcp filters by destination
//! MAC as a Wi-Fi card does). [`Air::deafen`] makes the air drop the ARP replies an address
//! sends: a host that keeps an address but never answers ARP, or one that left.
#![allow(dead_code)] // Each test file uses part of the harness.

use std::cell::{Cell, RefCell};
use std::collections::{HashSet, VecDeque};
use std::rc::Rc;

use echo_esp32_logic::dhcp::{self, DhcpServer};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, ChecksumCapabilities, Device, DeviceCapabilities, Medium};
use smoltcp::socket::{dhcpv4, udp, AnySocket};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, DhcpPacket, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, HardwareAddress, IpAddress, IpCidr, IpEndpoint, IpProtocol, Ipv4Address,
    Ipv4Cidr, Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr,
};

/// The access point's address, as in the firmware.
pub const AP_IP: Ipv4Address = Ipv4Address::new(192, 168, 4, 1);
/// The firmware's pool: 192.168.4.2 to .11.
pub const POOL_FIRST: Ipv4Address = Ipv4Address::new(192, 168, 4, 2);
pub const POOL_LAST: Ipv4Address = Ipv4Address::new(192, 168, 4, 11);
pub const POOL_SIZE: usize = 10;

/// Simulated time advances by this much per step; every station is polled once a step.
pub const STEP: Duration = Duration::from_millis(5);

/// A frame as it went through the air.
#[derive(Clone, Debug)]
pub struct Frame {
    pub from: usize,
    pub bytes: Vec<u8>,
}

/// The shared channel: one receive queue per station, the frames sent so far, and the
/// addresses whose ARP replies are lost.
#[derive(Default)]
pub struct Air {
    queues: Vec<VecDeque<Vec<u8>>>,
    deaf: HashSet<Ipv4Address>,
    /// Every frame sent, in order.
    pub frames: Vec<Frame>,
}

impl Air {
    fn join(air: &Rc<RefCell<Air>>) -> Radio {
        let mut state = air.borrow_mut();
        state.queues.push(VecDeque::new());
        Radio {
            air: air.clone(),
            station: state.queues.len() - 1,
        }
    }

    /// From now on, ARP replies sent from `ip` are lost.
    pub fn deafen(&mut self, ip: Ipv4Address) {
        self.deaf.insert(ip);
    }

    fn send(&mut self, from: usize, bytes: Vec<u8>) {
        self.frames.push(Frame {
            from,
            bytes: bytes.clone(),
        });
        if self.lost(&bytes) {
            return;
        }
        for (station, queue) in self.queues.iter_mut().enumerate() {
            if station != from {
                queue.push_back(bytes.clone());
            }
        }
    }

    fn lost(&self, frame: &[u8]) -> bool {
        let Ok(frame) = EthernetFrame::new_checked(frame) else {
            return false;
        };
        if frame.ethertype() != EthernetProtocol::Arp {
            return false;
        }
        let Ok(arp) = ArpPacket::new_checked(frame.payload()) else {
            return false;
        };
        matches!(
            ArpRepr::parse(&arp),
            Ok(ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Reply,
                source_protocol_addr,
                ..
            }) if self.deaf.contains(&source_protocol_addr)
        )
    }
}

/// One station's radio: a smoltcp device on the air.
pub struct Radio {
    air: Rc<RefCell<Air>>,
    station: usize,
}

pub struct RxToken(Vec<u8>);

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

pub struct TxToken<'a>(&'a Radio);

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut bytes = vec![0; len];
        let result = f(&mut bytes);
        self.0.air.borrow_mut().send(self.0.station, bytes);
        result
    }
}

impl Device for Radio {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _: Instant) -> Option<(RxToken, TxToken<'_>)> {
        let frame = self.air.borrow_mut().queues[self.station].pop_front()?;
        Some((RxToken(frame), TxToken(self)))
    }

    fn transmit(&mut self, _: Instant) -> Option<TxToken<'_>> {
        Some(TxToken(self))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps
    }
}

fn interface(radio: &mut Radio, mac: EthernetAddress, now: Instant) -> Interface {
    let mut config = Config::new(HardwareAddress::Ethernet(mac));
    config.random_seed = u64::from(mac.0[5]) + 1;
    Interface::new(config, radio, now)
}

fn set_ipv4(iface: &mut Interface, address: Option<Ipv4Cidr>) {
    iface.update_ip_addrs(|addrs| {
        addrs.clear();
        if let Some(address) = address {
            addrs.push(IpCidr::Ipv4(address)).unwrap();
        }
    });
}

/// The server's clock: whole seconds of the simulated time.
pub type Clock = Box<dyn FnMut() -> u64>;

/// The board as an access point: the firmware's DHCP socket and serving code.
pub struct Ap {
    radio: Radio,
    iface: Interface,
    sockets: SocketSet<'static>,
    main: SocketHandle,
    unicast: SocketHandle,
    pub server: DhcpServer<Clock, POOL_SIZE>,
}

impl Ap {
    pub const MAC: EthernetAddress = EthernetAddress([0x02, 0xaa, 0, 0, 0, 0x01]);

    fn poll(&mut self, now: Instant) {
        self.iface.poll(now, &mut self.radio, &mut self.sockets);
        // The two sockets at once, as the firmware's net::serve_dhcp gets them.
        let (mut main, mut unicast) = (None, None);
        for (handle, socket) in self.sockets.iter_mut() {
            match udp::Socket::downcast_mut(socket) {
                Some(socket) if handle == self.main => main = Some(socket),
                Some(socket) => unicast = Some(socket),
                None => {}
            }
        }
        dhcp::serve(main.unwrap(), unicast.unwrap(), &mut self.server);
    }

    /// Bytes waiting in the DHCP sockets' transmit queues.
    pub fn unsent(&self) -> usize {
        [self.main, self.unicast]
            .iter()
            .map(|&handle| self.sockets.get::<udp::Socket>(handle).send_queue())
            .sum()
    }
}

/// smoltcp's DHCP client on its own interface.
pub struct Phone {
    radio: Radio,
    iface: Interface,
    sockets: SocketSet<'static>,
    dhcp: SocketHandle,
    pub mac: EthernetAddress,
    /// The address the client configured, and its router.
    pub lease: Option<(Ipv4Cidr, Option<Ipv4Address>)>,
    /// How many times the lease was lost (expired or refused).
    pub lost: usize,
}

impl Phone {
    fn poll(&mut self, now: Instant) {
        self.iface.poll(now, &mut self.radio, &mut self.sockets);
        let event = match self.sockets.get_mut::<dhcpv4::Socket>(self.dhcp).poll() {
            Some(dhcpv4::Event::Configured(config)) => Some(Some((config.address, config.router))),
            Some(dhcpv4::Event::Deconfigured) => Some(None),
            None => None,
        };
        match event {
            Some(Some(lease)) => {
                set_ipv4(&mut self.iface, Some(lease.0));
                self.lease = Some(lease);
            }
            Some(None) => {
                set_ipv4(&mut self.iface, None);
                // The client reports Deconfigured once at start, with nothing to lose.
                if self.lease.take().is_some() {
                    self.lost += 1;
                }
            }
            None => {}
        }
    }

    /// The configured address.
    pub fn address(&self) -> Option<Ipv4Address> {
        self.lease.map(|(cidr, _)| cidr.address())
    }
}

/// A datagram a handset received.
#[derive(Clone, Debug)]
pub struct Received {
    pub from: IpEndpoint,
    pub payload: Vec<u8>,
}

/// A UDP socket on port 68 with hand-made DHCP packets; optionally an address of its own (which
/// its interface answers ARP for, unless the air is deafened to it).
pub struct Handset {
    radio: Radio,
    iface: Interface,
    sockets: SocketSet<'static>,
    udp: SocketHandle,
    pub mac: EthernetAddress,
    pub address: Option<Ipv4Address>,
    /// Everything received on port 68, oldest first.
    pub inbox: Vec<Received>,
}

impl Handset {
    fn poll(&mut self, now: Instant) {
        self.iface.poll(now, &mut self.radio, &mut self.sockets);
        let socket = self.sockets.get_mut::<udp::Socket>(self.udp);
        while let Ok((payload, meta)) = socket.recv() {
            self.inbox.push(Received {
                from: meta.endpoint,
                payload: payload.to_vec(),
            });
        }
    }

    /// Gives the handset `address` on 192.168.4.0/24 (or none).
    pub fn set_address(&mut self, address: Option<Ipv4Address>) {
        self.address = address;
        set_ipv4(&mut self.iface, address.map(|ip| Ipv4Cidr::new(ip, 24)));
    }

    /// Queues `packet` from port 68 to `to`:67, from the handset's address or 0.0.0.0.
    pub fn send(&mut self, packet: &[u8], to: Ipv4Address) {
        let from = self.address.unwrap_or(Ipv4Address::UNSPECIFIED);
        let meta = udp::UdpMetadata {
            endpoint: IpEndpoint::new(IpAddress::Ipv4(to), 67),
            local_address: Some(IpAddress::Ipv4(from)),
            meta: Default::default(),
        };
        let socket = self.sockets.get_mut::<udp::Socket>(self.udp);
        socket.send_slice(packet, meta).unwrap();
    }

    /// Puts `packet` on the air from port 68 to `to`:67 at `to_mac`, without asking ARP for
    /// the MAC first: a client whose ARP cache still holds the access point.
    pub fn send_unicast_without_arp(
        &mut self,
        packet: &[u8],
        to: Ipv4Address,
        to_mac: EthernetAddress,
    ) {
        let from = self.address.unwrap_or(Ipv4Address::UNSPECIFIED);
        let udp = UdpRepr {
            src_port: 68,
            dst_port: 67,
        };
        let ip = Ipv4Repr {
            src_addr: from,
            dst_addr: to,
            next_header: IpProtocol::Udp,
            payload_len: udp.header_len() + packet.len(),
            hop_limit: 64,
        };
        let ethernet = EthernetRepr {
            src_addr: self.mac,
            dst_addr: to_mac,
            ethertype: EthernetProtocol::Ipv4,
        };
        let mut frame = vec![0; ethernet.buffer_len() + ip.buffer_len() + ip.payload_len];
        let mut eth_frame = EthernetFrame::new_unchecked(&mut frame[..]);
        ethernet.emit(&mut eth_frame);
        let mut ip_packet = Ipv4Packet::new_unchecked(eth_frame.payload_mut());
        ip.emit(&mut ip_packet, &ChecksumCapabilities::default());
        let mut udp_packet = UdpPacket::new_unchecked(ip_packet.payload_mut());
        udp.emit(
            &mut udp_packet,
            &IpAddress::Ipv4(from),
            &IpAddress::Ipv4(to),
            packet.len(),
            |payload| payload.copy_from_slice(packet),
            &ChecksumCapabilities::default(),
        );
        self.radio.air.borrow_mut().send(self.radio.station, frame);
    }

    /// Takes what arrived so far.
    pub fn take_inbox(&mut self) -> Vec<Received> {
        std::mem::take(&mut self.inbox)
    }
}

/// The access point, its phones and handsets, and the simulated clock.
pub struct World {
    pub air: Rc<RefCell<Air>>,
    pub now: Instant,
    seconds: Rc<Cell<u64>>,
    pub ap: Ap,
    pub phones: Vec<Phone>,
    pub handsets: Vec<Handset>,
}

impl World {
    /// The access point with the firmware's pool and the given lease time.
    pub fn new(lease_secs: u32) -> Self {
        Self::with_pool(lease_secs, POOL_LAST)
    }

    /// The access point leasing 192.168.4.2 to `last`.
    pub fn with_pool(lease_secs: u32, last: Ipv4Address) -> Self {
        let air = Rc::new(RefCell::new(Air::default()));
        let now = Instant::from_secs(1000);
        let seconds = Rc::new(Cell::new(now.secs() as u64));
        let mut radio = Air::join(&air);
        let mut iface = interface(&mut radio, Ap::MAC, now);
        set_ipv4(&mut iface, Some(Ipv4Cidr::new(AP_IP, 24)));
        let mut sockets = SocketSet::new(vec![]);
        let memory = Box::leak(Box::new(dhcp::SocketMemory::new()));
        let (main, unicast) = dhcp::sockets(memory);
        let main = sockets.add(main);
        let unicast = sockets.add(unicast);
        let clock = seconds.clone();
        let server = DhcpServer::new(
            Box::new(move || clock.get()) as Clock,
            AP_IP,
            POOL_FIRST..=last,
        )
        .with_lease_secs(lease_secs);
        World {
            air,
            now,
            seconds,
            ap: Ap {
                radio,
                iface,
                sockets,
                main,
                unicast,
                server,
            },
            phones: Vec::new(),
            handsets: Vec::new(),
        }
    }

    /// A phone running smoltcp's DHCP client joins; returns its index in `phones`.
    pub fn join_phone(&mut self, id: u8) -> usize {
        let mut radio = Air::join(&self.air);
        let mac = EthernetAddress([0x02, 0, 0, 0, 1, id]);
        let iface = interface(&mut radio, mac, self.now);
        let mut sockets = SocketSet::new(vec![]);
        let dhcp = sockets.add(dhcpv4::Socket::new());
        self.phones.push(Phone {
            radio,
            iface,
            sockets,
            dhcp,
            mac,
            lease: None,
            lost: 0,
        });
        self.phones.len() - 1
    }

    /// A handset joins; returns its index in `handsets`.
    pub fn join_handset(&mut self, id: u8) -> usize {
        let mut radio = Air::join(&self.air);
        let mac = EthernetAddress([0x02, 0, 0, 0, 2, id]);
        let iface = interface(&mut radio, mac, self.now);
        let mut sockets = SocketSet::new(vec![]);
        let mut socket = udp::Socket::new(
            udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 8], vec![0; 8 * 1024]),
            udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 8], vec![0; 8 * 1024]),
        );
        socket.bind(68).unwrap();
        let udp = sockets.add(socket);
        self.handsets.push(Handset {
            radio,
            iface,
            sockets,
            udp,
            mac,
            address: None,
            inbox: Vec::new(),
        });
        self.handsets.len() - 1
    }

    /// One step of simulated time: every station is polled once.
    pub fn step(&mut self) {
        self.now += STEP;
        self.seconds.set(self.now.secs() as u64);
        self.ap.poll(self.now);
        for phone in &mut self.phones {
            phone.poll(self.now);
        }
        for handset in &mut self.handsets {
            handset.poll(self.now);
        }
    }

    /// Runs for `duration` of simulated time.
    pub fn run_for(&mut self, duration: Duration) {
        let end = self.now + duration;
        while self.now < end {
            self.step();
        }
    }

    /// Runs until `done` holds, for at most `limit`; returns whether it held.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&World) -> bool) -> bool {
        let end = self.now + limit;
        while !done(self) {
            if self.now >= end {
                return false;
            }
            self.step();
        }
        true
    }

    /// How many DHCP packets (UDP to port 67) phone `p` has sent.
    pub fn dhcp_packets_from_phone(&self, p: usize) -> usize {
        let station = self.phones[p].radio.station;
        self.air
            .borrow()
            .frames
            .iter()
            .filter(|frame| frame.from == station && udp_to_port(&frame.bytes, 67))
            .count()
    }

    /// The DHCP replies the access point sent so far, as they went on the air.
    pub fn ap_replies(&self) -> Vec<SentReply> {
        self.air
            .borrow()
            .frames
            .iter()
            .filter(|frame| frame.from == 0)
            .filter_map(|frame| SentReply::parse(&frame.bytes))
            .collect()
    }
}

fn udp_to_port(frame: &[u8], port: u16) -> bool {
    let Ok(frame) = EthernetFrame::new_checked(frame) else {
        return false;
    };
    let Ok(ip) = Ipv4Packet::new_checked(frame.payload()) else {
        return false;
    };
    ip.next_header() == IpProtocol::Udp
        && UdpPacket::new_checked(ip.payload()).is_ok_and(|udp| udp.dst_port() == port)
}

/// A DHCP reply as the access point put it on the air.
#[derive(Clone, Debug)]
pub struct SentReply {
    pub dst_mac: EthernetAddress,
    pub dst_ip: Ipv4Address,
    pub dst_port: u16,
    pub payload: Vec<u8>,
}

impl SentReply {
    fn parse(frame: &[u8]) -> Option<SentReply> {
        let frame = EthernetFrame::new_checked(frame).ok()?;
        let ip = Ipv4Packet::new_checked(frame.payload()).ok()?;
        if ip.next_header() != IpProtocol::Udp {
            return None;
        }
        let udp = UdpPacket::new_checked(ip.payload()).ok()?;
        (udp.src_port() == 67).then(|| SentReply {
            dst_mac: frame.dst_addr(),
            dst_ip: ip.dst_addr(),
            dst_port: udp.dst_port(),
            payload: udp.payload().to_vec(),
        })
    }

    /// The DHCP message it carries.
    pub fn message(&self) -> Message {
        Message::parse(&self.payload)
    }
}

/// What a test looks at in a DHCP message, read with smoltcp's wire code (not the server's).
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub xid: u32,
    pub chaddr: EthernetAddress,
    pub ciaddr: Ipv4Address,
    pub yiaddr: Ipv4Address,
    /// Each option's code and data, in order (PAD and END left out).
    pub options: Vec<(u8, Vec<u8>)>,
}

impl Message {
    pub fn parse(payload: &[u8]) -> Message {
        let packet = DhcpPacket::new_checked(payload).expect("a DHCP packet");
        Message {
            xid: packet.transaction_id(),
            chaddr: packet.client_hardware_address(),
            ciaddr: packet.client_ip(),
            yiaddr: packet.your_ip(),
            options: packet
                .options()
                .map(|option| (option.kind, option.data.to_vec()))
                .collect(),
        }
    }

    /// The data of option `code`.
    pub fn option(&self, code: u8) -> Option<&[u8]> {
        self.options
            .iter()
            .find(|(kind, _)| *kind == code)
            .map(|(_, data)| &data[..])
    }

    /// The message type (option 53).
    pub fn kind(&self) -> Option<u8> {
        self.option(OPTION_MESSAGE_TYPE).map(|data| data[0])
    }
}

// Message types (RFC 2132, 9.6) and option codes used by the tests.
pub const DISCOVER: u8 = 1;
pub const OFFER: u8 = 2;
pub const REQUEST: u8 = 3;
pub const DECLINE: u8 = 4;
pub const ACK: u8 = 5;
pub const NAK: u8 = 6;
pub const RELEASE: u8 = 7;
pub const INFORM: u8 = 8;
pub const OPTION_PAD: u8 = 0;
pub const OPTION_SUBNET_MASK: u8 = 1;
pub const OPTION_ROUTER: u8 = 3;
pub const OPTION_HOST_NAME: u8 = 12;
pub const OPTION_REQUESTED_IP: u8 = 50;
pub const OPTION_LEASE_TIME: u8 = 51;
pub const OPTION_MESSAGE_TYPE: u8 = 53;
pub const OPTION_SERVER_ID: u8 = 54;
pub const OPTION_PARAMETERS: u8 = 55;
pub const OPTION_MESSAGE: u8 = 56;

/// A client's DHCP packet, byte by byte (RFC 2131, section 2), so that tests can send what no
/// well-behaved encoder would.
#[derive(Clone, Debug)]
pub struct Packet {
    pub mac: EthernetAddress,
    pub xid: u32,
    pub ciaddr: Ipv4Address,
    pub giaddr: Ipv4Address,
    /// The raw bytes after the magic cookie, without END.
    pub options: Vec<u8>,
}

impl Packet {
    /// A packet of message type `kind` (the first option).
    pub fn new(kind: u8, mac: EthernetAddress, xid: u32) -> Packet {
        Packet {
            mac,
            xid,
            ciaddr: Ipv4Address::UNSPECIFIED,
            giaddr: Ipv4Address::UNSPECIFIED,
            options: vec![OPTION_MESSAGE_TYPE, 1, kind],
        }
    }

    /// Appends option `code` with `data`.
    pub fn option(mut self, code: u8, data: &[u8]) -> Packet {
        self.options.push(code);
        self.options.push(data.len() as u8);
        self.options.extend_from_slice(data);
        self
    }

    /// Appends raw option bytes (e.g. PAD).
    pub fn raw(mut self, bytes: &[u8]) -> Packet {
        self.options.extend_from_slice(bytes);
        self
    }

    pub fn requested(self, ip: Ipv4Address) -> Packet {
        self.option(OPTION_REQUESTED_IP, &ip.octets())
    }

    pub fn server_id(self) -> Packet {
        self.option(OPTION_SERVER_ID, &AP_IP.octets())
    }

    pub fn ciaddr(mut self, ip: Ipv4Address) -> Packet {
        self.ciaddr = ip;
        self
    }

    pub fn giaddr(mut self, ip: Ipv4Address) -> Packet {
        self.giaddr = ip;
        self
    }

    /// The bytes on the wire: BOOTP header, cookie, options, END, padded to 300 bytes.
    pub fn bytes(&self) -> Vec<u8> {
        let mut bytes = vec![1, 1, 6, 0];
        bytes.extend_from_slice(&self.xid.to_be_bytes());
        bytes.extend_from_slice(&[0, 0, 0, 0]); // secs, flags
        bytes.extend_from_slice(&self.ciaddr.octets());
        bytes.extend_from_slice(&[0; 8]); // yiaddr, siaddr
        bytes.extend_from_slice(&self.giaddr.octets());
        bytes.extend_from_slice(&self.mac.0);
        bytes.extend_from_slice(&[0; 10 + 64 + 128]); // chaddr padding, sname, file
        bytes.extend_from_slice(&[99, 130, 83, 99]);
        bytes.extend_from_slice(&self.options);
        bytes.push(255);
        bytes.resize(bytes.len().max(300), 0);
        bytes
    }
}
