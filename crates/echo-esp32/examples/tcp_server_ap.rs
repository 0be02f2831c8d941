//! The tutorial's `enable_APWiFi` server: the board makes its own Wi-Fi network `AP_SSID`
//! (WPA2 with `AP_PASSWORD`, open if empty) on channel `AP_CHANNEL`, at 192.168.4.1/24, with
//! a DHCP server handing out 192.168.4.2 to .11, so a phone that joins gets an address and can
//! connect to 192.168.4.1:`PORT` (default 5001). Then the same echo server as `tcp_server`.
//!
//! ESP32-C3 (default) or ESP32-C6 with an SSD1306 128x64 on I2C; built here, never run on a
//! board: `AP_SSID=... AP_PASSWORD=... cargo run --release --example tcp_server_ap`.
#![no_std]
#![no_main]

use echo_esp32::echo::{EchoServer, Screen, ServerConfig, Slot, DEFAULT_BUFFER_SIZE};
use echo_esp32::settings::{parse_channel, parse_u16, wpa2_password};
use echo_esp32::{AccessPoint, Board, NetMemory};

const AP: AccessPoint = AccessPoint::new(
    env!("AP_SSID"),
    wpa2_password(env!("AP_PASSWORD")),
    parse_channel(env!("AP_CHANNEL")),
);
const PORT: u16 = parse_u16(env!("PORT"));
const CLIENTS: usize = 3;

#[esp_hal::main]
fn main() -> ! {
    let mut memory = NetMemory::<{ CLIENTS + 1 }>::new();
    let runner = Board::init().access_point(&mut memory, AP);

    let mut slots = [const { Slot::new() }; CLIENTS];
    let mut buffer = [0; CLIENTS * DEFAULT_BUFFER_SIZE];
    let config = ServerConfig::new().with_port(PORT);
    runner.run(
        Screen::server(),
        EchoServer::new(config, &mut slots, &mut buffer),
    )
}
