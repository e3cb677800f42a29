#![no_main]
// The properties asserted are in src/amqp_decode.rs.
libfuzzer_sys::fuzz_target!(|data: &[u8]| weft_fuzz::amqp_decode::check(data));
