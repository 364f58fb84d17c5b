//! Traffic counted once. A packet that crosses six observation points on
//! its way is in six flow records, and NAT devices and firewalls send
//! session events as records too: adding them all up shows six times the
//! traffic, and events as flows. Aggregates count each packet once, where
//! it crosses the network's boundary: they leave out the records of points
//! the collector classed as `internal` (`[[serve.boundary]]`, the
//! `boundary` column), those of `transit` traffic leaving the network (it
//! was counted where it entered), and event records; records of
//! unclassified points still count, so that without any boundary
//! configured every record but the events does.
//!
//! Events are NAT session events and the firewall events that carry no
//! volume of their own: a flow created, denied or alerted on, and the
//! periodic updates of a flow whose teardown record (Cisco NSEL's
//! "deleted") carries its totals, which count.
//!
//! A query that groups or filters by a point, an exporter or an interface
//! looks at points, and counts at each of them; so does one that asks for
//! [`Counting::EveryPoint`] (`--every-point`). One that names `boundary`
//! keeps the internal and transit records (it asks about them), and one
//! that names `nat_event` or `firewall_event` keeps the events.

use arrow_array::cast::AsArray;
use arrow_array::types::{UInt8Type, UInt64Type};
use arrow_array::{Array, BooleanArray, PrimitiveArray, RecordBatch};
use arrow_schema::ArrowError;

use super::Query;

/// Where aggregates count traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Counting {
    /// Once, at the network's boundary; events are not traffic.
    #[default]
    Once,
    /// Every record, at every point that saw it.
    EveryPoint,
}

/// Fields that name where a record was observed.
pub const POINT_FIELDS: &[&str] = &[
    "sampler_address",
    "exporter_name",
    "observation_domain_id",
    "observation_point_id",
    "observation_point_name",
    "in_if",
    "out_if",
    "in_if_name",
    "out_if_name",
];

/// The columns that say whether a record counts.
pub(crate) const COLUMNS: [&str; 3] = ["boundary", "nat_event", "firewall_event"];

/// What a query's aggregates left out, and why.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct LeftOut {
    /// Where the query counted.
    pub counting: Counting,
    /// Records of internal points: the same packets, seen again inside.
    pub internal_records: u64,
    /// Records of traffic leaving the network that entered it elsewhere:
    /// the same packets, counted where they came in.
    pub transit_records: u64,
    /// Event records (NAT session events, firewall events without volume).
    pub event_records: u64,
}

impl LeftOut {
    pub fn add(&mut self, other: LeftOut) {
        self.internal_records += other.internal_records;
        self.transit_records += other.transit_records;
        self.event_records += other.event_records;
    }

    /// How an answer says where it counted.
    pub fn describe(&self) -> String {
        match self.counting {
            Counting::EveryPoint => "counted at every point that saw it".to_string(),
            Counting::Once
                if self.internal_records + self.transit_records + self.event_records == 0 =>
            {
                "counted once (no record of an internal point, of transit or of an event)"
                    .to_string()
            }
            Counting::Once => format!(
                "counted once, at the network's boundary: {} records of internal points, {} of transit leaving and {} event records left out",
                self.internal_records, self.transit_records, self.event_records
            ),
        }
    }
}

/// Which records a query leaves out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LeaveOut {
    internal: bool,
    events: bool,
}

/// What `q` leaves out (`None`: nothing, every record counts): internal
/// records and events, unless it asks for every point, names a point, or
/// names what it would leave out.
pub(crate) fn leave_out(q: &Query) -> Option<LeaveOut> {
    let mut fields = q.group_by.clone();
    if let Some(f) = &q.filter {
        super::exec::filter_fields(f, &mut fields);
    }
    if q.counting == Counting::EveryPoint || fields.iter().any(|f| POINT_FIELDS.contains(f)) {
        return None;
    }
    let rule = LeaveOut {
        internal: !fields.contains(&"boundary"),
        events: !fields.contains(&"nat_event") && !fields.contains(&"firewall_event"),
    };
    (rule.internal || rule.events).then_some(rule)
}

/// How `q` counts.
pub(crate) fn counting(q: &Query) -> Counting {
    match leave_out(q) {
        Some(_) => Counting::Once,
        None => Counting::EveryPoint,
    }
}

/// The rows of a batch that count, and what was left out (weighted by the
/// `flows` column on rollups).
pub(crate) fn keep(
    batch: RecordBatch,
    rule: LeaveOut,
    left: &mut LeftOut,
) -> Result<RecordBatch, ArrowError> {
    let boundary = batch
        .column_by_name("boundary")
        .map(|c| c.as_string::<i32>())
        .filter(|_| rule.internal);
    let events = |name| {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_primitive_opt::<UInt8Type>())
            .filter(|_| rule.events)
            .filter(|e| e.null_count() < e.len())
    };
    let (nat, firewall) = (events("nat_event"), events("firewall_event"));
    if boundary.is_none_or(|b| b.null_count() == b.len()) && nat.is_none() && firewall.is_none() {
        return Ok(batch);
    }
    let weights = batch
        .column_by_name("flows")
        .and_then(|c| c.as_primitive_opt::<UInt64Type>());
    let weight = |row: usize| weights.map_or(1, |w| w.value(row));
    let keep: BooleanArray = (0..batch.num_rows())
        .map(|row| {
            let place = boundary.filter(|b| b.is_valid(row)).map(|b| b.value(row));
            let code = |e: Option<&PrimitiveArray<UInt8Type>>| {
                e.filter(|e| e.is_valid(row)).map(|e| e.value(row))
            };
            let event = code(nat).is_some_and(|c| c > 0)
                || code(firewall).is_some_and(|c| !firewall_event_counts(c));
            match place {
                Some("internal") => left.internal_records += weight(row),
                Some("transit") => left.transit_records += weight(row),
                _ if event => left.event_records += weight(row),
                _ => return Some(true),
            }
            Some(false)
        })
        .collect();
    if keep.true_count() == keep.len() {
        return Ok(batch);
    }
    arrow_select::filter::filter_record_batch(&batch, &keep)
}

/// Whether a record with this firewall event (IE 233) is traffic: one with
/// no event (0), or a deleted flow's, which carries its totals.
fn firewall_event_counts(code: u8) -> bool {
    matches!(code, 0 | 2)
}
