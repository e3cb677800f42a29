#![no_main]
// The properties asserted are in src/amqp_message.rs.
libfuzzer_sys::fuzz_target!(|data: &[u8]| weft_fuzz::amqp_message::check(data));
