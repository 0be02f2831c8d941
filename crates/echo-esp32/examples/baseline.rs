//! Footprint reference, not one of the tutorial's programs: the smallest firmware with the same
//! parts as the examples (esp-radio station, smoltcp with a DHCP client and one TCP echo socket,
//! an SSD1306 showing a line of text, logs through esp-println), without this crate's board module or the echo roles.
//! `sizes.sh` compares `tcp_server` against it. ESP32-C3/C6; never run on hardware here.
#![no_std]
#![no_main]

use core::future::Future;
use echo::embedded_graphics::{
    mono_font::{ascii::FONT_6X10, MonoTextStyle},
    pixelcolor::BinaryColor,
    prelude::*,
    text::Text,
};
use echo_smoltcp::smoltcp::{
    iface::{Config as IfaceConfig, Interface as Iface, SocketSet, SocketStorage},
    socket::{dhcpv4, tcp},
    time::Instant,
    wire::IpCidr,
};

use echo_smoltcp::DriverDevice;
use esp_backtrace as _;
use esp_hal::{clock::CpuClock, i2c::master::I2c, main, time::Rate, timer::timg::TimerGroup};
use esp_radio::wifi::{
    sta::StationConfig, AuthenticationMethodConfig, Config, Interface, WifiController,
};
use ssd1306::{prelude::*, size::DisplaySize128x64, I2CDisplayInterface, Ssd1306};

esp_bootloader_esp_idf::esp_app_desc!();

fn now() -> Instant {
    Instant::from_micros(
        esp_hal::time::Instant::now()
            .duration_since_epoch()
            .as_micros() as i64,
    )
}

#[main]
fn main() -> ! {
    esp_println::logger::init_logger_from_env();
    let peripherals = esp_hal::init(esp_hal::Config::default().with_cpu_clock(CpuClock::max()));
    esp_alloc::heap_allocator!(#[esp_hal::ram(reclaimed)] size: 64 * 1024);
    esp_alloc::heap_allocator!(size: 36 * 1024);
    esp_rtos::start(
        TimerGroup::new(peripherals.TIMG0).timer0,
        peripherals.FROM_CPU_INTR0,
    );

    let config = esp_hal::i2c::master::Config::default().with_frequency(Rate::from_khz(400));
    let (sda, scl) = include!(concat!(env!("OUT_DIR"), "/oled_pins.rs"));
    let i2c = I2c::new(peripherals.I2C0, config)
        .unwrap()
        .with_sda(sda)
        .with_scl(scl);
    let mut display = Ssd1306::new(
        I2CDisplayInterface::new(i2c),
        DisplaySize128x64,
        DisplayRotation::Rotate0,
    )
    .into_buffered_graphics_mode();
    display.init().ok();

    let mut wifi = WifiController::new(peripherals.WIFI, Default::default()).unwrap();
    let station = StationConfig::default()
        .with_ssid(env!("SSID").try_into().unwrap())
        .with_authentication(AuthenticationMethodConfig::Wpa2Personal(
            env!("PASSWORD").try_into().unwrap(),
        ));
    wifi.set_config(&Config::Station(station)).unwrap();
    let mut device = DriverDevice::new(Interface::station()).unwrap();
    let mut connect = core::pin::pin!(wifi.connect_async());
    while connect
        .as_mut()
        .poll(&mut core::task::Context::from_waker(
            core::task::Waker::noop(),
        ))
        .is_pending()
    {}

    let mut iface = Iface::new(
        IfaceConfig::new(device.hardware_address()),
        &mut device,
        now(),
    );
    let mut storage = [SocketStorage::EMPTY; 2];
    let mut sockets = SocketSet::new(&mut storage[..]);
    let dhcp = sockets.add(dhcpv4::Socket::new());
    let (mut rx, mut tx) = ([0u8; 1536], [0u8; 1536]);
    let tcp = sockets.add(tcp::Socket::new(
        tcp::SocketBuffer::new(&mut rx[..]),
        tcp::SocketBuffer::new(&mut tx[..]),
    ));
    let style = MonoTextStyle::new(&FONT_6X10, BinaryColor::On);

    loop {
        iface.poll(now(), &mut device, &mut sockets);
        if let Some(dhcpv4::Event::Configured(config)) =
            sockets.get_mut::<dhcpv4::Socket>(dhcp).poll()
        {
            log::info!("address {}", config.address);
            iface.update_ip_addrs(|addrs| {
                addrs.clear();
                addrs.push(IpCidr::Ipv4(config.address)).ok();
            });
            Text::new("up", Point::new(0, 10), style)
                .draw(&mut display)
                .ok();
            display.flush().ok();
        }
        let socket = sockets.get_mut::<tcp::Socket>(tcp);
        if !socket.is_open() {
            socket.listen(5001).ok();
        }
        let mut buf = [0u8; 256];
        if let Ok(n) = socket.recv_slice(&mut buf) {
            socket.send_slice(&buf[..n]).ok();
        }
    }
}
