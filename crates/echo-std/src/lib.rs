//! Host board for the `echo` library: everything the tutorial's programs need on a PC.
//!
//! - [`StdStack`] ([`stack`]): embedded-nal's `TcpClientStack` + `TcpFullStack` over
//!   non-blocking std sockets, with [`StdStack::wait`] so a poll loop sleeps on socket
//!   readiness instead of spinning.
//! - [`AsyncStack`] ([`asynch`]): the same sockets for the async echo roles
//!   ([`echo::asynch`]): edge-nal's `TcpBind`/`TcpAccept` with an acceptor of its own,
//!   `BindAddress`, embedded-nal-async's `TcpConnect`, on async-io.
//! - [`Error`] ([`error`]): both stacks' error, an `io::Error` with what was being done.
//! - [`StdClock`]: the board's clock, and the async roles' `Clock` on async-io's timers.
//! - [`display`]: the 128x64 OLED on a PC: a [`FrameBuffer`](display::FrameBuffer) to draw
//!   on, shown in the terminal ([`TerminalDisplay`](display::TerminalDisplay)) or as a PNG
//!   file ([`PngDisplay`](display::PngDisplay)).
//! - [`Board`] ([`board`]): the host as the tutorial's board: stack, clock and display, and
//!   `run`, the one loop that runs an echo role (server or client) on it, for each engine:
//!   [`Board::run`] polls the non-blocking roles on a [`StdStack`], [`Board<AsyncStack>::run`]
//!   drives the async roles ([`echo::asynch::AsyncRole`]) on async-io's executor.
//! - [`ServerLoops`] ([`loops`]): the echo server as several such loops on threads, on one
//!   port (a [`SharedListener`] hands each client to the loop serving the fewest), with one
//!   display.
//! - [`check`] (feature `check`): the conformance and load test of any TCP echo server or
//!   client, `echo-std check`.
//!
//! The `echo-std` program (`src/main.rs`, feature `cli`) runs the echo server or client
//! from the command line, and checks others.
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod asynch;
pub mod board;
#[cfg(feature = "check")]
pub mod check;
pub mod display;
pub mod error;
pub mod loops;
pub mod stack;

mod clock;

pub use asynch::AsyncStack;
pub use board::{
    server_from_args, Board, Display, DisplayMode, RunError, Stopper, ASYNC_MAX_CLIENTS,
};
pub use clock::StdClock;
pub use error::Error;
pub use loops::{LoopsConfig, ServerLoops};
pub use stack::{Notifier, SharedListener, StdStack, TcpSocket};

pub use echo;
pub use embedded_nal;
