//! IP and socket addresses as text, for the screen and the logs.
//!
//! The same text as core's `Display` (RFC 5952 for IPv6), without what the screen and the logs
//! never use: width, precision and alignment. Core's IPv6 and socket address formatting carries
//! buffers for those, which show in the firmware's size (README, "Footprint").

use core::fmt::{self, Write as _};
use core::net::{IpAddr, Ipv6Addr, SocketAddr};

/// An address shown as text: `192.168.4.2:50000`, `[2001:db8::1]:5001`, `10.0.0.1`.
#[derive(Clone, Copy)]
pub(crate) struct Address<T>(pub(crate) T);

impl fmt::Display for Address<IpAddr> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(ip) => write!(f, "{ip}"),
            IpAddr::V6(ip) => write_ipv6(f, &ip),
        }
    }
}

impl fmt::Display for Address<SocketAddr> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            SocketAddr::V4(addr) => write!(f, "{}", addr.ip())?,
            SocketAddr::V6(addr) => {
                f.write_char('[')?;
                write_ipv6(f, addr.ip())?;
                if addr.scope_id() != 0 {
                    write!(f, "%{}", addr.scope_id())?;
                }
                f.write_char(']')?;
            }
        }
        write!(f, ":{}", u32::from(self.0.port()))
    }
}

#[cfg(feature = "defmt")]
impl<T: defmt::Format> defmt::Format for Address<T> {
    fn format(&self, f: defmt::Formatter<'_>) {
        self.0.format(f)
    }
}

/// RFC 5952: lowercase hex groups, the longest run of two or more zero groups (the first of
/// equal runs) written `::`, IPv4-mapped addresses as `::ffff:a.b.c.d`.
fn write_ipv6(f: &mut fmt::Formatter<'_>, ip: &Ipv6Addr) -> fmt::Result {
    if let Some(ip) = ip.to_ipv4_mapped() {
        return write!(f, "::ffff:{ip}");
    }
    let groups = ip.segments();
    // The longest run of zero groups: where it starts, how long it is (1: none to compress).
    let (mut zeros_at, mut zeros, mut run) = (groups.len(), 1, 0);
    for (i, &group) in groups.iter().enumerate() {
        run = if group == 0 { run + 1 } else { 0 };
        if run > zeros {
            (zeros_at, zeros) = (i + 1 - run, run);
        }
    }
    let mut i = 0;
    while i < groups.len() {
        if i == zeros_at {
            f.write_str("::")?;
            i += zeros;
            continue;
        }
        if i > 0 && i != zeros_at + zeros {
            f.write_char(':')?;
        }
        write!(f, "{:x}", groups[i])?;
        i += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use core::net::{Ipv4Addr, SocketAddrV6};
    use proptest::prelude::*;
    use std::string::ToString;

    #[test]
    fn writes_what_core_writes() {
        for text in [
            "192.168.4.2:50000",
            "[::]:1",
            "[::1]:5001",
            "[1::]:5001",
            "[2001:db8::1]:5001",
            "[2001:db8:0:1:1:1:1:1]:5001",
            "[2001:0:0:1::1]:5001",
            "[1::1:0:0:1:1]:5001",
            "[::ffff:10.0.0.1]:5001",
            "[fe80::1%3]:5001",
        ] {
            let addr: SocketAddr = text.parse().unwrap();
            assert_eq!(Address(addr).to_string(), text);
            assert_eq!(Address(addr.ip()).to_string(), addr.ip().to_string());
        }
        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(Address(ip).to_string(), "10.0.0.1");
    }

    proptest! {
        #[test]
        fn ipv6_text_matches_core(
            // Mostly zero groups, so that runs of zeros of every length and place come up.
            groups in proptest::array::uniform8(prop_oneof![3 => Just(0u16), 1 => any::<u16>()]),
            port in any::<u16>(),
            scope in prop_oneof![Just(0u32), any::<u32>()],
        ) {
            let addr = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(groups), port, 0, scope));
            prop_assert_eq!(Address(addr).to_string(), addr.to_string());
            prop_assert_eq!(Address(addr.ip()).to_string(), addr.ip().to_string());
        }
    }
}
