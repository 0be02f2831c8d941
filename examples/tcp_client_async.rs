//! The tutorial's TCP client on a PC on the async engine: the same client as `tcp_client`
//! (connect to port 5001, send `hello MicroPython, I am TCP Client`, show what comes back on
//! the 128x64 OLED and send it straight back until the server closes), written with the
//! core's async roles (`echo::asynch`) on the host board's `AsyncStack` and async-io.
//!
//! Run `cargo run --example tcp_client_async [-- SERVER_IP[:PORT]]` (default 127.0.0.1:5001),
//! e.g. against `cargo run --example tcp_server_async`. `ECHO_DISPLAY=png:oled.png` draws the
//! OLED into a PNG file instead (or `none`).

use std::ops::ControlFlow;

use echo::asynch::AsyncEchoClient;
use echo::{ClientConfig, Screen};
use echo_std::{AsyncStack, Board, DisplayMode};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = echo_std::server_from_args()?;
    let mut board = Board::new(AsyncStack::new(), DisplayMode::from_env()?.open());
    let mut buffer = [0; 1024];
    let mut client = AsyncEchoClient::new(ClientConfig::new(server), &mut buffer);
    board.run(&mut client, &mut Screen::client(), |_| {
        ControlFlow::Continue(())
    })?;
    Ok(())
}
