//! Chooses the OLED's I2C pins at build time: `OLED_SDA` and `OLED_SCL` (GPIO numbers), with a
//! default per chip. Writes `$OUT_DIR/oled_pins.rs`, an expression `(sda, scl)` taking the two
//! pins out of a `peripherals` binding in scope where it is included.

use std::{env, fs, path::Path};

/// (chip feature, default SDA, default SCL, highest GPIO number)
const CHIPS: &[(&str, u8, u8, u8)] = &[
    // ESP32-C3-DevKit-RUST-1's I2C bus.
    ("ESP32C3", 10, 8, 21),
    ("ESP32C6", 6, 7, 30),
    // The mPython board's OLED bus.
    ("ESP32", 23, 22, 39),
    ("ESP32S3", 8, 9, 48),
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
    let Some(&(_, sda, scl, max)) = chip else {
        panic!("enable exactly one chip feature: esp32c3, esp32c6, esp32 or esp32s3");
    };
    let (sda, scl) = (pin("OLED_SDA", sda, max), pin("OLED_SCL", scl, max));
    assert!(sda != scl, "OLED_SDA and OLED_SCL are both GPIO{sda}");
    let out = Path::new(&env::var("OUT_DIR").unwrap()).join("oled_pins.rs");
    fs::write(
        out,
        format!("(peripherals.GPIO{sda}, peripherals.GPIO{scl})\n"),
    )
    .unwrap();
}
