//! Templates and their compiled field plans.
//!
//! A template is compiled once, when it arrives, into a plan: for each field
//! the column it fills (an [`Action`]) and how many octets it takes. Decoding
//! a data record then walks the plan without looking anything up.

use crate::ie::{self, DataType, HOPSCOPE_PEN, REVERSE_PEN};

/// Field length that marks a variable-length field (RFC 7011 §7).
pub const VARIABLE_LENGTH: u16 = 65535;

/// One field specifier of a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct FieldSpec {
    /// Private enterprise number; 0 for IANA elements.
    pub enterprise: u32,
    pub id: u16,
    /// Octets, or [`VARIABLE_LENGTH`].
    pub length: u16,
}

impl FieldSpec {
    pub const fn iana(id: u16, length: u16) -> Self {
        Self {
            enterprise: 0,
            id,
            length,
        }
    }
}

/// What a template's records are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// Flow records, into the flow table.
    Flow,
    /// PSAMP packet reports, into the packet-report table.
    PacketReport,
    /// Options records: metadata kept in the exporter's state.
    Options,
}

/// Where one field's value goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    SrcAddr,
    DstAddr,
    NextHop,
    BgpNextHop,
    PostNatSrcAddr,
    PostNatDstAddr,
    SrcPort,
    DstPort,
    Proto,
    IpVersion,
    Bytes,
    Packets,
    /// Total counters fill bytes/packets only when no delta counter did.
    BytesTotal,
    PacketsTotal,
    ReverseBytes,
    ReversePackets,
    ReverseTcpFlags,
    ReverseMinTtl,
    ReverseMaxTtl,
    TcpFlags,
    Tos,
    MinTtl,
    MaxTtl,
    IpTtl,
    IcmpTypeCode,
    IcmpType,
    IcmpCode,
    InIf,
    OutIf,
    SrcVlan,
    DstVlan,
    SrcMac,
    DstMac,
    SrcAs,
    DstAs,
    SrcNet,
    DstNet,
    FlowLabel,
    FlowDirection,
    FlowEndReason,
    ForwardingStatus,
    PostNatSrcPort,
    PostNatDstPort,
    NatEvent,
    FirewallEvent,
    IngressVrf,
    EgressVrf,
    MplsTopLabel,
    Layer2SegmentId,
    GreKey,
    ObservationPoint,
    ObservationDomain,
    FragmentId,
    IpTotalLength,
    // times
    StartSeconds,
    EndSeconds,
    StartMillis,
    EndMillis,
    StartNtp,
    EndNtp,
    StartDeltaMicros,
    EndDeltaMicros,
    StartUptimeMillis,
    EndUptimeMillis,
    SystemInitMillis,
    /// ignoredPacketTotalCount: packets the metering process could not
    /// observe (capture drops) or meter, since it started.
    IgnoredPacketTotal,
    /// notSentFlowTotalCount: records the exporting process could not send.
    NotSentFlowTotal,
    /// hopscope's clock domain and bound of an observation point.
    ClockDomain,
    ClockBound,
    DurationMillis,
    DurationMicros,
    ObservationSeconds,
    ObservationMillis,
    ObservationNtp,
    // sampling and PSAMP (read by `sampling::Sampling`)
    SamplingInterval,
    SamplingPacketInterval,
    SamplingPacketSpace,
    SamplingTimeInterval,
    SamplingTimeSpace,
    SamplingSize,
    SamplingPopulation,
    SamplingProbability,
    SelectorAlgorithm,
    SamplerId,
    SelectionSequenceId,
    SelectorId,
    Digest,
    // packet sections: the first bytes of a sampled packet (Juniper, SRv6 and
    // EVPN exporters send them instead of the flow's fields)
    /// dataLinkFrameSection (315): from the link header on.
    DataLinkFrameSection,
    /// ipHeaderPacketSection (313): from the IP header on.
    IpHeaderSection,
    /// dataLinkFrameSize (312): the whole frame's length.
    DataLinkFrameSize,
    // options metadata
    InterfaceName,
    /// interfaceDescription (83): ifAlias, scoped by an ifIndex.
    InterfaceDescription,
    /// samplerName (84) or selectorName (335), scoped by the sampler's or
    /// selector's id.
    SamplerName,
    /// VRFname (236), scoped by a VRF id in options records.
    VrfName,
    /// Padding: skipped.
    Skip,
    /// Kept with its raw bytes in `other_fields`.
    Other,
}

/// The actions of sampling elements (read by `sampling::Sampling`), as a
/// pattern: exhaustive matches name them in one arm.
macro_rules! sampling_actions {
    () => {
        Action::SamplingInterval
            | Action::SamplingPacketInterval
            | Action::SamplingPacketSpace
            | Action::SamplingTimeInterval
            | Action::SamplingTimeSpace
            | Action::SamplingSize
            | Action::SamplingPopulation
            | Action::SamplingProbability
            | Action::SelectorAlgorithm
            | Action::SamplerId
            | Action::SelectorId
    };
}
pub(crate) use sampling_actions;

impl Action {
    /// Whether the element says how packets were sampled.
    pub(crate) fn is_sampling(self) -> bool {
        matches!(self, sampling_actions!())
    }

    /// The column for an element, given the length the template declares.
    /// Lengths that do not fit the element's type keep the raw bytes instead.
    pub fn for_field(spec: FieldSpec) -> Action {
        let len = spec.length;
        let uint = (1..=8).contains(&len);
        let action = match (spec.enterprise, spec.id) {
            (REVERSE_PEN, 1) => Action::ReverseBytes,
            (REVERSE_PEN, 2) => Action::ReversePackets,
            (REVERSE_PEN, 6) => Action::ReverseTcpFlags,
            (REVERSE_PEN, 52) => Action::ReverseMinTtl,
            (REVERSE_PEN, 53) => Action::ReverseMaxTtl,
            (HOPSCOPE_PEN, ie::hopscope::CLOCK_DOMAIN_ID) => Action::ClockDomain,
            (HOPSCOPE_PEN, ie::hopscope::CLOCK_BOUND_NANOSECONDS) => Action::ClockBound,
            (0, id) => Self::iana(id, len),
            _ => Action::Other,
        };
        use Action::*;
        let fits = match action {
            SrcAddr | DstAddr | NextHop | BgpNextHop | PostNatSrcAddr | PostNatDstAddr => {
                len == 4 || len == 16
            }
            SrcMac | DstMac => len == 6,
            StartNtp | EndNtp | ObservationNtp => len == 8,
            // float64, or float32 in reduced-size encoding
            SamplingProbability => len == 4 || len == 8,
            InterfaceName | InterfaceDescription | SamplerName | VrfName | DataLinkFrameSection
            | IpHeaderSection => true,
            Skip | Other => true,
            MplsTopLabel => len == 3 || len == 4,
            _ => uint,
        };
        if fits { action } else { Action::Other }
    }

    fn iana(id: u16, len: u16) -> Action {
        use Action::*;
        match id {
            8 | 27 => SrcAddr,
            12 | 28 => DstAddr,
            15 | 62 => NextHop,
            18 | 63 => BgpNextHop,
            225 | 281 => PostNatSrcAddr,
            226 | 282 => PostNatDstAddr,
            7 => SrcPort,
            11 => DstPort,
            4 => Proto,
            60 => IpVersion,
            1 => Bytes,
            2 => Packets,
            85 | 231 => BytesTotal,
            86 | 298 => PacketsTotal,
            232 => ReverseBytes,
            299 => ReversePackets,
            6 => TcpFlags,
            5 => Tos,
            52 => MinTtl,
            53 => MaxTtl,
            192 => IpTtl,
            32 | 139 => IcmpTypeCode,
            176 | 178 => IcmpType,
            177 | 179 => IcmpCode,
            10 | 252 => InIf,
            14 | 253 => OutIf,
            58 | 243 => SrcVlan,
            59 | 254 => DstVlan,
            56 | 81 => SrcMac,
            80 | 57 => DstMac,
            16 => SrcAs,
            17 => DstAs,
            9 | 29 => SrcNet,
            13 | 30 => DstNet,
            31 => FlowLabel,
            61 => FlowDirection,
            136 => FlowEndReason,
            89 => ForwardingStatus,
            227 => PostNatSrcPort,
            228 => PostNatDstPort,
            230 => NatEvent,
            // NF_F_FW_EVENT of older Cisco ASA releases: a NetFlow v9 id
            // (IPFIX ids stop at 32767), the same codes as 233
            233 | 40005 => FirewallEvent,
            234 => IngressVrf,
            235 => EgressVrf,
            70 => MplsTopLabel,
            351 => Layer2SegmentId,
            296 => GreKey,
            138 => ObservationPoint,
            149 => ObservationDomain,
            54 => FragmentId,
            224 => IpTotalLength,
            150 => StartSeconds,
            151 => EndSeconds,
            152 => StartMillis,
            153 => EndMillis,
            154 | 156 => StartNtp,
            155 | 157 => EndNtp,
            158 => StartDeltaMicros,
            159 => EndDeltaMicros,
            22 => StartUptimeMillis,
            21 => EndUptimeMillis,
            160 => SystemInitMillis,
            164 => IgnoredPacketTotal,
            166 => NotSentFlowTotal,
            161 => DurationMillis,
            162 => DurationMicros,
            322 => ObservationSeconds,
            323 => ObservationMillis,
            324 | 325 => ObservationNtp,
            // samplingInterval, and Cisco's samplerRandomInterval (one in N)
            34 | 50 => SamplingInterval,
            304 => SelectorAlgorithm,
            305 => SamplingPacketInterval,
            306 => SamplingPacketSpace,
            307 => SamplingTimeInterval,
            308 => SamplingTimeSpace,
            309 => SamplingSize,
            310 => SamplingPopulation,
            311 => SamplingProbability,
            48 => SamplerId,
            301 => SelectionSequenceId,
            302 => SelectorId,
            326 => Digest,
            82 => InterfaceName,
            83 => InterfaceDescription,
            84 | 335 => SamplerName,
            236 => VrfName,
            312 => DataLinkFrameSize,
            313 => IpHeaderSection,
            315 => DataLinkFrameSection,
            210 => Skip,
            _ => {
                // v9 field types above the IANA range or IEs we do not name
                let _ = len;
                Other
            }
        }
    }
}

/// One step of a plan: the field as declared and where it goes.
#[derive(Debug, Clone, Copy)]
pub struct PlanStep {
    pub spec: FieldSpec,
    pub action: Action,
    /// For list-typed elements, whether this is an RFC 6313 list to check.
    pub list: bool,
}

/// A template as received, compiled.
#[derive(Debug, Clone)]
pub struct Template {
    pub id: u16,
    /// Number of leading scope fields (options templates), 0 otherwise.
    pub scope_count: u16,
    pub fields: Vec<FieldSpec>,
    pub kind: RecordKind,
    pub steps: Vec<PlanStep>,
    /// Octets of one record when every field is fixed-length.
    pub fixed_length: Option<usize>,
    /// Smallest possible record, to stop at set padding.
    pub min_length: usize,
    /// The fast path's plan, for flow templates.
    pub(crate) flow_plan: Option<crate::flow_plan::FlowPlan>,
}

impl Template {
    /// Compiles a template; one with scope fields is an options template.
    pub fn new(id: u16, scope_count: u16, fields: Vec<FieldSpec>) -> Self {
        Self::compile(id, scope_count, fields, scope_count > 0)
    }

    /// Compiles an options template, even one without scope fields (NetFlow
    /// v9 exporters such as Juniper SRX send a zero-length scope).
    pub fn options(id: u16, scope_count: u16, fields: Vec<FieldSpec>) -> Self {
        Self::compile(id, scope_count, fields, true)
    }

    fn compile(id: u16, scope_count: u16, fields: Vec<FieldSpec>, options: bool) -> Self {
        let steps: Vec<PlanStep> = fields
            .iter()
            .map(|&spec| PlanStep {
                spec,
                action: Action::for_field(spec),
                list: spec.enterprise == 0
                    && ie::lookup(spec.id).is_some_and(|e| {
                        matches!(
                            e.data_type,
                            DataType::BasicList
                                | DataType::SubTemplateList
                                | DataType::SubTemplateMultiList
                        )
                    }),
            })
            .collect();
        let variable = fields.iter().any(|f| f.length == VARIABLE_LENGTH);
        let min_length = fields
            .iter()
            .map(|f| {
                if f.length == VARIABLE_LENGTH {
                    1
                } else {
                    usize::from(f.length)
                }
            })
            .sum();
        let kind = if options {
            RecordKind::Options
        } else if steps.iter().any(|s| s.action == Action::Digest)
            || (steps.iter().any(|s| s.action == Action::ObservationNtp)
                && steps
                    .iter()
                    .any(|s| s.action == Action::SelectionSequenceId))
        {
            RecordKind::PacketReport
        } else {
            RecordKind::Flow
        };
        let flow_plan =
            (kind == RecordKind::Flow).then(|| crate::flow_plan::FlowPlan::compile(&steps));
        Self {
            id,
            scope_count,
            flow_plan,
            fixed_length: (!variable).then_some(min_length),
            min_length,
            fields,
            kind,
            steps,
        }
    }

    /// Whether two templates describe the same record layout.
    pub fn same_layout(&self, other: &Template) -> bool {
        self.scope_count == other.scope_count && self.fields == other.fields
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_actions_and_lengths() {
        let t = Template::new(
            256,
            0,
            vec![
                FieldSpec::iana(8, 4),
                FieldSpec::iana(1, 4), // reduced-size counter
                FieldSpec::iana(82, VARIABLE_LENGTH),
                FieldSpec {
                    enterprise: REVERSE_PEN,
                    id: 2,
                    length: 8,
                },
                FieldSpec::iana(8, 3), // wrong length: raw bytes kept
            ],
        );
        let actions: Vec<_> = t.steps.iter().map(|s| s.action).collect();
        assert_eq!(
            actions,
            [
                Action::SrcAddr,
                Action::Bytes,
                Action::InterfaceName,
                Action::ReversePackets,
                Action::Other
            ]
        );
        assert_eq!(t.fixed_length, None);
        assert_eq!(t.min_length, 4 + 4 + 1 + 8 + 3);
        assert_eq!(t.kind, RecordKind::Flow);
    }

    #[test]
    fn recognises_packet_reports_and_options() {
        let pr = Template::new(
            300,
            0,
            vec![
                FieldSpec::iana(301, 8),
                FieldSpec::iana(325, 8),
                FieldSpec::iana(326, 8),
            ],
        );
        assert_eq!(pr.kind, RecordKind::PacketReport);
        let opt = Template::new(
            301,
            1,
            vec![FieldSpec::iana(149, 4), FieldSpec::iana(34, 4)],
        );
        assert_eq!(opt.kind, RecordKind::Options);
    }
}
