//! IF-MIB (RFC 2863): an agent's interfaces with their names, speeds,
//! states and octet counters, read column by column.

use std::collections::BTreeMap;

use crate::SnmpError;
use crate::ber::{Oid, Value};
use crate::client::Session;

/// One interface as the agent describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interface {
    pub index: u32,
    /// ifName, the short name (`ge-0/0/1`, `eth0`).
    pub name: Option<String>,
    /// ifAlias, the operator's description.
    pub alias: Option<String>,
    /// ifDescr, the vendor's description.
    pub descr: Option<String>,
    pub if_type: Option<u32>,
    /// ifHighSpeed × 10⁶ where the agent has it, else ifSpeed.
    pub speed_bps: Option<u64>,
    pub admin_up: Option<bool>,
    pub oper_up: Option<bool>,
    /// Octets and unicast packets: the 64-bit counters (ifHC*) where the
    /// agent has them, else the 32-bit ones.
    pub in_octets: Option<u64>,
    pub out_octets: Option<u64>,
    pub in_ucast_pkts: Option<u64>,
    pub out_ucast_pkts: Option<u64>,
    pub in_discards: Option<u64>,
    pub in_errors: Option<u64>,
    pub out_discards: Option<u64>,
    pub out_errors: Option<u64>,
    /// Whether the octet counters are 64-bit (they wrap at 2³² otherwise).
    pub counters_64: bool,
}

const IF_ENTRY: [u32; 9] = [1, 3, 6, 1, 2, 1, 2, 2, 1];
const IF_X_ENTRY: [u32; 10] = [1, 3, 6, 1, 2, 1, 31, 1, 1, 1];

/// The columns read, where each lands in an [`Interface`].
type Setter = fn(&mut Interface, &Value);

/// The columns, the octet and packet counters first: when they were read
/// is the reading's time, which a slow walk of the names after them does
/// not move. The 64-bit counters come before the 32-bit ones, which only
/// count where the agent has no ifXTable (SNMPv1-era agents).
fn columns() -> [(Oid, Setter); 20] {
    let entry = |c: u32| Oid(IF_ENTRY.to_vec()).child(c);
    let x = |c: u32| Oid(IF_X_ENTRY.to_vec()).child(c);
    fn narrow(v: &Value) -> Option<u32> {
        v.as_u64().and_then(|n| u32::try_from(n).ok())
    }
    [
        (x(6), |i, v| {
            i.in_octets = v.as_u64();
            i.counters_64 = true;
        }),
        (x(10), |i, v| i.out_octets = v.as_u64()),
        (x(7), |i, v| i.in_ucast_pkts = v.as_u64()),
        (x(11), |i, v| i.out_ucast_pkts = v.as_u64()),
        (entry(10), |i, v| {
            if !i.counters_64 {
                i.in_octets = v.as_u64();
            }
        }),
        (entry(16), |i, v| {
            if !i.counters_64 {
                i.out_octets = v.as_u64();
            }
        }),
        (entry(11), |i, v| {
            if !i.counters_64 {
                i.in_ucast_pkts = v.as_u64();
            }
        }),
        (entry(17), |i, v| {
            if !i.counters_64 {
                i.out_ucast_pkts = v.as_u64();
            }
        }),
        (entry(13), |i, v| i.in_discards = v.as_u64()),
        (entry(14), |i, v| i.in_errors = v.as_u64()),
        (entry(19), |i, v| i.out_discards = v.as_u64()),
        (entry(20), |i, v| i.out_errors = v.as_u64()),
        (entry(2), |i, v| i.descr = v.as_text()),
        (entry(3), |i, v| i.if_type = narrow(v)),
        // 0 is unknown; 4 294 967 295 "faster than this": ifHighSpeed says
        (entry(5), |i, v| {
            i.speed_bps = v.as_u64().filter(|&s| s > 0 && s < u64::from(u32::MAX))
        }),
        (entry(7), |i, v| i.admin_up = narrow(v).map(|s| s == 1)),
        (entry(8), |i, v| i.oper_up = narrow(v).map(|s| s == 1)),
        (x(1), |i, v| i.name = v.as_text()),
        (x(15), |i, v| {
            // ifSpeed is exact (a T1's 1 544 000); ifHighSpeed rounds to
            // megabits: it counts where ifSpeed is missing or saturated
            if i.speed_bps.is_none() {
                i.speed_bps = v
                    .as_u64()
                    .filter(|&s| s > 0)
                    .and_then(|s| s.checked_mul(1_000_000));
            }
        }),
        (x(18), |i, v| {
            i.alias = v.as_text().filter(|a| !a.is_empty())
        }),
    ]
}

/// The columns whose reading fixes the counters' time: the first eight.
const COUNTER_COLUMNS: usize = 8;

/// Every interface of an agent, and when its counters were read.
#[derive(Debug, Clone)]
pub struct Reading {
    pub interfaces: Vec<Interface>,
    /// Once the counter columns were walked (the names after them may
    /// take longer, on a slow agent).
    pub counted_at: std::time::SystemTime,
}

/// Every interface of the agent.
pub fn interfaces(session: &mut Session) -> Result<Reading, SnmpError> {
    let mut by_index: BTreeMap<u32, Interface> = BTreeMap::new();
    let mut counted_at = std::time::SystemTime::now();
    for (n, (column, set)) in columns().into_iter().enumerate() {
        if n == COUNTER_COLUMNS {
            counted_at = std::time::SystemTime::now();
        }
        for (oid, value) in session.walk(&column, 32)? {
            let Some(&index) = oid
                .0
                .get(column.0.len())
                .filter(|_| oid.0.len() == column.0.len() + 1)
            else {
                continue;
            };
            let interface = by_index.entry(index).or_insert_with(|| Interface {
                index,
                ..Interface::default()
            });
            set(interface, &value);
        }
    }
    Ok(Reading {
        interfaces: by_index.into_values().collect(),
        counted_at,
    })
}
