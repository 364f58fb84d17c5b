//! The columns of hopscope: flow records, packet reports and interface
//! counters, journeys and their segments, SLO buckets and alerts, each
//! defined once.
//!
//! Every table is declared with the `table!` macro (`table.rs`), which yields from one
//! list of columns: a plain row struct that decoders fill (reused from record
//! to record, so decoding allocates nothing per record), an Arrow builder
//! that appends rows column by column, the Arrow schema, and a static field
//! list ([`FieldInfo`]) from which the filter-language
//! fields and the API documentation are derived. Column names follow
//! GoFlow2's `FlowMessage` where it has the field and the IANA IE name in
//! snake_case otherwise (see DESIGN.md, "Field names").
//!
//! The flow key ([`FlowTuple`], [`CanonicalKey`]) is defined here too, so
//! that every crate partitions flows by one rule.
//!
//! This crate owns names, types and meanings. It does not decode, store or
//! query anything.

#![forbid(unsafe_code)]

#[macro_use]
mod table;
mod address;
mod analysis;
mod column;
mod flows;
mod journeys;
pub mod key;
mod time;

pub use address::{
    Cidr, Inside, PrefixTable, canonical, format_addr, ip_to_mapped, ipv4_mapped, is_ipv4_mapped,
    mac_to_u64, mapped_to_ip,
};
pub use analysis::{ALERT_FIELDS, SLO_BUCKET_FIELDS, alert_schema, slo_bucket_schema};
pub use column::{Addr, ColumnBuilder, ColumnKind, Kind, Ts, U8, U16, U32, U64, Zeros};
pub use flows::{
    COUNTER_SOURCE_SFLOW, COUNTER_SOURCE_SNMP, COUNTER_SOURCE_SNMP_32, ENRICHMENT_FIELDS,
    EXPORTER_HEALTH_FIELDS, ExporterHealthBuilder, ExporterHealthRecord, FLOW_FIELDS,
    FlowBatchBuilder, FlowColumnsBuilder, FlowRecord, FlowType, INTERFACE_COUNTER_FIELDS,
    InterfaceCounterBuilder, InterfaceCounterRecord, OtherField, PACKET_REPORT_FIELDS,
    PacketReportBuilder, PacketReportRecord, SamplingSource, exporter_health_schema, flow_schema,
    interface_counter_schema, other_fields_type, packet_report_schema, stored_flow_schema,
    tcp_flags,
};
pub use journeys::{JOURNEY_FIELDS, SEGMENT_FIELDS, journey_schema, segment_schema};
pub use key::{CanonicalKey, FlowTuple};
pub use table::FieldInfo;
pub use time::{civil_from_days, days_from_civil, format_time};

/// Version of the column layout, recorded in Parquet metadata and in the
/// store so that old segments can be read after the schema grows.
pub const SCHEMA_VERSION: u32 = 1;
