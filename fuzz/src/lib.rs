//! Shared driver of the fuzz targets: each target fixes the version field so
//! that the fuzzer spends its time inside one decoder, then feeds the input
//! as several messages of one session (so templates from one message apply
//! to the next) over both UDP and TCP semantics.
//!
//! Input layout: messages, each preceded by its length as two big-endian
//! octets (`fuzz/seeds/` holds real exports in that layout).

use hopscope_wire::{DecodeOutput, Decoder, Transport};

/// Splits the input at 0xFF 0xFE markers into messages, stamps each with
/// `version`, and decodes them; checks the decoder's own accounting.
pub fn decode_messages(data: &[u8], version: &[u8]) {
    for transport in [Transport::Udp, Transport::Tcp] {
        let mut decoder = Decoder::new();
        let mut out = DecodeOutput::with_capacity(8);
        let exporter = "192.0.2.1:4739".parse().unwrap();
        for (i, chunk) in messages(data).enumerate() {
            let mut message = chunk.to_vec();
            if message.len() >= version.len() {
                message[..version.len()].copy_from_slice(version);
            }
            let _ = decoder.decode(exporter, transport, i as i64, &message, &mut out);
        }
        decoder.flush_pending();
        let totals = decoder.totals();
        assert_eq!(totals.pending_sets, 0);
        assert_eq!(out.flows.len() as u64, totals.flow_records);
        assert!(out.flows.finish().is_ok());
        assert!(out.packet_reports.finish().is_ok());
        assert!(out.interface_counters.finish().is_ok());
    }
}

/// Splits length-prefixed messages; a short tail is the last message.
pub fn messages(mut data: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        if data.is_empty() {
            return None;
        }
        let (len, rest) = match data {
            [hi, lo, rest @ ..] => (usize::from(u16::from_be_bytes([*hi, *lo])), rest),
            _ => (data.len(), data),
        };
        let len = len.min(rest.len());
        let (message, tail) = rest.split_at(len);
        data = tail;
        Some(message)
    })
}
