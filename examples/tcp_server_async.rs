//! The tutorial's TCP server on a PC on the async engine: the same server as `tcp_server`
//! (port 5001, `IP:PORT` and `accepting.....` on the 128x64 OLED, drawn in the terminal when
//! stderr is one, three clients at once, every byte straight back), written with the core's
//! async roles (`echo::asynch`) as firmware on an executor would, on the host board's
//! `AsyncStack` and async-io.
//!
//! Run `cargo run --example tcp_server_async [-- PORT]`, then `cargo run --example tcp_client`
//! or `nc 127.0.0.1 5001` in another terminal.
//! `ECHO_DISPLAY=png:oled.png` draws the OLED into a PNG file instead (or `none`).

use std::ops::ControlFlow;

use echo::asynch::AsyncEchoServer;
use echo::{Screen, ServerConfig};
use echo_std::{AsyncStack, Board, DisplayMode};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = ServerConfig::new();
    if let Some(port) = std::env::args().nth(1) {
        config.port = port.parse()?;
    }
    let mut board = Board::new(AsyncStack::new(), DisplayMode::from_env()?.open());
    // Three clients at once (the server's `N`), 1 KiB each (the tutorial's `recv(1024)`).
    let mut buffer = [0; 3 * 1024];
    let mut server = AsyncEchoServer::<3>::new(config, &mut buffer);
    board.run(&mut server, &mut Screen::server(), |_| {
        ControlFlow::Continue(())
    })?;
    Ok(())
}
