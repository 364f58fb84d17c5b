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
use arrow_array::types::UInt64Type;
use arrow_array::{Array, BooleanArray, Datum, RecordBatch, StringArray, UInt8Array};
use arrow_buffer::BooleanBuffer;
use arrow_ord::cmp;
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
    "in_if_description",
    "out_if_description",
    "sampler_id",
    "sampler_name",
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
            Counting::Once => {
                let parts: Vec<String> = [
                    (self.internal_records, "of internal points"),
                    (self.transit_records, "of transit leaving"),
                    (self.event_records, "of events"),
                ]
                .iter()
                .filter(|(n, _)| *n > 0)
                .map(|(n, of)| format!("{n} {} {of}", plural(*n, "record")))
                .collect();
                match parts.as_slice() {
                    [] => {
                        "counted once (no record of an internal point, of transit or of an event)"
                            .to_string()
                    }
                    [one] => format!("counted once, at the network's boundary: {one} left out"),
                    [init @ .., last] => format!(
                        "counted once, at the network's boundary: {} and {last} left out",
                        init.join(", ")
                    ),
                }
            }
        }
    }
}

fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        word.to_string()
    } else {
        format!("{word}s")
    }
}

/// Which records a query leaves out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LeaveOut {
    /// Records of internal points and of transit leaving (by `boundary`).
    boundary: bool,
    /// NAT session events.
    nat: bool,
    /// Firewall events without volume.
    firewall: bool,
}

/// What `q` leaves out (`None`: nothing, every record counts): internal
/// and transit records and events, unless it asks for every point, names a
/// point, or names what it would leave out (`boundary`, `nat_event`,
/// `firewall_event`: each keeps its own records).
pub(crate) fn leave_out(q: &Query) -> Option<LeaveOut> {
    let mut fields = q.group_by.clone();
    if let Some(f) = &q.filter {
        super::exec::filter_fields(f, &mut fields);
    }
    if q.counting == Counting::EveryPoint || fields.iter().any(|f| POINT_FIELDS.contains(f)) {
        return None;
    }
    let rule = LeaveOut {
        boundary: !fields.contains(&"boundary"),
        nat: !fields.contains(&"nat_event"),
        firewall: !fields.contains(&"firewall_event"),
    };
    (rule.boundary || rule.nat || rule.firewall).then_some(rule)
}

impl LeaveOut {
    /// Whether `column` is read to leave records out (rather than because
    /// the query names it).
    fn counts_by(self, column: &str) -> bool {
        match column {
            "boundary" => self.boundary,
            "nat_event" => self.nat,
            "firewall_event" => self.firewall,
            _ => false,
        }
    }
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
    let read = |name| {
        batch
            .column_by_name(name)
            .filter(|_| rule.counts_by(name))
            .filter(|c| c.null_count() < c.len())
    };
    let boundary = read("boundary");
    let nat = read("nat_event");
    let firewall = read("firewall_event");
    if boundary.is_none() && nat.is_none() && firewall.is_none() {
        return Ok(batch);
    }
    // whole-column comparisons rather than a row at a time: this runs on
    // every batch of every default query
    let rows = batch.num_rows();
    let none = || BooleanBuffer::new_unset(rows);
    let all = || BooleanBuffer::new_set(rows);
    let is = |column: &dyn Array, value: &dyn Datum| -> Result<BooleanBuffer, ArrowError> {
        Ok(truthy(&cmp::eq(&column, value)?))
    };
    let (internal, transit) = match boundary {
        Some(b) => (
            is(b, &StringArray::new_scalar("internal"))?,
            is(b, &StringArray::new_scalar("transit"))?,
        ),
        None => (none(), none()),
    };
    let mut event = match nat {
        Some(n) => truthy(&cmp::gt(n, &UInt8Array::new_scalar(0))?),
        None => none(),
    };
    if let Some(f) = firewall {
        // a firewall event without volume: any but none (0) and a teardown (2)
        let counts = &is(f, &UInt8Array::new_scalar(0))? | &is(f, &UInt8Array::new_scalar(2))?;
        let valid = f.logical_nulls().map_or_else(all, |n| n.inner().clone());
        event = &event | &(&valid & &!&counts);
    }
    // a record of an internal point or of transit is left out as such,
    // whatever its event
    let counted_elsewhere = &internal | &transit;
    let event = &event & &!&counted_elsewhere;
    let weights = batch
        .column_by_name("flows")
        .and_then(|c| c.as_primitive_opt::<UInt64Type>());
    let weigh = |mask: &BooleanBuffer| match weights {
        Some(w) => mask.set_indices().map(|row| w.value(row)).sum(),
        None => mask.count_set_bits() as u64,
    };
    left.internal_records += weigh(&internal);
    left.transit_records += weigh(&transit);
    left.event_records += weigh(&event);
    let keep = !&(&counted_elsewhere | &event);
    // the columns read only to count are not copied by the filter
    let schema = batch.schema();
    let wanted: Vec<usize> = (0..schema.fields().len())
        .filter(|&i| !rule.counts_by(schema.field(i).name()))
        .collect();
    let batch = batch.project(&wanted)?;
    if keep.count_set_bits() == rows {
        return Ok(batch);
    }
    arrow_select::filter::filter_record_batch(&batch, &BooleanArray::new(keep, None))
}

/// The rows where a comparison holds: null (no value) is false.
fn truthy(result: &BooleanArray) -> BooleanBuffer {
    match result.nulls() {
        Some(valid) => result.values() & valid.inner(),
        None => result.values().clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_note_names_only_what_was_left_out() {
        let left = |internal, transit, events| LeftOut {
            counting: Counting::Once,
            internal_records: internal,
            transit_records: transit,
            event_records: events,
        };
        assert_eq!(
            left(0, 0, 0).describe(),
            "counted once (no record of an internal point, of transit or of an event)"
        );
        assert_eq!(
            left(0, 4, 0).describe(),
            "counted once, at the network's boundary: 4 records of transit leaving left out"
        );
        assert_eq!(
            left(25500, 0, 3000).describe(),
            "counted once, at the network's boundary: 25500 records of internal points and 3000 records of events left out"
        );
        assert_eq!(
            left(1, 2, 3).describe(),
            "counted once, at the network's boundary: 1 record of internal points, 2 records of transit leaving and 3 records of events left out"
        );
    }
}
