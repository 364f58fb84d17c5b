#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hopscope_fuzz::decode_messages(data, &[0, 5]));
