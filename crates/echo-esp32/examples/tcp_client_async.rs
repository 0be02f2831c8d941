//! The tutorial's TCP client as async firmware, the same behaviour as `tcp_client`: the board
//! joins the Wi-Fi network `SSID` (`PASSWORD`), connects to `HOST:PORT` (an IPv4 address, e.g.
//! a PC running `nc -lk 5001`), sends `hello MicroPython, I am TCP Client`, echoes whatever the
//! server sends and shows it on the OLED. It reconnects after failures, after the server
//! closes, and when DHCP gives the board a new address.
//!
//! On esp-rtos's embassy executor: embassy-net with its DHCP client, echo's async client over
//! `echo-embassy`, a task for the network and one for the Wi-Fi link (see `src/asynch.rs`).
//!
//! ESP32-C3 (default) or ESP32-C6 with an SSD1306 128x64 on I2C; built here, never run on a
//! board: `SSID=... PASSWORD=... HOST=192.168.1.10 cargo run --release --example tcp_client_async`.
#![no_std]
#![no_main]

use core::net::{SocketAddr, SocketAddrV4};

use echo_esp32::asynch::AsyncNetMemory;
use echo_esp32::echo::asynch::AsyncEchoClient;
use echo_esp32::echo::{ClientConfig, Duration, Reconnect, Screen, DEFAULT_BUFFER_SIZE};
use echo_esp32::settings::{parse_ipv4, parse_u16};
use echo_esp32::{Board, Credentials};
use embassy_executor::Spawner;
use static_cell::ConstStaticCell;

const CREDENTIALS: Credentials = Credentials::new(env!("SSID"), env!("PASSWORD"));
const SERVER: SocketAddr = SocketAddr::V4(SocketAddrV4::new(
    parse_ipv4(env!("HOST")),
    parse_u16(env!("PORT")),
));
/// Pooled TCP sockets: the connection, and a spare while the previous one finishes closing.
const POOL: usize = 2;
/// embassy-net's socket table: the pool and the DHCP client.
const SOCKETS: usize = POOL + 1;

static MEMORY: ConstStaticCell<AsyncNetMemory<POOL, SOCKETS>> =
    ConstStaticCell::new(AsyncNetMemory::new());

#[esp_rtos::main]
async fn main(spawner: Spawner) -> ! {
    let station = Board::init().station_async(spawner, MEMORY.take(), CREDENTIALS);

    let mut buffer = [0; DEFAULT_BUFFER_SIZE];
    let config = ClientConfig::new(SERVER)
        .with_connect_timeout(Some(Duration::from_secs(10)))
        .with_reconnect(Some(Reconnect::new()));
    station
        .run(Screen::client(), AsyncEchoClient::new(config, &mut buffer))
        .await
}
