//! Packet sections: the first bytes of a sampled packet, as sFlow's raw
//! packet header records and IPFIX's dataLinkFrameSection (315) and
//! ipHeaderPacketSection (313) carry them, read into a flow's columns with
//! the packet crate. Juniper, and SRv6 and EVPN exporters, send sections in
//! place of the flow's fields: without this their records have no
//! addresses, ports or protocol.

use hopscope_packet::{LinkType, TunnelKind, parse_frame};
use hopscope_schema::{FlowRecord, mac_to_u64};

/// The columns a section can fill.
pub(crate) const COLUMNS: &[&str] = &[
    "src_mac",
    "dst_mac",
    "src_vlan",
    "mpls_top_label",
    "ip_version",
    "src_addr",
    "dst_addr",
    "proto",
    "minimum_ttl",
    "maximum_ttl",
    "ip_tos",
    "src_port",
    "dst_port",
    "tcp_flags",
    "icmp_type",
    "icmp_code",
    "ipv6_flow_label",
    "gre_key",
    "layer2_segment_id",
    "bytes",
    "packets",
];

/// Fills the columns of `row` it has no value for from the packet section
/// (fields the record carries itself win); returns the packet's IP length
/// (IPv4 total length, IPv6 payload plus header): what the packet was on
/// the wire at layer 3, whatever the section kept of it.
pub(crate) fn fill_flow(row: &mut FlowRecord, link: LinkType, section: &[u8]) -> Option<u16> {
    let p = parse_frame(link, section);
    macro_rules! fill {
        ($($column:ident = $value:expr),* $(,)?) => {$(
            row.$column = row.$column.or($value);
        )*};
    }
    fill!(
        src_mac = p.src_mac.map(mac_to_u64),
        dst_mac = p.dst_mac.map(mac_to_u64),
        src_vlan = p.vlan,
        mpls_top_label = p.mpls_top_label,
        ip_version = p.ip_version,
        src_addr = p.src_addr,
        dst_addr = p.dst_addr,
        proto = p.proto,
        minimum_ttl = p.ttl,
        maximum_ttl = p.ttl,
        ip_tos = p.tos,
        src_port = p.src_port,
        dst_port = p.dst_port,
        tcp_flags = p.tcp_flags,
        icmp_type = p.icmp_type,
        icmp_code = p.icmp_code,
        ipv6_flow_label = p.flow_label.filter(|_| p.ip_version == Some(6)),
    );
    // the outer packet fills the columns; a tunnel's id says which one it carries
    if let Some(t) = p.tunnel {
        match t.kind {
            TunnelKind::Gre => {
                fill!(gre_key = t.id);
            }
            TunnelKind::Vxlan => {
                fill!(layer2_segment_id = t.id.map(|vni| (1u64 << 56) | u64::from(vni)));
            }
        }
    }
    p.ip_total_length
}

#[cfg(test)]
mod tests {
    use super::*;
    use hopscope_schema::ipv4_mapped;

    #[test]
    fn a_frame_section_fills_what_the_record_lacks() {
        // Ethernet, VLAN 42, IPv4 (total length 1500, TTL 61), UDP 5353 → 53, cut after 8 payload octets
        let mut frame = vec![
            0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x81, 0x00, 0x00, 42, 0x08, 0x00,
        ];
        frame.extend_from_slice(&[0x45, 0, 0x05, 0xdc, 0, 1, 0, 0, 61, 17, 0, 0]);
        frame.extend_from_slice(&[10, 0, 0, 1, 192, 0, 2, 7]);
        frame.extend_from_slice(&[0x14, 0xe9, 0, 53, 0x05, 0xc8, 0, 0]);
        frame.extend_from_slice(&[0; 8]);
        let mut row = FlowRecord {
            dst_port: Some(5300),
            ..FlowRecord::default()
        };
        let length = fill_flow(&mut row, LinkType::Ethernet, &frame);
        assert_eq!(length, Some(1500));
        assert_eq!(row.src_addr, Some(ipv4_mapped([10, 0, 0, 1])));
        assert_eq!(row.dst_addr, Some(ipv4_mapped([192, 0, 2, 7])));
        assert_eq!((row.proto, row.src_port), (Some(17), Some(5353)));
        assert_eq!(row.dst_port, Some(5300), "the record's own field wins");
        assert_eq!((row.src_vlan, row.minimum_ttl), (Some(42), Some(61)));
    }
}
