//! A fixed-length template whose every field is direct except one that
//! needs the whole record (the IP version, when the source address is IPv6
//! and the destination IPv4) must still fill every column: found by
//! fuzzing, where such a record left the version column one value short.

use hopscope_wire::{DecodeOutput, Decoder, Transport};

fn message(sets: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&10u16.to_be_bytes());
    m.extend_from_slice(&((16 + sets.len()) as u16).to_be_bytes());
    m.extend_from_slice(&1_800_000_000u32.to_be_bytes());
    m.extend_from_slice(&0u32.to_be_bytes());
    m.extend_from_slice(&1u32.to_be_bytes());
    m.extend_from_slice(sets);
    m
}

#[test]
fn a_template_mixing_address_families_keeps_the_columns_aligned() {
    let mut template = Vec::new();
    template.extend_from_slice(&2u16.to_be_bytes());
    template.extend_from_slice(&(4u16 + 4 + 3 * 4).to_be_bytes());
    template.extend_from_slice(&256u16.to_be_bytes());
    template.extend_from_slice(&3u16.to_be_bytes());
    for (id, len) in [(27u16, 16u16), (12, 4), (5000, 2)] {
        template.extend_from_slice(&id.to_be_bytes());
        template.extend_from_slice(&len.to_be_bytes());
    }
    let mut data = Vec::new();
    data.extend_from_slice(&256u16.to_be_bytes());
    data.extend_from_slice(&(4u16 + 2 * 22).to_be_bytes());
    for _ in 0..2 {
        let mut v6 = [0u8; 16];
        v6[..2].copy_from_slice(&[0x20, 0x01]);
        v6[15] = 1;
        data.extend_from_slice(&v6);
        data.extend_from_slice(&[192, 0, 2, 1]);
        data.extend_from_slice(&[0, 7]);
    }
    for transport in [Transport::Udp, Transport::Tcp] {
        let mut decoder = Decoder::new();
        let mut out = DecodeOutput::default();
        let exporter = "192.0.2.9:4739".parse().unwrap();
        decoder
            .decode(
                exporter,
                transport,
                0,
                &message(&[template.clone(), data.clone()].concat()),
                &mut out,
            )
            .unwrap();
        assert_eq!(decoder.totals().flow_records, 2);
        let flows = out.flows.finish().expect("aligned columns");
        assert_eq!(flows.num_rows(), 2);
    }
}
