//! The IPFIX encoder: templates and data records packed into messages no
//! larger than a given size, with correct sequence numbers and periodic
//! template refresh for UDP; and [`FlowEncoder`], which turns record batches
//! of the flow schema into such messages.

use arrow_array::cast::AsArray;
use arrow_array::types::{TimestampNanosecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type};
use arrow_array::{Array, RecordBatch};
use arrow_array::{FixedSizeBinaryArray, PrimitiveArray};

use crate::ie::REVERSE_PEN;
use crate::template::{FieldSpec, Template};
use crate::time::unix_ns_to_ntp;

const HEADER_LEN: usize = 16;
const SET_HEADER_LEN: usize = 4;

/// Encodes a template record (with its scope count for options templates).
pub fn template_record(template: &Template) -> Vec<u8> {
    let mut out = Vec::with_capacity(6 + template.fields.len() * 8);
    out.extend_from_slice(&template.id.to_be_bytes());
    out.extend_from_slice(&(template.fields.len() as u16).to_be_bytes());
    if template.scope_count > 0 {
        out.extend_from_slice(&template.scope_count.to_be_bytes());
    }
    for f in &template.fields {
        if f.enterprise != 0 {
            out.extend_from_slice(&(f.id | 0x8000).to_be_bytes());
            out.extend_from_slice(&f.length.to_be_bytes());
            out.extend_from_slice(&f.enterprise.to_be_bytes());
        } else {
            out.extend_from_slice(&f.id.to_be_bytes());
            out.extend_from_slice(&f.length.to_be_bytes());
        }
    }
    out
}

/// Appends a variable-length value with its 1- or 3-octet length prefix.
pub fn push_variable(out: &mut Vec<u8>, value: &[u8]) {
    let len = value.len().min(65535);
    if len < 255 {
        out.push(len as u8);
    } else {
        out.push(255);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    }
    out.extend_from_slice(&value[..len]);
}

/// Packs template and data records into IPFIX messages of one observation
/// domain.
#[derive(Debug)]
pub struct MessageBuilder {
    domain: u32,
    max_message: usize,
    export_time: u32,
    /// Data records in finished and current messages (RFC 7011 sequence).
    records_sent: u32,
    finished: Vec<Vec<u8>>,
    current: Vec<u8>,
    /// Set id and start offset of the set being filled.
    open_set: Option<(u16, usize)>,
    messages_closed: u64,
    /// Data records in the open message and in each finished one.
    records_in_current: u32,
    finished_records: Vec<u32>,
}

impl MessageBuilder {
    /// `max_message` bounds each message: the path MTU minus IP/UDP headers
    /// for UDP (1400 is safe on Ethernet), up to 65535 for TCP and files.
    pub fn new(domain: u32, max_message: usize) -> Self {
        let max_message = max_message.clamp(HEADER_LEN + SET_HEADER_LEN + 8, 65535);
        Self {
            domain,
            max_message,
            export_time: 0,
            records_sent: 0,
            finished: Vec::new(),
            current: Vec::new(),
            open_set: None,
            messages_closed: 0,
            records_in_current: 0,
            finished_records: Vec::new(),
        }
    }

    /// Export time written into the messages started from now on.
    pub fn set_export_time(&mut self, unix_secs: u32) {
        self.export_time = unix_secs;
    }

    /// Data records encoded so far (the next message's sequence number).
    pub fn records_sent(&self) -> u32 {
        self.records_sent
    }

    fn start_message(&mut self) {
        self.current.clear();
        self.current.extend_from_slice(&10u16.to_be_bytes());
        self.current.extend_from_slice(&[0, 0]); // length, patched on close
        self.current
            .extend_from_slice(&self.export_time.to_be_bytes());
        self.current
            .extend_from_slice(&self.records_sent.to_be_bytes());
        self.current.extend_from_slice(&self.domain.to_be_bytes());
    }

    fn close_set(&mut self) {
        if let Some((_, start)) = self.open_set.take() {
            let len = (self.current.len() - start) as u16;
            self.current[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
        }
    }

    fn close_message(&mut self) {
        self.close_set();
        if self.current.len() > HEADER_LEN {
            let len = self.current.len() as u16;
            self.current[2..4].copy_from_slice(&len.to_be_bytes());
            self.finished.push(std::mem::take(&mut self.current));
            self.finished_records
                .push(std::mem::take(&mut self.records_in_current));
            self.messages_closed += 1;
        }
        self.current.clear();
    }

    /// Makes room for `record_len` octets in a set `set_id`, opening a new
    /// message or set as needed. Returns false if the record can never fit.
    fn reserve(&mut self, set_id: u16, record_len: usize) -> bool {
        if HEADER_LEN + SET_HEADER_LEN + record_len > self.max_message {
            return false;
        }
        let same_set = matches!(self.open_set, Some((id, _)) if id == set_id);
        let needed = record_len + if same_set { 0 } else { SET_HEADER_LEN };
        if self.current.is_empty() || self.current.len() + needed > self.max_message {
            self.close_message();
            self.start_message();
        }
        if !matches!(self.open_set, Some((id, _)) if id == set_id) {
            self.close_set();
            let start = self.current.len();
            self.current.extend_from_slice(&set_id.to_be_bytes());
            self.current.extend_from_slice(&[0, 0]);
            self.open_set = Some((set_id, start));
        }
        true
    }

    /// Adds a template (set 2) or options template (set 3).
    pub fn add_template(&mut self, template: &Template) -> bool {
        let record = template_record(template);
        let set_id = if template.scope_count > 0 { 3 } else { 2 };
        if !self.reserve(set_id, record.len()) {
            return false;
        }
        self.current.extend_from_slice(&record);
        true
    }

    /// Adds one encoded data record of `template_id`. Returns false (and adds
    /// nothing) when the record is larger than a message can carry.
    pub fn add_record(&mut self, template_id: u16, record: &[u8]) -> bool {
        if !self.reserve(template_id, record.len()) {
            return false;
        }
        self.current.extend_from_slice(record);
        self.records_sent = self.records_sent.wrapping_add(1);
        self.records_in_current += 1;
        true
    }

    /// Messages completed since the builder was made.
    pub fn messages_closed(&self) -> u64 {
        self.messages_closed
    }

    /// Whether a message is open with content.
    pub fn has_pending(&self) -> bool {
        self.current.len() > HEADER_LEN
    }

    /// Closes the open message and hands over every finished message.
    pub fn finish(&mut self) -> Vec<Vec<u8>> {
        self.close_message();
        self.take_finished()
    }

    /// Finished messages so far, leaving the open one open.
    pub fn take_finished(&mut self) -> Vec<Vec<u8>> {
        self.finished_records.clear();
        std::mem::take(&mut self.finished)
    }

    /// Closes the open message; every finished message with its count of
    /// data records (what an exporter reports as not sent if it drops one).
    pub fn finish_counted(&mut self) -> Vec<(Vec<u8>, u32)> {
        self.close_message();
        let counts = std::mem::take(&mut self.finished_records);
        std::mem::take(&mut self.finished)
            .into_iter()
            .zip(counts)
            .collect()
    }
}

/// How a flow column is written: IPFIX element ids for IPv4 and IPv6 rows
/// and the encoded length.
#[derive(Debug, Clone, Copy)]
struct ColumnElement {
    column: &'static str,
    v4: FieldSpec,
    v6: FieldSpec,
    /// A timestamp column written as dateTimeMilliseconds instead of NTP.
    millis: bool,
}

const fn same(column: &'static str, id: u16, length: u16) -> ColumnElement {
    ColumnElement {
        column,
        v4: FieldSpec::iana(id, length),
        v6: FieldSpec::iana(id, length),
        millis: false,
    }
}

const fn by_family(
    column: &'static str,
    v4: u16,
    v4_len: u16,
    v6: u16,
    v6_len: u16,
) -> ColumnElement {
    ColumnElement {
        column,
        v4: FieldSpec::iana(v4, v4_len),
        v6: FieldSpec::iana(v6, v6_len),
        millis: false,
    }
}

const fn millis(column: &'static str, id: u16) -> ColumnElement {
    let spec = FieldSpec::iana(id, 8);
    ColumnElement {
        column,
        v4: spec,
        v6: spec,
        millis: true,
    }
}

const fn reverse(column: &'static str, id: u16, length: u16) -> ColumnElement {
    let spec = FieldSpec {
        enterprise: REVERSE_PEN,
        id,
        length,
    };
    ColumnElement {
        column,
        v4: spec,
        v6: spec,
        millis: false,
    }
}

/// The element each exportable flow column becomes. Columns that describe
/// the collector's view (receive time, exporter, sequence, template) are not
/// exported: a collector derives them again.
const FLOW_ELEMENTS: &[ColumnElement] = &[
    same("observation_point_id", 138, 8),
    // milliseconds for collectors that know no finer time (nfdump), then
    // nanoseconds; a decoder that knows both keeps the finer
    millis("time_flow_start_ns", 152),
    millis("time_flow_end_ns", 153),
    same("time_flow_start_ns", 156, 8),
    same("time_flow_end_ns", 157, 8),
    same("ip_version", 60, 1),
    by_family("src_addr", 8, 4, 27, 16),
    by_family("dst_addr", 12, 4, 28, 16),
    same("src_port", 7, 2),
    same("dst_port", 11, 2),
    same("proto", 4, 1),
    same("bytes", 1, 8),
    same("packets", 2, 8),
    reverse("reverse_bytes", 1, 8),
    reverse("reverse_packets", 2, 8),
    same("sampling_rate", 34, 4),
    same("tcp_flags", 6, 2),
    same("ip_tos", 5, 1),
    same("minimum_ttl", 52, 1),
    same("maximum_ttl", 53, 1),
    reverse("reverse_tcp_flags", 6, 2),
    reverse("reverse_minimum_ttl", 52, 1),
    reverse("reverse_maximum_ttl", 53, 1),
    by_family("icmp_type", 176, 1, 178, 1),
    by_family("icmp_code", 177, 1, 179, 1),
    same("in_if", 10, 4),
    same("out_if", 14, 4),
    same("src_vlan", 58, 2),
    same("dst_vlan", 59, 2),
    same("src_mac", 56, 6),
    same("dst_mac", 80, 6),
    same("src_as", 16, 4),
    same("dst_as", 17, 4),
    by_family("src_net", 9, 1, 29, 1),
    by_family("dst_net", 13, 1, 30, 1),
    by_family("next_hop", 15, 4, 62, 16),
    by_family("bgp_next_hop", 18, 4, 63, 16),
    same("ipv6_flow_label", 31, 4),
    same("flow_direction", 61, 1),
    same("flow_end_reason", 136, 1),
    same("forwarding_status", 89, 4),
    by_family("post_nat_src_addr", 225, 4, 281, 16),
    by_family("post_nat_dst_addr", 226, 4, 282, 16),
    same("post_nat_src_port", 227, 2),
    same("post_nat_dst_port", 228, 2),
    same("nat_event", 230, 1),
    same("firewall_event", 233, 1),
    same("ingress_vrf_id", 234, 4),
    same("egress_vrf_id", 235, 4),
    same("mpls_top_label", 70, 3),
    same("layer2_segment_id", 351, 8),
    same("gre_key", 296, 4),
];

/// A column of the batch, typed once per batch.
enum Values<'a> {
    U8(&'a PrimitiveArray<UInt8Type>),
    U16(&'a PrimitiveArray<UInt16Type>),
    U32(&'a PrimitiveArray<UInt32Type>),
    U64(&'a PrimitiveArray<UInt64Type>),
    Time(&'a PrimitiveArray<TimestampNanosecondType>),
    Addr(&'a FixedSizeBinaryArray),
}

/// Errors turning a batch into IPFIX.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("column {0} has an unexpected type")]
    ColumnType(&'static str),
}

/// The templates of one exporting session and which of them went out since
/// the last refresh. Every encoder of a session shares one, so that ids are
/// unique and refreshes cover all of them.
#[derive(Debug)]
pub struct TemplateSet {
    templates: Vec<Template>,
    announced: Vec<bool>,
    /// Resend all templates after this many messages (UDP); `None` for TCP and files.
    refresh: Option<u64>,
    /// `messages_closed` when templates were last (re)announced.
    refreshed_at: u64,
}

impl TemplateSet {
    pub fn new(refresh: Option<u64>) -> Self {
        Self {
            templates: Vec::new(),
            announced: Vec::new(),
            refresh,
            refreshed_at: 0,
        }
    }

    /// The id of the template with these fields, allocating one if new.
    pub fn id_for(&mut self, scope_count: u16, fields: Vec<FieldSpec>) -> u16 {
        if let Some(t) = self
            .templates
            .iter()
            .find(|t| t.scope_count == scope_count && t.fields == fields)
        {
            return t.id;
        }
        let id = FIRST_TEMPLATE_ID + self.templates.len() as u16;
        let template = if scope_count > 0 {
            Template::options(id, scope_count, fields)
        } else {
            Template::new(id, 0, fields)
        };
        self.templates.push(template);
        self.announced.push(false);
        id
    }

    /// Sends the template unless it went out since the last refresh; starts a
    /// new refresh period when one is due.
    pub fn announce(&mut self, builder: &mut MessageBuilder, id: u16) {
        let closed = builder.messages_closed();
        if self
            .refresh
            .is_some_and(|every| closed - self.refreshed_at >= every)
        {
            self.refreshed_at = closed;
            self.announced.iter_mut().for_each(|a| *a = false);
        }
        let index = usize::from(id - FIRST_TEMPLATE_ID);
        if !self.announced[index] {
            builder.add_template(&self.templates[index]);
            self.announced[index] = true;
        }
    }

    /// Adds a record of template `id`, announcing the template first if due.
    pub fn add_record(&mut self, builder: &mut MessageBuilder, id: u16, record: &[u8]) -> bool {
        self.announce(builder, id);
        builder.add_record(id, record)
    }
}

/// First template id an encoder assigns.
pub const FIRST_TEMPLATE_ID: u16 = 256;

/// How each exportable packet-report column is written (PSAMP, RFC 5477).
const PACKET_REPORT_ELEMENTS: &[ColumnElement] = &[
    same("observation_point_id", 138, 8),
    same("selection_sequence_id", 301, 8),
    same("selector_id", 302, 8),
    same("observation_time_ns", 325, 8),
    same("digest", 326, 8),
    same("ip_ttl", 192, 1),
    same("length", 224, 4),
    same("ip_version", 60, 1),
    by_family("src_addr", 8, 4, 27, 16),
    by_family("dst_addr", 12, 4, 28, 16),
    same("src_port", 7, 2),
    same("dst_port", 11, 2),
    same("proto", 4, 1),
    same("fragment_id", 54, 4),
    same("in_if", 10, 4),
];

/// Encodes the rows of a flow batch into `builder`.
///
/// Each batch is exported with one template for IPv4 rows and one for IPv6
/// rows, made of the columns that carry a value in at least one row; a null
/// in such a column is exported as zero. The unnamed elements of
/// `other_fields` are not exported.
pub fn encode_flows(
    templates: &mut TemplateSet,
    builder: &mut MessageBuilder,
    batch: &RecordBatch,
) -> Result<(), EncodeError> {
    encode_batch(templates, builder, batch, FLOW_ELEMENTS)
}

/// Encodes a batch of PSAMP packet reports into `builder`, as [`encode_flows`] does flows.
pub fn encode_packet_reports(
    templates: &mut TemplateSet,
    builder: &mut MessageBuilder,
    batch: &RecordBatch,
) -> Result<(), EncodeError> {
    encode_batch(templates, builder, batch, PACKET_REPORT_ELEMENTS)
}

fn encode_batch(
    templates: &mut TemplateSet,
    builder: &mut MessageBuilder,
    batch: &RecordBatch,
    elements: &[ColumnElement],
) -> Result<(), EncodeError> {
    let mut columns = Vec::new();
    for e in elements {
        let Some(c) = batch.column_by_name(e.column) else {
            continue;
        };
        if c.null_count() == c.len() {
            continue;
        }
        let values = match c.data_type() {
            arrow_schema::DataType::UInt8 => Values::U8(c.as_primitive()),
            arrow_schema::DataType::UInt16 => Values::U16(c.as_primitive()),
            arrow_schema::DataType::UInt32 => Values::U32(c.as_primitive()),
            arrow_schema::DataType::UInt64 => Values::U64(c.as_primitive()),
            arrow_schema::DataType::Timestamp(..) => Values::Time(c.as_primitive()),
            arrow_schema::DataType::FixedSizeBinary(16) => Values::Addr(c.as_fixed_size_binary()),
            _ => return Err(EncodeError::ColumnType(e.column)),
        };
        columns.push((*e, values));
    }
    let v4 = templates.id_for(0, columns.iter().map(|(e, _)| e.v4).collect());
    let v6 = templates.id_for(0, columns.iter().map(|(e, _)| e.v6).collect());
    let version = match batch.column_by_name("ip_version") {
        Some(c) => Some(
            c.as_primitive_opt::<UInt8Type>()
                .ok_or(EncodeError::ColumnType("ip_version"))?,
        ),
        None => None,
    };
    let mut record = Vec::with_capacity(256);
    for row in 0..batch.num_rows() {
        let is_v6 = version.is_some_and(|v| v.is_valid(row) && v.value(row) == 6);
        record.clear();
        for (e, values) in &columns {
            match values {
                Values::Time(t) if e.millis => {
                    let ns = if t.is_valid(row) { t.value(row) } else { 0 };
                    record.extend_from_slice(&(ns.div_euclid(1_000_000) as u64).to_be_bytes());
                }
                _ => {
                    let spec = if is_v6 { e.v6 } else { e.v4 };
                    encode_value(&mut record, values, row, spec.length);
                }
            }
        }
        templates.add_record(builder, if is_v6 { v6 } else { v4 }, &record);
    }
    Ok(())
}

/// Turns flow batches into IPFIX messages of one observation domain: a
/// [`MessageBuilder`] and [`TemplateSet`] of its own around [`encode_flows`].
#[derive(Debug)]
pub struct FlowEncoder {
    builder: MessageBuilder,
    templates: TemplateSet,
}

impl FlowEncoder {
    /// `template_refresh`: resend templates after this many messages (UDP); `None` for TCP and files.
    pub fn new(domain: u32, max_message: usize, template_refresh: Option<u64>) -> Self {
        Self {
            builder: MessageBuilder::new(domain, max_message),
            templates: TemplateSet::new(template_refresh),
        }
    }

    /// Encodes the rows of a flow batch; returns the messages completed so far.
    pub fn encode(
        &mut self,
        batch: &RecordBatch,
        export_time: u32,
    ) -> Result<Vec<Vec<u8>>, EncodeError> {
        self.builder.set_export_time(export_time);
        encode_flows(&mut self.templates, &mut self.builder, batch)?;
        Ok(self.builder.take_finished())
    }

    /// Closes the open message and returns it with any others finished.
    pub fn flush(&mut self) -> Vec<Vec<u8>> {
        self.builder.finish()
    }

    /// Data records encoded so far.
    pub fn records_sent(&self) -> u32 {
        self.builder.records_sent()
    }
}

/// Writes one value; a null is written as zero (see [`FlowEncoder`]).
fn encode_value(out: &mut Vec<u8>, values: &Values<'_>, row: usize, length: u16) {
    fn or_zero<T: arrow_array::ArrowPrimitiveType>(a: &PrimitiveArray<T>, row: usize) -> T::Native {
        if a.is_valid(row) {
            a.value(row)
        } else {
            T::Native::default()
        }
    }
    let width = usize::from(length).min(8);
    let mut number = |v: u64| out.extend_from_slice(&v.to_be_bytes()[8 - width..]);
    match values {
        Values::U8(a) => number(u64::from(or_zero(a, row))),
        Values::U16(a) => number(u64::from(or_zero(a, row))),
        // an MPLS label stack entry: label in the top 20 bits, bottom-of-stack set
        Values::U32(a) if length == 3 => number((u64::from(or_zero(a, row)) << 4) | 1),
        Values::U32(a) => number(u64::from(or_zero(a, row))),
        Values::U64(a) => number(or_zero(a, row)),
        Values::Time(t) => out.extend_from_slice(&unix_ns_to_ntp(or_zero(t, row)).to_be_bytes()),
        Values::Addr(a) => {
            let value: [u8; 16] = match a.is_valid(row) {
                true => a.value(row).try_into().unwrap_or_default(),
                false => [0; 16],
            };
            out.extend_from_slice(if length == 4 { &value[12..] } else { &value });
        }
    }
}
