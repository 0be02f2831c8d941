//! embedded-nal TCP client **and server** over [smoltcp], for the `echo` programs on
//! boards without an OS (ESP32 over esp-radio WiFi) and on a Linux TAP device.
//!
//! - [`Stack`] ([`stack`]): [`TcpClientStack`] + [`TcpFullStack`] on a fixed pool of
//!   caller-provided sockets, with a real listen backlog ([`TcpOptions::backlog`],
//!   [`Stack::listen_with_backlog`]), socket recycling, IPv4 (IPv6 with `ipv6`), an optional
//!   DHCPv4 client (`dhcpv4`), and [`Stack::poll`] driven by the caller's clock.
//! - [`DriverDevice`] ([`device`]): a smoltcp `Device` over any embassy-net-driver 0.2
//!   [`Driver`](embassy_net_driver::Driver), the interface esp-radio and
//!   embassy-net-tuntap implement.
//! - [`Error`] ([`error`]): one error enum; peer-closed is `kind() == PipeClosed`.
//!
//! No allocation: socket storage and every TCP buffer come from the caller.
//!
//! # Wiring it up
//!
//! ```
//! use echo_smoltcp::{Stack, TcpOptions};
//! use echo_smoltcp::smoltcp::iface::{Config, SocketStorage};
//! use echo_smoltcp::smoltcp::phy::{Loopback, Medium};
//! use echo_smoltcp::smoltcp::time::Instant;
//! use echo_smoltcp::smoltcp::wire::{EthernetAddress, Ipv4Cidr, Ipv4Address};
//!
//! let device = Loopback::new(Medium::Ethernet); // a DriverDevice on a board
//! let config = Config::new(EthernetAddress([2, 0, 0, 0, 0, 1]).into());
//! let mut storage = [SocketStorage::EMPTY; 4]; // pool + DHCP + the board's own sockets
//! let (mut rx, mut tx) = ([[0u8; 1024]; 2], [[0u8; 1024]; 2]);
//! let [rx0, rx1] = &mut rx;
//! let [tx0, tx1] = &mut tx;
//! let mut options = TcpOptions::default();
//! options.backlog = 1;
//! let mut stack = Stack::new(
//!     device,
//!     config,
//!     &mut storage,
//!     [(&mut rx0[..], &mut tx0[..]), (&mut rx1[..], &mut tx1[..])],
//!     options,
//!     Instant::ZERO,
//! )
//! .unwrap();
//! stack.set_ipv4(Ipv4Cidr::new(Ipv4Address::new(127, 0, 0, 1), 8), None);
//! // loop { stack.poll(now); app.poll(&mut stack, ...); sleep(stack.poll_delay(now)) }
//! # stack.poll(Instant::ZERO);
//! ```
//!
//! # Contract of the embedded-nal calls
//!
//! embedded-nal leaves EOF and peer-closed unspecified; this stack answers as follows.
//!
//! | call | answer |
//! | --- | --- |
//! | `socket` | a free pool socket, or [`Error::NoFreeSocket`] |
//! | `connect` | `WouldBlock` while SYN-SENT; `Ok(())` once established; [`Error::ConnectFailed`] (kind `Other`) if refused or after [`TcpOptions::connect_timeout`] |
//! | `send` | `Ok(n)`, maybe `n < len` (only what fits the transmit buffer); `WouldBlock` when it is full or the handshake is still running; [`Error::ConnectionClosed`] (kind `PipeClosed`) once the connection cannot send: reset, timed out. Sending after the peer's FIN works (half-close). |
//! | `receive` | `Ok(n > 0)` with data; `WouldBlock` when none has arrived yet; `Ok(0)` only at EOF (the peer's FIN received and every byte read), or for an empty buffer; [`Error::ConnectionClosed`] (kind `PipeClosed`) once reset or timed out (bytes received before a reset are still returned first) |
//! | `bind` + `listen` | the handle becomes a listener keeping `backlog` pool sockets in LISTEN on the port (a connection that arrives is replaced by a free socket at the end of that `poll`); [`Error::AddressInUse`] if the port has one |
//! | `accept` | of the connections that completed their handshake (or already got the peer's FIN), the one that arrived first; `WouldBlock` if none has |
//! | `close` | a connection sends FIN after its queued data and returns to the pool when the close handshake ends (TIME-WAIT sockets are reused at once); a listener aborts its listening and unaccepted sockets |
//!
//! Sockets are a fixed pool of `N`: a server serving `c` clients with backlog `b` wants
//! `N >= c + b` (plus any client sockets). A socket still closing after
//! [`TcpOptions::reclaim_after`] is aborted when nothing else is free, so a long-running
//! server never runs out because of a peer that never finishes closing.
//!
//! # Hostile and vanished peers
//!
//! [`Stack::poll`] follows the listening sockets frame by frame, so what peers do cannot
//! take a listener's sockets for long:
//!
//! - A SYN from the address it is sent to (a LAND packet; loopback excepted), or from a
//!   source on none of the interface's subnets while it has no route, takes no socket and
//!   gets no answer.
//! - A connection that arrives is replaced in LISTEN by a free socket at the end of that
//!   poll. One that is reset or times out before `accept`, or whose handshake is still
//!   unfinished [`TcpOptions::handshake_timeout`] (5 s) after its SYN (a client gone
//!   mid-handshake, a spoofed address on the subnet that never answers ARP), gives its
//!   socket back to the pool, to listen again when the listener needs it; nothing more is
//!   sent to that peer. smoltcp may hold back such a socket's next answer for up to 1 s
//!   after an ARP request that went unanswered.
//! - Every connection, accepted, connected or waiting for `accept`, sends a keep-alive
//!   after [`TcpOptions::keep_alive`] (20 s) idle and ends when the peer stays silent for
//!   [`TcpOptions::timeout`] (180 s): `receive` and `send` then fail with
//!   [`Error::ConnectionClosed`] (kind `PipeClosed`), and `close` gives the socket back to
//!   the pool at once. A peer that is there answers keep-alives; its idle connection stays.
//!
//! # The board's own sockets
//!
//! The stack owns the [`SocketSet`](smoltcp::iface::SocketSet), so everything shares one
//! interface: [`Stack::add_socket`] adds a socket (a UDP DHCP server in AP mode, say),
//! [`Stack::sockets_mut`] / [`Stack::parts_mut`] serve it after each [`Stack::poll`].
//!
//! # On a host
//!
//! The `tap` example runs the echo core on a Linux TAP device through exactly the board's
//! path (embassy-net-tuntap -> [`DriverDevice`] -> smoltcp -> [`Stack`]); `tests/tap.rs`
//! checks it and the stack against the Linux kernel's TCP. Both need root and the network
//! namespace of `scripts/tap-netns.sh` (`tap-netns.sh test` runs them).
//!
//! # Features
//!
//! - `ipv6` (default): IPv6 peers (smoltcp `proto-ipv6`).
//! - `dhcpv4` (default): a DHCPv4 client, `Stack::enable_dhcpv4`.
//! - `medium-ip`: IP-medium drivers (TUN, PPP) in [`DriverDevice`].
//! - `echo` (default): [`Stack`] implements `echo::LocalAddress`, so that the `echo` server's
//!   screen shows the interface's `IP:PORT`.
//! - `log` or `defmt` (exclusive): log socket role changes and leases.
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

#[macro_use]
mod fmt;

pub mod device;
pub mod error;
pub mod stack;

#[cfg(feature = "echo")]
mod role;

pub use device::DriverDevice;
pub use error::Error;
#[cfg(feature = "dhcpv4")]
pub use stack::Ipv4Lease;
pub use stack::{Stack, TcpOptions, TcpSocket};

pub use embassy_net_driver;
pub use embedded_nal;
pub use embedded_nal::{TcpClientStack, TcpFullStack};
pub use smoltcp;
