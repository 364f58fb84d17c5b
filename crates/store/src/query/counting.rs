//! Traffic counted once. A packet that crosses six observation points on
//! its way is in six flow records, and a NAT device's session events are
//! records too: adding them all up shows six times the traffic, and events
//! as flows. Aggregates count each packet once, where it crosses the
//! network's boundary: they leave out the records of points the collector
//! classed as `internal` (`[[serve.boundary]]`, the `boundary` column) and
//! event records (NAT events); records of unclassified points still count,
//! so that without any boundary configured every record but the events does.
//!
//! A query that groups or filters by a point, an exporter or an interface
//! looks at points, and counts at each of them; so does one that asks for
//! [`Counting::EveryPoint`] (`--every-point`). One that names `boundary`
//! keeps the internal records (it asks about them), and one that names
//! `nat_event` keeps the events.

use arrow_array::cast::AsArray;
use arrow_array::types::{UInt8Type, UInt64Type};
use arrow_array::{Array, BooleanArray, RecordBatch};
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
pub(crate) const COLUMNS: [&str; 2] = ["boundary", "nat_event"];

/// What a query's aggregates left out, and why.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct LeftOut {
    /// Where the query counted.
    pub counting: Counting,
    /// Records of internal points: the same packets, seen again inside.
    pub internal_records: u64,
    /// Event records (NAT session events).
    pub event_records: u64,
}

impl LeftOut {
    pub fn add(&mut self, other: LeftOut) {
        self.internal_records += other.internal_records;
        self.event_records += other.event_records;
    }

    /// How an answer says where it counted.
    pub fn describe(&self) -> String {
        match self.counting {
            Counting::EveryPoint => "counted at every point that saw it".to_string(),
            Counting::Once if self.internal_records + self.event_records == 0 => {
                "counted once (no record of an internal point or an event)".to_string()
            }
            Counting::Once => format!(
                "counted once, at the network's boundary: {} records of internal points and {} event records left out",
                self.internal_records, self.event_records
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
        events: !fields.contains(&"nat_event"),
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
    let events = batch
        .column_by_name("nat_event")
        .and_then(|c| c.as_primitive_opt::<UInt8Type>())
        .filter(|_| rule.events);
    if boundary.is_none_or(|b| b.null_count() == b.len())
        && events.is_none_or(|e| e.null_count() == e.len())
    {
        return Ok(batch);
    }
    let weights = batch
        .column_by_name("flows")
        .and_then(|c| c.as_primitive_opt::<UInt64Type>());
    let weight = |row: usize| weights.map_or(1, |w| w.value(row));
    let keep: BooleanArray = (0..batch.num_rows())
        .map(|row| {
            let internal = boundary.is_some_and(|b| b.is_valid(row) && b.value(row) == "internal");
            let event = events.is_some_and(|e| e.is_valid(row) && e.value(row) > 0);
            if internal {
                left.internal_records += weight(row);
            } else if event {
                left.event_records += weight(row);
            }
            Some(!internal && !event)
        })
        .collect();
    if keep.true_count() == keep.len() {
        return Ok(batch);
    }
    arrow_select::filter::filter_record_batch(&batch, &keep)
}
