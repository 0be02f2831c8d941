//! The access point's DHCP server in conversation with phones over real smoltcp sockets: the
//! AP's UDP socket on port 67 is served by `dhcp::serve`, the code the firmware runs, and the
//! phones are smoltcp's DHCP client or hand-made packets (see `air`).
//!
//! Each hostile case ends with a new phone that must get an address within one exchange: its
//! first DISCOVER and its first REQUEST are answered (smoltcp's client would send a second
//! REQUEST after 5 s, a second DISCOVER after 10 s).

mod air;

use air::*;
use smoltcp::time::Duration;
use smoltcp::wire::Ipv4Address;

const LEASE_SECS: u32 = 60;
/// Shorter than smoltcp's client waits before it sends a request again.
const ONE_EXCHANGE: Duration = Duration::from_secs(4);

/// Sends `packet` from handset `h` to `to` and returns the DHCP messages it received within
/// 200 ms with the packet's transaction id.
fn exchange(world: &mut World, h: usize, packet: &Packet, to: Ipv4Address) -> Vec<Message> {
    world.handsets[h].take_inbox();
    world.handsets[h].send(&packet.bytes(), to);
    world.run_for(Duration::from_millis(200));
    world.handsets[h]
        .take_inbox()
        .iter()
        .map(|received| Message::parse(&received.payload))
        .filter(|message| message.xid == packet.xid)
        .collect()
}

/// The one reply to `packet`, if exactly one came.
fn reply(world: &mut World, h: usize, packet: &Packet) -> Option<Message> {
    let mut replies = exchange(world, h, packet, Ipv4Address::BROADCAST);
    assert!(replies.len() <= 1, "more than one reply: {replies:?}");
    replies.pop()
}

/// Handset `h` gets a lease by DISCOVER / REQUEST and takes the address.
fn lease(world: &mut World, h: usize) -> Ipv4Address {
    let mac = world.handsets[h].mac;
    let offer = reply(world, h, &Packet::new(DISCOVER, mac, 1)).expect("an OFFER");
    assert_eq!(offer.kind(), Some(OFFER));
    let request = Packet::new(REQUEST, mac, 2)
        .requested(offer.yiaddr)
        .server_id();
    let ack = reply(world, h, &request).expect("an ACK");
    assert_eq!(ack.kind(), Some(ACK));
    world.handsets[h].set_address(Some(ack.yiaddr));
    ack.yiaddr
}

/// A new phone joins and must be configured within one exchange: one DISCOVER, one REQUEST.
fn a_new_phone_gets_an_address(world: &mut World, id: u8) -> Ipv4Address {
    let p = world.join_phone(id);
    let configured = world.run_until(ONE_EXCHANGE, |w| w.phones[p].lease.is_some());
    assert!(
        configured,
        "the new phone got no address; {} bytes stuck in the AP's queue",
        world.ap.unsent()
    );
    assert_eq!(world.dhcp_packets_from_phone(p), 2, "DISCOVER and REQUEST");
    world.phones[p].address().unwrap()
}

fn in_pool(address: Ipv4Address) -> bool {
    (POOL_FIRST..=POOL_LAST).contains(&address)
}

#[test]
fn phones_joining_at_once_get_different_addresses() {
    let mut world = World::new(LEASE_SECS);
    for id in 1..=4 {
        world.join_phone(id);
    }
    let all = world.run_until(Duration::from_secs(30), |w| {
        w.phones.iter().all(|phone| phone.lease.is_some())
    });
    assert!(
        all,
        "{:?}",
        world.phones.iter().map(|p| p.lease).collect::<Vec<_>>()
    );

    let mut addresses: Vec<_> = world.phones.iter().map(|p| p.address().unwrap()).collect();
    assert!(addresses.iter().all(|a| in_pool(*a)), "{addresses:?}");
    for phone in &world.phones {
        let (cidr, router) = phone.lease.unwrap();
        assert_eq!(cidr.prefix_len(), 24);
        assert_eq!(router, Some(AP_IP));
    }
    addresses.sort();
    addresses.dedup();
    assert_eq!(addresses.len(), 4);
}

#[test]
fn phones_renew_and_keep_their_addresses_past_the_first_lease() {
    let mut world = World::new(LEASE_SECS);
    let p = world.join_phone(1);
    let q = world.join_phone(2);
    world.run_until(ONE_EXCHANGE, |w| w.phones.iter().all(|p| p.lease.is_some()));
    let before = [world.phones[p].address(), world.phones[q].address()];

    // Three lease times: each phone renews (unicast, at half the lease) several times.
    world.run_for(Duration::from_secs(3 * u64::from(LEASE_SECS)));
    assert_eq!(
        [world.phones[p].address(), world.phones[q].address()],
        before
    );
    assert_eq!(world.phones[p].lost + world.phones[q].lost, 0);
    let renewal_acks = world
        .ap_replies()
        .iter()
        .filter(|reply| reply.message().kind() == Some(ACK) && reply.dst_ip == before[0].unwrap())
        .count();
    assert!(
        renewal_acks >= 3,
        "{renewal_acks} ACKs unicast to the phone"
    );
}

#[test]
fn a_released_address_goes_to_the_next_client() {
    let mut world = World::with_pool(LEASE_SECS, POOL_FIRST);
    let h = world.join_handset(1);
    let only = lease(&mut world, h);
    let mac = world.handsets[h].mac;

    let release = Packet::new(RELEASE, mac, 3).ciaddr(only).server_id();
    assert!(
        exchange(&mut world, h, &release, AP_IP).is_empty(),
        "no reply"
    );
    world.handsets[h].set_address(None);

    assert_eq!(a_new_phone_gets_an_address(&mut world, 1), only);
}

#[test]
fn an_ack_is_unicast_to_a_renewing_client() {
    let mut world = World::new(LEASE_SECS);
    let h = world.join_handset(1);
    let address = lease(&mut world, h);
    let mac = world.handsets[h].mac;

    let renew = Packet::new(REQUEST, mac, 9).ciaddr(address);
    let replies = exchange(&mut world, h, &renew, AP_IP);
    assert_eq!(
        replies.iter().map(Message::kind).collect::<Vec<_>>(),
        [Some(ACK)]
    );
    let sent = world.ap_replies().pop().unwrap();
    assert_eq!((sent.dst_ip, sent.dst_mac), (address, mac));
}
