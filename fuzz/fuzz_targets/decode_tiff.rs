#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ocrd::fuzz::decode_tiff(data));
