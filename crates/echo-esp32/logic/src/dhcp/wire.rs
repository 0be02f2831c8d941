//! DHCP messages on the wire (RFC 2131 section 2, RFC 2132): what the server reads from a
//! client's packet, and the replies it writes.
//!
//! Reading takes only what the server uses (message type, requested address, server
//! identifier and the fixed fields) and skips the rest unread: a PAD may stand anywhere, a host
//! name or message may be in any character set. The option list ends at END, at the end of the
//! packet, or at an option whose length runs past the end. A packet is refused only when it is
//! not a BOOTREQUEST for a 6-byte hardware address with the magic cookie, or has no valid
//! message type. Options carried in `sname` and `file` (option overload, 52) are not read.

use core::fmt;
use core::net::Ipv4Addr;
use core::ops::Range;

/// Length of every reply: the size of a BOOTP message (RFC 951), which some clients still
/// require; the server's options take at most 29 of the 60 bytes after the header.
pub const REPLY_LEN: usize = 300;

// Fixed fields (RFC 2131, figure 1).
const OP: usize = 0;
const HTYPE: usize = 1;
const HLEN: usize = 2;
const XID: Range<usize> = 4..8;
const FLAGS: Range<usize> = 10..12;
const CIADDR: Range<usize> = 12..16;
const YIADDR: Range<usize> = 16..20;
const GIADDR: Range<usize> = 24..28;
const CHADDR: Range<usize> = 28..34;
const COOKIE: Range<usize> = 236..240;
const OPTIONS: usize = 240;

const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
const BOOTREQUEST: u8 = 1;
const BOOTREPLY: u8 = 2;
const ETHERNET: u8 = 1;
/// The one defined bit of `flags`.
const BROADCAST_FLAG: u16 = 0x8000;

// Option codes (RFC 2132).
const PAD: u8 = 0;
const SUBNET_MASK: u8 = 1;
const ROUTER: u8 = 3;
const REQUESTED_IP: u8 = 50;
const LEASE_TIME: u8 = 51;
const MESSAGE_TYPE: u8 = 53;
const SERVER_ID: u8 = 54;
const END: u8 = 255;

/// The /24 mask the server gives.
const MASK: [u8; 4] = [255, 255, 255, 0];

/// A DHCP message type (option 53, RFC 2132 section 9.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum MessageType {
    /// A client looks for servers.
    Discover = 1,
    /// A server offers an address.
    Offer = 2,
    /// A client asks for, confirms or renews an address.
    Request = 3,
    /// A client found the address it was given in use.
    Decline = 4,
    /// A server confirms an address, or answers an INFORM.
    Ack = 5,
    /// A server refuses a REQUEST.
    Nak = 6,
    /// A client gives its address back.
    Release = 7,
    /// A client with an address of its own asks for the other settings.
    Inform = 8,
}

impl MessageType {
    fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            1 => Self::Discover,
            2 => Self::Offer,
            3 => Self::Request,
            4 => Self::Decline,
            5 => Self::Ack,
            6 => Self::Nak,
            7 => Self::Release,
            8 => Self::Inform,
            _ => return None,
        })
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Discover => "DISCOVER",
            Self::Offer => "OFFER",
            Self::Request => "REQUEST",
            Self::Decline => "DECLINE",
            Self::Ack => "ACK",
            Self::Nak => "NAK",
            Self::Release => "RELEASE",
            Self::Inform => "INFORM",
        })
    }
}

/// Why a packet was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Malformed {
    /// Shorter than the fixed fields and the cookie.
    TooShort,
    /// A BOOTREPLY (another server's answer) or an unknown op.
    NotARequest,
    /// A hardware address that is not 6-byte Ethernet.
    NotEthernet,
    /// No magic cookie: BOOTP, not DHCP.
    NoCookie,
    /// No option 53 with a known type.
    NoMessageType,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TooShort => "too short",
            Self::NotARequest => "not a request",
            Self::NotEthernet => "not Ethernet",
            Self::NoCookie => "no DHCP cookie",
            Self::NoMessageType => "no message type",
        })
    }
}

/// What the server uses of a client's message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// The message type.
    pub kind: MessageType,
    /// The transaction id, echoed in the reply.
    pub xid: u32,
    /// The broadcast bit of `flags`, echoed in the reply.
    pub broadcast: bool,
    /// The client's current address, if it has one.
    pub ciaddr: Ipv4Addr,
    /// The relay agent's address; unspecified when the client is on the server's link.
    pub giaddr: Ipv4Addr,
    /// The client's MAC address, which names it.
    pub chaddr: [u8; 6],
    /// Option 50.
    pub requested_ip: Option<Ipv4Addr>,
    /// Option 54: the server the client talks to.
    pub server_id: Option<Ipv4Addr>,
}

impl Request {
    /// Reads a client's packet; the first occurrence of an option counts.
    pub fn parse(packet: &[u8]) -> Result<Request, Malformed> {
        if packet.len() < OPTIONS {
            return Err(Malformed::TooShort);
        }
        if packet[OP] != BOOTREQUEST {
            return Err(Malformed::NotARequest);
        }
        if packet[HTYPE] != ETHERNET || packet[HLEN] != 6 {
            return Err(Malformed::NotEthernet);
        }
        if packet[COOKIE] != MAGIC_COOKIE {
            return Err(Malformed::NoCookie);
        }
        let mut kind = None;
        let mut requested_ip = None;
        let mut server_id = None;
        for (code, data) in options(&packet[OPTIONS..]) {
            match code {
                MESSAGE_TYPE if kind.is_none() => {
                    kind = one_byte(data).and_then(MessageType::from_byte)
                }
                REQUESTED_IP if requested_ip.is_none() => requested_ip = address(data),
                SERVER_ID if server_id.is_none() => server_id = address(data),
                _ => {}
            }
        }
        Ok(Request {
            kind: kind.ok_or(Malformed::NoMessageType)?,
            xid: u32::from_be_bytes(array(&packet[XID])),
            broadcast: u16::from_be_bytes(array(&packet[FLAGS])) & BROADCAST_FLAG != 0,
            ciaddr: Ipv4Addr::from(array(&packet[CIADDR])),
            giaddr: Ipv4Addr::from(array(&packet[GIADDR])),
            chaddr: array(&packet[CHADDR]),
            requested_ip,
            server_id,
        })
    }
}

/// The (code, data) of each option in `bytes`: PADs skipped, up to END, the end of `bytes`, or
/// an option that does not fit.
fn options(bytes: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    let mut rest = bytes;
    core::iter::from_fn(move || loop {
        match *rest {
            [PAD, ref tail @ ..] => rest = tail,
            [code, len, ref tail @ ..] if code != END && tail.len() >= usize::from(len) => {
                let (data, tail) = tail.split_at(usize::from(len));
                rest = tail;
                return Some((code, data));
            }
            _ => return None,
        }
    })
}

fn one_byte(data: &[u8]) -> Option<u8> {
    match *data {
        [byte] => Some(byte),
        _ => None,
    }
}

fn address(data: &[u8]) -> Option<Ipv4Addr> {
    <[u8; 4]>::try_from(data).ok().map(Ipv4Addr::from)
}

fn array<const L: usize>(bytes: &[u8]) -> [u8; L] {
    let mut array = [0; L];
    array.copy_from_slice(bytes);
    array
}

/// What the server answers; the rest of the reply is copied from the request (RFC 2131,
/// table 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    /// OFFER, ACK or NAK.
    pub kind: MessageType,
    /// The address offered or acknowledged; unspecified in a NAK and in the ACK to an INFORM.
    pub yiaddr: Ipv4Addr,
    /// Option 51, only in an OFFER or in the ACK to a REQUEST (forbidden in a NAK and in the
    /// ACK to an INFORM).
    pub lease_secs: Option<u32>,
}

impl Answer {
    /// Writes the reply of server `server` (also the router) to `request` into `out`; `None` if
    /// `out` is shorter than [`REPLY_LEN`].
    pub fn encode<'o>(
        &self,
        request: &Request,
        server: Ipv4Addr,
        out: &'o mut [u8],
    ) -> Option<&'o [u8]> {
        let out = out.get_mut(..REPLY_LEN)?;
        out.fill(0);
        out[OP] = BOOTREPLY;
        out[HTYPE] = ETHERNET;
        out[HLEN] = 6;
        out[XID].copy_from_slice(&request.xid.to_be_bytes());
        if request.broadcast {
            out[FLAGS].copy_from_slice(&BROADCAST_FLAG.to_be_bytes());
        }
        if self.kind == MessageType::Ack {
            out[CIADDR].copy_from_slice(&request.ciaddr.octets());
        }
        out[YIADDR].copy_from_slice(&self.yiaddr.octets());
        out[GIADDR].copy_from_slice(&request.giaddr.octets());
        out[CHADDR].copy_from_slice(&request.chaddr);
        out[COOKIE].copy_from_slice(&MAGIC_COOKIE);
        let mut options = Writer {
            out: &mut out[OPTIONS..],
            at: 0,
        };
        options.put(MESSAGE_TYPE, &[self.kind as u8]);
        options.put(SERVER_ID, &server.octets());
        if let Some(secs) = self.lease_secs {
            options.put(LEASE_TIME, &secs.to_be_bytes());
        }
        if self.kind != MessageType::Nak {
            options.put(SUBNET_MASK, &MASK);
            options.put(ROUTER, &server.octets());
        }
        options.out[options.at] = END;
        Some(out)
    }
}

/// Appends options; the server's fit in [`REPLY_LEN`] by construction.
struct Writer<'o> {
    out: &'o mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn put(&mut self, code: u8, data: &[u8]) {
        let end = self.at + 2 + data.len();
        self.out[self.at] = code;
        self.out[self.at + 1] = data.len() as u8;
        self.out[self.at + 2..end].copy_from_slice(data);
        self.at = end;
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::vec::Vec;

    const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
    const SERVER: Ipv4Addr = Ipv4Addr::new(192, 168, 4, 1);

    /// A client packet with the given option bytes (END added).
    fn packet(options: &[u8]) -> Vec<u8> {
        let mut bytes = std::vec![0u8; OPTIONS];
        bytes[OP] = BOOTREQUEST;
        bytes[HTYPE] = ETHERNET;
        bytes[HLEN] = 6;
        bytes[XID].copy_from_slice(&[1, 2, 3, 4]);
        bytes[CHADDR].copy_from_slice(&MAC);
        bytes[COOKIE].copy_from_slice(&MAGIC_COOKIE);
        bytes.extend_from_slice(options);
        bytes.push(END);
        bytes
    }

    fn request(kind: MessageType) -> Request {
        Request::parse(&packet(&[MESSAGE_TYPE, 1, kind as u8])).unwrap()
    }

    /// The options of an encoded reply, read by the same parser.
    fn reply_options(reply: &[u8]) -> Vec<(u8, Vec<u8>)> {
        options(&reply[OPTIONS..])
            .map(|(code, data)| (code, data.to_vec()))
            .collect()
    }

    #[test]
    fn reads_the_fields_and_options_the_server_uses() {
        let mut bytes = packet(&[
            MESSAGE_TYPE,
            1,
            3,
            REQUESTED_IP,
            4,
            192,
            168,
            4,
            7,
            SERVER_ID,
            4,
            192,
            168,
            4,
            1,
        ]);
        bytes[FLAGS].copy_from_slice(&[0x80, 0]);
        bytes[CIADDR].copy_from_slice(&[192, 168, 4, 9]);
        let request = Request::parse(&bytes).unwrap();
        assert_eq!(
            request,
            Request {
                kind: MessageType::Request,
                xid: 0x0102_0304,
                broadcast: true,
                ciaddr: Ipv4Addr::new(192, 168, 4, 9),
                giaddr: Ipv4Addr::UNSPECIFIED,
                chaddr: MAC,
                requested_ip: Some(Ipv4Addr::new(192, 168, 4, 7)),
                server_id: Some(SERVER),
            }
        );
    }

    #[test]
    fn pads_anywhere_are_skipped() {
        let bytes = packet(&[
            PAD,
            PAD,
            MESSAGE_TYPE,
            1,
            1,
            PAD,
            REQUESTED_IP,
            4,
            10,
            0,
            0,
            2,
            PAD,
        ]);
        let request = Request::parse(&bytes).unwrap();
        assert_eq!(request.kind, MessageType::Discover);
        assert_eq!(request.requested_ip, Some(Ipv4Addr::new(10, 0, 0, 2)));
    }

    #[test]
    fn text_options_in_any_character_set_are_skipped_unread() {
        // Host name (12) and message (56) in Latin-1, a client identifier (61) of odd length.
        let bytes = packet(&[
            12,
            4,
            b'C',
            b'a',
            b'f',
            0xe9,
            56,
            2,
            0xe0,
            0xff,
            61,
            1,
            0,
            MESSAGE_TYPE,
            1,
            8,
        ]);
        assert_eq!(Request::parse(&bytes).unwrap().kind, MessageType::Inform);
    }

    #[test]
    fn the_first_occurrence_of_an_option_counts() {
        let bytes = packet(&[MESSAGE_TYPE, 1, 1, MESSAGE_TYPE, 1, 3]);
        assert_eq!(Request::parse(&bytes).unwrap().kind, MessageType::Discover);
    }

    #[test]
    fn options_end_at_end_or_at_one_that_does_not_fit() {
        let after_end = packet(&[END, MESSAGE_TYPE, 1, 1]);
        assert_eq!(Request::parse(&after_end), Err(Malformed::NoMessageType));
        let mut cut = packet(&[MESSAGE_TYPE, 1, 1, REQUESTED_IP, 4, 10, 0]);
        cut.pop(); // no END: the packet ends inside option 50
        let request = Request::parse(&cut).unwrap();
        assert_eq!(request.kind, MessageType::Discover);
        assert_eq!(request.requested_ip, None);
    }

    #[test]
    fn options_of_the_wrong_length_are_ignored() {
        let bytes = packet(&[MESSAGE_TYPE, 2, 1, 0, REQUESTED_IP, 3, 10, 0, 0]);
        assert_eq!(Request::parse(&bytes), Err(Malformed::NoMessageType));
        let bytes = packet(&[MESSAGE_TYPE, 1, 9]);
        assert_eq!(Request::parse(&bytes), Err(Malformed::NoMessageType));
    }

    #[test]
    fn refuses_what_is_not_a_dhcp_request() {
        let good = packet(&[MESSAGE_TYPE, 1, 1]);
        for cut in [0, 1, 100, OPTIONS - 1] {
            assert_eq!(
                Request::parse(&good[..cut]),
                Err(Malformed::TooShort),
                "{cut}"
            );
        }
        let mut reply = good.clone();
        reply[OP] = BOOTREPLY;
        assert_eq!(Request::parse(&reply), Err(Malformed::NotARequest));
        let mut long_mac = good.clone();
        long_mac[HLEN] = 16;
        assert_eq!(Request::parse(&long_mac), Err(Malformed::NotEthernet));
        let mut bootp = good.clone();
        bootp[COOKIE.start] ^= 0xff;
        assert_eq!(Request::parse(&bootp), Err(Malformed::NoCookie));
    }

    #[test]
    fn an_offer_copies_the_request_and_carries_lease_mask_and_router() {
        let mut request = request(MessageType::Discover);
        request.broadcast = true;
        request.ciaddr = Ipv4Addr::new(192, 168, 4, 9);
        let offer = Answer {
            kind: MessageType::Offer,
            yiaddr: Ipv4Addr::new(192, 168, 4, 2),
            lease_secs: Some(7200),
        };
        let mut out = [0xaa; 576];
        let reply = offer.encode(&request, SERVER, &mut out).unwrap();
        assert_eq!(reply.len(), REPLY_LEN);
        assert_eq!(&reply[..4], &[BOOTREPLY, ETHERNET, 6, 0]);
        assert_eq!(&reply[XID], &[1, 2, 3, 4]);
        assert_eq!(&reply[FLAGS], &[0x80, 0]);
        assert_eq!(&reply[CIADDR], &[0; 4], "ciaddr is 0 in an OFFER");
        assert_eq!(&reply[YIADDR], &[192, 168, 4, 2]);
        assert_eq!(&reply[CHADDR], &MAC);
        assert!(reply[CHADDR.end..COOKIE.start].iter().all(|&b| b == 0));
        assert_eq!(
            reply_options(reply),
            [
                (MESSAGE_TYPE, std::vec![2]),
                (SERVER_ID, std::vec![192, 168, 4, 1]),
                (LEASE_TIME, 7200u32.to_be_bytes().to_vec()),
                (SUBNET_MASK, MASK.to_vec()),
                (ROUTER, std::vec![192, 168, 4, 1]),
            ]
        );
    }

    #[test]
    fn a_nak_carries_only_its_type_and_the_server() {
        let mut request = request(MessageType::Request);
        request.ciaddr = Ipv4Addr::new(172, 16, 0, 5);
        let nak = Answer {
            kind: MessageType::Nak,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            lease_secs: None,
        };
        let mut out = [0; REPLY_LEN];
        let reply = nak.encode(&request, SERVER, &mut out).unwrap();
        assert_eq!(&reply[CIADDR], &[0; 4], "ciaddr is 0 in a NAK");
        assert_eq!(
            reply_options(reply),
            [
                (MESSAGE_TYPE, std::vec![6]),
                (SERVER_ID, std::vec![192, 168, 4, 1])
            ]
        );
    }

    #[test]
    fn an_ack_echoes_the_clients_address() {
        let mut request = request(MessageType::Inform);
        request.ciaddr = Ipv4Addr::new(192, 168, 4, 100);
        let ack = Answer {
            kind: MessageType::Ack,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            lease_secs: None,
        };
        let mut out = [0; REPLY_LEN];
        let reply = ack.encode(&request, SERVER, &mut out).unwrap();
        assert_eq!(&reply[CIADDR], &[192, 168, 4, 100]);
        assert!(!reply_options(reply)
            .iter()
            .any(|(code, _)| *code == LEASE_TIME));
    }

    #[test]
    fn a_short_buffer_gets_no_reply() {
        let ack = Answer {
            kind: MessageType::Ack,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            lease_secs: None,
        };
        let mut out = [0; REPLY_LEN - 1];
        assert_eq!(
            ack.encode(&request(MessageType::Inform), SERVER, &mut out),
            None
        );
    }
}
