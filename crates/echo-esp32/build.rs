//! Chooses the OLED at build time:
//! - its I2C pins, `OLED_SDA` and `OLED_SCL` (GPIO numbers), with a default per chip. Writes
//!   `$OUT_DIR/oled_pins.rs`, an expression `(sda, scl)` taking the two pins out of a
//!   `peripherals` binding in scope where it is included;
//! - its controller: the `sh1106` or `ssd1306` feature, else the chip's default (SH1106 on the
//!   `esp32`, the mPython board's; SSD1306 on the others). Sets `cfg(oled_sh1106)` for SH1106.

use std::{env, fs, path::Path};

/// (chip feature, default SDA, default SCL, highest GPIO number, SH1106 by default)
const CHIPS: &[(&str, u8, u8, u8, bool)] = &[
    // ESP32-C3-DevKit-RUST-1's I2C bus.
    ("ESP32C3", 10, 8, 21, false),
    ("ESP32C6", 6, 7, 30, false),
    // The mPython board: its SH1106 on I2C0, SDA = GPIO23, SCL = GPIO22.
    ("ESP32", 23, 22, 39, true),
    ("ESP32S3", 8, 9, 48, false),
];

fn pin(name: &str, default: u8, max: u8) -> u8 {
    println!("cargo:rerun-if-env-changed={name}");
    let Ok(value) = env::var(name) else {
        return default;
    };
    let number = value
        .trim()
        .trim_start_matches("GPIO")
        .parse::<u8>()
        .unwrap_or_else(|_| panic!("{name}={value:?} is not a GPIO number"));
    assert!(number <= max, "{name}={number}: this chip has no such GPIO");
    number
}

fn main() {
    let chip = CHIPS
        .iter()
        .find(|(feature, ..)| env::var_os(format!("CARGO_FEATURE_{feature}")).is_some());
    let Some(&(_, sda, scl, max, sh1106_by_default)) = chip else {
        panic!("enable exactly one chip feature: esp32c3, esp32c6, esp32 or esp32s3");
    };
    let feature = |name: &str| env::var_os(format!("CARGO_FEATURE_{name}")).is_some();
    let sh1106 = match (feature("SH1106"), feature("SSD1306")) {
        (true, true) => panic!("enable at most one panel feature: sh1106 or ssd1306"),
        (true, false) => true,
        (false, true) => false,
        (false, false) => sh1106_by_default,
    };
    println!("cargo::rustc-check-cfg=cfg(oled_sh1106)");
    if sh1106 {
        println!("cargo::rustc-cfg=oled_sh1106");
    }
    let (sda, scl) = (pin("OLED_SDA", sda, max), pin("OLED_SCL", scl, max));
    assert!(sda != scl, "OLED_SDA and OLED_SCL are both GPIO{sda}");
    let out = Path::new(&env::var("OUT_DIR").unwrap()).join("oled_pins.rs");
    fs::write(
        out,
        format!("(peripherals.GPIO{sda}, peripherals.GPIO{scl})\n"),
    )
    .unwrap();
}
