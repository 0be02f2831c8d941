//! TCP echo for embedded boards: the mPython "Socket-TCP" tutorial's server and client, done
//! right, over any [`embedded_nal`] stack and any `embedded_graphics` display.
//!
//! - [`EchoServer`] (over a [`TcpFullStack`](embedded_nal::TcpFullStack)): listens on port
//!   5001, serves several clients at once, echoes every byte back in order.
//! - [`EchoClient`] (over a [`TcpClientStack`](embedded_nal::TcpClientStack)): connects, sends
//!   the greeting `hello MicroPython, I am TCP Client`, echoes what the server sends.
//! - [`Event`]: what both report from `poll`, for logs and for the [`Screen`].
//! - [`Screen`]: the tutorial's 128x64 OLED layout on any `DrawTarget<Color = BinaryColor>`,
//!   with incremental UTF-8 decoding ([`Utf8Decoder`]).
//!
//! `no_std`, no allocation, no `unsafe`, no clock: buffers and slots come from the caller and
//! time is passed to `poll` as an [`Instant`].
//!
//! # What the tutorial did wrong, and what this does
//! - `send()` may write fewer bytes than given: unsent bytes are kept and that connection is
//!   not read again until they are gone (backpressure: nothing dropped, memory fixed).
//! - `data.decode()` raised on invalid or split UTF-8 and the bare `except` closed the server:
//!   here the echoed bytes are never decoded, only the screen decodes, incrementally and
//!   lossily.
//! - One client at a time: here up to as many as the caller gives slots; the others wait in
//!   the stack's backlog. A connection that fails or misbehaves ends alone.
//! - The display was drawn in the echo path: here events update a model and the board draws
//!   when it chooses, only the rows that changed.
//!
//! # The loop a board runs
//! ```text
//! let mut slots = [const { echo::Slot::new() }; echo::DEFAULT_MAX_CLIENTS];
//! let mut buffer = [0u8; echo::DEFAULT_MAX_CLIENTS * echo::DEFAULT_BUFFER_SIZE];
//! let mut server = echo::EchoServer::new(echo::ServerConfig::default(), &mut slots, &mut buffer);
//! let mut screen = echo::Screen::server();
//! loop {
//!     let now = board.now();
//!     let progress = server.poll(&mut stack, now, |event| screen.update(&event))?;
//!     if screen.is_dirty() && board.display_may_draw(now) {
//!         let area = screen.draw(&mut display)?;
//!         board.flush(area);
//!     }
//!     if !progress {
//!         board.wait_for_network();
//!     }
//! }
//! ```
//!
//! # Stack contract
//! embedded-nal 0.9 does not say what `receive` returns at end of stream. This crate needs:
//! - `receive`: `Err(WouldBlock)` when no data is available yet; `Ok(n > 0)` with data; end of
//!   stream (the peer's FIN, after all its data) is either `Ok(0)` or an error whose
//!   [`kind()`](embedded_nal::TcpError::kind) is `PipeClosed`. A stack that returns `Ok(0)` for
//!   "no data yet" (smoltcp-nal 0.7) must be configured with [`ZeroRead::NoData`]; its end of
//!   stream is then only seen as `PipeClosed`. The default, [`ZeroRead::Eof`], fits std sockets,
//!   std-embedded-nal, `echo-std` and `echo-smoltcp`.
//! - `send`: may be partial (`Ok(n)` with `n` < len) or `WouldBlock`; `PipeClosed` once the
//!   peer can no longer receive. Other errors end only that connection.
//! - `close` of an accepted socket: sends what the stack still buffers, then the FIN (a
//!   graceful close, so an echo handed to the stack reaches a peer that still reads).
//! - `accept`: `WouldBlock` when no connection is ready; any other error is treated as a
//!   failure of the listening socket, which is closed and re-opened on the next `poll`.
//! - `connect`: `WouldBlock` while in progress, `Ok(())` once established.
//!
//! # Features
//! - `log` or `defmt` (exclusive): log through that crate; silent by default.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

// The logging macros first, so every module below can use them.
#[macro_use]
mod fmt;

mod addr;
mod client;
mod error;
mod event;
mod link;
mod screen;
mod server;
mod time;
mod utf8;

#[cfg(test)]
mod testing;

pub use client::{ClientConfig, EchoClient, Reconnect, DEFAULT_GREETING};
pub use error::Error;
pub use event::{CloseReason, ConnId, Event};
pub use link::{Stats, ZeroRead};
pub use screen::{Line, Screen, COLUMNS, HEIGHT, ROWS, ROW_HEIGHT, SERVER_TEXT_ROW, WIDTH};
pub use server::{
    EchoServer, ServerConfig, Slot, DEFAULT_BUFFER_SIZE, DEFAULT_MAX_CLIENTS, DEFAULT_PORT,
};
pub use time::{Duration, Instant};
pub use utf8::Utf8Decoder;

pub use embedded_graphics;
pub use embedded_nal;
