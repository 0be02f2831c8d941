#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| echo_fuzz::dhcp::check(data));
