//! The tutorial's TCP server as async firmware, the same behaviour as `tcp_server`: the board
//! joins the Wi-Fi network `SSID` (`PASSWORD`), listens on `PORT` (default 5001), shows
//! `IP:PORT` and `accepting.....` on the OLED, echoes up to 3 clients at once and shows the
//! last received text on the bottom row. It reconnects when the Wi-Fi link drops, and listens
//! again when DHCP gives it a new address.
//!
//! On esp-rtos's embassy executor: embassy-net with its DHCP client, echo's async server over
//! `echo-embassy`, a task for the network and one for the Wi-Fi link (see `src/asynch.rs`).
//!
//! ESP32-C3 (default) or ESP32-C6 with an SSD1306 128x64 on I2C; built here, never run on a
//! board: `SSID=... PASSWORD=... cargo run --release --example tcp_server_async`.
#![no_std]
#![no_main]

use echo_esp32::asynch::AsyncNetMemory;
use echo_esp32::echo::asynch::AsyncEchoServer;
use echo_esp32::echo::{Screen, ServerConfig, DEFAULT_BUFFER_SIZE};
use echo_esp32::{settings::parse_u16, Board, Credentials};
use embassy_executor::Spawner;
use static_cell::ConstStaticCell;

const CREDENTIALS: Credentials = Credentials::new(env!("SSID"), env!("PASSWORD"));
const PORT: u16 = parse_u16(env!("PORT"));
/// The tutorial's `listen(3)`.
const CLIENTS: usize = 3;
/// Accepts kept pending while 3 clients are served: embassy-net has no listen backlog, and
/// refuses a client that finds no socket accepting.
const BACKLOG: usize = 1;
/// Pooled TCP sockets: every client served or waiting, and two for connections still closing.
const POOL: usize = CLIENTS + BACKLOG + 2;
/// embassy-net's socket table: the pool and the DHCP client.
const SOCKETS: usize = POOL + 1;

static MEMORY: ConstStaticCell<AsyncNetMemory<POOL, SOCKETS>> =
    ConstStaticCell::new(AsyncNetMemory::new());

#[esp_rtos::main]
async fn main(spawner: Spawner) -> ! {
    let station = Board::init().station_async(spawner, MEMORY.take(), CREDENTIALS);

    let mut buffer = [0; CLIENTS * DEFAULT_BUFFER_SIZE];
    let config = ServerConfig::new().with_port(PORT);
    let server = AsyncEchoServer::<CLIENTS, BACKLOG>::new(config, &mut buffer);
    station.run(Screen::server(), server).await
}
