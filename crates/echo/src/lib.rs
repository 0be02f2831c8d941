//! TCP echo for embedded boards: the mPython "Socket-TCP" tutorial's server and client, done
//! right, over any [`embedded_nal`] stack and any `embedded_graphics` display.
//!
//! - [`Role`]: what a board runs; one loop runs either role.
//!   - [`EchoServer`] (over a [`TcpFullStack`](embedded_nal::TcpFullStack) that is also
//!     [`LocalAddress`]): listens on port 5001, serves several clients at once, echoes every
//!     byte back in order, re-opens a failing listener with [`Backoff`].
//!   - [`EchoClient`] (over a [`TcpClientStack`](embedded_nal::TcpClientStack)): connects,
//!     sends the greeting `hello MicroPython, I am TCP Client`, echoes what the server sends,
//!     reconnects if asked ([`Reconnect`]).
//! - [`Event`]: what the roles report from `poll`, for logs and for the [`Screen`]; [`Stats`]:
//!   their counters.
//! - [`Screen`]: the tutorial's 128x64 OLED on any `DrawTarget<Color = BinaryColor>`, laid out
//!   for the server ([`ServerLayout`]) or the client ([`ClientLayout`]), with incremental UTF-8
//!   decoding ([`Utf8Decoder`]).
//!
//! - `asynch` (feature `async`): the same server and client as futures, over edge-nal's
//!   `TcpBind`/`TcpAccept` and embedded-nal-async's `TcpConnect`, for firmware that runs an
//!   executor (embassy). Its docs say when to pick which.
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
//!   the stack's backlog. A connection that fails or misbehaves ends alone; a listener that
//!   fails is opened again.
//! - The display was drawn in the echo path: here events update a model and the board draws
//!   when it chooses, only the rows that changed.
//!
//! # The loop a board runs
//! One loop serves both roles; a board writes it once (`echo-std`'s `Board::run`,
//! `echo-esp32`'s `Runner::run`). With a stack, a display, a clock and a way to sleep:
//!
//! ```no_run
//! use echo::embedded_graphics::{pixelcolor::BinaryColor, prelude::DrawTarget};
//! use echo::embedded_nal::TcpFullStack;
//! use echo::{EchoServer, Instant, LocalAddress, Role, Screen, ServerConfig, Slot};
//!
//! fn serve<S, D>(
//!     stack: &mut S,
//!     display: &mut D,
//!     now: impl Fn() -> Instant,
//!     mut sleep_until: impl FnMut(Option<Instant>),
//! ) -> Result<(), echo::Error<S::Error>>
//! where
//!     S: TcpFullStack + LocalAddress,
//!     D: DrawTarget<Color = BinaryColor>,
//! {
//!     let mut slots = [const { Slot::new() }; echo::DEFAULT_MAX_CLIENTS];
//!     let mut buffer = [0u8; echo::DEFAULT_MAX_CLIENTS * echo::DEFAULT_BUFFER_SIZE];
//!     let mut server = EchoServer::new(ServerConfig::new(), &mut slots, &mut buffer);
//!     let mut screen = Screen::server();
//!     while !server.is_finished() {
//!         let progress = server.poll(stack, now(), |event| screen.update(&event))?;
//!         // After the poll, never inside it: the echo path does not wait for the display.
//!         let _ = screen.draw(display);
//!         if !progress {
//!             // Until the network wakes the board, or an idle timeout or backoff is due.
//!             sleep_until(server.next_deadline());
//!         }
//!     }
//!     Ok(())
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
//!   failure of the listening socket, which is closed and opened again after a backoff.
//! - `connect`: `WouldBlock` while in progress, `Ok(())` once established.
//! - [`LocalAddress`] (the server only): where clients reach the listening socket.
//!
//! # Features
//! - `log` or `defmt` (exclusive): log through that crate; silent by default. `defmt` also
//!   derives `defmt::Format` on the public types.
//! - `async`: the `asynch` module.
//! - `cjk`: Chinese on the screen (u8g2's 16-px WenQuanYi GB2312 font, about 300 KB).
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

// The logging macros first, so every module below can use them.
#[macro_use]
mod fmt;

mod addr;
#[cfg(feature = "async")]
pub mod asynch;
mod backoff;
mod client;
mod error;
mod event;
mod link;
mod role;
mod rules;
mod screen;
mod server;
mod stack;
mod time;
mod utf8;

#[cfg(test)]
mod testing;

pub use backoff::Backoff;
pub use client::{ClientConfig, EchoClient, Reconnect, DEFAULT_GREETING};
pub use error::Error;
pub use event::{CloseReason, ConnId, Event};
pub use role::{Role, Stats};
pub use rules::ROUNDS_PER_TURN;
pub use screen::{
    glyph_width, ClientLayout, Layout, Line, Screen, ServerLayout, COLUMNS, HEIGHT, ROWS,
    ROW_HEIGHT, SERVER_TEXT_ROW, WIDTH,
};
pub use server::{
    EchoServer, ServerConfig, Slot, DEFAULT_BUFFER_SIZE, DEFAULT_MAX_CLIENTS, DEFAULT_PORT,
};
pub use stack::{LocalAddress, ZeroRead};
pub use time::{Duration, Instant};
pub use utf8::Utf8Decoder;

pub use embedded_graphics;
pub use embedded_nal;
