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

#[cfg(test)]
mod tests {
    use super::*;

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
