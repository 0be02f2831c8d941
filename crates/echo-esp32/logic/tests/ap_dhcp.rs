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
use smoltcp::wire::{EthernetAddress, Ipv4Address};

const LEASE_SECS: u32 = 60;
/// Shorter than smoltcp's client waits before it sends a request again.
const ONE_EXCHANGE: Duration = Duration::from_secs(4);

fn ip(last: u8) -> Ipv4Address {
    Ipv4Address::new(192, 168, 4, last)
}

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
    let all = world.run_until(ONE_EXCHANGE, |w| {
        w.phones.iter().all(|phone| phone.lease.is_some())
    });
    assert!(
        all,
        "{:?}",
        world.phones.iter().map(|p| p.lease).collect::<Vec<_>>()
    );
    for p in 0..4 {
        assert_eq!(
            world.dhcp_packets_from_phone(p),
            2,
            "phone {p}: one exchange"
        );
    }

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
fn a_nak_to_an_unroutable_client_address_does_not_stop_the_server() {
    let mut world = World::new(LEASE_SECS);
    let h = world.join_handset(1);
    let mac = world.handsets[h].mac;
    // A REQUEST in the RENEWING form (ciaddr, no requested address) from off the network.
    let request = Packet::new(REQUEST, mac, 7).ciaddr(Ipv4Address::new(172, 16, 0, 5));
    world.handsets[h].send(&request.bytes(), Ipv4Address::BROADCAST);
    world.run_for(Duration::from_millis(200));

    let address = a_new_phone_gets_an_address(&mut world, 1);
    assert!(in_pool(address));
}

#[test]
fn a_relayed_packet_does_not_stop_the_server() {
    let mut world = World::new(LEASE_SECS);
    let h = world.join_handset(1);
    let mac = world.handsets[h].mac;
    for (xid, relay) in [(1, Ipv4Address::new(10, 9, 9, 9)), (2, ip(200))] {
        let discover = Packet::new(DISCOVER, mac, xid).giaddr(relay);
        world.handsets[h].send(&discover.bytes(), Ipv4Address::BROADCAST);
        world.run_for(Duration::from_millis(200));
    }
    a_new_phone_gets_an_address(&mut world, 1);
}

#[test]
fn a_renewing_client_that_left_before_its_ack_does_not_stop_the_server() {
    let mut world = World::new(LEASE_SECS);
    let h = world.join_handset(1);
    let address = lease(&mut world, h);
    let mac = world.handsets[h].mac;

    // It renews by unicast with the AP's MAC from its cache (so the AP never saw it ask ARP),
    // then is gone before the ACK: its ARP replies are lost.
    world.air.borrow_mut().deafen(address);
    let renew = Packet::new(REQUEST, mac, 9).ciaddr(address);
    world.handsets[h].send_unicast_without_arp(&renew.bytes(), AP_IP, Ap::MAC);
    world.run_for(Duration::from_millis(200));
    assert!(world.ap.unsent() > 0, "the ACK waits for an ARP answer");

    let other = a_new_phone_gets_an_address(&mut world, 1);
    assert_ne!(other, address);
    // And the one after, a while later.
    world.run_for(Duration::from_secs(5));
    a_new_phone_gets_an_address(&mut world, 2);

    // A client that renews by unicast and answers ARP gets its ACK: it replaces the stale one.
    let h2 = world.join_handset(2);
    let second = lease(&mut world, h2);
    let mac2 = world.handsets[h2].mac;
    let renew = Packet::new(REQUEST, mac2, 10).ciaddr(second);
    world.handsets[h2].send(&renew.bytes(), AP_IP);
    let acked = world.run_until(ONE_EXCHANGE, |w| {
        w.handsets[h2]
            .inbox
            .iter()
            .any(|received| Message::parse(&received.payload).xid == 10)
    });
    assert!(acked, "no ACK for the live client's renewal");
    assert_eq!(world.ap.unsent(), 0);
}

#[test]
fn a_rebinding_client_that_never_answers_arp_does_not_stop_the_server() {
    let mut world = World::new(LEASE_SECS);
    let h = world.join_handset(1);
    let address = lease(&mut world, h);
    let mac = world.handsets[h].mac;

    // REBINDING: the REQUEST is broadcast with ciaddr set; the client never answers ARP.
    world.air.borrow_mut().deafen(address);
    let rebind = Packet::new(REQUEST, mac, 9).ciaddr(address);
    world.handsets[h].send(&rebind.bytes(), Ipv4Address::BROADCAST);
    world.run_for(Duration::from_millis(200));
    assert!(world.ap.unsent() > 0, "the ACK waits for an ARP answer");

    let other = a_new_phone_gets_an_address(&mut world, 1);
    assert_ne!(other, address);
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

#[test]
fn a_nak_is_broadcast_without_a_lease_time() {
    let mut world = World::new(LEASE_SECS);
    let p = world.join_phone(1);
    world.run_until(ONE_EXCHANGE, |w| w.phones[p].lease.is_some());
    let taken = world.phones[p].address().unwrap();

    // Another client claims the phone's address, in the REBINDING form (broadcast, ciaddr).
    let h = world.join_handset(1);
    let mac = world.handsets[h].mac;
    let request = Packet::new(REQUEST, mac, 11).ciaddr(taken);
    let replies = exchange(&mut world, h, &request, Ipv4Address::BROADCAST);
    assert_eq!(
        replies.iter().map(Message::kind).collect::<Vec<_>>(),
        [Some(NAK)]
    );
    assert_eq!(
        replies[0].option(OPTION_LEASE_TIME),
        None,
        "option 51 in a NAK"
    );
    assert_eq!(replies[0].yiaddr, Ipv4Address::UNSPECIFIED);

    let sent = world.ap_replies().pop().unwrap();
    assert_eq!(
        (sent.dst_ip, sent.dst_mac, sent.dst_port),
        (Ipv4Address::BROADCAST, EthernetAddress::BROADCAST, 68)
    );
    // The phone whose address it was keeps it.
    world.run_for(Duration::from_secs(1));
    assert_eq!(world.phones[p].address(), Some(taken));
    assert_eq!(world.phones[p].lost, 0);
}

#[test]
fn a_nak_carries_no_lease_time() {
    let mut world = World::new(LEASE_SECS);
    let p = world.join_phone(1);
    world.run_until(ONE_EXCHANGE, |w| w.phones[p].lease.is_some());
    let taken = world.phones[p].address().unwrap();

    // INIT-REBOOT form: another client asks for the phone's address (no ciaddr).
    let h = world.join_handset(1);
    let mac = world.handsets[h].mac;
    let nak = reply(
        &mut world,
        h,
        &Packet::new(REQUEST, mac, 12).requested(taken),
    )
    .unwrap();
    assert_eq!(nak.kind(), Some(NAK));
    assert_eq!(nak.option(OPTION_LEASE_TIME), None, "option 51 in a NAK");
    assert_eq!(nak.option(OPTION_SERVER_ID), Some(&AP_IP.octets()[..]));
}

#[test]
fn a_declined_address_is_not_offered_again() {
    let mut world = World::new(LEASE_SECS);
    let h = world.join_handset(1);
    let declined = lease(&mut world, h);
    let mac = world.handsets[h].mac;

    // Its ARP check found the address in use (e.g. a device with it set by hand).
    let decline = Packet::new(DECLINE, mac, 3).requested(declined).server_id();
    world.handsets[h].set_address(None);
    assert!(
        reply(&mut world, h, &decline).is_none(),
        "DECLINE has no reply"
    );

    let offer = reply(&mut world, h, &Packet::new(DISCOVER, mac, 4)).expect("an OFFER");
    assert_ne!(offer.yiaddr, declined);
    assert!(in_pool(offer.yiaddr));
    let other = a_new_phone_gets_an_address(&mut world, 1);
    assert_ne!(other, declined);
}

#[test]
fn a_declined_address_returns_after_the_hold() {
    let mut world = World::with_pool(LEASE_SECS, POOL_FIRST);
    let h = world.join_handset(1);
    let only = lease(&mut world, h);
    let mac = world.handsets[h].mac;
    let decline = Packet::new(DECLINE, mac, 3).requested(only).server_id();
    world.handsets[h].set_address(None);
    assert!(reply(&mut world, h, &decline).is_none());

    let discover = Packet::new(DISCOVER, mac, 4);
    assert!(reply(&mut world, h, &discover).is_none(), "held back");
    world.run_for(Duration::from_secs(601));
    let offer = reply(&mut world, h, &discover).expect("an OFFER");
    assert_eq!(offer.yiaddr, only);
}

#[test]
fn pad_options_between_options_are_skipped() {
    let mut world = World::new(LEASE_SECS);
    let h = world.join_handset(1);
    let mac = world.handsets[h].mac;
    let discover = Packet::new(DISCOVER, mac, 1)
        .raw(&[OPTION_PAD, OPTION_PAD])
        .option(OPTION_PARAMETERS, &[1, 3])
        .raw(&[OPTION_PAD]);
    let offer = reply(&mut world, h, &discover).expect("an OFFER");
    assert_eq!(offer.kind(), Some(OFFER));
    assert!(in_pool(offer.yiaddr));
}

#[test]
fn a_host_name_that_is_not_utf8_is_accepted() {
    let mut world = World::new(LEASE_SECS);
    let h = world.join_handset(1);
    let mac = world.handsets[h].mac;
    // "Café" in Latin-1.
    let discover = Packet::new(DISCOVER, mac, 1).option(OPTION_HOST_NAME, b"Caf\xe9");
    let offer = reply(&mut world, h, &discover).expect("an OFFER");
    assert_eq!(offer.kind(), Some(OFFER));
}

#[test]
fn a_message_option_that_is_not_utf8_is_accepted() {
    let mut world = World::with_pool(LEASE_SECS, POOL_FIRST);
    let h = world.join_handset(1);
    let only = lease(&mut world, h);
    let mac = world.handsets[h].mac;

    // Option 56, the client's reason, in Latin-1 ("leaving, café closes").
    let release = Packet::new(RELEASE, mac, 3)
        .ciaddr(only)
        .server_id()
        .option(OPTION_MESSAGE, b"leaving, caf\xe9 closes");
    world.handsets[h].send(&release.bytes(), AP_IP);
    world.run_for(Duration::from_millis(200));
    world.handsets[h].set_address(None);

    assert_eq!(
        a_new_phone_gets_an_address(&mut world, 1),
        only,
        "RELEASE ignored"
    );
}

#[test]
fn an_inform_gets_an_ack_with_the_network_settings_and_no_lease() {
    let mut world = World::new(LEASE_SECS);
    let h = world.join_handset(1);
    let fixed = ip(100); // set by hand, outside the pool
    world.handsets[h].set_address(Some(fixed));
    let mac = world.handsets[h].mac;

    let inform = Packet::new(INFORM, mac, 21)
        .ciaddr(fixed)
        .option(OPTION_PARAMETERS, &[1, 3]);
    let replies = exchange(&mut world, h, &inform, AP_IP);
    assert_eq!(
        replies.iter().map(Message::kind).collect::<Vec<_>>(),
        [Some(ACK)]
    );
    let ack = &replies[0];
    assert_eq!(ack.yiaddr, Ipv4Address::UNSPECIFIED);
    assert_eq!(ack.option(OPTION_LEASE_TIME), None);
    assert_eq!(ack.option(OPTION_SERVER_ID), Some(&AP_IP.octets()[..]));
    assert_eq!(ack.option(OPTION_ROUTER), Some(&AP_IP.octets()[..]));
    assert_eq!(
        ack.option(OPTION_SUBNET_MASK),
        Some(&[255, 255, 255, 0][..])
    );
    let sent = world.ap_replies().pop().unwrap();
    assert_eq!(sent.dst_ip, fixed);
    assert!(
        world.ap.server.leased().next().is_none(),
        "INFORM leases nothing"
    );
}

#[test]
fn a_discover_is_offered_the_clients_lease_before_the_address_it_asks_for() {
    let mut world = World::new(LEASE_SECS);
    let h = world.join_handset(1);
    let current = lease(&mut world, h);
    let mac = world.handsets[h].mac;
    let other = ip(7);
    assert_ne!(current, other);

    let discover = Packet::new(DISCOVER, mac, 4).requested(other);
    let offer = reply(&mut world, h, &discover).expect("an OFFER");
    assert_eq!(offer.yiaddr, current);
}
