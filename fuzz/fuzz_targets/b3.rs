#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| service_tracing_middleware::fuzzing::b3(data));
