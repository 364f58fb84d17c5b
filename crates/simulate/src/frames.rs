//! Ethernet frames of simulated packets, and pcap files of them.

use std::io::Write;
use std::path::Path;

use crate::scenario::SimFrame;

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
        f.extend_from_slice(&[0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]); // PSH+ACK
    } else {
        f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
    }
    f.extend_from_slice(payload);
    f
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
