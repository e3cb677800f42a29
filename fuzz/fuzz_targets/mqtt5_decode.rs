#![no_main]
// The properties asserted are in src/mqtt5_decode.rs.
libfuzzer_sys::fuzz_target!(|data: &[u8]| weft_fuzz::mqtt5_decode::check(data));
