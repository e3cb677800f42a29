#![no_main]
// The properties asserted are in src/subject.rs.
libfuzzer_sys::fuzz_target!(|data: &[u8]| weft_fuzz::subject::check(data));
