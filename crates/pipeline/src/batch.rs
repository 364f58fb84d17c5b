//! What travels on the bus: record batches by table, with what exporters
//! said of their points and an event-time watermark.

use arrow_array::RecordBatch;
use hopscope_collector::{Committed, PointFacts};
use hopscope_store::Table;

/// Rows of one or more tables, published once and shared by every
/// subscriber (it travels in an `Arc`).
#[derive(Debug, Default)]
pub struct Batch {
    pub tables: Vec<(Table, Vec<RecordBatch>)>,
    /// What exporters said of their observation points (names, clocks).
    pub points: PointFacts,
    /// The newest receive time among the collector's rows (0 when it has
    /// none); for what the correlator publishes, its watermark then.
    pub watermark_ns: i64,
    /// Whether the store already holds these rows: the collector commits
    /// before it publishes; what others publish (journeys) the store
    /// writer subscriber commits.
    pub durable: bool,
}

impl Batch {
    /// The rows of `table` in this batch (none when it has no such table).
    pub fn table(&self, table: Table) -> &[RecordBatch] {
        self.tables
            .iter()
            .find(|(t, _)| *t == table)
            .map_or(&[], |(_, b)| b.as_slice())
    }

    /// Whether this batch has rows of any of `tables`.
    pub fn has_any(&self, tables: &[Table]) -> bool {
        self.tables
            .iter()
            .any(|(t, b)| tables.contains(t) && b.iter().any(|b| b.num_rows() > 0))
    }
}

impl From<Committed> for Batch {
    fn from(c: Committed) -> Self {
        Batch {
            tables: c.tables,
            points: c.points,
            watermark_ns: c.watermark_ns,
            durable: true,
        }
    }
}
