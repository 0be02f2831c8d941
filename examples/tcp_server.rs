//! The tutorial's TCP server on a PC (the host board, `echo-std`): listen on port 5001, show
//! `IP:PORT` (this machine's address) and `accepting.....`, the clients and the last text
//! received on the 128x64 OLED (drawn in the terminal when stderr is one), and send every byte
//! straight back. Unlike the tutorial, it serves three clients at once, never loses a byte on
//! a partial send, never dies on bytes that are not UTF-8, and opens its listener again if it
//! fails.
//!
//! Run `cargo run --example tcp_server [-- PORT]`, then `cargo run --example tcp_client` or
//! `nc 127.0.0.1 5001` in another terminal.
//! `ECHO_DISPLAY=png:oled.png` draws the OLED into a PNG file instead (or `none`).

use std::ops::ControlFlow;

use echo::{EchoServer, Screen, ServerConfig, Slot};
use echo_std::{Board, DisplayMode, StdStack};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = ServerConfig::new();
    if let Some(port) = std::env::args().nth(1) {
        config.port = port.parse()?;
    }
    let mut board = Board::new(StdStack::new()?, DisplayMode::from_env()?.open());
    // Three clients at once, 1 KiB each (the tutorial's `recv(1024)`).
    let mut slots = [const { Slot::new() }; 3];
    let mut buffer = [0; 3 * 1024];
    let mut server = EchoServer::new(config, &mut slots, &mut buffer);
    board.run(&mut server, &mut Screen::server(), |_| {
        ControlFlow::Continue(())
    })?;
    Ok(())
}
