//! The fast path for flow templates: which fields go straight into their
//! column and which need a record's other fields first.
//!
//! Most fields of a flow template are the only source of their column (a
//! port, a counter, an interface): those are pushed into the column as they
//! are read. Fields that compete for a column (both address families,
//! delta and total counters), that feed several columns (icmpTypeCode,
//! ipTTL) or that need the whole record (times, sampling) go through a
//! scratch row resolved at the end of the record. Columns the template does
//! not fill, and those that are the same for the whole message (receive
//! time, exporter, domain...), are filled once per set.

use hopscope_schema::FLOW_FIELDS;

use crate::template::{Action, PlanStep, VARIABLE_LENGTH};

/// The columns an action writes; empty for actions that write none.
fn columns_of(action: Action) -> &'static [&'static str] {
    use Action::*;
    match action {
        SrcAddr => &["src_addr"],
        DstAddr => &["dst_addr"],
        NextHop => &["next_hop"],
        BgpNextHop => &["bgp_next_hop"],
        PostNatSrcAddr => &["post_nat_src_addr"],
        PostNatDstAddr => &["post_nat_dst_addr"],
        SrcPort => &["src_port"],
        DstPort => &["dst_port"],
        Proto => &["proto"],
        IpVersion => &["ip_version"],
        Bytes | BytesTotal => &["bytes"],
        Packets | PacketsTotal => &["packets"],
        ReverseBytes => &["reverse_bytes"],
        ReversePackets => &["reverse_packets"],
        ReverseTcpFlags => &["reverse_tcp_flags"],
        ReverseMinTtl => &["reverse_minimum_ttl"],
        ReverseMaxTtl => &["reverse_maximum_ttl"],
        TcpFlags => &["tcp_flags"],
        Tos => &["ip_tos"],
        MinTtl => &["minimum_ttl"],
        MaxTtl => &["maximum_ttl"],
        IpTtl => &["minimum_ttl", "maximum_ttl"],
        IcmpTypeCode => &["icmp_type", "icmp_code"],
        IcmpType => &["icmp_type"],
        IcmpCode => &["icmp_code"],
        InIf => &["in_if"],
        OutIf => &["out_if"],
        SrcVlan => &["src_vlan"],
        DstVlan => &["dst_vlan"],
        SrcMac => &["src_mac"],
        DstMac => &["dst_mac"],
        SrcAs => &["src_as"],
        DstAs => &["dst_as"],
        SrcNet => &["src_net"],
        DstNet => &["dst_net"],
        FlowLabel => &["ipv6_flow_label"],
        FlowDirection => &["flow_direction"],
        FlowEndReason => &["flow_end_reason"],
        ForwardingStatus => &["forwarding_status"],
        PostNatSrcPort => &["post_nat_src_port"],
        PostNatDstPort => &["post_nat_dst_port"],
        NatEvent => &["nat_event"],
        FirewallEvent => &["firewall_event"],
        IngressVrf => &["ingress_vrf_id"],
        EgressVrf => &["egress_vrf_id"],
        MplsTopLabel => &["mpls_top_label"],
        Layer2SegmentId => &["layer2_segment_id"],
        GreKey => &["gre_key"],
        ObservationPoint => &["observation_point_id"],
        // absolute times fill their own column; relative ones need the record
        StartSeconds | StartMillis | StartNtp => &["time_flow_start_ns"],
        EndSeconds | EndMillis | EndNtp => &["time_flow_end_ns"],
        StartDeltaMicros | EndDeltaMicros | SystemInitMillis | DurationMillis | DurationMicros => {
            &["time_flow_start_ns", "time_flow_end_ns"]
        }
        // kept as they came when the exporter's boot time is not known
        StartUptimeMillis | EndUptimeMillis => &[
            "time_flow_start_ns",
            "time_flow_end_ns",
            "flow_start_uptime_ms",
            "flow_end_uptime_ms",
        ],
        a if a.is_sampling() => &["sampling_rate", "sampling_rate_source", "sampler_id"],
        DataLinkFrameSection | IpHeaderSection => crate::section::COLUMNS,
        DataLinkFrameSize => &["bytes"],
        _ => &[],
    }
}

/// Actions whose value maps to their one column without looking at anything else.
fn is_simple(action: Action) -> bool {
    use Action::*;
    !matches!(
        action,
        BytesTotal
            | PacketsTotal
            | IpTtl
            | IcmpTypeCode
            | InterfaceName
            | InterfaceDescription
            | SamplerName
            | VrfName
            | DataLinkFrameSize
            | Other
            | Skip
    ) && columns_of(action).len() == 1
}

/// Columns that are the same for every record of a message.
pub(crate) const MESSAGE_COLUMNS: &[&str] = &[
    "time_received_ns",
    "flow_type",
    "sequence_num",
    "sampler_address",
    "observation_domain_id",
    "template_id",
];

pub(crate) fn column_index(name: &str) -> usize {
    FLOW_FIELDS
        .iter()
        .position(|f| f.name == name)
        .unwrap_or_else(|| panic!("flow column {name}"))
}

/// How one field is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlowOp {
    /// Pushed straight into the action's column.
    Direct,
    /// Stored in the scratch row, resolved at the end of the record.
    Scratch,
    /// Read past: another field of the template says the same more precisely.
    Ignore,
}

/// Precision rank of an absolute time field, for templates that carry the
/// same time twice (nanoseconds for us, milliseconds for older collectors).
fn time_precision(action: Action) -> Option<(bool, u8)> {
    use Action::*;
    match action {
        StartSeconds => Some((true, 0)),
        StartMillis => Some((true, 1)),
        StartNtp => Some((true, 2)),
        EndSeconds => Some((false, 0)),
        EndMillis => Some((false, 1)),
        EndNtp => Some((false, 2)),
        _ => None,
    }
}

/// A flow template compiled for the fast path.
#[derive(Debug, Clone)]
pub(crate) struct FlowPlan {
    pub ops: Vec<FlowOp>,
    /// Columns appended from the scratch row after each record.
    pub scratch_columns: Vec<usize>,
    /// Columns the template fills, a bit each in schema order (see
    /// `FlowBatchBuilder::open_columns`); the others get nulls once per set,
    /// if an earlier template of the batch opened them.
    pub filled_columns: u128,
    /// IP version when the template's addresses are of one family and it has no ipVersion field.
    pub ip_version: Option<u8>,
    /// The record carries its own sampling fields (else the rate is per set).
    pub record_sampling: bool,
    /// Some field needs a list check or goes to `other_fields`, or is variable-length.
    pub needs_prepass: bool,
    /// Every field is direct or goes to `other_fields`: no scratch row at all.
    pub all_direct: bool,
}

impl FlowPlan {
    pub fn compile(steps: &[PlanStep]) -> FlowPlan {
        // the most precise of several absolute start (end) times wins; the rest are read past
        let best = |start: bool| {
            steps
                .iter()
                .filter_map(|s| time_precision(s.action).filter(|(is_start, _)| *is_start == start))
                .map(|(_, rank)| rank)
                .max()
        };
        let (best_start, best_end) = (best(true), best(false));
        let ignored = |s: &PlanStep| match time_precision(s.action) {
            Some((true, rank)) => Some(rank) != best_start,
            Some((false, rank)) => Some(rank) != best_end,
            None => false,
        };
        let mut sources = vec![0usize; FLOW_FIELDS.len()];
        for s in steps.iter().filter(|s| !ignored(s)) {
            for c in columns_of(s.action) {
                sources[column_index(c)] += 1;
            }
        }
        let ops: Vec<FlowOp> = steps
            .iter()
            .map(|s| {
                if ignored(s) {
                    return FlowOp::Ignore;
                }
                let direct =
                    is_simple(s.action) && sources[column_index(columns_of(s.action)[0])] == 1;
                if direct {
                    FlowOp::Direct
                } else {
                    FlowOp::Scratch
                }
            })
            .collect();
        let mut filled = vec![false; FLOW_FIELDS.len()];
        let mut scratch = vec![false; FLOW_FIELDS.len()];
        for (s, op) in steps
            .iter()
            .zip(&ops)
            .filter(|(_, op)| **op != FlowOp::Ignore)
        {
            for c in columns_of(s.action) {
                let i = column_index(c);
                filled[i] = true;
                if *op == FlowOp::Scratch {
                    scratch[i] = true;
                }
            }
        }
        for c in MESSAGE_COLUMNS {
            filled[column_index(c)] = true;
        }
        let record_sampling = sources[column_index("sampling_rate")] > 0;
        // sampling comes from the domain's options when the record has none: per set
        filled[column_index("sampling_rate")] = true;
        filled[column_index("sampling_rate_source")] = true;

        let version = column_index("ip_version");
        let mut ip_version = None;
        if !filled[version] {
            let families: Vec<u16> = steps
                .iter()
                .filter(|s| matches!(s.action, Action::SrcAddr | Action::DstAddr))
                .map(|s| s.spec.length)
                .collect();
            if !families.is_empty() {
                filled[version] = true;
                if families.iter().all(|&l| l == families[0]) {
                    ip_version = Some(if families[0] == 4 { 4 } else { 6 });
                } else {
                    scratch[version] = true;
                }
            }
        }
        let scratch_columns: Vec<usize> = (0..FLOW_FIELDS.len()).filter(|&i| scratch[i]).collect();
        let filled_columns = (0..FLOW_FIELDS.len())
            .filter(|&i| filled[i])
            .fold(0u128, |m, i| m | 1 << i);
        let needs_prepass = steps
            .iter()
            .any(|s| s.spec.length == VARIABLE_LENGTH || s.list);
        // a column computed from the whole record (the IP version of a
        // template mixing address families) needs the row path
        let all_direct = scratch_columns.is_empty()
            && steps.iter().zip(&ops).all(|(s, op)| {
                *op == FlowOp::Direct
                    || matches!(
                        s.action,
                        Action::Other
                            | Action::InterfaceName
                            | Action::InterfaceDescription
                            | Action::SamplerName
                            | Action::VrfName
                            | Action::Skip
                    )
            });
        FlowPlan {
            ops,
            scratch_columns,
            filled_columns,
            ip_version,
            record_sampling,
            needs_prepass,
            all_direct,
        }
    }
}
