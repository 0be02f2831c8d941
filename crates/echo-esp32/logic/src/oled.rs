//! The board's OLED as the firmware's loop drives it: [`Display`] draws the `echo` screen's
//! changed rows into the panel's frame buffer and sends them one page per loop turn, so that the
//! echo path never waits more than one page on the I2C bus (`bus_time` of one page at
//! [`BUS_HZ`]: under 3.5 ms; a whole frame would be about 26 ms).
//!
//! A missing or failing panel never stops the firmware: errors are logged when they start and
//! when they end, and the panel is initialised again every [`RETRY_INTERVAL`] until it answers.

use echo::{Layout, Screen};
use echo_oled::{Controller, Oled};
use embedded_hal::i2c::I2c;

pub use echo_oled::{CountingI2c, Sh1106, Ssd1306, DEFAULT_ADDRESS as ADDRESS};

use crate::{Duration, Instant};

/// The I2C clock the panel is driven at.
pub const BUS_HZ: u32 = 400_000;

/// A new picture starts at most this often; its pages then go out one per loop turn.
pub const FRAME_INTERVAL: Duration = Duration::from_millis(50);

/// While the panel fails, try it again this often.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(2);

/// Decides when something may happen: at most once per `interval`.
#[derive(Clone, Copy, Debug)]
pub struct Pacer {
    interval: Duration,
    next: Instant,
}

impl Pacer {
    /// A pacer that allows a first time right away, then one per `interval`.
    pub const fn new(interval: Duration) -> Self {
        Pacer {
            interval,
            next: Instant::ZERO,
        }
    }

    /// Whether it may happen at `now`; if so, the next time may be `interval` later.
    pub fn ready(&mut self, now: Instant) -> bool {
        if now < self.next {
            return false;
        }
        self.next = now + self.interval;
        true
    }
}

/// The panel `C` on bus `I`, paced for a loop that must not stall.
pub struct Display<I, C> {
    oled: Oled<I, C>,
    frames: Pacer,
    retry: Pacer,
    working: bool,
}

impl<I, C> Display<I, C>
where
    I: I2c,
    C: Controller,
{
    /// The panel at [`ADDRESS`] on `i2c`, initialised if it answers.
    pub fn new(i2c: I) -> Self {
        let mut oled = Oled::new(i2c);
        let working = oled.init().is_ok();
        if !working {
            warn!("oled: no answer at 0x3C; running without display, retrying every 2 s");
        }
        Display {
            oled,
            frames: Pacer::new(FRAME_INTERVAL),
            retry: Pacer::new(RETRY_INTERVAL),
            working,
        }
    }

    /// One loop turn's share of the display: draws the screen's changes into the frame
    /// buffer (at most once per [`FRAME_INTERVAL`]; the screen keeps them meanwhile), then sends
    /// one page of what the panel does not show yet. Returns whether it used the bus.
    pub fn show<L: Layout>(&mut self, screen: &mut Screen<L>, now: Instant) -> bool {
        if !self.ready(screen, now) {
            return false;
        }
        if screen.is_dirty() && self.frames.ready(now) {
            // Drawing only touches the frame buffer.
            let _ = screen.draw(&mut self.oled);
        }
        self.oled.is_dirty() && self.send(|oled| oled.flush_page().map(drop))
    }

    /// Draws the screen's changes and sends the whole picture at once (before a blocking step,
    /// such as a Wi-Fi connection attempt, that would leave the panel stale for seconds).
    pub fn show_now<L: Layout>(&mut self, screen: &mut Screen<L>, now: Instant) {
        if self.ready(screen, now) {
            let _ = screen.draw(&mut self.oled);
            self.send(Oled::flush);
        }
    }

    /// Whether the panel answered last time; while it does not, [`show`](Self::show) tries it
    /// again every [`RETRY_INTERVAL`] (a loop that sleeps between changes wakes up for that).
    pub fn is_working(&self) -> bool {
        self.working
    }

    /// The panel, for tests and benchmarks.
    pub fn oled(&self) -> &Oled<I, C> {
        &self.oled
    }

    /// Whether the panel works, trying to bring a failed one back at most every
    /// [`RETRY_INTERVAL`] (then the whole screen is drawn again).
    fn ready<L: Layout>(&mut self, screen: &mut Screen<L>, now: Instant) -> bool {
        if self.working {
            return true;
        }
        if !self.retry.ready(now) || self.oled.init().is_err() {
            return false;
        }
        info!("oled: working again");
        self.working = true;
        screen.invalidate();
        true
    }

    fn send(&mut self, flush: impl FnOnce(&mut Oled<I, C>) -> Result<(), I::Error>) -> bool {
        if flush(&mut self.oled).is_err() {
            warn!("oled: flush failed; retrying every 2 s");
            self.working = false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::SocketAddr;
    use echo::{ConnId, Event, ServerLayout};

    type ServerScreen = Screen<ServerLayout>;

    fn listening() -> ServerScreen {
        let mut screen = Screen::server();
        screen.update::<()>(&Event::Listening {
            local: SocketAddr::from(([192, 168, 4, 1], 5001)),
        });
        screen
    }

    fn received(screen: &mut ServerScreen, text: &str) {
        screen.update::<()>(&Event::Received {
            conn: ConnId(1),
            bytes: text.as_bytes(),
        });
    }

    /// Calls `show` every millisecond from `from` until the panel shows the screen; returns
    /// the most bus time one call took, how many calls used the bus, and the time reached.
    fn show_all<C: Controller>(
        display: &mut Display<&CountingI2c, C>,
        bus: &CountingI2c,
        screen: &mut ServerScreen,
        from: Instant,
    ) -> (Duration, usize, Instant) {
        let (mut longest, mut calls, mut now) = (Duration::ZERO, 0, from);
        while screen.is_dirty() || display.oled().is_dirty() {
            bus.reset();
            if display.show(screen, now) {
                calls += 1;
                longest = longest.max(bus.bus_time(BUS_HZ));
            }
            now = now + Duration::from_millis(1);
        }
        (longest, calls, now)
    }

    #[test]
    fn a_whole_frame_goes_out_one_page_per_turn_each_under_3_5_ms() {
        let bus = CountingI2c::new();
        let mut display: Display<_, Sh1106> = Display::new(&bus);
        let mut screen = listening();
        let (longest, calls, _) = show_all(&mut display, &bus, &mut screen, Instant::ZERO);
        assert_eq!(calls, 8, "eight pages, one per turn");
        assert!(longest < Duration::from_micros(3_500), "{longest:?}");
        assert!(
            longest > Duration::from_micros(2_800),
            "a full page: {longest:?}"
        );
    }

    #[test]
    fn a_received_line_takes_two_turns_of_at_most_a_page() {
        let bus = CountingI2c::new();
        let mut display: Display<_, Ssd1306> = Display::new(&bus);
        let mut screen = listening();
        let (_, _, now) = show_all(&mut display, &bus, &mut screen, Instant::ZERO);
        received(&mut screen, "hello MicroPython, I am TCP Client");
        let (longest, calls, _) = show_all(&mut display, &bus, &mut screen, now + FRAME_INTERVAL);
        assert_eq!(calls, 2, "the bottom row's two pages");
        assert!(longest < Duration::from_micros(3_500), "{longest:?}");
    }

    #[test]
    fn a_new_picture_starts_at_most_once_per_frame_interval() {
        let bus = CountingI2c::new();
        let mut display: Display<_, Sh1106> = Display::new(&bus);
        let mut screen = listening();
        let (_, _, now) = show_all(&mut display, &bus, &mut screen, Instant::ZERO);
        received(&mut screen, "one");
        assert!(display.show(&mut screen, now + FRAME_INTERVAL));
        assert!(
            display.show(&mut screen, now + FRAME_INTERVAL),
            "its second page"
        );
        received(&mut screen, "two");
        let soon = now + FRAME_INTERVAL + Duration::from_millis(10);
        assert!(
            !display.show(&mut screen, soon),
            "too soon for a new picture"
        );
        assert!(screen.is_dirty(), "the screen keeps the change meanwhile");
        assert!(display.show(&mut screen, now + FRAME_INTERVAL * 2));
        assert!(!screen.is_dirty());
    }

    #[test]
    fn show_now_sends_everything_at_once() {
        let bus = CountingI2c::new();
        let mut display: Display<_, Ssd1306> = Display::new(&bus);
        let mut screen = listening();
        bus.reset();
        display.show_now(&mut screen, Instant::ZERO);
        assert_eq!(bus.data_bytes(), 8 * 128);
        assert!(!display.oled().is_dirty() && !screen.is_dirty());
    }

    #[test]
    fn nothing_changed_sends_nothing() {
        let bus = CountingI2c::new();
        let mut display: Display<_, Sh1106> = Display::new(&bus);
        let mut screen = listening();
        let (_, _, now) = show_all(&mut display, &bus, &mut screen, Instant::ZERO);
        bus.reset();
        assert!(!display.show(&mut screen, now + FRAME_INTERVAL * 10));
        assert_eq!(bus.wire_bytes(), 0);
    }

    /// A bus with no panel on it until `present` is set.
    struct Absent<'a> {
        present: &'a core::cell::Cell<bool>,
    }

    impl embedded_hal::i2c::ErrorType for Absent<'_> {
        type Error = embedded_hal::i2c::ErrorKind;
    }

    impl I2c for Absent<'_> {
        fn transaction(
            &mut self,
            _address: u8,
            _operations: &mut [embedded_hal::i2c::Operation<'_>],
        ) -> Result<(), Self::Error> {
            match self.present.get() {
                true => Ok(()),
                false => Err(embedded_hal::i2c::ErrorKind::NoAcknowledge(
                    embedded_hal::i2c::NoAcknowledgeSource::Address,
                )),
            }
        }
    }

    #[test]
    fn a_missing_panel_is_not_working_and_is_tried_again_every_retry_interval() {
        let present = core::cell::Cell::new(false);
        let mut display: Display<_, Ssd1306> = Display::new(Absent { present: &present });
        assert!(!display.is_working());
        let mut screen = listening();
        assert!(!display.show(&mut screen, Instant::ZERO));
        present.set(true);
        let soon = Instant::ZERO + (RETRY_INTERVAL - Duration::from_millis(1));
        assert!(
            !display.show(&mut screen, soon),
            "not tried before the interval"
        );
        assert!(!display.is_working());
        assert!(display.show(&mut screen, Instant::ZERO + RETRY_INTERVAL));
        assert!(display.is_working());
    }

    #[test]
    fn pacer_allows_one_time_per_interval() {
        let mut pacer = Pacer::new(Duration::from_millis(50));
        assert!(pacer.ready(Instant::from_millis(0)));
        assert!(!pacer.ready(Instant::from_millis(49)));
        assert!(pacer.ready(Instant::from_millis(50)));
        assert!(!pacer.ready(Instant::from_millis(60)));
        assert!(pacer.ready(Instant::from_millis(1000)));
    }
}
