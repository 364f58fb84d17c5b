//! Addresses are stored as 16 bytes everywhere, IPv4 mapped into IPv6
//! (`::ffff:a.b.c.d`), so that one column holds both families and sorts and
//! compares without a second column.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Maps an IPv4 address given as its 4 network-order bytes into IPv6.
#[inline]
pub fn ipv4_mapped(v4: [u8; 4]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[10] = 0xff;
    out[11] = 0xff;
    out[12..].copy_from_slice(&v4);
    out
}

/// Whether a stored address is an IPv4 one (`::ffff:a.b.c.d`), by its first
/// 12 bytes: checked per packet and per row, so on the bytes themselves.
#[inline]
pub fn is_ipv4_mapped(addr: &[u8]) -> bool {
    addr.get(..12) == Some(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff][..])
}

/// Any address as stored: IPv4 mapped into IPv6.
pub fn ip_to_mapped(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => ipv4_mapped(v4.octets()),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// A MAC address as the 48-bit number the MAC columns hold.
pub fn mac_to_u64(mac: [u8; 6]) -> u64 {
    mac.iter().fold(0, |acc, &b| (acc << 8) | u64::from(b))
}

/// Turns a stored 16-byte address back into an `IpAddr`, IPv4 for mapped ones.
pub fn mapped_to_ip(bytes: [u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(bytes);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// Formats a stored address as ordinary dotted or colon text.
pub fn format_addr(bytes: &[u8]) -> String {
    match <[u8; 16]>::try_from(bytes) {
        Ok(b) => mapped_to_ip(b).to_string(),
        Err(_) => match <[u8; 4]>::try_from(bytes) {
            Ok(b) => Ipv4Addr::from(b).to_string(),
            Err(_) => format!("<{} bytes>", bytes.len()),
        },
    }
}

/// An IPv4 or IPv6 network, kept in the 16-byte mapped form of the
/// stored addresses (IPv4 prefix lengths plus 96), so that one comparison
/// serves both families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    /// Network address, masked.
    pub net: u128,
    /// Prefix length over 128 bits (IPv4 lengths plus 96).
    pub prefix: u8,
}

impl Cidr {
    pub fn contains(&self, addr: [u8; 16]) -> bool {
        u128::from_be_bytes(addr) & prefix_mask(self.prefix) == self.net
    }

    pub fn contains_ip(&self, ip: IpAddr) -> bool {
        self.contains(ip_to_mapped(canonical(ip)))
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ip = mapped_to_ip(self.net.to_be_bytes());
        let len = if ip.is_ipv4() {
            self.prefix - 96
        } else {
            self.prefix
        };
        write!(f, "{ip}/{len}")
    }
}

/// IPv4-mapped IPv6 addresses (dual-stack sockets) compare as IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn prefix_mask(prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(prefix))
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;

    /// `192.0.2.0/24`, `2001:db8::/32`, or one address (a host route).
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let ip: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("'{s}': not an address or network"))?;
        let (max, offset) = if ip.is_ipv4() { (32u8, 96u8) } else { (128, 0) };
        let len = match len {
            None => max,
            Some(l) => l
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|&l| l <= max)
                .ok_or_else(|| format!("'{s}': prefix length must be 0..={max}"))?,
        };
        let prefix = len + offset;
        Ok(Cidr {
            net: u128::from_be_bytes(ip_to_mapped(ip)) & prefix_mask(prefix),
            prefix,
        })
    }
}

impl<'de> serde::Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Longest-prefix match over a set of networks, each with a value: one hash
/// map per prefix length in use, longest first. The networks config, the
/// zones of a policy and address lists all look addresses up this way.
#[derive(Debug, Clone)]
pub struct PrefixTable<T> {
    by_length: Vec<(
        u8,
        std::collections::HashMap<u128, T, foldhash::fast::RandomState>,
    )>,
}

impl<T> Default for PrefixTable<T> {
    fn default() -> Self {
        PrefixTable {
            by_length: Vec::new(),
        }
    }
}

impl<T> PrefixTable<T> {
    /// Adds a network; the first value given for a network stays.
    pub fn insert(&mut self, cidr: Cidr, value: T) {
        let slot = match self.by_length.iter().position(|(l, _)| *l == cidr.prefix) {
            Some(p) => p,
            None => {
                self.by_length.push((cidr.prefix, Default::default()));
                self.by_length
                    .sort_by_key(|(len, _)| std::cmp::Reverse(*len));
                self.by_length
                    .iter()
                    .position(|(l, _)| *l == cidr.prefix)
                    .expect("just added")
            }
        };
        self.by_length[slot].1.entry(cidr.net).or_insert(value);
    }

    /// The value of the longest network holding `addr`.
    pub fn lookup(&self, addr: [u8; 16]) -> Option<&T> {
        let a = u128::from_be_bytes(addr);
        self.by_length
            .iter()
            .find_map(|(len, nets)| nets.get(&(a & prefix_mask(*len))))
    }

    /// How many networks it holds.
    pub fn len(&self) -> usize {
        self.by_length.iter().map(|(_, n)| n.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_length.is_empty()
    }
}

/// The networks inside: the network's own hosts, whose traffic starts
/// inside it. Detections read it (beacons go from inside to outside,
/// lateral movement stays inside), and so does counting traffic once
/// (traffic from outside that leaves the network is transit). The private
/// ranges (RFC 1918, RFC 4193) when no network is given.
#[derive(Debug, Clone)]
pub struct Inside(PrefixTable<()>);

impl Inside {
    /// The networks given, or the private ranges when none are.
    pub fn new(networks: &[Cidr]) -> Inside {
        const PRIVATE: &[&str] = &["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"];
        let mut table = PrefixTable::default();
        if networks.is_empty() {
            for n in PRIVATE {
                table.insert(n.parse().expect("a network"), ());
            }
        }
        for n in networks {
            table.insert(*n, ());
        }
        Inside(table)
    }

    pub fn holds(&self, addr: [u8; 16]) -> bool {
        self.0.lookup(addr).is_some()
    }
}

impl Default for Inside {
    fn default() -> Self {
        Inside::new(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_prefix_wins_in_both_families() {
        let mut t = PrefixTable::default();
        t.insert("10.0.0.0/8".parse().unwrap(), "wide");
        t.insert("10.1.0.0/16".parse().unwrap(), "narrow");
        t.insert("10.1.0.0/16".parse().unwrap(), "second");
        t.insert("2001:db8::/32".parse().unwrap(), "v6");
        let at = |s: &str| t.lookup(ip_to_mapped(s.parse().unwrap())).copied();
        assert_eq!(at("10.1.2.3"), Some("narrow"));
        assert_eq!(at("10.9.2.3"), Some("wide"));
        assert_eq!(at("2001:db8::1"), Some("v6"));
        assert_eq!(at("192.0.2.1"), None);
        assert_eq!(t.len(), 3);
        let c: Cidr = "192.0.2.7/24".parse().unwrap();
        assert_eq!(c.to_string(), "192.0.2.0/24");
        assert!(c.contains_ip("::ffff:192.0.2.9".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
    }

    #[test]
    fn v4_round_trips_through_mapping() {
        let stored = ipv4_mapped([192, 0, 2, 7]);
        assert!(is_ipv4_mapped(&stored));
        assert_eq!(mapped_to_ip(stored).to_string(), "192.0.2.7");
        assert_eq!(format_addr(&stored), "192.0.2.7");
    }

    #[test]
    fn v6_stays_v6() {
        let addr: Ipv6Addr = "2001:db8::1".parse().unwrap();
        assert!(!is_ipv4_mapped(&addr.octets()));
        assert_eq!(format_addr(&addr.octets()), "2001:db8::1");
    }
}
