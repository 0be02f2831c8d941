//! Board support for the `echo` examples on ESP32-C3 and ESP32-C6: Wi-Fi station or access
//! point, smoltcp through `echo-smoltcp`, a 128x64 SSD1306 OLED on I2C0 at 400 kHz.
//!
//! The examples (`examples/`) are the tutorial's programs; this crate holds everything they
//! share so that each is a page:
//!
//! ```ignore
//! let mut memory = NetMemory::<4>::new();                 // sockets, in main's frame
//! let runner = Board::init().station(&mut memory, CREDENTIALS);
//! let server = EchoServer::new(config, &mut slots, &mut buffer);
//! runner.run(Screen::server(), server)                    // never returns
//! ```
//!
//! - [`Board::init`]: clocks, heap, esp-rtos, the OLED (pins from `OLED_SDA`/`OLED_SCL` at
//!   build time, see `build.rs`), the radio.
//! - [`Board::station`] / [`Board::access_point`]: the smoltcp stack over the Wi-Fi
//!   interface; the station gets its address by DHCP, the access point is 192.168.4.1/24 and
//!   runs a DHCP server for 192.168.4.2 to .11.
//! - [`Runner::run`]: the one loop, for either echo role ([`echo::Role`]) in either [`Mode`].
//!   The station connects with a 15 s timeout per attempt and retries forever (1 s, 2 s, 4 s
//!   ... 30 s apart); when the link drops it reconnects and asks DHCP afresh. A new address
//!   (with or without a link loss) restarts the role: the server listens again and shows the
//!   new `IP:PORT`, the client connects again; the same address keeps the connections. The
//!   access point closes every connection when it stops. Errors go to the log and the screen;
//!   credentials go to neither.
//!
//! The async examples (`tcp_server_async`, `tcp_client_async`) run the same station on
//! esp-rtos's embassy executor, embassy-net and echo's async roles: [`Board::station_async`]
//! and [`asynch::AsyncStation::run`], in [`asynch`].
//!
//! The hardware-independent parts (DHCP server, flush accounting, retry policy, settings
//! parsing) are in `echo-esp32-logic` (`logic/`), tested on the host.
#![no_std]

pub mod asynch;
mod display;
mod net;
mod runner;
pub mod wifi;

pub use display::Display;
pub use echo;
pub use echo_esp32_logic as logic;
pub use echo_esp32_logic::settings;
pub use net::{Net, NetMemory, TCP_RX, TCP_TX};
pub use runner::{
    AccessPointMode, Mode, Parts, Runner, StationMode, Supervised, AP_ADDRESS, AP_POOL,
};
pub use wifi::{AccessPoint, Credentials};

use echo::{Duration, Instant};
use esp_hal::{
    clock::CpuClock,
    i2c::master::{Config as I2cConfig, I2c},
    time::Rate,
    timer::timg::TimerGroup,
};
use esp_radio::wifi::{Interface, WifiController};
use log::info;

use esp_backtrace as _;

esp_bootloader_esp_idf::esp_app_desc!();

/// Time since boot on the chip's timer, for the echo roles and the screen pacing.
pub fn now() -> Instant {
    Instant::from_micros(
        esp_hal::time::Instant::now()
            .duration_since_epoch()
            .as_micros(),
    )
}

pub(crate) fn smoltcp_now() -> echo_smoltcp::smoltcp::time::Instant {
    echo_smoltcp::smoltcp::time::Instant::from_micros(now().as_micros() as i64)
}

/// The chip, set up: the display and the radio's controller.
pub struct Board {
    display: Display,
    wifi: WifiController<'static>,
}

impl Board {
    /// Brings the chip up: maximum CPU clock, heap (64 KiB reclaimed from the bootloader plus
    /// 36 KiB), logger (`ESP_LOG` at build time), esp-rtos, the OLED, the radio.
    ///
    /// # Panics
    /// If the radio cannot be initialised (nothing useful can run without it).
    pub fn init() -> Board {
        esp_println::logger::init_logger_from_env();
        let peripherals = esp_hal::init(esp_hal::Config::default().with_cpu_clock(CpuClock::max()));
        esp_alloc::heap_allocator!(#[esp_hal::ram(reclaimed)] size: 64 * 1024);
        esp_alloc::heap_allocator!(size: 36 * 1024);
        esp_rtos::start(
            TimerGroup::new(peripherals.TIMG0).timer0,
            peripherals.FROM_CPU_INTR0,
        );

        let (sda, scl) = include!(concat!(env!("OUT_DIR"), "/oled_pins.rs"));
        let i2c = I2c::new(
            peripherals.I2C0,
            I2cConfig::default().with_frequency(Rate::from_hz(logic::oled::BUS_HZ)),
        )
        .expect("400 kHz is a valid I2C clock")
        .with_sda(sda)
        .with_scl(scl);
        let display = Display::new(i2c);

        let wifi =
            WifiController::new(peripherals.WIFI, Default::default()).expect("the radio starts");
        info!("board: up");
        Board { display, wifi }
    }

    /// The board as a Wi-Fi station of `credentials`' network, on a stack of `N` TCP sockets.
    pub fn station<'a, const N: usize>(
        self,
        memory: &'a mut NetMemory<'a, N>,
        credentials: Credentials,
    ) -> Runner<'a, StationMode, N> {
        let (stack, _) = net::stack(Interface::station(), memory, false);
        Runner::station(self.display, self.wifi, stack, &credentials)
    }

    /// The board as the access point `ap` (192.168.4.1/24 with a DHCP server), on a stack of
    /// `N` TCP sockets.
    pub fn access_point<'a, const N: usize>(
        self,
        memory: &'a mut NetMemory<'a, N>,
        ap: AccessPoint,
    ) -> Runner<'a, AccessPointMode, N> {
        let (stack, udp) = net::stack(Interface::access_point(), memory, true);
        let udp = udp.expect("asked for the DHCP server's socket");
        Runner::access_point(self.display, self.wifi, stack, udp, ap)
    }
}
