//! The frame walker: link layer, VLAN and MPLS shims, IPv4/IPv6 with
//! extension headers, then the transport header.

/// How a captured frame begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkType {
    Ethernet,
    /// Raw IP, version taken from the first nibble.
    RawIp,
    /// Linux cooked capture v1 (16-byte header).
    LinuxSll,
    /// Linux cooked capture v2 (20-byte header).
    LinuxSll2,
}

impl LinkType {
    /// Maps a pcap LINKTYPE_ number to a link type this parser follows.
    pub fn from_pcap(linktype: u32) -> Option<Self> {
        match linktype {
            1 => Some(LinkType::Ethernet),
            101 | 12 | 14 => Some(LinkType::RawIp),
            113 => Some(LinkType::LinuxSll),
            276 => Some(LinkType::LinuxSll2),
            _ => None,
        }
    }
}

/// Why parsing stopped before the transport header, if it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The frame ended inside a header (common with sFlow's truncated headers).
    Truncated,
    /// The ethertype or next header is one this parser does not follow.
    UnsupportedProtocol,
    /// A later IPv4/IPv6 fragment: no transport header to read.
    NonFirstFragment,
    /// More IPv6 extension headers than any real packet has.
    ExtensionHeaderLimit,
    /// A length field contradicts the bytes present.
    BadLength,
    /// Encrypted payload (ESP).
    Encrypted,
}

/// Which encapsulation a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelKind {
    Gre,
    Vxlan,
}

/// The outer layer of an encapsulated packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tunnel {
    pub kind: TunnelKind,
    /// GRE key, or VXLAN network identifier (VNI).
    pub id: Option<u32>,
    /// Where the inner packet starts in the frame, and how it starts.
    pub inner_offset: usize,
    pub inner_link: LinkType,
    /// Outer addresses and IP length (filled when the inner packet is parsed).
    pub outer_src: [u8; 16],
    pub outer_dst: [u8; 16],
    pub outer_length: u16,
}

/// UDP port of VXLAN (RFC 7348).
const VXLAN_PORT: u16 = 4789;

/// What one frame says about its flow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacketSummary {
    pub src_mac: Option<[u8; 6]>,
    pub dst_mac: Option<[u8; 6]>,
    /// Outermost VLAN id.
    pub vlan: Option<u16>,
    /// Inner VLAN id of a QinQ frame.
    pub inner_vlan: Option<u16>,
    /// Top MPLS label value.
    pub mpls_top_label: Option<u32>,
    pub ip_version: Option<u8>,
    /// Addresses in 16 bytes, IPv4 mapped into IPv6.
    pub src_addr: Option<[u8; 16]>,
    pub dst_addr: Option<[u8; 16]>,
    pub proto: Option<u8>,
    pub ttl: Option<u8>,
    pub tos: Option<u8>,
    /// IPv4 total length, or IPv6 payload length plus 40.
    pub ip_total_length: Option<u16>,
    /// IPv4 identification or IPv6 fragment identification.
    pub fragment_id: Option<u32>,
    /// Fragment offset in 8-octet units (0 for the first or an unfragmented packet).
    pub fragment_offset: u16,
    pub more_fragments: bool,
    pub flow_label: Option<u32>,
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
    pub tcp_flags: Option<u16>,
    pub tcp_seq: Option<u32>,
    /// Acknowledgement number: with the sequence number, what tells pure
    /// ACKs apart where IPv6 has no identification field.
    pub tcp_ack: Option<u32>,
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
    /// Identifier of an ICMP/ICMPv6 echo request or reply.
    pub icmp_echo_id: Option<u16>,
    /// Offset of the transport payload within the frame, when reached.
    pub payload_offset: Option<usize>,
    /// Set when the walk stopped before the transport payload.
    pub stopped: Option<StopReason>,
    /// The encapsulation found (GRE, VXLAN); see [`parse_frame_inner`].
    pub tunnel: Option<Tunnel>,
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const ETHERTYPE_QINQ_OLD: u16 = 0x9100;
const ETHERTYPE_MPLS: u16 = 0x8847;
const ETHERTYPE_MPLS_MC: u16 = 0x8848;
/// Real packets carry a handful; anything beyond this is a loop or an attack.
const MAX_IPV6_EXTENSION_HEADERS: usize = 10;
const MAX_SHIMS: usize = 12;

/// Walks one frame and reports what it found; never fails, never panics.
pub fn parse_frame(link: LinkType, frame: &[u8]) -> PacketSummary {
    let mut summary = PacketSummary::default();
    if let Err(reason) = walk(link, frame, &mut summary) {
        summary.stopped = Some(reason);
    }
    summary
}

/// Like [`parse_frame`], but for a GRE or VXLAN packet describes the inner
/// packet, with the outer layer in `tunnel`. One level of encapsulation.
pub fn parse_frame_inner(link: LinkType, frame: &[u8]) -> PacketSummary {
    let outer = parse_frame(link, frame);
    let Some(mut tunnel) = outer.tunnel else {
        return outer;
    };
    let Some(inner_bytes) = frame.get(tunnel.inner_offset..) else {
        return outer;
    };
    let mut inner = parse_frame(tunnel.inner_link, inner_bytes);
    inner.payload_offset = inner.payload_offset.map(|o| o + tunnel.inner_offset);
    tunnel.outer_src = outer.src_addr.unwrap_or_default();
    tunnel.outer_dst = outer.dst_addr.unwrap_or_default();
    tunnel.outer_length = outer.ip_total_length.unwrap_or(0);
    inner.tunnel = Some(tunnel);
    inner.vlan = inner.vlan.or(outer.vlan);
    inner
}

fn be16(b: &[u8], at: usize) -> Result<u16, StopReason> {
    b.get(at..at + 2)
        .map(|s| u16::from_be_bytes([s[0], s[1]]))
        .ok_or(StopReason::Truncated)
}

fn be32(b: &[u8], at: usize) -> Result<u32, StopReason> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(StopReason::Truncated)
}

fn byte(b: &[u8], at: usize) -> Result<u8, StopReason> {
    b.get(at).copied().ok_or(StopReason::Truncated)
}

fn walk(link: LinkType, frame: &[u8], s: &mut PacketSummary) -> Result<(), StopReason> {
    match link {
        LinkType::RawIp => ip_by_version(frame, 0, s),
        LinkType::LinuxSll => {
            let ethertype = be16(frame, 14)?;
            after_ethertype(frame, 16, ethertype, s)
        }
        LinkType::LinuxSll2 => {
            let ethertype = be16(frame, 0)?;
            after_ethertype(frame, 20, ethertype, s)
        }
        LinkType::Ethernet => {
            let header = frame.get(..14).ok_or(StopReason::Truncated)?;
            s.dst_mac = Some(header[0..6].try_into().unwrap_or_default());
            s.src_mac = Some(header[6..12].try_into().unwrap_or_default());
            after_ethertype(frame, 14, be16(frame, 12)?, s)
        }
    }
}

fn after_ethertype(
    frame: &[u8],
    mut at: usize,
    mut ethertype: u16,
    s: &mut PacketSummary,
) -> Result<(), StopReason> {
    for _ in 0..MAX_SHIMS {
        match ethertype {
            ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD => {
                let vid = be16(frame, at)? & 0x0fff;
                if s.vlan.is_none() {
                    s.vlan = Some(vid);
                } else if s.inner_vlan.is_none() {
                    s.inner_vlan = Some(vid);
                }
                ethertype = be16(frame, at + 2)?;
                at += 4;
            }
            ETHERTYPE_MPLS | ETHERTYPE_MPLS_MC => {
                let mut bottom = false;
                for _ in 0..MAX_SHIMS {
                    let entry = be32(frame, at)?;
                    if s.mpls_top_label.is_none() {
                        s.mpls_top_label = Some(entry >> 12);
                    }
                    at += 4;
                    if entry & 0x100 != 0 {
                        bottom = true;
                        break;
                    }
                }
                if !bottom {
                    return Err(StopReason::UnsupportedProtocol);
                }
                // Below the stack there is no ethertype: guess by the IP version nibble.
                return ip_by_version(frame, at, s);
            }
            ETHERTYPE_IPV4 => return ipv4(frame, at, s),
            ETHERTYPE_IPV6 => return ipv6(frame, at, s),
            _ => return Err(StopReason::UnsupportedProtocol),
        }
    }
    Err(StopReason::UnsupportedProtocol)
}

fn ip_by_version(frame: &[u8], at: usize, s: &mut PacketSummary) -> Result<(), StopReason> {
    match byte(frame, at)? >> 4 {
        4 => ipv4(frame, at, s),
        6 => ipv6(frame, at, s),
        _ => Err(StopReason::UnsupportedProtocol),
    }
}

fn ipv4(frame: &[u8], at: usize, s: &mut PacketSummary) -> Result<(), StopReason> {
    let h = frame.get(at..at + 20).ok_or(StopReason::Truncated)?;
    let ihl = usize::from(h[0] & 0x0f) * 4;
    if ihl < 20 {
        return Err(StopReason::BadLength);
    }
    s.ip_version = Some(4);
    s.tos = Some(h[1]);
    s.ip_total_length = Some(u16::from_be_bytes([h[2], h[3]]));
    s.fragment_id = Some(u32::from(u16::from_be_bytes([h[4], h[5]])));
    let flags_frag = u16::from_be_bytes([h[6], h[7]]);
    s.more_fragments = flags_frag & 0x2000 != 0;
    s.fragment_offset = flags_frag & 0x1fff;
    s.ttl = Some(h[8]);
    s.proto = Some(h[9]);
    let mut src = [0u8; 16];
    src[10] = 0xff;
    src[11] = 0xff;
    let mut dst = src;
    src[12..].copy_from_slice(&h[12..16]);
    dst[12..].copy_from_slice(&h[16..20]);
    s.src_addr = Some(src);
    s.dst_addr = Some(dst);
    if s.fragment_offset != 0 {
        return Err(StopReason::NonFirstFragment);
    }
    transport(frame, at + ihl, h[9], s)
}

fn ipv6(frame: &[u8], at: usize, s: &mut PacketSummary) -> Result<(), StopReason> {
    let h = frame.get(at..at + 40).ok_or(StopReason::Truncated)?;
    let first = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
    s.ip_version = Some(6);
    s.tos = Some(((first >> 20) & 0xff) as u8);
    s.flow_label = Some(first & 0x000f_ffff);
    s.ip_total_length = Some(u16::from_be_bytes([h[4], h[5]]).saturating_add(40));
    s.ttl = Some(h[7]);
    s.src_addr = Some(h[8..24].try_into().unwrap_or_default());
    s.dst_addr = Some(h[24..40].try_into().unwrap_or_default());
    let mut next = h[6];
    let mut pos = at + 40;
    for _ in 0..MAX_IPV6_EXTENSION_HEADERS {
        match next {
            // hop-by-hop, routing, destination options, mobility, HIP, shim6
            0 | 43 | 60 | 135 | 139 | 140 => {
                next = byte(frame, pos)?;
                pos += (usize::from(byte(frame, pos + 1)?) + 1) * 8;
            }
            44 => {
                next = byte(frame, pos)?;
                let offset_flags = be16(frame, pos + 2)?;
                s.fragment_offset = offset_flags >> 3;
                s.more_fragments = offset_flags & 1 != 0;
                s.fragment_id = Some(be32(frame, pos + 4)?);
                pos += 8;
                if s.fragment_offset != 0 {
                    s.proto = Some(next);
                    return Err(StopReason::NonFirstFragment);
                }
            }
            51 => {
                next = byte(frame, pos)?;
                pos += (usize::from(byte(frame, pos + 1)?) + 2) * 4;
            }
            50 => {
                s.proto = Some(50);
                return Err(StopReason::Encrypted);
            }
            proto => {
                s.proto = Some(proto);
                return transport(frame, pos, proto, s);
            }
        }
    }
    Err(StopReason::ExtensionHeaderLimit)
}

fn transport(frame: &[u8], at: usize, proto: u8, s: &mut PacketSummary) -> Result<(), StopReason> {
    match proto {
        6 => {
            frame.get(at..at + 20).ok_or(StopReason::Truncated)?;
            s.src_port = Some(be16(frame, at)?);
            s.dst_port = Some(be16(frame, at + 2)?);
            s.tcp_seq = Some(be32(frame, at + 4)?);
            s.tcp_ack = Some(be32(frame, at + 8)?);
            let offset_flags = be16(frame, at + 12)?;
            s.tcp_flags = Some(offset_flags & 0x01ff);
            s.payload_offset = Some(at + usize::from(offset_flags >> 12) * 4);
        }
        17 | 132 | 136 => {
            s.src_port = Some(be16(frame, at)?);
            s.dst_port = Some(be16(frame, at + 2)?);
            s.payload_offset = Some(at + if proto == 132 { 12 } else { 8 });
            if proto == 17 && s.dst_port == Some(VXLAN_PORT) {
                // flags (I bit: VNI valid), reserved, VNI (24 bits), reserved
                let flags = byte(frame, at + 8)?;
                let vni = be32(frame, at + 12)? >> 8;
                s.tunnel = Some(Tunnel {
                    kind: TunnelKind::Vxlan,
                    id: (flags & 0x08 != 0).then_some(vni),
                    inner_offset: at + 16,
                    inner_link: LinkType::Ethernet,
                    outer_src: [0; 16],
                    outer_dst: [0; 16],
                    outer_length: 0,
                });
            }
        }
        47 => {
            // GRE (RFC 2784/2890): checksum, key and sequence present by flag
            let flags = be16(frame, at)?;
            let protocol = be16(frame, at + 2)?;
            let mut len = 4;
            if flags & 0x8000 != 0 {
                len += 4;
            }
            let key = if flags & 0x2000 != 0 {
                let k = be32(frame, at + len)?;
                len += 4;
                Some(k)
            } else {
                None
            };
            if flags & 0x1000 != 0 {
                len += 4;
            }
            s.payload_offset = Some(at + len);
            let inner_link = match protocol {
                0x6558 => Some(LinkType::Ethernet),
                0x0800 | 0x86dd => Some(LinkType::RawIp),
                _ => None,
            };
            if let Some(inner_link) = inner_link {
                s.tunnel = Some(Tunnel {
                    kind: TunnelKind::Gre,
                    id: key,
                    inner_offset: at + len,
                    inner_link,
                    outer_src: [0; 16],
                    outer_dst: [0; 16],
                    outer_length: 0,
                });
            }
        }
        1 | 58 => {
            let icmp_type = byte(frame, at)?;
            s.icmp_type = Some(icmp_type);
            s.icmp_code = Some(byte(frame, at + 1)?);
            let echo = matches!((proto, icmp_type), (1, 0 | 8) | (58, 128 | 129));
            if echo {
                s.icmp_echo_id = Some(be16(frame, at + 4)?);
            }
            s.payload_offset = Some(at + 8);
        }
        _ => s.payload_offset = Some(at),
    }
    // a header whose length field points past the captured bytes (cut options)
    if s.payload_offset.is_some_and(|p| p > frame.len()) {
        s.payload_offset = None;
        return Err(StopReason::Truncated);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4_tcp_frame() -> Vec<u8> {
        let mut f = vec![0u8; 14 + 4 + 20 + 20];
        f[0..6].copy_from_slice(&[1, 2, 3, 4, 5, 6]);
        f[6..12].copy_from_slice(&[7, 8, 9, 10, 11, 12]);
        f[12..14].copy_from_slice(&0x8100u16.to_be_bytes());
        f[14..16].copy_from_slice(&42u16.to_be_bytes());
        f[16..18].copy_from_slice(&0x0800u16.to_be_bytes());
        let ip = 18;
        f[ip] = 0x45;
        f[ip + 2..ip + 4].copy_from_slice(&40u16.to_be_bytes());
        f[ip + 8] = 63;
        f[ip + 9] = 6;
        f[ip + 12..ip + 16].copy_from_slice(&[10, 0, 0, 1]);
        f[ip + 16..ip + 20].copy_from_slice(&[10, 0, 0, 2]);
        let t = ip + 20;
        f[t..t + 2].copy_from_slice(&1234u16.to_be_bytes());
        f[t + 2..t + 4].copy_from_slice(&443u16.to_be_bytes());
        f[t + 12] = 0x50;
        f[t + 13] = 0x12;
        f
    }

    #[test]
    fn ethernet_vlan_ipv4_tcp() {
        let s = parse_frame(LinkType::Ethernet, &ipv4_tcp_frame());
        assert_eq!(s.stopped, None);
        assert_eq!(s.vlan, Some(42));
        assert_eq!(s.ip_version, Some(4));
        assert_eq!(s.src_addr.unwrap()[12..], [10, 0, 0, 1]);
        assert_eq!((s.src_port, s.dst_port), (Some(1234), Some(443)));
        assert_eq!(s.tcp_flags, Some(0x12));
        assert_eq!(s.ttl, Some(63));
    }

    #[test]
    fn every_truncation_is_reported_not_panicked() {
        let f = ipv4_tcp_frame();
        for cut in 0..f.len() {
            let s = parse_frame(LinkType::Ethernet, &f[..cut]);
            assert_eq!(s.stopped, Some(StopReason::Truncated), "cut at {cut}");
        }
    }

    #[test]
    fn ipv6_extension_header_loop_is_bounded() {
        let mut f = vec![0u8; 40 + 8 * 20];
        f[0] = 0x60;
        f[6] = 0; // hop-by-hop, each one pointing to another hop-by-hop
        let s = parse_frame(LinkType::RawIp, &f);
        assert_eq!(s.stopped, Some(StopReason::ExtensionHeaderLimit));
    }
}
