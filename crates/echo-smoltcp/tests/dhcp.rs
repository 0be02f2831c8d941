//! The DHCPv4 client against a minimal DHCP server run on the peer stack (a UDP socket the
//! board-style way, through `add_socket`), in virtual time.
#![cfg(feature = "dhcpv4")]

mod common;

use std::net::SocketAddr;

use common::{options, ready, Net};
use echo_smoltcp::embedded_nal::{TcpClientStack, TcpFullStack};
use echo_smoltcp::smoltcp::socket::udp;
use echo_smoltcp::smoltcp::wire::{
    DhcpMessageType, DhcpPacket, DhcpRepr, IpAddress, Ipv4Address, Ipv4Cidr,
};
use echo_smoltcp::Ipv4Lease;

const SERVER: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);
const OFFERED: Ipv4Address = Ipv4Address::new(10, 0, 0, 50);

/// Answers DISCOVER with OFFER and REQUEST with ACK, always for `OFFERED`.
fn answer(request: &DhcpRepr<'_>) -> Option<Vec<u8>> {
    let message_type = match request.message_type {
        DhcpMessageType::Discover => DhcpMessageType::Offer,
        DhcpMessageType::Request => DhcpMessageType::Ack,
        _ => return None,
    };
    let reply = DhcpRepr {
        message_type,
        transaction_id: request.transaction_id,
        secs: 0,
        client_hardware_address: request.client_hardware_address,
        client_ip: Ipv4Address::UNSPECIFIED,
        your_ip: OFFERED,
        server_ip: SERVER,
        router: Some(SERVER),
        subnet_mask: Some(Ipv4Address::new(255, 255, 255, 0)),
        relay_agent_ip: Ipv4Address::UNSPECIFIED,
        broadcast: false,
        requested_ip: None,
        client_identifier: None,
        server_identifier: Some(SERVER),
        parameter_request_list: None,
        dns_servers: None,
        max_size: None,
        lease_duration: Some(3600),
        renew_duration: None,
        rebind_duration: None,
        additional_options: &[],
    };
    let mut bytes = vec![0u8; reply.buffer_len()];
    reply
        .emit(&mut DhcpPacket::new_unchecked(&mut bytes[..]))
        .unwrap();
    Some(bytes)
}

#[test]
fn a_dhcp_lease_configures_the_interface_and_tcp_works_on_it() {
    let mut net: Net<2, 1> = Net::new(1024, options(1), options(1));
    net.client
        .iface_mut()
        .update_ip_addrs(|addrs| addrs.clear());
    net.client.enable_dhcpv4().unwrap();
    assert_eq!(net.client.ipv4_address(), None);

    let udp = udp::Socket::new(
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 4], vec![0; 4096]),
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 4], vec![0; 4096]),
    );
    let dhcp_server = net.server.add_socket(udp).unwrap();
    net.server
        .sockets_mut()
        .get_mut::<udp::Socket>(dhcp_server)
        .bind(67)
        .unwrap();

    let lease = net.until(20_000, |net| {
        let udp = net.server.sockets_mut().get_mut::<udp::Socket>(dhcp_server);
        if let Ok((payload, _)) = udp.recv() {
            let packet = DhcpPacket::new_checked(payload).unwrap();
            let reply = answer(&DhcpRepr::parse(&packet).unwrap());
            if let Some(reply) = reply {
                let to = (IpAddress::Ipv4(Ipv4Address::BROADCAST), 68);
                udp.send_slice(&reply, to).unwrap();
            }
        }
        net.client.dhcpv4_lease()
    });
    let expected = Ipv4Cidr::new(OFFERED, 24);
    assert_eq!(lease.address, expected);
    assert_eq!(lease.gateway, Some(SERVER));
    assert_eq!(net.client.ipv4_address(), Some(expected));
    let _: Ipv4Lease = lease;

    // TCP from the leased address.
    let mut listener = net.server.socket().unwrap();
    net.server.bind(&mut listener, 80).unwrap();
    net.server.listen(&mut listener).unwrap();
    let mut socket = net.client.socket().unwrap();
    let remote = SocketAddr::from((SERVER, 80));
    net.until(3000, |net| ready(net.client.connect(&mut socket, remote)));
    let (_, from) = net.until(1000, |net| ready(net.server.accept(&mut listener)));
    assert_eq!(from.ip(), std::net::IpAddr::V4(OFFERED));
}
