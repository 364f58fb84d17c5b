//! The scenario simulator: the ground truth journeys are held to.
//!
//! From a topology (hops in path order, each one observation point or an
//! ECMP cluster of several; links with delay, jitter and loss, a router's
//! TTL decrement, a NAT; per-point clock offset and drift and telemetry
//! loss) and a traffic mix, it produces the frames every point would
//! capture, stamped by that point's clock, and the true answer: packets sent
//! and lost per link in each direction, true one-way delays, true offsets.
//! [`probe_reports`] runs hopscope's own metering process over each point's
//! frames, as the probes would, and drops reports as the telemetry would.
//!
//! Everything follows from the seed: the same scenario gives the same frames.
//! The simulator does not correlate anything; it only says what happened.

#![forbid(unsafe_code)]

mod frames;
mod rng;
mod scenario;
mod security;

pub use frames::write_pcap;
pub use rng::Rng;
pub use scenario::{
    Capture, HopSpec, LinkSpec, LinkTruth, NatBinding, NatSpec, PointSpec, PointTruth, Run,
    Scenario, SimFrame, Traffic, Truth, simulate,
};
pub use security::{
    ATTACKS, Attack, LATERAL_LEARNING_S, LOOKALIKES, SecurityRun, security_scenario,
};

use arrow_array::{BooleanArray, RecordBatch};
use arrow_schema::ArrowError;
use hopscope_probe::{CacheConfig, Frame, Meter, MeterConfig, SelectorConfig};
use hopscope_schema::{FlowBatchBuilder, FlowRecord};

impl SimFrame {
    /// The frame as a probe's packet source hands it over.
    pub fn as_frame(&self) -> Frame<'_> {
        Frame {
            timestamp_ns: self.time_ns,
            link: hopscope_packet::LinkType::Ethernet,
            data: &self.data,
            wire_len: self.data.len() as u32,
            interface: 0,
            vlan: None,
        }
    }
}

/// What a NAT would export for `bindings`: NAT44 session-creation events
/// (RFC 8158, natEvent 4) as flow-table rows.
pub fn nat_event_batch(bindings: &[NatBinding]) -> Result<RecordBatch, ArrowError> {
    let mut b = FlowBatchBuilder::with_capacity(bindings.len());
    for n in bindings {
        b.append(&FlowRecord {
            time_flow_start_ns: Some(n.time_ns),
            time_flow_end_ns: Some(n.time_ns),
            ip_version: Some(if hopscope_schema::mapped_to_ip(n.inside.0).is_ipv4() {
                4
            } else {
                6
            }),
            src_addr: Some(n.inside.0),
            src_port: Some(n.inside.1),
            dst_addr: Some(n.inside.2),
            dst_port: Some(n.inside.3),
            proto: Some(n.inside.4),
            post_nat_src_addr: Some(n.outside.0),
            post_nat_src_port: Some(n.outside.1),
            post_nat_dst_addr: Some(n.outside.2),
            post_nat_dst_port: Some(n.outside.3),
            nat_event: Some(4),
            ..FlowRecord::default()
        });
    }
    b.finish()
}

/// What one simulated probe exported.
#[derive(Debug)]
pub struct PointReports {
    pub point: u64,
    pub name: String,
    /// Packet reports that reached the collector.
    pub reports: RecordBatch,
    /// Flow records the probe exported.
    pub flows: RecordBatch,
    /// Reports lost on the way (the telemetry loss the collector would count).
    pub lost_reports: u64,
}

/// Meters every capture of `run` with hopscope's probe (the same selection
/// at every point), then drops each point's reports with its telemetry loss
/// probability.
pub fn probe_reports(run: &Run, selection: SelectorConfig, seed: u64) -> Vec<PointReports> {
    let mut rng = Rng::new(seed ^ 0x7e1e_3e72);
    run.captures
        .iter()
        .map(|c| {
            let mut meter = Meter::new(MeterConfig {
                observation_point_id: c.point.id(),
                domain: 0,
                cache: CacheConfig::default(),
                selection: Some(selection),
                decapsulate: true,
            });
            for f in &c.frames {
                meter.observe(&f.as_frame());
            }
            // the probe runs on past the traffic: flows end by idle timeout
            if let Some(last) = c.frames.last() {
                meter.tick(last.time_ns + CacheConfig::default().idle_timeout_ns + 1);
            }
            meter.finish();
            let reports = meter.take_reports().expect("valid report batch");
            let flows = meter.take_flows().expect("valid flow batch");
            let keep: BooleanArray = (0..reports.num_rows())
                .map(|_| Some(!rng.chance(c.point.telemetry_loss)))
                .collect();
            let lost_reports = keep.false_count() as u64;
            let reports = arrow_select::filter::filter_record_batch(&reports, &keep)
                .expect("filter keeps the schema");
            PointReports {
                point: c.point.id(),
                name: c.point.name.clone(),
                reports,
                flows,
                lost_reports,
            }
        })
        .collect()
}
