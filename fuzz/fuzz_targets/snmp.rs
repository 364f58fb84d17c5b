#![no_main]

// Any datagram where an SNMP response is expected (v2c or v3): its
// bindings or an error, never a panic.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(bindings) = hopscope_snmp::decode_message(data) {
        for (oid, value) in &bindings {
            let _ = (oid.to_string(), value.as_u64(), value.as_text());
        }
    }
});
