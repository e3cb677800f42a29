#![no_main]
// The properties asserted are in src/mqtt_session.rs.
libfuzzer_sys::fuzz_target!(|data: &[u8]| weft_fuzz::mqtt_session::check(data));
