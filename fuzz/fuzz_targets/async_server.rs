#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| echo_fuzz::asynch::check_server(data));
