//! Walking a data set with a compiled template: the one loop that decodes
//! IPFIX and NetFlow v9 records into rows. It allocates nothing per record.

use hopscope_packet::LinkType;
use hopscope_schema::{
    FlowColumnsBuilder, FlowRecord, OtherField, PacketReportRecord, SamplingSource, ipv4_mapped,
};

use crate::flow_plan::{FlowOp, FlowPlan};

use crate::cursor::be_uint;
use crate::error::ErrorKind;
use crate::lists;
use crate::output::DecodeOutput;
use crate::sampling::Sampling;
use crate::session::{DomainState, PointClock};
use crate::template::{Action, RecordKind, Template, VARIABLE_LENGTH, sampling_actions};
use crate::time::ntp_to_unix_ns;

/// Facts of the message that every record in it shares.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MessageContext {
    pub received_ns: i64,
    pub flow_type: u8,
    pub exporter: [u8; 16],
    pub domain: u32,
    pub sequence: u32,
    /// Export time of the message, ms since the Unix epoch.
    pub export_time_ms: i64,
    /// Unix ms at which the exporter's uptime clock read zero (v9 header).
    pub uptime_base_ms: Option<i64>,
}

/// Times a record may carry in any of a dozen forms, resolved at its end.
#[derive(Debug, Default)]
struct TimeParts {
    start_ns: Option<i64>,
    end_ns: Option<i64>,
    start_delta_us: Option<u64>,
    end_delta_us: Option<u64>,
    start_uptime_ms: Option<u64>,
    end_uptime_ms: Option<u64>,
    system_init_ms: Option<i64>,
    duration_ns: Option<i64>,
}

impl TimeParts {
    fn resolve(
        &self,
        ctx: &MessageContext,
        domain_init_ms: Option<i64>,
    ) -> (Option<i64>, Option<i64>) {
        let base = self
            .system_init_ms
            .or(domain_init_ms)
            .or(ctx.uptime_base_ms);
        let from_uptime = |up: Option<u64>| -> Option<i64> {
            let up = up?;
            match (ctx.uptime_base_ms, self.system_init_ms.or(domain_init_ms)) {
                // v9: interpret against the header's uptime, tolerating the 32-bit wrap
                (Some(header_base), None) => {
                    let header_uptime = (ctx.export_time_ms - header_base) as u32;
                    let back = header_uptime.wrapping_sub(up as u32) as i32;
                    Some(
                        ctx.export_time_ms
                            .saturating_sub(i64::from(back))
                            .saturating_mul(1_000_000),
                    )
                }
                _ => Some(base?.saturating_add(up as i64).saturating_mul(1_000_000)),
            }
        };
        let export_ns = ctx.export_time_ms.saturating_mul(1_000_000);
        let mut start = self
            .start_ns
            .or_else(|| from_uptime(self.start_uptime_ms))
            .or_else(|| {
                self.start_delta_us
                    .map(|d| export_ns.saturating_sub((d as i64).saturating_mul(1000)))
            });
        let mut end = self
            .end_ns
            .or_else(|| from_uptime(self.end_uptime_ms))
            .or_else(|| {
                self.end_delta_us
                    .map(|d| export_ns.saturating_sub((d as i64).saturating_mul(1000)))
            });
        if let Some(d) = self.duration_ns {
            match (start, end) {
                (Some(s), None) => end = Some(s.saturating_add(d)),
                (None, Some(e)) => start = Some(e.saturating_sub(d)),
                _ => {}
            }
        }
        (start, end)
    }
}

#[inline]
fn addr(value: &[u8]) -> [u8; 16] {
    match value.len() {
        4 => ipv4_mapped([value[0], value[1], value[2], value[3]]),
        _ => value.try_into().unwrap_or_default(),
    }
}

/// Stores an address unless it is all zeros and one is already there;
/// returns whether it was stored.
#[inline]
fn set_address(slot: &mut Option<[u8; 16]>, value: &[u8]) -> bool {
    if slot.is_some() && value.iter().all(|&b| b == 0) {
        return false;
    }
    *slot = Some(addr(value));
    true
}

/// Result of decoding one data set.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct SetOutcome {
    pub records: u32,
    /// Increases of the exporter's own loss counters (options records'
    /// reliability statistics): packets it could not observe, records it
    /// could not send.
    pub exporter_drops: u64,
    pub records_not_sent: u64,
    /// First error, with its offset inside the set body.
    pub error: Option<(usize, ErrorKind)>,
}

/// The longest name kept from an options record (interface, VRF, point).
const MAX_NAME: usize = 256;

/// Options record contents that change the exporter's state.
#[derive(Debug, Default)]
struct OptionsValues<'a> {
    sampling: Sampling,
    if_index: Option<u32>,
    if_name: Option<&'a [u8]>,
    if_description: Option<&'a [u8]>,
    sampler_name: Option<&'a [u8]>,
    point_id: Option<u64>,
    vrf: Option<u32>,
    vrf_name: Option<&'a [u8]>,
    system_init_ms: Option<i64>,
    ignored_packets: Option<u64>,
    not_sent: Option<u64>,
    clock_domain: Option<u64>,
    clock_bound_ns: Option<u64>,
}

/// Decodes every record of a data set into `out` (or into the domain state
/// for options records).
pub(crate) fn decode_set(
    template: &Template,
    body: &[u8],
    ctx: &MessageContext,
    domain: &mut DomainState,
    out: &mut DecodeOutput,
    sampling_unknown: &mut u64,
) -> SetOutcome {
    let mut outcome = SetOutcome::default();
    if template.min_length == 0 {
        outcome.error = Some((0, ErrorKind::ZeroLengthField));
        return outcome;
    }
    if let Some(plan) = &template.flow_plan {
        return flow_set(template, plan, body, ctx, domain, out, sampling_unknown);
    }
    let mut pos = 0usize;
    // Anything shorter than the smallest record is padding (RFC 7011 §3.3.1).
    while body.len() - pos >= template.min_length {
        let start = pos;
        let result = match template.kind {
            // flow templates always have a plan (above)
            RecordKind::Flow => Err(ErrorKind::EmptyTemplate),
            RecordKind::PacketReport => packet_report(template, body, &mut pos, ctx, out),
            RecordKind::Options => {
                options_record(template, body, &mut pos, domain).map(|(drops, not_sent)| {
                    outcome.exporter_drops = outcome.exporter_drops.saturating_add(drops);
                    outcome.records_not_sent = outcome.records_not_sent.saturating_add(not_sent);
                })
            }
        };
        if let Err(kind) = result {
            outcome.error = Some((start, kind));
            break;
        }
        outcome.records += 1;
    }
    outcome
}

/// Next field's bytes, reading the variable-length prefix when there is one.
#[inline]
fn field<'a>(body: &'a [u8], pos: &mut usize, length: u16) -> Result<&'a [u8], ErrorKind> {
    let len = if length == VARIABLE_LENGTH {
        let first = *body.get(*pos).ok_or(ErrorKind::RecordPastEnd)?;
        *pos += 1;
        if first < 255 {
            usize::from(first)
        } else {
            let b = body.get(*pos..*pos + 2).ok_or(ErrorKind::RecordPastEnd)?;
            *pos += 2;
            usize::from(u16::from_be_bytes([b[0], b[1]]))
        }
    } else {
        usize::from(length)
    };
    let value = body.get(*pos..*pos + len).ok_or(ErrorKind::RecordPastEnd)?;
    *pos += len;
    Ok(value)
}

/// Decodes the records of a flow data set through the template's plan.
fn flow_set(
    template: &Template,
    plan: &FlowPlan,
    body: &[u8],
    ctx: &MessageContext,
    domain: &DomainState,
    out: &mut DecodeOutput,
    sampling_unknown: &mut u64,
) -> SetOutcome {
    let mut outcome = SetOutcome::default();
    out.flows.open_columns(plan.filled_columns);
    if let (true, Some(len)) = (plan.all_direct, template.fixed_length) {
        outcome.records = flow_set_columnar(template, plan, body, len, out) as u32;
    } else {
        outcome = flow_set_rows(template, plan, body, ctx, domain, out, sampling_unknown);
    }
    fill_set_columns(
        template,
        plan,
        ctx,
        domain,
        out,
        outcome.records as usize,
        sampling_unknown,
    );
    outcome
}

/// Row by row: templates with variable-length fields or fields that need
/// the whole record.
fn flow_set_rows(
    template: &Template,
    plan: &FlowPlan,
    body: &[u8],
    ctx: &MessageContext,
    domain: &DomainState,
    out: &mut DecodeOutput,
    sampling_unknown: &mut u64,
) -> SetOutcome {
    let mut outcome = SetOutcome::default();
    let mut scratch = FlowRecord::default();
    let mut pos = 0usize;
    // Anything shorter than the smallest record is padding (RFC 7011 §3.3.1).
    while body.len() - pos >= template.min_length {
        // Bounds and lists are checked before anything is pushed, so that a
        // bad record never leaves a column one value longer than the others.
        let len = match plan.needs_prepass {
            false => template.min_length,
            true => match record_length(template, &body[pos..]) {
                Ok(len) => len,
                Err(kind) => {
                    outcome.error = Some((pos, kind));
                    break;
                }
            },
        };
        let record = &body[pos..pos + len];
        flow_record(
            template,
            plan,
            record,
            ctx,
            domain,
            out,
            &mut scratch,
            sampling_unknown,
        );
        pos += len;
        outcome.records += 1;
    }
    outcome
}

/// Column by column: for fixed-length templates whose every field is its
/// column's only source (what routers send), each field is read for all
/// records of the set in one tight loop, so the dispatch on its kind
/// happens once per set instead of once per record.
fn flow_set_columnar(
    template: &Template,
    plan: &FlowPlan,
    body: &[u8],
    len: usize,
    out: &mut DecodeOutput,
) -> usize {
    let n = body.len() / len;
    let mut offset = 0usize;
    let mut others = Vec::new();
    for (step, op) in template.steps.iter().zip(&plan.ops) {
        let width = usize::from(step.spec.length);
        if *op == FlowOp::Direct {
            fill_column(
                out.flows.columns_mut(),
                step.action,
                body,
                (n, len, offset, width),
            );
        } else if *op != FlowOp::Ignore && step.action != Action::Skip {
            others.push((step.spec, offset, width));
        }
        offset += width;
    }
    if others.is_empty() {
        out.flows.end_records(n);
        return n;
    }
    for r in 0..n {
        for &(spec, offset, width) in &others {
            let at = r * len + offset;
            out.flows.push_other(OtherField {
                enterprise: spec.enterprise,
                element_id: spec.id,
                value: &body[at..at + width],
            });
        }
        out.flows.end_record();
    }
    n
}

/// Where one field sits in a set: records, stride, offset, width.
type FieldShape = (usize, usize, usize, usize);

/// Reads one field of every record of a set into its column.
fn fill_column(cols: &mut FlowColumnsBuilder, action: Action, body: &[u8], shape: FieldShape) {
    fn each<T: Copy + Default>(
        col: &mut hopscope_schema::ColumnBuilder<T>,
        body: &[u8],
        (n, stride, offset, width): FieldShape,
        convert: impl Fn(&[u8]) -> T,
    ) {
        col.extend_values((0..n).map(|r| {
            let at = r * stride + offset;
            convert(&body[at..at + width])
        }));
    }
    /// An unsigned field, read with its width known for the whole loop.
    fn each_uint<T: Copy + Default>(
        col: &mut hopscope_schema::ColumnBuilder<T>,
        body: &[u8],
        (n, stride, offset, width): FieldShape,
        convert: impl Fn(u64) -> T,
    ) {
        macro_rules! read {
            ($w:literal, $decode:expr) => {
                col.extend_values((0..n).map(|r| {
                    let at = r * stride + offset;
                    let bytes: [u8; $w] = body[at..at + $w].try_into().unwrap_or([0; $w]);
                    convert($decode(bytes))
                }))
            };
        }
        match width {
            1 => read!(1, |b: [u8; 1]| u64::from(b[0])),
            2 => read!(2, |b| u64::from(u16::from_be_bytes(b))),
            4 => read!(4, |b| u64::from(u32::from_be_bytes(b))),
            8 => read!(8, u64::from_be_bytes),
            _ => each(col, body, (n, stride, offset, width), |b| {
                convert(be_uint(b))
            }),
        }
    }
    /// An address column, its width (IPv4 or IPv6) known for the whole loop.
    fn each_addr(
        col: &mut hopscope_schema::ColumnBuilder<[u8; 16]>,
        body: &[u8],
        shape: FieldShape,
    ) {
        let (n, stride, offset, width) = shape;
        match width {
            4 => col.extend_values((0..n).map(|r| {
                let at = r * stride + offset;
                ipv4_mapped(body[at..at + 4].try_into().unwrap_or_default())
            })),
            _ => each(col, body, shape, addr),
        }
    }
    let secs = |v: u64| (v as i64).saturating_mul(1_000_000_000);
    let millis = |v: u64| (v as i64).saturating_mul(1_000_000);
    let ntp = ntp_to_unix_ns;
    match action {
        Action::SrcAddr => each_addr(&mut cols.src_addr, body, shape),
        Action::DstAddr => each_addr(&mut cols.dst_addr, body, shape),
        Action::NextHop => each_addr(&mut cols.next_hop, body, shape),
        Action::BgpNextHop => each_addr(&mut cols.bgp_next_hop, body, shape),
        Action::PostNatSrcAddr => each_addr(&mut cols.post_nat_src_addr, body, shape),
        Action::PostNatDstAddr => each_addr(&mut cols.post_nat_dst_addr, body, shape),
        Action::SrcPort => each_uint(&mut cols.src_port, body, shape, |v| v as u16),
        Action::DstPort => each_uint(&mut cols.dst_port, body, shape, |v| v as u16),
        Action::Proto => each_uint(&mut cols.proto, body, shape, |v| v as u8),
        Action::IpVersion => each_uint(&mut cols.ip_version, body, shape, |v| v as u8),
        Action::Bytes => each_uint(&mut cols.bytes, body, shape, |v| v),
        Action::Packets => each_uint(&mut cols.packets, body, shape, |v| v),
        Action::ReverseBytes => each_uint(&mut cols.reverse_bytes, body, shape, |v| v),
        Action::ReversePackets => each_uint(&mut cols.reverse_packets, body, shape, |v| v),
        Action::TcpFlags => each_uint(&mut cols.tcp_flags, body, shape, |v| v as u16),
        Action::ReverseTcpFlags => {
            each_uint(&mut cols.reverse_tcp_flags, body, shape, |v| v as u16)
        }
        Action::ReverseMinTtl => each_uint(&mut cols.reverse_minimum_ttl, body, shape, |v| v as u8),
        Action::ReverseMaxTtl => each_uint(&mut cols.reverse_maximum_ttl, body, shape, |v| v as u8),
        Action::Tos => each_uint(&mut cols.ip_tos, body, shape, |v| v as u8),
        Action::MinTtl => each_uint(&mut cols.minimum_ttl, body, shape, |v| v as u8),
        Action::MaxTtl => each_uint(&mut cols.maximum_ttl, body, shape, |v| v as u8),
        Action::IcmpType => each_uint(&mut cols.icmp_type, body, shape, |v| v as u8),
        Action::IcmpCode => each_uint(&mut cols.icmp_code, body, shape, |v| v as u8),
        Action::InIf => each_uint(&mut cols.in_if, body, shape, |v| v as u32),
        Action::OutIf => each_uint(&mut cols.out_if, body, shape, |v| v as u32),
        Action::SrcVlan => each_uint(&mut cols.src_vlan, body, shape, |v| v as u16),
        Action::DstVlan => each_uint(&mut cols.dst_vlan, body, shape, |v| v as u16),
        Action::SrcMac => each_uint(&mut cols.src_mac, body, shape, |v| v),
        Action::DstMac => each_uint(&mut cols.dst_mac, body, shape, |v| v),
        Action::SrcAs => each_uint(&mut cols.src_as, body, shape, |v| v as u32),
        Action::DstAs => each_uint(&mut cols.dst_as, body, shape, |v| v as u32),
        Action::SrcNet => each_uint(&mut cols.src_net, body, shape, |v| v as u8),
        Action::DstNet => each_uint(&mut cols.dst_net, body, shape, |v| v as u8),
        Action::FlowLabel => each_uint(&mut cols.ipv6_flow_label, body, shape, |v| v as u32),
        Action::FlowDirection => each_uint(&mut cols.flow_direction, body, shape, |v| v as u8),
        Action::FlowEndReason => each_uint(&mut cols.flow_end_reason, body, shape, |v| v as u8),
        Action::ForwardingStatus => {
            each_uint(&mut cols.forwarding_status, body, shape, |v| v as u32)
        }
        Action::PostNatSrcPort => each_uint(&mut cols.post_nat_src_port, body, shape, |v| v as u16),
        Action::PostNatDstPort => each_uint(&mut cols.post_nat_dst_port, body, shape, |v| v as u16),
        Action::NatEvent => each_uint(&mut cols.nat_event, body, shape, |v| v as u8),
        Action::FirewallEvent => each_uint(&mut cols.firewall_event, body, shape, |v| v as u8),
        Action::IngressVrf => each_uint(&mut cols.ingress_vrf_id, body, shape, |v| v as u32),
        Action::EgressVrf => each_uint(&mut cols.egress_vrf_id, body, shape, |v| v as u32),
        Action::MplsTopLabel => each(&mut cols.mpls_top_label, body, shape, mpls_label),
        Action::Layer2SegmentId => each_uint(&mut cols.layer2_segment_id, body, shape, |v| v),
        Action::GreKey => each_uint(&mut cols.gre_key, body, shape, |v| v as u32),
        Action::ObservationPoint => each_uint(&mut cols.observation_point_id, body, shape, |v| v),
        Action::StartSeconds => each_uint(&mut cols.time_flow_start_ns, body, shape, secs),
        Action::EndSeconds => each_uint(&mut cols.time_flow_end_ns, body, shape, secs),
        Action::StartMillis => each_uint(&mut cols.time_flow_start_ns, body, shape, millis),
        Action::EndMillis => each_uint(&mut cols.time_flow_end_ns, body, shape, millis),
        Action::StartNtp => each_uint(&mut cols.time_flow_start_ns, body, shape, ntp),
        Action::EndNtp => each_uint(&mut cols.time_flow_end_ns, body, shape, ntp),
        // the plan only makes simple actions direct
        _ => debug_assert!(false, "{action:?} is not a direct action"),
    }
}

/// After a set's records: the columns that are the same for the whole
/// message, the sampling rate when it is per set, and nulls for the columns
/// the template does not fill.
fn fill_set_columns(
    template: &Template,
    plan: &FlowPlan,
    ctx: &MessageContext,
    domain: &DomainState,
    out: &mut DecodeOutput,
    n: usize,
    sampling_unknown: &mut u64,
) {
    if n == 0 {
        return;
    }
    let cols = out.flows.columns_mut();
    cols.time_received_ns.push_repeat(ctx.received_ns, n);
    cols.flow_type.push_repeat(ctx.flow_type, n);
    cols.sequence_num.push_repeat(ctx.sequence, n);
    cols.sampler_address.push_repeat(ctx.exporter, n);
    cols.observation_domain_id.push_repeat(ctx.domain, n);
    cols.template_id.push_repeat(template.id, n);
    if let Some(version) = plan.ip_version {
        cols.ip_version.push_repeat(version, n);
    }
    if !plan.record_sampling {
        let mut row = FlowRecord::default();
        let mut unknown = 0;
        resolve_sampling(&mut row, &Sampling::default(), domain, &mut unknown);
        match row.sampling_rate {
            Some(rate) => cols.sampling_rate.push_repeat(rate, n),
            None => {
                cols.sampling_rate.push_nulls(n);
                *sampling_unknown += n as u64;
            }
        }
        cols.sampling_rate_source
            .push_repeat(row.sampling_rate_source.unwrap_or(0), n);
    }
    out.flows.push_nulls_to_open(!plan.filled_columns, n);
    debug_assert!(out.flows.is_aligned());
}

/// Length of the record at the start of `body`, checking every
/// variable-length field and list against the bytes present.
fn record_length(template: &Template, body: &[u8]) -> Result<usize, ErrorKind> {
    let mut pos = 0;
    for step in &template.steps {
        let value = field(body, &mut pos, step.spec.length)?;
        if step.list {
            lists::validate(step.spec.id, value).map_err(|_| ErrorKind::MalformedList)?;
        }
    }
    Ok(pos)
}

/// Pushes a field that is its column's only source: the columnar loop over
/// a one-record "set".
#[inline]
fn push_direct(cols: &mut FlowColumnsBuilder, action: Action, value: &[u8]) {
    fill_column(cols, action, value, (1, value.len(), 0, value.len()));
}

/// The 20-bit label of an MPLS label stack entry (3 or 4 octets).
#[inline]
fn mpls_label(value: &[u8]) -> u32 {
    (be_uint(value.get(..3).unwrap_or(value)) >> 4) as u32
}

/// Decodes one record whose bounds are already checked.
#[allow(clippy::too_many_arguments)]
#[inline]
fn flow_record(
    template: &Template,
    plan: &FlowPlan,
    record: &[u8],
    ctx: &MessageContext,
    domain: &DomainState,
    out: &mut DecodeOutput,
    row: &mut FlowRecord,
    sampling_unknown: &mut u64,
) {
    if plan.all_direct {
        let mut pos = 0usize;
        for (step, op) in template.steps.iter().zip(&plan.ops) {
            let Ok(value) = field(record, &mut pos, step.spec.length) else {
                break;
            };
            match op {
                FlowOp::Direct => push_direct(out.flows.columns_mut(), step.action, value),
                FlowOp::Scratch if step.action != Action::Skip => {
                    out.flows.push_other(OtherField {
                        enterprise: step.spec.enterprise,
                        element_id: step.spec.id,
                        value,
                    })
                }
                FlowOp::Scratch | FlowOp::Ignore => {}
            }
        }
        out.flows.end_record();
        return;
    }
    let scratch = !plan.scratch_columns.is_empty();
    if scratch {
        *row = FlowRecord::default();
    }
    let mut times = TimeParts::default();
    let mut sampling = Sampling::default();
    // a packet section (the first bytes of a sampled packet) and the frame's size
    let mut section: Option<(LinkType, &[u8])> = None;
    let mut frame_size: Option<u64> = None;
    let mut address_len = 0usize;
    let mut pos = 0usize;
    for (step, op) in template.steps.iter().zip(&plan.ops) {
        // record_length (or the fixed length) vouched for these bounds
        let Ok(value) = field(record, &mut pos, step.spec.length) else {
            break;
        };
        match op {
            FlowOp::Direct => {
                push_direct(out.flows.columns_mut(), step.action, value);
                continue;
            }
            FlowOp::Ignore => continue,
            FlowOp::Scratch => {}
        }
        let v = || be_uint(value);
        match step.action {
            // Templates that carry both families (Cisco v9) zero the unused
            // one: an unspecified address never replaces a real one.
            Action::SrcAddr => {
                if set_address(&mut row.src_addr, value) {
                    address_len = value.len();
                }
            }
            Action::DstAddr => {
                set_address(&mut row.dst_addr, value);
            }
            Action::NextHop => {
                set_address(&mut row.next_hop, value);
            }
            Action::BgpNextHop => {
                set_address(&mut row.bgp_next_hop, value);
            }
            Action::PostNatSrcAddr => {
                set_address(&mut row.post_nat_src_addr, value);
            }
            Action::PostNatDstAddr => {
                set_address(&mut row.post_nat_dst_addr, value);
            }
            Action::Bytes => row.bytes = Some(v()),
            Action::Packets => row.packets = Some(v()),
            Action::BytesTotal => row.bytes = row.bytes.or(Some(v())),
            Action::PacketsTotal => row.packets = row.packets.or(Some(v())),
            Action::MinTtl => row.minimum_ttl = Some(v() as u8),
            Action::MaxTtl => row.maximum_ttl = Some(v() as u8),
            Action::IpTtl => {
                let ttl = v() as u8;
                row.minimum_ttl = row.minimum_ttl.or(Some(ttl));
                row.maximum_ttl = row.maximum_ttl.or(Some(ttl));
            }
            Action::IcmpTypeCode => {
                let tc = v();
                row.icmp_type = Some((tc >> 8) as u8);
                row.icmp_code = Some(tc as u8);
            }
            Action::IcmpType => row.icmp_type = Some(v() as u8),
            Action::IcmpCode => row.icmp_code = Some(v() as u8),
            Action::StartSeconds => {
                times.start_ns = Some((v() as i64).saturating_mul(1_000_000_000))
            }
            Action::EndSeconds => times.end_ns = Some((v() as i64).saturating_mul(1_000_000_000)),
            Action::StartMillis => times.start_ns = Some((v() as i64).saturating_mul(1_000_000)),
            Action::EndMillis => times.end_ns = Some((v() as i64).saturating_mul(1_000_000)),
            Action::StartNtp => times.start_ns = Some(ntp_to_unix_ns(v())),
            Action::EndNtp => times.end_ns = Some(ntp_to_unix_ns(v())),
            Action::StartDeltaMicros => times.start_delta_us = Some(v()),
            Action::EndDeltaMicros => times.end_delta_us = Some(v()),
            Action::StartUptimeMillis => times.start_uptime_ms = Some(v()),
            Action::EndUptimeMillis => times.end_uptime_ms = Some(v()),
            Action::SystemInitMillis => times.system_init_ms = Some(v() as i64),
            Action::DurationMillis => {
                times.duration_ns = Some((v() as i64).saturating_mul(1_000_000))
            }
            Action::DurationMicros => times.duration_ns = Some((v() as i64).saturating_mul(1000)),
            sampling_actions!() => sampling.read(step.action, value),
            // reliability counters belong in options records; in a flow record, kept as they came
            Action::InterfaceName
            | Action::InterfaceDescription
            | Action::SamplerName
            | Action::VrfName
            | Action::Other
            | Action::IgnoredPacketTotal
            | Action::ClockDomain
            | Action::ClockBound
            | Action::NotSentFlowTotal => out.flows.push_other(OtherField {
                enterprise: step.spec.enterprise,
                element_id: step.spec.id,
                value,
            }),
            // simple fields whose column has another source in the template: last one wins
            Action::SrcPort => row.src_port = Some(v() as u16),
            Action::DstPort => row.dst_port = Some(v() as u16),
            Action::Proto => row.proto = Some(v() as u8),
            Action::IpVersion => row.ip_version = Some(v() as u8),
            Action::ReverseBytes => row.reverse_bytes = Some(v()),
            Action::ReversePackets => row.reverse_packets = Some(v()),
            Action::TcpFlags => row.tcp_flags = Some(v() as u16),
            Action::ReverseTcpFlags => row.reverse_tcp_flags = Some(v() as u16),
            Action::ReverseMinTtl => row.reverse_minimum_ttl = Some(v() as u8),
            Action::ReverseMaxTtl => row.reverse_maximum_ttl = Some(v() as u8),
            Action::Tos => row.ip_tos = Some(v() as u8),
            Action::InIf => row.in_if = Some(v() as u32),
            Action::OutIf => row.out_if = Some(v() as u32),
            Action::SrcVlan => row.src_vlan = Some(v() as u16),
            Action::DstVlan => row.dst_vlan = Some(v() as u16),
            Action::SrcMac => row.src_mac = Some(v()),
            Action::DstMac => row.dst_mac = Some(v()),
            Action::SrcAs => row.src_as = Some(v() as u32),
            Action::DstAs => row.dst_as = Some(v() as u32),
            Action::SrcNet => row.src_net = Some(v() as u8),
            Action::DstNet => row.dst_net = Some(v() as u8),
            Action::FlowLabel => row.ipv6_flow_label = Some(v() as u32),
            Action::FlowDirection => row.flow_direction = Some(v() as u8),
            Action::FlowEndReason => row.flow_end_reason = Some(v() as u8),
            Action::ForwardingStatus => row.forwarding_status = Some(v() as u32),
            Action::PostNatSrcPort => row.post_nat_src_port = Some(v() as u16),
            Action::PostNatDstPort => row.post_nat_dst_port = Some(v() as u16),
            Action::NatEvent => row.nat_event = Some(v() as u8),
            Action::FirewallEvent => row.firewall_event = Some(v() as u8),
            Action::IngressVrf => row.ingress_vrf_id = Some(v() as u32),
            Action::EgressVrf => row.egress_vrf_id = Some(v() as u32),
            Action::MplsTopLabel => row.mpls_top_label = Some(mpls_label(value)),
            Action::Layer2SegmentId => row.layer2_segment_id = Some(v()),
            Action::GreKey => row.gre_key = Some(v() as u32),
            Action::ObservationPoint => row.observation_point_id = Some(v()),
            // the frame section says more than the IP one
            Action::DataLinkFrameSection => section = Some((LinkType::Ethernet, value)),
            Action::IpHeaderSection => section = section.or(Some((LinkType::RawIp, value))),
            Action::DataLinkFrameSize => frame_size = Some(v()),
            // fields a flow row has no column for
            Action::ObservationDomain
            | Action::FragmentId
            | Action::IpTotalLength
            | Action::ObservationSeconds
            | Action::ObservationMillis
            | Action::ObservationNtp
            | Action::SelectionSequenceId
            | Action::Digest
            | Action::Skip => {}
        }
    }
    if scratch {
        if let Some((link, bytes)) = section {
            // one sampled packet: its IP length, as octet counters count, not the section's
            let ip_length = crate::section::fill_flow(row, link, bytes);
            row.bytes = row.bytes.or(ip_length.map(u64::from)).or(frame_size);
            row.packets = row.packets.or(Some(1));
        } else {
            row.bytes = row.bytes.or(frame_size);
        }
        if row.ip_version.is_none() && address_len > 0 {
            row.ip_version = Some(if address_len == 4 { 4 } else { 6 });
        }
        let (start, end) = times.resolve(ctx, domain.system_init_ms);
        row.time_flow_start_ns = start;
        row.time_flow_end_ns = end;
        // uptimes no boot time could place: kept as they are
        row.flow_start_uptime_ms = times.start_uptime_ms.filter(|_| start.is_none());
        row.flow_end_uptime_ms = times.end_uptime_ms.filter(|_| end.is_none());
        if plan.record_sampling {
            resolve_sampling(row, &sampling, domain, sampling_unknown);
        }
        let cols = out.flows.columns_mut();
        for &column in &plan.scratch_columns {
            FlowColumnsBuilder::APPEND_COLUMN[column](cols, row);
        }
    }
    out.flows.end_record();
}

/// Fills the sampling columns: the record's own rate, else the exporter's
/// options for its sampler, else the domain-wide rate, else unknown.
fn resolve_sampling(
    row: &mut FlowRecord,
    sampling: &Sampling,
    domain: &DomainState,
    sampling_unknown: &mut u64,
) {
    let (rate, source) = if let Some(rate) = sampling.rate() {
        (Some(rate), SamplingSource::Record)
    } else if let Some(rate) = sampling
        .sampler
        .and_then(|id| domain.sampling_rate(Some(id)))
        .or_else(|| domain.sampling_rate(None))
    {
        (Some(rate), SamplingSource::Options)
    } else {
        (None, SamplingSource::Unknown)
    };
    if rate.is_none() {
        *sampling_unknown += 1;
    }
    row.sampling_rate = rate;
    row.sampling_rate_source = Some(source as u8);
    row.sampler_id = sampling.sampler;
}

fn packet_report(
    template: &Template,
    body: &[u8],
    pos: &mut usize,
    ctx: &MessageContext,
    out: &mut DecodeOutput,
) -> Result<(), ErrorKind> {
    let mut row = PacketReportRecord {
        time_received_ns: Some(ctx.received_ns),
        sampler_address: Some(ctx.exporter),
        observation_domain_id: Some(ctx.domain),
        ..PacketReportRecord::default()
    };
    let mut address_len = 0;
    for step in &template.steps {
        let value = field(body, pos, step.spec.length)?;
        let v = || be_uint(value);
        match step.action {
            Action::SrcAddr => {
                address_len = value.len();
                row.src_addr = Some(addr(value));
            }
            Action::DstAddr => row.dst_addr = Some(addr(value)),
            Action::SrcPort => row.src_port = Some(v() as u16),
            Action::DstPort => row.dst_port = Some(v() as u16),
            Action::Proto => row.proto = Some(v() as u8),
            Action::IpVersion => row.ip_version = Some(v() as u8),
            Action::IpTtl | Action::MinTtl => row.ip_ttl = Some(v() as u8),
            Action::IpTotalLength => row.length = Some(v() as u32),
            Action::FragmentId => row.fragment_id = Some(v() as u32),
            Action::InIf => row.in_if = Some(v() as u32),
            Action::ObservationPoint => row.observation_point_id = Some(v()),
            Action::SelectionSequenceId => row.selection_sequence_id = Some(v()),
            Action::SelectorId | Action::SamplerId => row.selector_id = Some(v()),
            Action::Digest => row.digest = Some(v()),
            Action::ObservationNtp => row.observation_time_ns = Some(ntp_to_unix_ns(v())),
            Action::ObservationMillis => {
                row.observation_time_ns = Some((v() as i64).saturating_mul(1_000_000))
            }
            Action::ObservationSeconds => {
                row.observation_time_ns = Some((v() as i64).saturating_mul(1_000_000_000))
            }
            _ => {}
        }
    }
    if row.ip_version.is_none() && address_len > 0 {
        row.ip_version = Some(if address_len == 4 { 4 } else { 6 });
    }
    out.packet_reports.append(&row);
    Ok(())
}

/// Applies one options record to the domain's state; returns the increases
/// of the exporter's own loss counters (packets not observed, records not
/// sent) since its previous report.
fn options_record(
    template: &Template,
    body: &[u8],
    pos: &mut usize,
    domain: &mut DomainState,
) -> Result<(u64, u64), ErrorKind> {
    let mut values = OptionsValues::default();
    for step in &template.steps {
        let value = field(body, pos, step.spec.length)?;
        let v = || be_uint(value);
        match step.action {
            a if a.is_sampling() => values.sampling.read(a, value),
            Action::InIf => values.if_index = Some(v() as u32),
            Action::InterfaceName => values.if_name = Some(value),
            Action::InterfaceDescription => values.if_description = Some(value),
            Action::SamplerName => values.sampler_name = Some(value),
            Action::IngressVrf | Action::EgressVrf => values.vrf = Some(v() as u32),
            Action::VrfName => values.vrf_name = Some(value),
            Action::ObservationPoint => values.point_id = Some(v()),
            Action::SystemInitMillis => values.system_init_ms = Some(v() as i64),
            Action::IgnoredPacketTotal => values.ignored_packets = Some(v()),
            Action::NotSentFlowTotal => values.not_sent = Some(v()),
            Action::ClockDomain => values.clock_domain = Some(v()),
            Action::ClockBound => values.clock_bound_ns = Some(v()),
            _ => {}
        }
    }
    // totals since the exporter started: count what they grew by (all of
    // a total after a restart made it smaller)
    let grown = |now: Option<u64>, last: &mut Option<u64>| -> u64 {
        let Some(now) = now else { return 0 };
        let before = last.replace(now).unwrap_or(0);
        if now >= before { now - before } else { now }
    };
    let drops = grown(values.ignored_packets, &mut domain.reported_ignored);
    let not_sent = grown(values.not_sent, &mut domain.reported_not_sent);
    // the counts are the exporter's word: they may be absurd, never an overflow
    domain.loss.exporter_drops = domain.loss.exporter_drops.saturating_add(drops);
    domain.loss.lost_records = domain.loss.lost_records.saturating_add(not_sent);
    // rates and names are kept up to a bound, so that an exporter cannot
    // grow the state without end
    if let Some(rate) = values.sampling.rate()
        && (domain.sampling.len() < 65536 || domain.sampling.contains_key(&values.sampling.sampler))
    {
        domain.sampling.insert(values.sampling.sampler, rate);
    }
    let text = |n: &[u8]| {
        String::from_utf8_lossy(&n[..n.len().min(MAX_NAME)])
            .trim_end_matches('\0')
            .to_string()
    };
    let name = values.if_name.map(text);
    if let (Some(vrf), Some(vrf_name)) = (values.vrf, values.vrf_name)
        && (domain.vrf_names.len() < 65536 || domain.vrf_names.contains_key(&vrf))
    {
        domain.vrf_names.insert(vrf, text(vrf_name));
    }
    if let (Some(index), Some(description)) = (values.if_index, values.if_description)
        && (domain.interface_descriptions.len() < 65536
            || domain.interface_descriptions.contains_key(&index))
    {
        domain
            .interface_descriptions
            .insert(index, text(description));
    }
    if let (Some(sampler), Some(name)) = (values.sampling.sampler, values.sampler_name)
        && (domain.sampler_names.len() < 65536 || domain.sampler_names.contains_key(&sampler))
    {
        domain.sampler_names.insert(sampler, text(name));
    }
    match (values.if_index, values.point_id, name) {
        (Some(index), _, Some(name))
            if domain.interface_names.len() < 65536
                || domain.interface_names.contains_key(&index) =>
        {
            domain.interface_names.insert(index, name);
        }
        (None, Some(point), Some(name))
            if domain.point_names.len() < 65536 || domain.point_names.contains_key(&point) =>
        {
            domain.point_names.insert(point, name);
        }
        _ => {}
    }
    // a clock without its bound says too little to measure by
    if let (Some(point), Some(id), Some(bound_ns)) =
        (values.point_id, values.clock_domain, values.clock_bound_ns)
        && (domain.point_clocks.len() < 65536 || domain.point_clocks.contains_key(&point))
    {
        domain
            .point_clocks
            .insert(point, PointClock { id, bound_ns });
    }
    if let Some(init) = values.system_init_ms {
        domain.system_init_ms = Some(init);
    }
    Ok((drops, not_sent))
}
