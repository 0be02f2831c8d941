//! The tutorial's TCP server on a PC (the host board, `echo-std`): listen on port 5001, show
//! the address, the clients and the last text received on the 128x64 OLED (drawn in the
//! terminal when stderr is one), and send every byte straight back. Unlike the tutorial, it
//! serves three clients at once, never loses a byte on a partial send, and never dies on
//! bytes that are not UTF-8.
//!
//! Run `cargo run --example tcp_server [-- PORT]`, then `cargo run --example tcp_client` or
//! `nc 127.0.0.1 5001` in another terminal.

use echo::{EchoServer, Screen, ServerConfig, Slot};
use echo_std::{Board, DisplayMode, StdStack};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = ServerConfig::default();
    if let Some(port) = std::env::args().nth(1) {
        config.port = port.parse()?;
    }
    let mut board = Board::new(StdStack::new()?, DisplayMode::Auto.open());
    // The tutorial's listen(3) and recv(1024): three clients, 1 KiB each.
    let mut slots = [const { Slot::new() }; 3];
    let mut buffer = [0; 3 * 1024];
    let mut server = EchoServer::new(config, &mut slots, &mut buffer);
    let mut screen = Screen::server();
    loop {
        let now = board.now();
        let progress = server.poll(board.stack(), now, |event| screen.update(&event))?;
        board.show(&mut screen, String::new)?;
        if !progress {
            board.wait(None)?;
        }
    }
}
