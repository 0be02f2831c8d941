//! What the fuzz targets check, as functions of the fuzzer's bytes: each `check` panics when a
//! property does not hold. The fuzz targets (`fuzz/fuzz_targets/`, cargo-fuzz, outside the
//! workspace) call them; `tests/corpora.rs` replays the committed seed corpora and every input
//! a fuzzer once failed on (`fuzz/regressions/`), in the ordinary `cargo test`.
//!
//! - [`dhcp`]: the access point's DHCP server on packets and sequences of packets from several
//!   clients: no panic, leases only in the pool and at most one per client, a packet that does
//!   not parse changes no lease.
//! - [`roles`]: `EchoServer` and `EchoClient` against a stack driven by the bytes (which calls
//!   block, partial sends, both EOF conventions, errors, accept and connect failures, the data):
//!   no panic, no I/O on a closed socket, and every connection gets back exactly a prefix of
//!   what it sent, in order.
//! - [`asynch`]: `AsyncEchoServer` and `AsyncEchoClient` against an async stack driven by the
//!   bytes (pending or ready, partial writes, resets, errors, slow closes, failures of bind,
//!   accept and connect), stopped when the bytes run out: no panic, no I/O after a close, every
//!   connection gets back a prefix of what it sent, at most `N` served at once, every server
//!   connection closed or aborted explicitly, nothing open after the stop.
//! - [`screen`]: `Utf8Decoder` and `Screen` on arbitrary bytes: the decoder agrees with
//!   `String::from_utf8_lossy`, no pixel leaves the 128x64 panel, and the screen shows the
//!   end of the text that fits.
//! - [`smoltcp`]: `echo-smoltcp`'s stack serving the echo server while arbitrary Ethernet
//!   frames arrive: no panic, and once the peers are quiet every socket is free or listening.

pub mod asynch;
pub mod dhcp;
pub mod roles;
pub mod screen;
pub mod smoltcp;

/// The fuzzer's bytes, read front to back; zeros once they run out.
pub struct Bytes<'a> {
    data: &'a [u8],
}

impl<'a> Bytes<'a> {
    /// Reads `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Bytes { data }
    }

    /// Whether every byte was read.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The next byte (0 past the end).
    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&first, rest)) => {
                self.data = rest;
                first
            }
            None => 0,
        }
    }

    /// The next two bytes, big-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }

    /// The next four bytes, big-endian.
    pub fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }

    /// The next `len` bytes (fewer at the end).
    pub fn take(&mut self, len: usize) -> &'a [u8] {
        let (taken, rest) = self.data.split_at(len.min(self.data.len()));
        self.data = rest;
        taken
    }
}
