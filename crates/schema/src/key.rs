//! Flow keys: the directed 5-tuple a report carries, and the canonical,
//! direction-free key both directions of a flow share (Community ID v1,
//! extended with the VLAN/VRF/tunnel context that makes equal tuples
//! different flows). They live here, beside the columns they are read
//! from, so that whatever partitions rows by flow (the correlator's
//! workers, an inlet keying Kafka messages) uses one rule.

use std::hash::BuildHasher;

use serde::Serialize;

/// A directed 5-tuple, addresses IPv4-mapped into IPv6 as everywhere in hopscope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct FlowTuple {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub src_port: u16,
    pub dst_port: u16,
    pub proto: u8,
}

/// The direction-free key: the lower (address, port) end first, plus context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct CanonicalKey {
    pub lo: [u8; 16],
    pub hi: [u8; 16],
    pub lo_port: u16,
    pub hi_port: u16,
    pub proto: u8,
    /// VLAN, VRF or tunnel id separating equal tuples (0: none).
    pub context: u32,
}

impl FlowTuple {
    /// Either end is link-local (169.254.0.0/16, fe80::/10) or the
    /// destination is multicast of link scope or narrower (224.0.0.0/24,
    /// ff01::/16, ff02::/16) or the broadcast address: a packet that no
    /// router forwards.
    pub fn is_link_scoped(&self) -> bool {
        // on the stored bytes: this runs for every report
        use crate::is_ipv4_mapped;
        let link_local = |a: &[u8; 16]| {
            if is_ipv4_mapped(a) {
                a[12] == 169 && a[13] == 254
            } else {
                a[0] == 0xfe && a[1] & 0xc0 == 0x80
            }
        };
        let d = &self.dst;
        let link_multicast = if is_ipv4_mapped(d) {
            d[12..15] == [224, 0, 0] || d[12..] == [255; 4]
        } else {
            // the low nibble of the second octet is the multicast scope
            d[0] == 0xff && d[1] & 0x0f <= 2
        };
        link_local(&self.src) || link_local(&self.dst) || link_multicast
    }

    pub fn reversed(&self) -> FlowTuple {
        FlowTuple {
            src: self.dst,
            dst: self.src,
            src_port: self.dst_port,
            dst_port: self.src_port,
            proto: self.proto,
        }
    }

    /// The canonical key and whether this tuple is its forward direction
    /// (its source is the lower end).
    pub fn canonical(&self, context: u32) -> (CanonicalKey, bool) {
        let forward = (self.src, self.src_port) <= (self.dst, self.dst_port);
        let (lo, hi) = if forward {
            (self, &self.reversed())
        } else {
            (&self.reversed(), self)
        };
        let key = CanonicalKey {
            lo: lo.src,
            hi: hi.src,
            lo_port: lo.src_port,
            hi_port: hi.src_port,
            proto: self.proto,
            context,
        };
        (key, forward)
    }

    /// Community ID v1 with seed 0 (`1:` and the base64 of a SHA-1), the
    /// flow hash Zeek, Suricata and others log, so that journeys join their
    /// records. Ports are taken as the record carries them, ICMP included.
    pub fn community_id(&self) -> String {
        self.community_id_seeded(0)
    }

    /// Community ID v1 with a seed: the specification's way to keep flows of
    /// separate address spaces apart (hopscope seeds with the address space).
    pub fn community_id_seeded(&self, seed: u16) -> String {
        let v4 = is_mapped_v4(&self.src) && is_mapped_v4(&self.dst);
        let addr = |a: &[u8; 16]| -> Vec<u8> { if v4 { a[12..].to_vec() } else { a.to_vec() } };
        let (mut a, mut b) = (addr(&self.src), addr(&self.dst));
        let (mut pa, mut pb) = (self.src_port, self.dst_port);
        if (a.as_slice(), pa) > (b.as_slice(), pb) {
            std::mem::swap(&mut a, &mut b);
            std::mem::swap(&mut pa, &mut pb);
        }
        let mut h = sha1_smol::Sha1::new();
        h.update(&seed.to_be_bytes());
        h.update(&a);
        h.update(&b);
        h.update(&[self.proto, 0]);
        h.update(&pa.to_be_bytes());
        h.update(&pb.to_be_bytes());
        format!("1:{}", base64(&h.digest().bytes()))
    }

    /// `src:port > dst:port proto` for people.
    pub fn display(&self) -> String {
        format!(
            "{} > {} p{}",
            endpoint(&self.src, self.src_port),
            endpoint(&self.dst, self.dst_port),
            self.proto
        )
    }
}

impl Serialize for FlowTuple {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.display())
    }
}

impl CanonicalKey {
    /// Which of `partitions` workers owns this key: every observation of a
    /// flow, from any point, in either direction, lands on the same one.
    pub fn partition(&self, partitions: usize) -> usize {
        let h = foldhash::fast::FixedState::with_seed(0x6a6f_7572).hash_one(self);
        (h % partitions.max(1) as u64) as usize
    }
}

fn is_mapped_v4(a: &[u8; 16]) -> bool {
    a[..10].iter().all(|&b| b == 0) && a[10] == 0xff && a[11] == 0xff
}

fn endpoint(a: &[u8; 16], port: u16) -> String {
    let ip = crate::mapped_to_ip(*a);
    match ip {
        std::net::IpAddr::V4(v4) => format!("{v4}:{port}"),
        std::net::IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.len();
        let v = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= n {
                out.push(ALPHABET[(v >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_scoped_packets_are_told_apart() {
        let tuple = |src: &str, dst: &str| FlowTuple {
            src: crate::ip_to_mapped(src.parse().unwrap()),
            dst: crate::ip_to_mapped(dst.parse().unwrap()),
            ..FlowTuple::default()
        };
        for (src, dst) in [
            ("fe80::1", "ff02::16"),
            ("2001:db8::1", "ff02::1:ff00:1"),
            ("fe80::1", "2001:db8::2"),
            ("169.254.1.1", "10.0.0.1"),
            ("10.0.0.1", "224.0.0.5"),
            ("10.0.0.1", "255.255.255.255"),
        ] {
            assert!(tuple(src, dst).is_link_scoped(), "{src} > {dst}");
        }
        for (src, dst) in [
            ("2001:db8::1", "2001:db8::2"),
            ("10.0.0.1", "239.1.1.1"),
            ("2001:db8::1", "ff0e::1"),
            ("198.18.1.2", "198.18.2.2"),
        ] {
            assert!(!tuple(src, dst).is_link_scoped(), "{src} > {dst}");
        }
    }

    fn v4(a: [u8; 4]) -> [u8; 16] {
        crate::ipv4_mapped(a)
    }

    #[test]
    fn community_id_matches_the_specification_baseline() {
        // the reference implementation's TCP example (community-id-spec, seed 0)
        let t = FlowTuple {
            src: v4([128, 232, 110, 120]),
            dst: v4([66, 35, 250, 204]),
            src_port: 34855,
            dst_port: 80,
            proto: 6,
        };
        assert_eq!(t.community_id(), "1:LQU9qZlK+B5F3KDmev6m5PMibrg=");
        assert_eq!(t.reversed().community_id(), t.community_id());
    }

    #[test]
    fn both_directions_share_one_key_and_partition() {
        let t = FlowTuple {
            src: v4([10, 0, 0, 2]),
            dst: v4([10, 0, 0, 1]),
            src_port: 5000,
            dst_port: 443,
            proto: 6,
        };
        let (k1, f1) = t.canonical(7);
        let (k2, f2) = t.reversed().canonical(7);
        assert_eq!(k1, k2);
        assert_ne!(f1, f2);
        assert_eq!(k1.partition(8), k2.partition(8));
        assert_ne!(t.canonical(8).0, k1, "context separates equal tuples");
    }
}
