//! The OLED: draws the [`Screen`] model's changed rows and flushes only them, paced.
//!
//! A missing or failing display never stops the firmware: errors are logged when they start
//! and when they end, and the display is initialised again once it answers.

use echo::{Duration, Instant, Layout, Screen};
use echo_esp32_logic::oled::{oled, DisplayConfig, FlushPacer, Oled};
use esp_hal::{i2c::master::I2c, Blocking};
use log::{info, warn};

/// At most this often a flush (a full frame takes about 23 ms at 400 kHz).
const FLUSH_INTERVAL: Duration = Duration::from_millis(50);

/// While the display fails, try it again this often.
const RETRY_INTERVAL: Duration = Duration::from_secs(2);

/// The SSD1306 on I2C0.
pub struct Display {
    oled: Oled<I2c<'static, Blocking>>,
    pacer: FlushPacer,
    retry: FlushPacer,
    working: bool,
}

impl Display {
    pub(crate) fn new(i2c: I2c<'static, Blocking>) -> Self {
        let mut display = Display {
            oled: oled(i2c),
            pacer: FlushPacer::new(FLUSH_INTERVAL),
            retry: FlushPacer::new(RETRY_INTERVAL),
            working: false,
        };
        display.working = display.oled.init().is_ok();
        if !display.working {
            warn!("oled: no answer at 0x3C; running without display, retrying every 2 s");
        }
        display
    }

    /// Draws what changed in `screen` and sends it, unless a flush happened less than 50 ms
    /// ago (the model keeps the changes for the next call). Returns whether it sent anything.
    pub fn show<L: Layout>(&mut self, screen: &mut Screen<L>, now: Instant) -> bool {
        if screen.is_dirty() && self.pacer.ready(now) {
            self.show_now(screen, now);
            return true;
        }
        false
    }

    /// Draws what changed in `screen` and sends it at once (before a blocking step).
    pub fn show_now<L: Layout>(&mut self, screen: &mut Screen<L>, now: Instant) {
        if !self.working {
            if !self.retry.ready(now) || self.oled.init().is_err() {
                return;
            }
            info!("oled: working again");
            self.working = true;
            screen.invalidate();
        }
        // Drawing only touches the frame buffer; the flush sends its dirty pages.
        let _ = screen.draw(&mut self.oled);
        if let Err(e) = self.oled.flush() {
            warn!("oled: flush failed ({:?}); retrying every 2 s", e);
            self.working = false;
        }
    }
}
