#![no_main]
// The properties asserted are in src/link_decode.rs.
libfuzzer_sys::fuzz_target!(|data: &[u8]| weft_fuzz::link_decode::check(data));
