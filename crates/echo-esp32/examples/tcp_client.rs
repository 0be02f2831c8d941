//! The tutorial's TCP client, in station mode: the board joins the Wi-Fi network `SSID`
//! (`PASSWORD`), connects to `HOST:PORT` (an IPv4 address, e.g. a PC running
//! `nc -lk 5001`), sends `hello MicroPython, I am TCP Client`, echoes whatever the server
//! sends and shows it on the OLED. It reconnects after failures and after the server closes.
//!
//! ESP32-C3 (default) or ESP32-C6 with an SSD1306 128x64 on I2C; built here, never run on a
//! board: `SSID=... PASSWORD=... HOST=192.168.1.10 cargo run --release --example tcp_client`.
#![no_std]
#![no_main]

use core::net::{SocketAddr, SocketAddrV4};

use echo_esp32::echo::{
    ClientConfig, Duration, EchoClient, Reconnect, Screen, DEFAULT_BUFFER_SIZE,
};
use echo_esp32::settings::{parse_ipv4, parse_u16};
use echo_esp32::{Board, Credentials, NetMemory};

const CREDENTIALS: Credentials = Credentials::new(env!("SSID"), env!("PASSWORD"));
const SERVER: SocketAddr = SocketAddr::V4(SocketAddrV4::new(
    parse_ipv4(env!("HOST")),
    parse_u16(env!("PORT")),
));

#[esp_hal::main]
fn main() -> ! {
    // The connection, and a spare while the previous one finishes closing.
    let mut memory = NetMemory::<2>::new();
    let runner = Board::init().station(&mut memory, CREDENTIALS);

    let mut buffer = [0; DEFAULT_BUFFER_SIZE];
    let config = ClientConfig::new(SERVER)
        .with_connect_timeout(Some(Duration::from_secs(10)))
        .with_reconnect(Some(Reconnect::new()));
    runner.run(Screen::client(), EchoClient::new(config, &mut buffer))
}
