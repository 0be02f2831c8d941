//! The tutorial's TCP client on a PC (the host board, `echo-std`): connect to the server on
//! port 5001, send `hello MicroPython, I am TCP Client`, then show what comes back on the
//! 128x64 OLED (drawn in the terminal when stderr is one) and send it straight back, until
//! the server closes the connection. Against the tutorial's server the greeting goes back and
//! forth forever, as on the boards.
//!
//! Run `cargo run --example tcp_client [-- SERVER_IP[:PORT]]` (default 127.0.0.1:5001), e.g.
//! against `cargo run --example tcp_server`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use echo::{ClientConfig, EchoClient, Screen, DEFAULT_PORT};
use echo_std::{Board, DisplayMode, StdStack};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = match std::env::args().nth(1) {
        Some(address) => match address.parse::<IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, DEFAULT_PORT),
            Err(_) => address.parse()?,
        },
        None => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), DEFAULT_PORT),
    };
    let mut board = Board::new(StdStack::new()?, DisplayMode::Auto.open());
    let mut buffer = [0; 1024];
    let config = ClientConfig::new(server);
    let mut client = EchoClient::new(config, &mut buffer);
    let mut screen = Screen::client();
    while !client.is_finished() {
        let now = board.now();
        let progress = client.poll(board.stack(), now, |event| screen.update(&event))?;
        board.show(&mut screen, String::new)?;
        if !progress {
            board.wait_until(client.next_deadline())?;
        }
    }
    board.finish(&mut screen, String::new)?;
    Ok(())
}
