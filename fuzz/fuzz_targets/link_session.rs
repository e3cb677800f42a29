#![no_main]
// The properties asserted are in src/link_session.rs.
libfuzzer_sys::fuzz_target!(|data: &[u8]| weft_fuzz::link_session::check(data));
