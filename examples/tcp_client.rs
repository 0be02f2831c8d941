//! The tutorial's TCP client on a PC (the host board, `echo-std`): connect to the server on
//! port 5001, send `hello MicroPython, I am TCP Client`, then show what comes back on the
//! 128x64 OLED (drawn in the terminal when stderr is one) and send it straight back, until
//! the server closes the connection. Against the tutorial's server the greeting goes back and
//! forth forever, as on the boards.
//!
//! Run `cargo run --example tcp_client [-- SERVER_IP[:PORT]]` (default 127.0.0.1:5001), e.g.
//! against `cargo run --example tcp_server`. `ECHO_DISPLAY=png:oled.png` draws the OLED into a
//! PNG file instead (or `none`).

use std::ops::ControlFlow;

use echo::{ClientConfig, EchoClient, Screen};
use echo_std::{Board, DisplayMode, StdStack};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = echo_std::server_from_args()?;
    let mut board = Board::new(StdStack::new()?, DisplayMode::from_env()?.open());
    let mut buffer = [0; 1024];
    let mut client = EchoClient::new(ClientConfig::new(server), &mut buffer);
    board.run(&mut client, &mut Screen::client(), |_| {
        ControlFlow::Continue(())
    })?;
    Ok(())
}
