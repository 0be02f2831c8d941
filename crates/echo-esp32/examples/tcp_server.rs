//! The tutorial's TCP server, in station mode: the board joins the Wi-Fi network `SSID`
//! (`PASSWORD`), listens on `PORT` (default 5001), shows `IP:PORT` and `accepting.....` on the
//! OLED, echoes up to 3 clients at once and shows the last received text on the bottom row.
//! If the Wi-Fi link drops it reconnects and listens again.
//!
//! ESP32-C3 (default) or ESP32-C6 with an SSD1306 128x64 on I2C; built here, never run on a
//! board: `SSID=... PASSWORD=... cargo run --release --example tcp_server`.
#![no_std]
#![no_main]

use echo_esp32::echo::{EchoServer, Screen, ServerConfig, Slot, DEFAULT_BUFFER_SIZE};
use echo_esp32::{settings::parse_u16, Board, Credentials, NetMemory};

const CREDENTIALS: Credentials = Credentials::new(env!("SSID"), env!("PASSWORD"));
const PORT: u16 = parse_u16(env!("PORT"));
/// The tutorial's `listen(3)`.
const CLIENTS: usize = 3;

#[esp_hal::main]
fn main() -> ! {
    // One pooled socket per client plus one listening for the next.
    let mut memory = NetMemory::<{ CLIENTS + 1 }>::new();
    let runner = Board::init().station(&mut memory, CREDENTIALS);

    let mut slots = [const { Slot::new() }; CLIENTS];
    let mut buffer = [0; CLIENTS * DEFAULT_BUFFER_SIZE];
    let config = ServerConfig::new().with_port(PORT);
    runner.run(
        Screen::server(),
        EchoServer::new(config, &mut slots, &mut buffer),
    )
}
