//! The part of the `echo-esp32` firmware that needs no chip, tested on the host.
//!
//! - [`address`]: whether the echo role must start over because the board's address changed.
//! - [`dhcp`]: the DHCP server of the soft access point (`tcp_server_ap`): a lease pool that
//!   turns a received datagram into the reply and where to send it, and [`dhcp::serve`], which
//!   runs it on the firmware's smoltcp UDP sockets.
//! - [`oled`]: the panel (SSD1306 or SH1106, through `echo-oled`) as the loop drives it: a new
//!   picture at most every 50 ms, sent one page per loop turn, a failing panel retried.
//! - [`wifi`]: when to (re)connect the station: attempt timeout, retries with backoff, link loss.
//! - [`settings`]: `const fn` parsers for the settings the examples take from build-time env.
//! - [`text`]: [`text::ShortText`], a fixed-size status line for logs and the screen.
//!
//! The firmware (`crates/echo-esp32`) owns the chip: it feeds these types the clock, the radio's
//! link state and the UDP sockets.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[macro_use]
mod fmt;

pub mod address;
pub mod dhcp;
pub mod oled;
pub mod settings;
pub mod text;
pub mod wifi;

pub use echo::{Duration, Instant};
pub use {echo_oled, smoltcp};
