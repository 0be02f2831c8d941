//! The 128x64 SSD1306 on I2C, and what a flush costs on the bus.
//!
//! The display runs in ssd1306's buffered graphics mode: drawing only changes the frame buffer
//! and widens its dirty rectangle, and [`Ssd1306::flush`] sends that rectangle, rounded to
//! 8-row pages. [`echo::Screen`] redraws only the 16-px rows that changed, so a new line of
//! received text costs 2 pages (256 bytes) instead of the full frame (1024 bytes).
//!
//! [`FlushPacer`] limits how often the firmware flushes, so that a fast stream of received
//! bytes does not spend the loop on I2C; the screen model keeps the latest text meanwhile.

use core::{cell::Cell, convert::Infallible};

use embedded_hal::i2c::{ErrorType, I2c, Operation, SevenBitAddress};
use ssd1306::{
    mode::BufferedGraphicsMode, prelude::*, size::DisplaySize128x64, I2CDisplayInterface, Ssd1306,
};

pub use ssd1306::mode::DisplayConfig;

use crate::{Duration, Instant};

/// The display's I2C address (SA0 low), the one the tutorial's board uses.
pub const ADDRESS: u8 = 0x3C;

/// The I2C clock the display is driven at.
pub const BUS_HZ: u32 = 400_000;

/// The display over I2C bus `I`, buffered.
pub type Oled<I> =
    Ssd1306<I2CInterface<I>, DisplaySize128x64, BufferedGraphicsMode<DisplaySize128x64>>;

/// The display at [`ADDRESS`] on `i2c`, not yet initialised (call `init()`, then flush).
pub fn oled<I>(i2c: I) -> Oled<I>
where
    I: I2c,
{
    Ssd1306::new(
        I2CDisplayInterface::new_custom_address(i2c, ADDRESS),
        DisplaySize128x64,
        DisplayRotation::Rotate0,
    )
    .into_buffered_graphics_mode()
}

/// Decides when the firmware may flush: at most once per `interval`.
#[derive(Clone, Copy, Debug)]
pub struct FlushPacer {
    interval: Duration,
    next: Instant,
}

impl FlushPacer {
    /// A pacer that allows a flush right away, then one per `interval`.
    pub const fn new(interval: Duration) -> Self {
        FlushPacer {
            interval,
            next: Instant::ZERO,
        }
    }

    /// Whether a flush may happen at `now`; if so, the next one may happen `interval` later.
    pub fn ready(&mut self, now: Instant) -> bool {
        if now < self.next {
            return false;
        }
        self.next = now + self.interval;
        true
    }
}

/// An I2C bus with no device behind it that counts what is written to it.
///
/// Every write is acknowledged; reads return zeros. The counters sit in `Cell`s so that a
/// display can own `&CountingI2c` while the test or bench reads them between flushes:
///
/// ```
/// use echo_esp32_logic::oled::{oled, CountingI2c, DisplayConfig};
/// let bus = CountingI2c::new();
/// let mut display = oled(&bus);
/// display.init().unwrap();
/// bus.reset();
/// display.flush().unwrap(); // init cleared the buffer: the whole frame goes out
/// assert!(bus.bytes_written() > 1024);
/// bus.reset();
/// display.flush().unwrap(); // nothing drawn since: nothing sent
/// assert_eq!(bus.wire_bytes(), 0);
/// ```
#[derive(Debug, Default)]
pub struct CountingI2c {
    transactions: Cell<usize>,
    bytes_written: Cell<usize>,
}

impl CountingI2c {
    /// A bus that has seen nothing.
    pub const fn new() -> Self {
        CountingI2c {
            transactions: Cell::new(0),
            bytes_written: Cell::new(0),
        }
    }

    /// Transactions since the last reset (each is a start condition and an address byte).
    pub fn transactions(&self) -> usize {
        self.transactions.get()
    }

    /// Bytes written since the last reset, not counting the address bytes.
    pub fn bytes_written(&self) -> usize {
        self.bytes_written.get()
    }

    /// Bytes on the wire: the written bytes plus one address byte per transaction.
    pub fn wire_bytes(&self) -> usize {
        self.bytes_written() + self.transactions()
    }

    /// How long the bus was busy at `bus_hz`: 9 clocks per byte (8 bits and the acknowledge)
    /// plus about 2 for the start and stop conditions of each transaction.
    pub fn bus_time(&self, bus_hz: u32) -> Duration {
        let clocks = self.wire_bytes() as u64 * 9 + self.transactions() as u64 * 2;
        Duration::from_nanos(clocks * 1_000_000_000 / u64::from(bus_hz))
    }

    /// Sets the counters back to zero.
    pub fn reset(&self) {
        self.transactions.set(0);
        self.bytes_written.set(0);
    }

    fn record(&self, operations: &mut [Operation<'_>]) {
        self.transactions.set(self.transactions.get() + 1);
        for operation in operations {
            match operation {
                Operation::Write(bytes) => self
                    .bytes_written
                    .set(self.bytes_written.get() + bytes.len()),
                Operation::Read(buffer) => buffer.fill(0),
            }
        }
    }
}

impl ErrorType for CountingI2c {
    type Error = Infallible;
}

impl I2c<SevenBitAddress> for CountingI2c {
    fn transaction(
        &mut self,
        _address: SevenBitAddress,
        operations: &mut [Operation<'_>],
    ) -> Result<(), Self::Error> {
        self.record(operations);
        Ok(())
    }
}

impl ErrorType for &CountingI2c {
    type Error = Infallible;
}

impl I2c<SevenBitAddress> for &CountingI2c {
    fn transaction(
        &mut self,
        _address: SevenBitAddress,
        operations: &mut [Operation<'_>],
    ) -> Result<(), Self::Error> {
        self.record(operations);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::{IpAddr, Ipv4Addr, SocketAddr};
    use echo::{ConnId, Event, Screen, ServerLayout};

    type ServerScreen = Screen<ServerLayout>;

    /// A display showing the server screen, flushed once, with the bus counters reset.
    fn server_display(bus: &CountingI2c) -> (Oled<&CountingI2c>, ServerScreen) {
        let mut display = oled(bus);
        display.init().unwrap();
        let mut screen = Screen::server();
        screen.update::<()>(&Event::Listening {
            local: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 168, 4, 1)), 5001),
        });
        screen.draw(&mut display).unwrap();
        display.flush().unwrap();
        bus.reset();
        (display, screen)
    }

    /// Bytes a flush of a window `columns` wide and `pages` high writes: ssd1306 sends each
    /// page's columns, which display-interface-i2c splits into 16-byte chunks behind a control
    /// byte.
    fn window_bytes(columns: usize, pages: usize) -> usize {
        pages * (columns + columns.div_ceil(16))
    }

    /// Checks that the flush sent that window and, besides it, only the window commands.
    fn assert_window(bus: &CountingI2c, columns: usize, pages: usize) {
        let commands = bus
            .bytes_written()
            .checked_sub(window_bytes(columns, pages));
        assert!(
            commands.is_some_and(|commands| commands <= 16),
            "not a {columns}x{pages}-page window: {bus:?}"
        );
    }

    fn received(screen: &mut ServerScreen, text: &str) {
        screen.update::<()>(&Event::Received {
            conn: ConnId(1),
            bytes: text.as_bytes(),
        });
    }

    /// Draws and flushes what changed; returns the bytes on the wire.
    fn flush(
        display: &mut Oled<&CountingI2c>,
        screen: &mut ServerScreen,
        bus: &CountingI2c,
    ) -> usize {
        bus.reset();
        screen.draw(display).unwrap();
        display.flush().unwrap();
        bus.wire_bytes()
    }

    #[test]
    fn received_text_sends_only_its_columns_of_the_two_bottom_pages() {
        let bus = CountingI2c::new();
        let (mut display, mut screen) = server_display(&bus);

        received(&mut screen, "hello");
        let area = screen.draw(&mut display).unwrap().unwrap();
        display.flush().unwrap();

        assert_eq!(area.top_left.y, 48);
        assert_eq!(area.size.height, 16);
        assert_window(&bus, 5 * 6, 2);
    }

    #[test]
    fn a_full_width_line_sends_the_two_bottom_pages() {
        let bus = CountingI2c::new();
        let (mut display, mut screen) = server_display(&bus);
        received(&mut screen, "hello MicroPython, I am TCP Client");
        flush(&mut display, &mut screen, &bus);
        assert_window(&bus, 21 * 6, 2);
    }

    #[test]
    fn one_row_costs_about_a_quarter_of_a_full_frame_and_a_short_line_far_less() {
        let bus = CountingI2c::new();
        let (mut display, mut screen) = server_display(&bus);
        received(&mut screen, "hello MicroPython, I am TCP Client");
        let one_row = flush(&mut display, &mut screen, &bus);
        // Pixel data: 126 of 128 columns in 2 of 8 pages.
        assert_window(&bus, 21 * 6, 2);
        // A short line after the long one clears the long one's columns; after a short one,
        // only its own.
        received(&mut screen, "hello");
        flush(&mut display, &mut screen, &bus);
        assert_window(&bus, 21 * 6, 2);
        received(&mut screen, "world");
        let short = flush(&mut display, &mut screen, &bus);
        assert_window(&bus, 5 * 6, 2);

        screen.invalidate();
        let full = flush(&mut display, &mut screen, &bus);
        assert_window(&bus, 128, 8);

        // On the wire, the window commands every flush sends add a little to the quarter.
        assert!(
            one_row * 100 <= full * 26,
            "one row {one_row} B, full frame {full} B"
        );
        assert!(
            short * 10 <= full,
            "a short line {short} B, full frame {full} B"
        );
    }

    #[test]
    fn nothing_changed_sends_nothing() {
        let bus = CountingI2c::new();
        let (mut display, mut screen) = server_display(&bus);
        assert_eq!(screen.draw(&mut display).unwrap(), None);
        display.flush().unwrap();
        assert_eq!(bus.wire_bytes(), 0);
    }

    #[test]
    fn accepting_a_client_redraws_two_rows_only() {
        let bus = CountingI2c::new();
        let (mut display, mut screen) = server_display(&bus);
        screen.update::<()>(&Event::Opened {
            conn: ConnId(1),
            peer: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 168, 4, 2)), 50000),
            open: 1,
        });
        flush(&mut display, &mut screen, &bus);
        // Rows 1 (client count) and 2 (the peer, the wider text): y 16..48, 4 pages.
        assert_window(&bus, "+192.168.4.2:50000".len() * 6, 4);
    }

    #[test]
    fn bus_time_at_400_khz_is_about_23_ms_per_full_frame() {
        let bus = CountingI2c::new();
        let mut display = oled(&bus);
        display.init().unwrap();
        bus.reset();
        display.clear_buffer();
        display.flush().unwrap();
        let ms = bus.bus_time(BUS_HZ).as_millis();
        assert!((23..30).contains(&ms), "{ms} ms for {bus:?}");
    }

    #[test]
    fn pacer_allows_one_flush_per_interval() {
        let mut pacer = FlushPacer::new(Duration::from_millis(50));
        assert!(pacer.ready(Instant::from_millis(0)));
        assert!(!pacer.ready(Instant::from_millis(49)));
        assert!(pacer.ready(Instant::from_millis(50)));
        assert!(!pacer.ready(Instant::from_millis(60)));
        assert!(pacer.ready(Instant::from_millis(1000)));
    }
}
