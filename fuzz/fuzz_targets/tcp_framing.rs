#![no_main]
use hopscope_wire::file::StreamFramer;

// Any stream, cut into pieces anywhere: the framer yields the same messages
// as when the stream arrives whole, holds less than one message, and never
// panics. The first octet chooses where the cuts fall.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&step, stream)) = data.split_first() else {
        return;
    };
    let mut whole = Vec::new();
    let mut one = StreamFramer::default();
    let whole_result = one.feed(stream, |m| whole.push(m.to_vec()));

    let mut pieces = Vec::new();
    let mut cut = StreamFramer::default();
    let mut cut_result = Ok(0);
    for piece in stream.chunks(usize::from(step).max(1)) {
        cut_result = cut.feed(piece, |m| pieces.push(m.to_vec()));
        if cut_result.is_err() {
            break;
        }
        assert!(cut.pending().len() < 65_536);
    }
    assert_eq!(whole, pieces);
    assert_eq!(whole_result.is_err(), cut_result.is_err());
    if whole_result.is_ok() {
        assert_eq!(one.pending(), cut.pending());
    }
});
