//! Where decoders put what they decode: one builder per table.

use hopscope_schema::{FlowBatchBuilder, InterfaceCounterBuilder, PacketReportBuilder};

/// The column builders a decoder appends to. The caller decides when to
/// finish them into record batches (per message, per second, per N rows).
#[derive(Debug, Default)]
pub struct DecodeOutput {
    pub flows: FlowBatchBuilder,
    pub packet_reports: PacketReportBuilder,
    pub interface_counters: InterfaceCounterBuilder,
}

impl DecodeOutput {
    pub fn with_capacity(flows: usize) -> Self {
        Self {
            flows: FlowBatchBuilder::with_capacity(flows),
            packet_reports: PacketReportBuilder::with_capacity(64),
            interface_counters: InterfaceCounterBuilder::with_capacity(64),
        }
    }

    /// Rows appended across all tables.
    pub fn rows(&self) -> usize {
        self.flows.len() + self.packet_reports.len() + self.interface_counters.len()
    }
}
