//! Ethernet frames of simulated packets, and pcap files of them.

use std::io::Write;
use std::path::Path;

use std::net::IpAddr;

use crate::scenario::{SimFrame, TunnelSpec};

/// The header fields of one simulated packet at one point.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Header {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub v6: bool,
    pub src_port: u16,
    pub dst_port: u16,
    /// 6 (TCP) or 17 (UDP).
    pub proto: u8,
    pub ttl: u8,
    pub ip_id: u16,
    pub tcp_seq: u32,
    /// TCP flags (SYN, SYN-ACK, then PSH-ACK, as a connection goes).
    pub tcp_flags: u8,
}

/// An Ethernet II frame carrying the packet and `payload`.
pub(crate) fn build_frame(h: &Header, payload: &[u8]) -> Vec<u8> {
    let l4_len = if h.proto == 6 { 20 } else { 8 } + payload.len();
    let mut f = Vec::with_capacity(14 + 40 + l4_len);
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1]);
    if h.v6 {
        f.extend_from_slice(&0x86ddu16.to_be_bytes());
        f.extend_from_slice(&[0x60, 0, 0, 0]);
        f.extend_from_slice(&(l4_len as u16).to_be_bytes());
        f.push(h.proto);
        f.push(h.ttl);
        f.extend_from_slice(&h.src);
        f.extend_from_slice(&h.dst);
    } else {
        f.extend_from_slice(&0x0800u16.to_be_bytes());
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&((20 + l4_len) as u16).to_be_bytes());
        f.extend_from_slice(&h.ip_id.to_be_bytes());
        f.extend_from_slice(&[0x40, 0]); // don't fragment
        f.push(h.ttl);
        f.push(h.proto);
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(&h.src[12..]);
        f.extend_from_slice(&h.dst[12..]);
    }
    f.extend_from_slice(&h.src_port.to_be_bytes());
    f.extend_from_slice(&h.dst_port.to_be_bytes());
    if h.proto == 6 {
        f.extend_from_slice(&h.tcp_seq.to_be_bytes());
        f.extend_from_slice(&0u32.to_be_bytes());
        f.extend_from_slice(&[0x50, h.tcp_flags, 0xff, 0xff, 0, 0, 0, 0]);
    } else {
        f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
    }
    f.extend_from_slice(payload);
    f
}

/// `frame` carried through `tunnel`: GRE (the inner IP packet) or VXLAN
/// (the inner Ethernet frame, UDP port 4789), in an outer IPv4 header from
/// one endpoint to the other (swapped for replies).
pub(crate) fn encapsulate(
    frame: &[u8],
    tunnel: &TunnelSpec,
    reverse: bool,
    outer_ttl: u8,
    ip_id: u16,
) -> Result<Vec<u8>, String> {
    let (IpAddr::V4(a), IpAddr::V4(b)) = (tunnel.from, tunnel.to) else {
        return Err("tunnel endpoints must be IPv4 addresses".into());
    };
    let (src, dst) = if reverse { (b, a) } else { (a, b) };
    let (proto, tunnel_header): (u8, Vec<u8>) = match tunnel.kind.as_str() {
        // GRE: no flags, the inner packet's EtherType
        "gre" => (47, [[0u8, 0], [frame[12], frame[13]]].concat()),
        "vxlan" => {
            let inner = frame.len() + 8 + 8;
            let mut udp = Vec::with_capacity(16);
            // a source port from the inner flow, as VTEPs spread flows
            udp.extend_from_slice(&(49152 | (ip_id & 0x3fff)).to_be_bytes());
            udp.extend_from_slice(&4789u16.to_be_bytes());
            udp.extend_from_slice(&(inner as u16).to_be_bytes());
            udp.extend_from_slice(&[0, 0]);
            udp.extend_from_slice(&[0x08, 0, 0, 0, 0, 0x00, 0x01, 0]); // VNI 1
            (17, udp)
        }
        other => return Err(format!("tunnel kind '{other}': use gre or vxlan")),
    };
    let payload: &[u8] = if proto == 47 { &frame[14..] } else { frame };
    let total = 20 + tunnel_header.len() + payload.len();
    let mut f = Vec::with_capacity(14 + total);
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 4, 0x02, 0, 0, 0, 0, 3]);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&(total as u16).to_be_bytes());
    f.extend_from_slice(&ip_id.to_be_bytes());
    f.extend_from_slice(&[0x40, 0]);
    f.push(outer_ttl);
    f.push(proto);
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(&tunnel_header);
    f.extend_from_slice(payload);
    Ok(f)
}

/// Writes frames as a nanosecond pcap (Ethernet).
pub fn write_pcap(path: &Path, frames: &[SimFrame]) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    out.write_all(&0xa1b2_3c4du32.to_le_bytes())?;
    out.write_all(&2u16.to_le_bytes())?;
    out.write_all(&4u16.to_le_bytes())?;
    out.write_all(&0i32.to_le_bytes())?;
    out.write_all(&0u32.to_le_bytes())?;
    out.write_all(&65535u32.to_le_bytes())?;
    out.write_all(&1u32.to_le_bytes())?;
    for f in frames {
        let secs = f.time_ns.div_euclid(1_000_000_000) as u32;
        let nanos = f.time_ns.rem_euclid(1_000_000_000) as u32;
        out.write_all(&secs.to_le_bytes())?;
        out.write_all(&nanos.to_le_bytes())?;
        out.write_all(&(f.data.len() as u32).to_le_bytes())?;
        out.write_all(&(f.data.len() as u32).to_le_bytes())?;
        out.write_all(&f.data)?;
    }
    out.flush()
}
