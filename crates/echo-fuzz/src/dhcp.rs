//! The access point's DHCP server on a sequence of packets from several clients, built from
//! the fuzzer's bytes: well-formed requests of every kind with any options and addresses,
//! the same with bytes flipped, raw datagrams, and time passing.
//!
//! Properties: no panic; every lease and offer is an address of the pool and a client holds at
//! most one; every address the server offers or acknowledges is in the pool; NAKs go to the
//! broadcast address; a packet that does not parse changes no lease and gets no answer.

use std::cell::Cell;
use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::rc::Rc;

use echo_esp32_logic::dhcp::wire::{Request, REPLY_LEN};
use echo_esp32_logic::dhcp::{DhcpServer, LeaseState, MessageType, PACKET_SIZE};

use crate::Bytes;

const SERVER: Ipv4Addr = Ipv4Addr::new(192, 168, 4, 1);
const FIRST: Ipv4Addr = Ipv4Addr::new(192, 168, 4, 2);
const LAST: Ipv4Addr = Ipv4Addr::new(192, 168, 4, 5);
const POOL: usize = 4;

/// A client's request of kind `kind` (1 = DISCOVER ... 8 = INFORM), with what the input says.
fn request(bytes: &mut Bytes<'_>) -> Vec<u8> {
    let client = bytes.byte() % 6;
    let kind = 1 + bytes.byte() % 8;
    let flags = bytes.byte();
    let address = |byte: u8| Ipv4Addr::new(192, 168, 4, byte % 8);
    let mut packet = vec![0u8; 236];
    packet[0] = 1; // BOOTREQUEST
    packet[1] = 1; // Ethernet
    packet[2] = 6;
    packet[4..8].copy_from_slice(&bytes.u32().to_be_bytes());
    if flags & 0x01 != 0 {
        packet[10] = 0x80; // broadcast
    }
    if flags & 0x02 != 0 {
        let ciaddr = match bytes.byte() {
            0 => Ipv4Addr::new(172, 16, 0, 5),
            byte => address(byte),
        };
        packet[12..16].copy_from_slice(&ciaddr.octets());
    }
    if flags & 0x04 != 0 {
        packet[24..28].copy_from_slice(&[10, 0, 0, 1]); // giaddr: a relay
    }
    packet[28..34].copy_from_slice(&[2, 0, 0, 0, 0, client]);
    packet.extend_from_slice(&[99, 130, 83, 99]);
    if flags & 0x08 != 0 {
        packet.push(0); // a PAD
    }
    packet.extend_from_slice(&[53, 1, kind]);
    if flags & 0x10 != 0 {
        packet.extend_from_slice(&[50, 4]);
        packet.extend_from_slice(&address(bytes.byte()).octets());
    }
    if flags & 0x20 != 0 {
        let server = if bytes.byte().is_multiple_of(4) {
            Ipv4Addr::new(192, 168, 4, 254)
        } else {
            SERVER
        };
        packet.extend_from_slice(&[54, 4]);
        packet.extend_from_slice(&server.octets());
    }
    if flags & 0x40 != 0 {
        // A host name in any character set.
        let len = usize::from(bytes.byte() % 32);
        let name = bytes.take(len);
        packet.extend_from_slice(&[12, name.len() as u8]);
        packet.extend_from_slice(name);
    }
    if flags & 0x80 == 0 {
        packet.push(255);
    }
    packet
}

/// The lease table, to compare before and after a packet.
fn table<F: FnMut() -> u64>(server: &DhcpServer<F, POOL>) -> Vec<(Ipv4Addr, LeaseState)> {
    server.leases().collect()
}

fn check_table(table: &[(Ipv4Addr, LeaseState)]) {
    assert_eq!(table.len(), POOL, "the pool's addresses, no more");
    let mut clients = HashSet::new();
    for (address, state) in table {
        assert!(
            (FIRST..=LAST).contains(address),
            "{address} is not in the pool"
        );
        if let LeaseState::Offered { client, .. } | LeaseState::Leased { client, .. } = state {
            assert!(
                clients.insert(*client),
                "client {client:02x?} holds two addresses"
            );
        }
    }
}

/// Packets to a server with a pool of 4, the clock moving as the input says.
pub fn check(data: &[u8]) {
    let mut bytes = Bytes::new(data);
    let clock = Rc::new(Cell::new(0u64));
    let now = Rc::clone(&clock);
    let mut server: DhcpServer<_, POOL> = DhcpServer::new(move || now.get(), SERVER, FIRST..=LAST);
    let mut out = [0u8; REPLY_LEN];
    for _ in 0..500 {
        if bytes.is_empty() {
            break;
        }
        let packet = match bytes.byte() % 4 {
            0 | 1 => request(&mut bytes),
            2 => {
                let mut packet = request(&mut bytes);
                for _ in 0..1 + bytes.byte() % 4 {
                    let at = usize::from(bytes.u16()) % packet.len();
                    packet[at] ^= bytes.byte();
                }
                packet
            }
            _ => {
                let len = usize::from(bytes.u16()) % (PACKET_SIZE + 1);
                let raw = bytes.take(len).to_vec();
                clock.set(clock.get() + u64::from(bytes.u16()));
                raw
            }
        };
        let before = table(&server);
        let reply = server.handle(&packet, &mut out);
        if let Some(reply) = &reply {
            match reply.kind {
                MessageType::Nak => {
                    assert!(
                        reply.to.ip().is_broadcast(),
                        "a NAK unicast to {}",
                        reply.to
                    )
                }
                _ => assert!(
                    reply.address.is_unspecified() || (FIRST..=LAST).contains(&reply.address),
                    "{:?} of {} outside the pool",
                    reply.kind,
                    reply.address
                ),
            }
        }
        let after = table(&server);
        check_table(&after);
        if Request::parse(&packet).is_err() {
            assert!(reply.is_none(), "an answer to a packet that does not parse");
            assert_eq!(
                before, after,
                "a packet that does not parse changed the leases"
            );
        }
    }
}
