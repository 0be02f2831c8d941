//! Ports for the servers a test starts, or for a test that needs nobody listening.
//!
//! The obvious way, binding a listener to port 0 and closing it, fails now and then when tests
//! run in parallel: a test thread that spawns a program while another thread holds such a
//! listener gives the child a copy of it until the child's `exec` closes it. A client that
//! connects to the port in that window lands in the copy's backlog and is reset when the copy
//! closes (seen here: `tcp_server_echoes_a_client::nb` connected within 100 us of spawning the
//! example, before it had bound, and `tcpdump` showed the reset about 0.1 ms after the SYN; 1
//! run in 100). So a port is only bound, never listened on, to check that it is free. And it comes from outside the kernel's ephemeral
//! range, so that no `bind(0)` or `connect` of a test running beside this one is given it before
//! the program under test binds it (a client connecting to an ephemeral port nobody listens on
//! can even connect to itself), each port once per process.
//!
//! Also used by the workspace's `tests/examples.rs` (through `#[path]`).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};

use socket2::{Domain, Protocol, Socket, Type};

/// Where the kernel takes ephemeral ports from when it cannot say
/// (`/proc/sys/net/ipv4/ip_local_port_range` missing): the IANA range.
const IANA_EPHEMERAL: (u16, u16) = (49152, 65535);

/// Below this, ports are privileged or well known.
const FIRST_USABLE: u16 = 1024;

/// A port that nobody listens on now and that the kernel will not hand out on its own: outside
/// the ephemeral range, not returned before by this process, and free to bind on every
/// address. Each process starts at its own place in the range (from its id), so that two test
/// processes rarely probe the same ports.
pub fn free_port() -> u16 {
    static TAKEN: AtomicU32 = AtomicU32::new(0);
    let (first, count) = ports_outside_the_ephemeral_range();
    let start = std::process::id() % count;
    for _ in 0..count {
        let offset = (start + TAKEN.fetch_add(1, Ordering::Relaxed)) % count;
        let port = u16::try_from(first + offset).expect("below 65536 by construction");
        if bindable(port) {
            return port;
        }
    }
    panic!("no free port among {count} from {first}");
}

/// Whether a socket can bind `port` on every address the way the programs under test do
/// (`SO_REUSEADDR`): nothing listens on it, on any address. The socket never listens, so a
/// copy of it in a spawned child accepts no one.
fn bindable(port: u16) -> bool {
    let Ok(socket) = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)) else {
        return false;
    };
    socket.set_reuse_address(true).is_ok()
        && socket
            .bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())
            .is_ok()
}

/// The larger run of ports from [`FIRST_USABLE`] to 65535 outside the ephemeral range: its
/// first port and its length.
fn ports_outside_the_ephemeral_range() -> (u32, u32) {
    let (low, high) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| {
            let mut ends = range.split_whitespace().map(str::parse::<u16>);
            Some((ends.next()?.ok()?, ends.next()?.ok()?))
        })
        .unwrap_or(IANA_EPHEMERAL);
    let below = (
        u32::from(FIRST_USABLE),
        u32::from(low.saturating_sub(FIRST_USABLE)),
    );
    let above = (u32::from(high) + 1, 65535 - u32::from(high));
    let (first, count) = if below.1 >= above.1 { below } else { above };
    assert!(
        count >= 100,
        "the ephemeral range {low}-{high} leaves only {count} ports for test servers"
    );
    (first, count)
}
