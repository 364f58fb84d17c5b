//! The three tables hopscope decodes into: flow records, PSAMP packet
//! reports and interface counters.

use std::sync::{Arc, LazyLock};

use arrow_array::builder::{BinaryBuilder, UInt16Builder, UInt32Builder};
use arrow_array::{Array, ArrayRef, ListArray, RecordBatch, StructArray};
use arrow_buffer::{OffsetBuffer, ScalarBuffer};
use arrow_schema::{ArrowError, DataType, Field, Fields, Schema, SchemaRef};

use crate::FieldInfo;
use crate::table::arrow_fields;

/// Which protocol a flow arrived in; numbered as GoFlow2's `FlowType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FlowType {
    Unknown = 0,
    SFlow5 = 1,
    NetflowV5 = 2,
    NetflowV9 = 3,
    Ipfix = 4,
}

impl FlowType {
    pub fn name(code: u8) -> &'static str {
        match code {
            1 => "sflow5",
            2 => "netflow5",
            3 => "netflow9",
            4 => "ipfix",
            _ => "unknown",
        }
    }
}

/// The bits of `tcp_flags` (RFC 9293), as the probe, the simulator and
/// the detections read them.
pub mod tcp_flags {
    pub const FIN: u16 = 0x01;
    pub const SYN: u16 = 0x02;
    pub const RST: u16 = 0x04;
    pub const PSH: u16 = 0x08;
    pub const ACK: u16 = 0x10;
    pub const URG: u16 = 0x20;
}

/// Where a record's `sampling_rate` came from. A record whose rate is unknown
/// is kept with `Unknown`, never dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SamplingSource {
    Unknown = 0,
    /// The data record itself carried the interval.
    Record = 1,
    /// An options record of the exporter (scoped by domain or sampler id).
    Options = 2,
    /// The message or sample header (NetFlow v5, sFlow).
    Header = 3,
    /// The collector's configuration.
    Configured = 4,
}

table! {
    /// One flow record as decoded from any protocol.
    row FlowRecord;
    /// Appends [`FlowRecord`]s to the Arrow columns of the flow schema.
    builder FlowColumnsBuilder;
    fields FLOW_FIELDS;
    columns {
        /// When the collector received the message carrying this record.
        time_received_ns: Ts["ns"],
        /// Protocol: 1 sFlow v5, 2 NetFlow v5, 3 NetFlow v9, 4 IPFIX.
        flow_type: U8[""],
        /// Sequence number of the message (IPFIX, v9, v5) or datagram (sFlow).
        sequence_num: U32[""],
        /// Address of the exporting device (the UDP/TCP peer or the sFlow agent).
        sampler_address: Addr[""],
        /// Observation domain (IPFIX), source id (v9), engine (v5) or sub-agent (sFlow).
        observation_domain_id: U32[""],
        /// Observation point identifier (IE 138).
        observation_point_id: U64[""],
        /// Template the record was decoded with.
        template_id: U16[""],
        /// First packet of the flow.
        time_flow_start_ns: Ts["ns"],
        /// Last packet of the flow.
        time_flow_end_ns: Ts["ns"],
        /// First packet, in ms of the exporter's uptime, when its boot time
        /// is not known (no systemInitTimeMilliseconds yet): kept rather
        /// than lost; the boot time plus this is `time_flow_start_ns`.
        flow_start_uptime_ms: U64["ms"],
        /// Last packet, in ms of the exporter's uptime, when its boot time is not known.
        flow_end_uptime_ms: U64["ms"],
        /// IP version, 4 or 6.
        ip_version: U8[""],
        /// Source address.
        src_addr: Addr[""],
        /// Destination address.
        dst_addr: Addr[""],
        /// Source transport port.
        src_port: U16[""],
        /// Destination transport port.
        dst_port: U16[""],
        /// IP protocol number.
        proto: U8[""],
        /// Octets counted at the observation point (not scaled by sampling).
        bytes: U64["octets"],
        /// Packets counted at the observation point (not scaled by sampling).
        packets: U64["packets"],
        /// Octets in the reverse direction of a biflow (RFC 5103).
        reverse_bytes: U64["octets"],
        /// Packets in the reverse direction of a biflow (RFC 5103).
        reverse_packets: U64["packets"],
        /// One packet in N was sampled.
        sampling_rate: U64[""],
        /// Where sampling_rate came from: 0 unknown, 1 record, 2 options, 3 header, 4 configured.
        sampling_rate_source: U8[""],
        /// The sampler or selector (IE 48, 302) the record names: its options give the rate and the name.
        sampler_id: U64[""],
        /// OR of the TCP flags seen.
        tcp_flags: U16[""],
        /// IPv4 ToS or IPv6 traffic class.
        ip_tos: U8[""],
        /// Smallest TTL or hop limit seen.
        minimum_ttl: U8["hops"],
        /// Largest TTL or hop limit seen.
        maximum_ttl: U8["hops"],
        /// OR of the TCP flags of a biflow's reverse direction (RFC 5103).
        reverse_tcp_flags: U16[""],
        /// Smallest TTL or hop limit of a biflow's reverse direction.
        reverse_minimum_ttl: U8["hops"],
        /// Largest TTL or hop limit of a biflow's reverse direction.
        reverse_maximum_ttl: U8["hops"],
        /// ICMP type.
        icmp_type: U8[""],
        /// ICMP code.
        icmp_code: U8[""],
        /// Input interface (ifIndex).
        in_if: U32[""],
        /// Output interface (ifIndex).
        out_if: U32[""],
        /// VLAN on input.
        src_vlan: U16[""],
        /// VLAN on output.
        dst_vlan: U16[""],
        /// Source MAC address as a 48-bit number.
        src_mac: U64[""],
        /// Destination MAC address as a 48-bit number.
        dst_mac: U64[""],
        /// Source autonomous system.
        src_as: U32[""],
        /// Destination autonomous system.
        dst_as: U32[""],
        /// Source prefix length.
        src_net: U8["bits"],
        /// Destination prefix length.
        dst_net: U8["bits"],
        /// IP next hop.
        next_hop: Addr[""],
        /// BGP next hop.
        bgp_next_hop: Addr[""],
        /// IPv6 flow label.
        ipv6_flow_label: U32[""],
        /// 0 ingress, 1 egress (IE 61).
        flow_direction: U8[""],
        /// 1 idle timeout, 2 active timeout, 3 end detected, 4 forced end, 5 lack of resources.
        flow_end_reason: U8[""],
        /// Forwarding status (IE 89): drop reasons among others.
        forwarding_status: U32[""],
        /// Source address after NAT.
        post_nat_src_addr: Addr[""],
        /// Destination address after NAT.
        post_nat_dst_addr: Addr[""],
        /// Source port after NAPT.
        post_nat_src_port: U16[""],
        /// Destination port after NAPT.
        post_nat_dst_port: U16[""],
        /// NAT event (RFC 8158).
        nat_event: U8[""],
        /// Firewall event (IE 233, Cisco NSEL): 1 created, 2 deleted, 3 denied, 4 alert, 5 update.
        firewall_event: U8[""],
        /// Ingress VRF.
        ingress_vrf_id: U32[""],
        /// Egress VRF.
        egress_vrf_id: U32[""],
        /// Top MPLS label (20-bit label value).
        mpls_top_label: U32[""],
        /// Layer-2 segment (IE 351): the top octet is the type (1 VXLAN), the rest the VNI.
        layer2_segment_id: U64[""],
        /// GRE key of the tunnel the flow was carried in (IE 296).
        gre_key: U32[""],
    }
}

/// Columns the collector adds to each flow from its own knowledge: names
/// from configuration and options records, networks and tags from CIDR
/// lists, country from an MMDB file. Stored flows have these between the
/// decoded columns and `other_fields`; see [`stored_flow_schema`].
pub const ENRICHMENT_FIELDS: &[FieldInfo] = &[
    text(
        "exporter_name",
        "Name of the exporter, from the collector's configuration.",
    ),
    text(
        "observation_point_name",
        "Name of the observation point (IE 138), from the exporter's options records: what tells apart the probes of one host (`hopscope probe --observation-point`).",
    ),
    text(
        "in_if_name",
        "Name of the input interface, from the exporter's options records.",
    ),
    text(
        "out_if_name",
        "Name of the output interface, from the exporter's options records.",
    ),
    text(
        "in_if_description",
        "Description (ifAlias) of the input interface, from the exporter's options records.",
    ),
    text(
        "out_if_description",
        "Description (ifAlias) of the output interface, from the exporter's options records.",
    ),
    text(
        "sampler_name",
        "Name of the sampler or selector (samplerName 84, selectorName 335) that gave the rate, from the exporter's options records.",
    ),
    text(
        "ingress_vrf_name",
        "Name of the ingress VRF, from the exporter's options records (VRFname by VRF id).",
    ),
    text(
        "egress_vrf_name",
        "Name of the egress VRF, from the exporter's options records.",
    ),
    text(
        "boundary",
        "Where the record was observed: external (the network's boundary, where traffic is counted once), internal, transit (leaving the network, counted where it came in), or null (no [[serve.boundary]] rule says).",
    ),
    text(
        "src_net_name",
        "Name of the configured network holding the source address.",
    ),
    text(
        "dst_net_name",
        "Name of the configured network holding the destination address.",
    ),
    text(
        "src_net_role",
        "Role tag of the source network (configuration).",
    ),
    text(
        "dst_net_role",
        "Role tag of the destination network (configuration).",
    ),
    text(
        "src_net_site",
        "Site tag of the source network (configuration).",
    ),
    text(
        "dst_net_site",
        "Site tag of the destination network (configuration).",
    ),
    text(
        "src_country",
        "ISO country code of the source address (MMDB).",
    ),
    text(
        "dst_country",
        "ISO country code of the destination address (MMDB).",
    ),
];

const fn text(name: &'static str, doc: &'static str) -> FieldInfo {
    FieldInfo {
        name,
        kind: crate::Kind::Text,
        unit: "",
        doc,
    }
}

/// Arrow schema of flows as the store keeps them: the decoded columns, the
/// [`ENRICHMENT_FIELDS`], then `other_fields`.
pub fn stored_flow_schema() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(build_stored_flow_schema);
    Arc::clone(&SCHEMA)
}

fn build_stored_flow_schema() -> SchemaRef {
    let decoded = flow_schema();
    let mut fields: Vec<Field> = decoded.fields()[..FLOW_FIELDS.len()]
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.extend(arrow_fields(ENRICHMENT_FIELDS));
    fields.push(decoded.fields()[FLOW_FIELDS.len()].as_ref().clone());
    Arc::new(Schema::new_with_metadata(
        fields,
        decoded.metadata().clone(),
    ))
}

/// An information element the schema does not name, kept with its raw bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OtherField<'a> {
    /// Private enterprise number; 0 for IANA elements.
    pub enterprise: u32,
    pub element_id: u16,
    pub value: &'a [u8],
}

/// Arrow schema of flow records: the fixed columns plus `other_fields`.
///
/// Built once: every batch a decoder finishes carries it, and building 70
/// fields each time was a few percent of decoding.
pub fn flow_schema() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(build_flow_schema);
    Arc::clone(&SCHEMA)
}

fn build_flow_schema() -> SchemaRef {
    let mut fields = arrow_fields(FLOW_FIELDS);
    fields.push(Field::new("other_fields", other_fields_type(), true));
    Arc::new(Schema::new_with_metadata(
        fields,
        crate::table::version_metadata(),
    ))
}

fn other_field_struct_fields() -> Fields {
    Fields::from(vec![
        Field::new("enterprise", DataType::UInt32, false),
        Field::new("element_id", DataType::UInt16, false),
        Field::new("value", DataType::Binary, false),
    ])
}

/// The type of `other_fields`: a list of (enterprise, element id, value).
pub fn other_fields_type() -> DataType {
    DataType::List(Arc::new(Field::new(
        "item",
        DataType::Struct(other_field_struct_fields()),
        false,
    )))
}

// the open columns of a batch are the bits of a u128
const _: () = assert!(FlowColumnsBuilder::COLUMN_COUNT <= 128);

/// A bit for each column of [`FlowColumnsBuilder`], in schema order.
const ALL_COLUMNS: u128 = u128::MAX >> (128 - FlowColumnsBuilder::COLUMN_COUNT);

/// The indexes of the bits set in `columns`.
fn column_indexes(mut columns: u128) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        (columns != 0).then(|| {
            let column = columns.trailing_zeros() as usize;
            columns &= columns - 1;
            column
        })
    })
}

/// Builds record batches of the flow schema.
///
/// Decoders fill a [`FlowRecord`], push any unnamed elements with
/// [`push_other`](Self::push_other), then call [`append`](Self::append).
#[derive(Debug, Default)]
pub struct FlowBatchBuilder {
    columns: FlowColumnsBuilder,
    /// The columns that hold the batch's rows so far, one bit each; the
    /// others hold nothing and are all null. Decoders that push straight
    /// into the columns open those a template fills and give nulls only to
    /// open columns it does not: with one template in a batch, no column
    /// takes nulls set after set (50 of the 70 for a typical template did).
    open: u128,
    other_offsets: Vec<i32>,
    other_enterprise: UInt32Builder,
    other_element: UInt16Builder,
    other_value: BinaryBuilder,
    other_len: i32,
}

impl FlowBatchBuilder {
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            columns: FlowColumnsBuilder::with_capacity(capacity),
            other_offsets: Vec::with_capacity(capacity + 1),
            ..Default::default()
        }
    }

    /// Records an element of the next appended row that has no column.
    #[inline]
    pub fn push_other(&mut self, field: OtherField<'_>) {
        self.other_enterprise.append_value(field.enterprise);
        self.other_element.append_value(field.element_id);
        self.other_value.append_value(field.value);
        self.other_len += 1;
    }

    /// Appends the row; the unnamed elements pushed since the last append
    /// belong to it.
    #[inline]
    pub fn append(&mut self, row: &FlowRecord) {
        self.open_columns(ALL_COLUMNS);
        self.columns.append(row);
        self.end_record();
    }

    /// Records completed since the last `finish`.
    pub fn len(&self) -> usize {
        self.other_offsets.len().saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Opens `columns` (a bit per column, schema order) before a decoder
    /// pushes into them: a column new to the batch first gets a null for
    /// each record already in it.
    pub fn open_columns(&mut self, columns: u128) {
        let new = columns & !self.open;
        if new == 0 {
            return;
        }
        let rows = self.len();
        if rows > 0 {
            for column in column_indexes(new) {
                FlowColumnsBuilder::PUSH_NULLS[column](&mut self.columns, rows);
            }
        }
        self.open |= new;
    }

    /// Gives `n` nulls to those of `columns` that are open; the others stay
    /// all null without being told.
    pub fn push_nulls_to_open(&mut self, columns: u128, n: usize) {
        for column in column_indexes(columns & self.open) {
            FlowColumnsBuilder::PUSH_NULLS[column](&mut self.columns, n);
        }
    }

    /// Whether every open column holds one entry per record and every other
    /// column none (for debug checks of decoders that push into columns).
    pub fn is_aligned(&self) -> bool {
        let rows = self.len();
        (0..FlowColumnsBuilder::COLUMN_COUNT).all(|c| {
            let expected = if self.open & (1 << c) != 0 { rows } else { 0 };
            FlowColumnsBuilder::COLUMN_LEN[c](&self.columns) == expected
        })
    }

    /// The columns, for decoders that push values straight into them: they
    /// first open the columns they fill ([`open_columns`](Self::open_columns)),
    /// push one entry per record into each, give the other open columns
    /// nulls ([`push_nulls_to_open`](Self::push_nulls_to_open)), and end
    /// each record with [`end_record`](Self::end_record).
    pub fn columns_mut(&mut self) -> &mut FlowColumnsBuilder {
        &mut self.columns
    }

    /// Closes a record pushed through [`columns_mut`](Self::columns_mut):
    /// the unnamed elements pushed since the last record belong to it.
    #[inline]
    pub fn end_record(&mut self) {
        self.end_records(1);
    }

    /// Ends `n` records, the unnamed elements pushed since the last record
    /// in the first of them (one call for a set of records without any,
    /// rather than one per record).
    pub fn end_records(&mut self, n: usize) {
        if self.other_offsets.is_empty() {
            self.other_offsets.push(0);
        }
        let len = self.other_offsets.len();
        self.other_offsets.resize(len + n, self.other_len);
    }

    /// The rows appended so far as one batch; the builder is then empty.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        debug_assert!(self.is_aligned(), "flow columns of unequal length");
        let rows = self.len();
        let mut columns = self.columns.finish_columns_of(rows);
        self.open = 0;
        let mut offsets = std::mem::take(&mut self.other_offsets);
        if offsets.is_empty() {
            offsets.push(0);
        }
        let values = StructArray::try_new(
            other_field_struct_fields(),
            vec![
                Arc::new(self.other_enterprise.finish()) as ArrayRef,
                Arc::new(self.other_element.finish()),
                Arc::new(self.other_value.finish()),
            ],
            None,
        )?;
        self.other_len = 0;
        let list = ListArray::try_new(
            Arc::new(Field::new(
                "item",
                DataType::Struct(other_field_struct_fields()),
                false,
            )),
            OffsetBuffer::new(ScalarBuffer::from(offsets)),
            Arc::new(values),
            None,
        )?;
        debug_assert_eq!(list.len(), rows);
        columns.push(Arc::new(list));
        RecordBatch::try_new(flow_schema(), columns)
    }
}

table! {
    /// One PSAMP packet report (RFC 5476): a packet selected by a probe.
    row PacketReportRecord;
    /// Appends [`PacketReportRecord`]s to Arrow columns.
    builder PacketReportBuilder;
    fields PACKET_REPORT_FIELDS;
    columns {
        /// When the collector received the message carrying this report.
        time_received_ns: Ts["ns"],
        /// Address of the exporting probe.
        sampler_address: Addr[""],
        /// Observation domain of the probe.
        observation_domain_id: U32[""],
        /// Observation point identifier (IE 138).
        observation_point_id: U64[""],
        /// Selection sequence (IE 301): the observation point and selector chain.
        selection_sequence_id: U64[""],
        /// Selector (IE 302).
        selector_id: U64[""],
        /// When the packet was observed.
        observation_time_ns: Ts["ns"],
        /// Packet digest (IE 326), the same at every observation point.
        digest: U64[""],
        /// TTL or hop limit at this point.
        ip_ttl: U8["hops"],
        /// IP total length.
        length: U32["octets"],
        /// IP version.
        ip_version: U8[""],
        /// Source address.
        src_addr: Addr[""],
        /// Destination address.
        dst_addr: Addr[""],
        /// Source transport port.
        src_port: U16[""],
        /// Destination transport port.
        dst_port: U16[""],
        /// IP protocol.
        proto: U8[""],
        /// IPv4 identification or IPv6 fragment identification.
        fragment_id: U32[""],
        /// Input interface.
        in_if: U32[""],
    }
}

table! {
    /// Generic interface counters (RFC 2863 style): sFlow counter samples
    /// and the exporters' IF-MIB polled by SNMP.
    row InterfaceCounterRecord;
    /// Appends [`InterfaceCounterRecord`]s to Arrow columns.
    builder InterfaceCounterBuilder;
    fields INTERFACE_COUNTER_FIELDS;
    columns {
        /// When the collector received the datagram.
        time_received_ns: Ts["ns"],
        /// Agent address.
        sampler_address: Addr[""],
        /// Sub-agent or observation domain.
        observation_domain_id: U32[""],
        /// Sequence number of the counter sample.
        sequence_num: U32[""],
        /// ifIndex.
        if_index: U32[""],
        /// ifType.
        if_type: U32[""],
        /// ifSpeed.
        if_speed: U64["bits/s"],
        /// 0 unknown, 1 full duplex, 2 half duplex, 3 in, 4 out.
        if_direction: U32[""],
        /// Bit 0 admin up, bit 1 oper up.
        if_status: U32[""],
        /// ifInOctets.
        in_octets: U64["octets"],
        /// ifInUcastPkts.
        in_ucast_pkts: U64["packets"],
        /// ifInMulticastPkts.
        in_multicast_pkts: U64["packets"],
        /// ifInBroadcastPkts.
        in_broadcast_pkts: U64["packets"],
        /// ifInDiscards.
        in_discards: U64["packets"],
        /// ifInErrors.
        in_errors: U64["packets"],
        /// ifInUnknownProtos.
        in_unknown_protos: U64["packets"],
        /// ifOutOctets.
        out_octets: U64["octets"],
        /// ifOutUcastPkts.
        out_ucast_pkts: U64["packets"],
        /// ifOutMulticastPkts.
        out_multicast_pkts: U64["packets"],
        /// ifOutBroadcastPkts.
        out_broadcast_pkts: U64["packets"],
        /// ifOutDiscards.
        out_discards: U64["packets"],
        /// ifOutErrors.
        out_errors: U64["packets"],
        /// ifPromiscuousMode.
        promiscuous_mode: U32[""],
        /// Where the row comes from: 1 an sFlow counter sample (also when
        /// null: rows written before this column), 2 an SNMP poll of 64-bit
        /// counters, 3 an SNMP poll of 32-bit counters (they wrap at 2^32).
        counter_source: U8[""],
    }
}

table! {
    /// The collector's counters of one exporter session (and, with a domain,
    /// of one of its observation domains) over one flush interval: telemetry
    /// loss and decode health kept as data next to the flows.
    row ExporterHealthRecord;
    /// Appends [`ExporterHealthRecord`]s to Arrow columns.
    builder ExporterHealthBuilder;
    fields EXPORTER_HEALTH_FIELDS;
    columns {
        /// End of the interval the counts cover.
        time_received_ns: Ts["ns"],
        /// Exporter address.
        sampler_address: Addr[""],
        /// Exporter's source port.
        sampler_port: U16[""],
        /// 1 UDP, 2 TCP, 3 SCTP, 4 file.
        transport: U8[""],
        /// Set on a domain's row, null on the session's row.
        observation_domain_id: U32[""],
        /// Export messages received.
        messages: U64["messages"],
        /// Octets of export messages received.
        message_bytes: U64["octets"],
        /// Flow records decoded.
        flow_records: U64["records"],
        /// Records the exporter sent that never arrived (sequence gaps).
        lost_records: U64["records"],
        /// Messages the exporter sent that never arrived (NetFlow v9, sFlow).
        lost_messages: U64["messages"],
        /// Packets the exporter reported dropping itself (sFlow).
        exporter_drops: U64["packets"],
        /// Messages, sets or records that could not be decoded.
        decode_errors: U64[""],
        /// Templates held at the end of the interval.
        templates_active: U64[""],
        /// Data sets waiting for their template at the end of the interval.
        pending_sets: U64[""],
    }
}

/// Arrow schema of exporter health rows.
pub fn exporter_health_schema() -> SchemaRef {
    Arc::new(Schema::new(arrow_fields(EXPORTER_HEALTH_FIELDS)))
}

impl ExporterHealthBuilder {
    /// The rows appended so far as one batch.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        RecordBatch::try_new(exporter_health_schema(), self.finish_columns())
    }
}

/// Arrow schema of packet reports (built once, as [`flow_schema`]).
pub fn packet_report_schema() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> =
        LazyLock::new(|| Arc::new(Schema::new(arrow_fields(PACKET_REPORT_FIELDS))));
    Arc::clone(&SCHEMA)
}

/// `counter_source` of an sFlow counter sample.
pub const COUNTER_SOURCE_SFLOW: u8 = 1;
/// `counter_source` of an SNMP poll of IF-MIB's 64-bit counters.
pub const COUNTER_SOURCE_SNMP: u8 = 2;
/// `counter_source` of an SNMP poll of an agent without 64-bit counters.
pub const COUNTER_SOURCE_SNMP_32: u8 = 3;

/// Arrow schema of interface counters.
pub fn interface_counter_schema() -> SchemaRef {
    Arc::new(Schema::new(arrow_fields(INTERFACE_COUNTER_FIELDS)))
}

impl PacketReportBuilder {
    /// The rows appended so far as one batch.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        RecordBatch::try_new(packet_report_schema(), self.finish_columns())
    }
}

impl InterfaceCounterBuilder {
    /// The rows appended so far as one batch.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        RecordBatch::try_new(interface_counter_schema(), self.finish_columns())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipv4_mapped;
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::UInt64Type;

    #[test]
    fn columns_without_values_are_null_and_batches_stay_independent() {
        let mut b = FlowBatchBuilder::with_capacity(4);
        for i in 0..3u8 {
            b.append(&FlowRecord {
                src_addr: Some(ipv4_mapped([10, 0, 0, i])),
                bytes: (i != 1).then_some(u64::from(i) * 100),
                ..Default::default()
            });
        }
        let first = b.finish().unwrap();
        b.append(&FlowRecord {
            bytes: Some(7),
            ..Default::default()
        });
        let second = b.finish().unwrap();
        // never filled: every row null, whatever the width of the column
        for name in ["packets", "dst_addr", "src_port", "time_flow_start_ns"] {
            let column = first.column_by_name(name).unwrap();
            assert_eq!((column.len(), column.null_count()), (3, 3), "{name}");
        }
        let src = first
            .column_by_name("src_addr")
            .unwrap()
            .as_fixed_size_binary();
        assert_eq!(src.value(2), ipv4_mapped([10, 0, 0, 2]));
        let bytes = first
            .column_by_name("bytes")
            .unwrap()
            .as_primitive::<UInt64Type>();
        assert_eq!((bytes.value(2), bytes.null_count()), (200, 1));
        // the second batch neither sees nor changes the first
        assert_eq!(second.num_rows(), 1);
        assert_eq!(second.column_by_name("src_addr").unwrap().null_count(), 1);
        let bytes = second
            .column_by_name("bytes")
            .unwrap()
            .as_primitive::<UInt64Type>();
        assert_eq!(bytes.value(0), 7);
        assert_eq!(src.value(0), ipv4_mapped([10, 0, 0, 0]));
    }

    #[test]
    fn flow_rows_become_a_batch_with_other_fields() {
        let mut b = FlowBatchBuilder::with_capacity(4);
        let row = FlowRecord {
            src_addr: Some(ipv4_mapped([10, 0, 0, 1])),
            bytes: Some(1500),
            ..Default::default()
        };
        b.push_other(OtherField {
            enterprise: 9,
            element_id: 7,
            value: b"abc",
        });
        b.append(&row);
        b.append(&FlowRecord::default());
        let batch = b.finish().unwrap();
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch.schema(), flow_schema());
        let bytes = batch
            .column_by_name("bytes")
            .unwrap()
            .as_primitive::<UInt64Type>();
        assert_eq!(bytes.value(0), 1500);
        assert!(bytes.is_null(1));
        let other = batch
            .column_by_name("other_fields")
            .unwrap()
            .as_list::<i32>();
        assert_eq!(other.value(0).len(), 1);
        assert_eq!(other.value(1).len(), 0);
        // the builder is reusable after finish
        b.append(&row);
        assert_eq!(b.finish().unwrap().num_rows(), 1);
    }

    #[test]
    fn field_names_are_unique_and_documented() {
        for fields in [FLOW_FIELDS, PACKET_REPORT_FIELDS, INTERFACE_COUNTER_FIELDS] {
            let mut names: Vec<_> = fields.iter().map(|f| f.name).collect();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), fields.len());
            assert!(fields.iter().all(|f| !f.doc.trim().is_empty()));
        }
    }
}
