//! The OLED: the host-tested [`Display`](echo_esp32_logic::oled::Display) on the chip's I2C0,
//! with the panel chosen at build time: SH1106 (the mPython board's) with the `sh1106` feature
//! or on the `esp32` chip, SSD1306 with the `ssd1306` feature or on the other chips.

use esp_hal::{i2c::master::I2c, Blocking};

/// The panel's controller of this build.
#[cfg(oled_sh1106)]
pub type Panel = echo_esp32_logic::oled::Sh1106;
/// The panel's controller of this build.
#[cfg(not(oled_sh1106))]
pub type Panel = echo_esp32_logic::oled::Ssd1306;

/// The OLED on I2C0, paced for the loop: a page per turn at most.
pub type Display = echo_esp32_logic::oled::Display<I2c<'static, Blocking>, Panel>;
