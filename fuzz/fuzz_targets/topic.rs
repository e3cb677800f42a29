#![no_main]
// The properties asserted are in src/topic.rs.
libfuzzer_sys::fuzz_target!(|data: &[u8]| weft_fuzz::topic::check(data));
