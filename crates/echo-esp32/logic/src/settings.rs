//! Settings the examples read from build-time environment variables (`env!`), parsed in `const`
//! context so that a bad value fails the build instead of the board.
//!
//! ```
//! use echo_esp32_logic::settings::{parse_ipv4, parse_u16};
//! const PORT: u16 = parse_u16("5001");
//! const HOST: core::net::Ipv4Addr = parse_ipv4("192.168.1.100");
//! assert_eq!((PORT, HOST.octets()), (5001, [192, 168, 1, 100]));
//! ```

use core::net::Ipv4Addr;

/// Parses a decimal number in `0..=max`.
///
/// # Panics
/// (At compile time in a `const`.) If `text` is empty, has a non-digit or exceeds `max`.
pub const fn parse_number(text: &str, max: u32) -> u32 {
    let bytes = text.as_bytes();
    core::assert!(!bytes.is_empty(), "empty number");
    let mut value: u32 = 0;
    let mut i = 0;
    while i < bytes.len() {
        let digit = bytes[i];
        core::assert!(digit.is_ascii_digit(), "not a decimal number");
        value = value * 10 + (digit - b'0') as u32;
        core::assert!(value <= max, "number out of range");
        i += 1;
    }
    value
}

/// Parses a port number (`1..=65535`).
///
/// # Panics
/// See [`parse_number`]; also if the port is 0.
pub const fn parse_u16(text: &str) -> u16 {
    let value = parse_number(text, u16::MAX as u32);
    core::assert!(value != 0, "port 0");
    value as u16
}

/// Parses a 2.4 GHz Wi-Fi channel (`1..=13`).
///
/// # Panics
/// See [`parse_number`]; also outside `1..=13`.
pub const fn parse_channel(text: &str) -> u8 {
    let value = parse_number(text, 13);
    core::assert!(value != 0, "channel 0");
    value as u8
}

/// Parses a dotted-quad IPv4 address such as `192.168.4.1`.
///
/// # Panics
/// If `text` is not four decimal numbers up to 255 separated by dots.
pub const fn parse_ipv4(text: &str) -> Ipv4Addr {
    let bytes = text.as_bytes();
    let mut octets = [0u8; 4];
    let mut octet = 0;
    let mut start = 0;
    let mut i = 0;
    while i <= bytes.len() {
        if i == bytes.len() || bytes[i] == b'.' {
            core::assert!(octet < 4, "more than four numbers");
            let (_, rest) = bytes.split_at(start);
            let (field, _) = rest.split_at(i - start);
            octets[octet] = match core::str::from_utf8(field) {
                Ok(field) => parse_number(field, 255) as u8,
                Err(_) => core::panic!("not ASCII"),
            };
            octet += 1;
            start = i + 1;
        }
        i += 1;
    }
    core::assert!(octet == 4, "fewer than four numbers");
    Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3])
}

/// Checks a WPA2 passphrase: 8 to 63 characters, or empty for an open network.
///
/// # Panics
/// (At compile time in a `const`.) For any other length.
pub const fn wpa2_password(text: &str) -> &str {
    let len = text.len();
    core::assert!(
        len == 0 || (len >= 8 && len <= 63),
        "a WPA2 passphrase has 8 to 63 characters (or none, for an open network)"
    );
    text
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    fn panics(f: impl FnOnce() + std::panic::UnwindSafe) -> bool {
        std::panic::catch_unwind(f).is_err()
    }

    #[test]
    fn parses_ports_and_channels() {
        assert_eq!(parse_u16("1"), 1);
        assert_eq!(parse_u16("65535"), 65535);
        assert_eq!(parse_channel("13"), 13);
    }

    #[test]
    fn rejects_bad_numbers() {
        core::assert!(panics(|| {
            parse_u16("65536");
        }));
        core::assert!(panics(|| {
            parse_u16("0");
        }));
        core::assert!(panics(|| {
            parse_u16("");
        }));
        core::assert!(panics(|| {
            parse_u16("80a");
        }));
        core::assert!(panics(|| {
            parse_channel("14");
        }));
    }

    #[test]
    fn wpa2_passwords_are_empty_or_8_to_63_characters() {
        assert_eq!(wpa2_password(""), "");
        assert_eq!(wpa2_password("12345678"), "12345678");
        core::assert!(panics(|| {
            wpa2_password("1234567");
        }));
        core::assert!(panics(|| {
            wpa2_password(&"x".repeat(64));
        }));
    }

    #[test]
    fn parses_addresses() {
        assert_eq!(parse_ipv4("192.168.4.1"), Ipv4Addr::new(192, 168, 4, 1));
        assert_eq!(parse_ipv4("0.0.0.0"), Ipv4Addr::UNSPECIFIED);
    }

    #[test]
    fn rejects_bad_addresses() {
        for bad in [
            "192.168.4",
            "192.168.4.1.5",
            "192.168.4.256",
            "192..4.1",
            "a.b.c.d",
            "",
        ] {
            core::assert!(
                panics(move || {
                    parse_ipv4(bad);
                }),
                "{bad}"
            );
        }
    }
}
