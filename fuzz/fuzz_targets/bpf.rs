#![no_main]
use hopscope_packet::bpf::BpfProgram;

// Program text and a frame: parsing must fail cleanly or yield a program
// whose run ends, on any frame, without a panic.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let (text, frame) = data.split_at(split);
    if let Ok(program) = BpfProgram::parse(&String::from_utf8_lossy(text)) {
        let _ = program.accepts(frame, frame.len() as u32);
    }
});
