//! Hash-based packet selection (RFC 5475 §6.2.3, RFC 5476) and packet
//! digests: every probe on a path hashes the same invariant fields of a
//! packet with the same function and seed, so they select the same packets
//! and give each the same digest, and the collector can follow each
//! selected packet hop by hop.

use hopscope_packet::PacketSummary;

/// Hash functions registered for hash-based selection (RFC 5477 IE 304:
/// 6 = BOB, 8 = CRC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashFunction {
    /// Bob Jenkins' lookup2 hash, the BOB function of RFC 5475 Appendix A.2.
    Bob,
    /// CRC-32 (IEEE 802.3 polynomial), seeded through its initial value.
    Crc32,
}

impl HashFunction {
    /// selectorAlgorithm (IE 304) value.
    pub fn selector_algorithm(self) -> u16 {
        match self {
            HashFunction::Bob => 6,
            HashFunction::Crc32 => 8,
        }
    }

    fn hash(self, data: &[u8], seed: u32) -> u32 {
        match self {
            HashFunction::Bob => bob_hash(data, seed),
            HashFunction::Crc32 => crc32(data, seed),
        }
    }
}

/// Which packet fields are hashed: only fields no router on the path rewrites.
/// TTL, checksums and DSCP/ECN are never hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Addresses, ports, protocol, IP identification, TCP sequence and
    /// acknowledgement numbers and a payload prefix: for paths without NAT.
    NatFree,
    /// Protocol, IP identification, TCP sequence and acknowledgement numbers
    /// and a payload prefix, no addresses or ports: the same packet keeps its selection across NAT.
    NatCrossing,
    /// The nat-free fields of the inner packet of a GRE or VXLAN tunnel, so
    /// that probes inside and outside the tunnel select alike (the meter
    /// must decapsulate).
    Tunnel,
}

impl Profile {
    pub fn name(self) -> &'static str {
        match self {
            Profile::NatFree => "nat-free",
            Profile::NatCrossing => "nat-crossing",
            Profile::Tunnel => "tunnel",
        }
    }
}

/// How a probe selects packets; identical at every probe of a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelectorConfig {
    pub function: HashFunction,
    pub seed: u32,
    /// Select `selected` packets in `population` (1/100: one in a hundred).
    pub selected: u32,
    pub population: u32,
    pub profile: Profile,
    /// Octets of transport payload hashed (they tell apart packets whose
    /// headers are alike, such as retransmissions with equal IP ids).
    pub payload_prefix: usize,
    pub selector_id: u64,
}

impl Default for SelectorConfig {
    fn default() -> Self {
        Self {
            function: HashFunction::Bob,
            seed: 0x6870_7363, // "hpsc"
            selected: 1,
            population: 1,
            profile: Profile::NatFree,
            payload_prefix: 16,
            selector_id: 1,
        }
    }
}

/// Applies a [`SelectorConfig`] to packets and counts what it saw.
#[derive(Debug)]
pub struct Selector {
    config: SelectorConfig,
    /// Selected when the 32-bit hash is at most this.
    threshold: u64,
    pub observed: u64,
    pub selected: u64,
    input: Vec<u8>,
}

/// Seeds of the two digest halves: fixed, different from any selection seed use.
const DIGEST_SEEDS: (u32, u32) = (0x9e37_79b9, 0x85eb_ca6b);

impl Selector {
    pub fn new(config: SelectorConfig) -> Self {
        let population = u64::from(config.population.max(1));
        let selected = u64::from(config.selected).min(population);
        // selected range [0, threshold) of the hash's 2^32 outputs
        let threshold = ((1u64 << 32) * selected) / population;
        Self {
            config,
            threshold,
            observed: 0,
            selected: 0,
            input: Vec::with_capacity(64 + config.payload_prefix),
        }
    }

    pub fn config(&self) -> &SelectorConfig {
        &self.config
    }

    /// Upper end (exclusive) of the selected hash range, for the options record.
    pub fn selected_range_max(&self) -> u64 {
        self.threshold
    }

    /// Offers a packet; returns its 64-bit digest when it is selected.
    pub fn consider(&mut self, packet: &PacketSummary, frame: &[u8]) -> Option<u64> {
        self.observed += 1;
        self.fill_input(packet, frame);
        let h = self.config.function.hash(&self.input, self.config.seed);
        if u64::from(h) >= self.threshold {
            return None;
        }
        self.selected += 1;
        Some(self.digest())
    }

    /// The digest of the last input: a second hash, independent of the
    /// selection hash, 64 bits from two differently seeded functions.
    fn digest(&self) -> u64 {
        let high = bob_hash(&self.input, DIGEST_SEEDS.0);
        let low = crc32(&self.input, DIGEST_SEEDS.1);
        (u64::from(high) << 32) | u64::from(low)
    }

    fn fill_input(&mut self, p: &PacketSummary, frame: &[u8]) {
        let input = &mut self.input;
        input.clear();
        if matches!(self.config.profile, Profile::NatFree | Profile::Tunnel) {
            input.extend_from_slice(&p.src_addr.unwrap_or_default());
            input.extend_from_slice(&p.dst_addr.unwrap_or_default());
            input.extend_from_slice(&p.src_port.unwrap_or(0).to_be_bytes());
            input.extend_from_slice(&p.dst_port.unwrap_or(0).to_be_bytes());
        }
        input.push(p.proto.unwrap_or(0));
        // ICMP's payload starts after its header: the type tells an echo
        // reply from its request, which carries the same payload
        if let Some(icmp_type) = p.icmp_type {
            input.extend_from_slice(&[icmp_type, p.icmp_code.unwrap_or(0)]);
        }
        // the length tells apart packets of different flows that share an
        // IP id and a payload prefix (constant protocol headers), and no
        // router or NAT on the way changes it
        input.extend_from_slice(&p.ip_total_length.unwrap_or(0).to_be_bytes());
        input.extend_from_slice(&p.fragment_id.unwrap_or(0).to_be_bytes());
        input.extend_from_slice(&p.fragment_offset.to_be_bytes());
        input.extend_from_slice(&p.tcp_seq.unwrap_or(0).to_be_bytes());
        input.extend_from_slice(&p.tcp_ack.unwrap_or(0).to_be_bytes());
        if let Some(at) = p.payload_offset {
            let end = (at + self.config.payload_prefix).min(frame.len());
            if at < end {
                input.extend_from_slice(&frame[at..end]);
            }
        }
    }
}

/// Bob Jenkins' lookup2 hash (RFC 5475 Appendix A.2, "BOB").
pub fn bob_hash(data: &[u8], initval: u32) -> u32 {
    fn mix(a: &mut u32, b: &mut u32, c: &mut u32) {
        macro_rules! step {
            ($x:ident, $y:ident, $z:ident, $op:tt, $n:expr) => {
                *$x = $x.wrapping_sub(*$y).wrapping_sub(*$z);
                *$x ^= *$z $op $n;
            };
        }
        step!(a, b, c, >>, 13);
        step!(b, c, a, <<, 8);
        step!(c, a, b, >>, 13);
        step!(a, b, c, >>, 12);
        step!(b, c, a, <<, 16);
        step!(c, a, b, >>, 5);
        step!(a, b, c, >>, 3);
        step!(b, c, a, <<, 10);
        step!(c, a, b, >>, 15);
    }
    let word = |k: &[u8]| u32::from_le_bytes([k[0], k[1], k[2], k[3]]);
    let (mut a, mut b, mut c) = (0x9e37_79b9u32, 0x9e37_79b9u32, initval);
    let mut k = data;
    while k.len() >= 12 {
        a = a.wrapping_add(word(&k[0..4]));
        b = b.wrapping_add(word(&k[4..8]));
        c = c.wrapping_add(word(&k[8..12]));
        mix(&mut a, &mut b, &mut c);
        k = &k[12..];
    }
    c = c.wrapping_add(data.len() as u32);
    // the tail, as lookup2's fall-through switch; c's low byte holds the length
    let tail = |i: usize, shift: u32| u32::from(k[i]) << shift;
    for i in (0..k.len()).rev() {
        match i {
            8..=10 => c = c.wrapping_add(tail(i, 8 * (i as u32 - 7))),
            4..=7 => b = b.wrapping_add(tail(i, 8 * (i as u32 - 4))),
            _ => a = a.wrapping_add(tail(i, 8 * i as u32)),
        }
    }
    mix(&mut a, &mut b, &mut c);
    c
}

/// The observation point id of a point named `name` (IE 138): what a probe
/// exports unless told an id, and how the config, the simulator and the
/// demo name points by id. One rule, here.
pub fn observation_point_id(name: &str) -> u64 {
    u64::from(crc32(name.as_bytes(), 0))
}

/// CRC-32 (IEEE 802.3, reflected 0xEDB88320) with `seed` xored into the
/// initial value; seed 0 gives the standard CRC-32.
pub fn crc32(data: &[u8], seed: u32) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    let mut crc = !seed;
    for &b in data {
        crc = TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use hopscope_packet::{LinkType, parse_frame};

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789", 0), 0xcbf4_3926);
    }

    #[test]
    fn bob_is_deterministic_and_seed_sensitive() {
        let data = b"the same packet at every hop";
        assert_eq!(bob_hash(data, 1), bob_hash(data, 1));
        assert_ne!(bob_hash(data, 1), bob_hash(data, 2));
        assert_ne!(bob_hash(&data[..27], 1), bob_hash(data, 1));
        // every tail length reaches the mix
        let mut seen = std::collections::HashSet::new();
        for n in 0..=24 {
            assert!(seen.insert(bob_hash(&data[..n], 0)), "length {n}");
        }
    }

    /// An IPv4/UDP packet with the given TTL, DSCP and addresses.
    fn packet(ttl: u8, tos: u8, src: [u8; 4], sport: u16, ip_id: u16) -> Vec<u8> {
        let mut f = vec![
            0x45,
            tos,
            0,
            40,
            (ip_id >> 8) as u8,
            ip_id as u8,
            0,
            0,
            ttl,
            17,
            0xab,
            0xcd,
        ];
        f.extend_from_slice(&src);
        f.extend_from_slice(&[10, 0, 0, 2]);
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&53u16.to_be_bytes());
        f.extend_from_slice(&[0, 20, 0xff, 0xff]);
        f.extend_from_slice(b"payload!1234");
        f
    }

    fn digest_of(config: SelectorConfig, frame: &[u8]) -> Option<u64> {
        let mut s = Selector::new(config);
        s.consider(&parse_frame(LinkType::RawIp, frame), frame)
    }

    #[test]
    fn routers_rewriting_ttl_checksum_or_dscp_do_not_change_selection() {
        let all = SelectorConfig::default();
        let at_hop1 = packet(64, 0x00, [10, 0, 0, 1], 4000, 7);
        let mut at_hop2 = packet(63, 0xb8, [10, 0, 0, 1], 4000, 7);
        at_hop2[10] = 0x12; // a new checksum
        assert_eq!(digest_of(all, &at_hop1), digest_of(all, &at_hop2));
        assert_ne!(
            digest_of(all, &at_hop1),
            digest_of(all, &packet(64, 0, [10, 0, 0, 1], 4000, 8))
        );
    }

    #[test]
    fn nat_crossing_profile_ignores_addresses_and_ports() {
        let config = SelectorConfig {
            profile: Profile::NatCrossing,
            ..SelectorConfig::default()
        };
        let inside = packet(64, 0, [10, 0, 0, 1], 4000, 7);
        let outside = packet(63, 0, [203, 0, 113, 9], 61000, 7);
        assert_eq!(digest_of(config, &inside), digest_of(config, &outside));
        let nat_free = SelectorConfig::default();
        assert_ne!(digest_of(nat_free, &inside), digest_of(nat_free, &outside));
    }

    #[test]
    fn selects_close_to_the_configured_ratio() {
        let config = SelectorConfig {
            selected: 1,
            population: 20,
            ..SelectorConfig::default()
        };
        let mut s = Selector::new(config);
        for id in 0..20_000u16 {
            let f = packet(64, 0, [10, 0, (id >> 8) as u8, id as u8], 4000 + id, id);
            s.consider(&parse_frame(LinkType::RawIp, &f), &f);
        }
        assert_eq!(s.observed, 20_000);
        // 1000 expected; a binomial standard deviation is about 31
        assert!((850..1150).contains(&s.selected), "{}", s.selected);
    }

    #[test]
    fn tunnel_profile_selects_the_inner_packet_alike_inside_and_outside_the_tunnel() {
        use hopscope_packet::parse_frame_inner;
        let inner = packet(64, 0, [10, 0, 0, 1], 4000, 7);
        // the same inner packet in GRE (no key) between two tunnel endpoints
        let mut gre = vec![
            0x45, 0, 0, 0, 0, 1, 0, 0, 64, 47, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2, 0, 0, 0x08, 0x00,
        ];
        gre.extend_from_slice(&inner);
        let total = gre.len() as u16;
        gre[2..4].copy_from_slice(&total.to_be_bytes());
        let config = SelectorConfig {
            profile: Profile::Tunnel,
            ..SelectorConfig::default()
        };
        let mut s = Selector::new(config);
        let outside = s.consider(&parse_frame(LinkType::RawIp, &inner), &inner);
        let through = s.consider(&parse_frame_inner(LinkType::RawIp, &gre), &gre);
        assert!(outside.is_some());
        assert_eq!(outside, through);
    }
}
