#![no_main]
// The properties asserted are in src/ws_decode.rs.
libfuzzer_sys::fuzz_target!(|data: &[u8]| weft_fuzz::ws_decode::check(data));
