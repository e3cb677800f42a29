#![no_main]
// The properties asserted are in src/nats_session.rs.
libfuzzer_sys::fuzz_target!(|data: &[u8]| weft_fuzz::nats_session::check(data));
