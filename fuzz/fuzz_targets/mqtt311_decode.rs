#![no_main]
// The properties asserted are in src/mqtt311_decode.rs.
libfuzzer_sys::fuzz_target!(|data: &[u8]| weft_fuzz::mqtt311_decode::check(data));
