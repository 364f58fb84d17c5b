//! hopscope's correlator: the records that several observation points
//! exported for the same traffic, rebuilt into *journeys*.
//!
//! Probes select the same packets everywhere and give each the same digest
//! (PSAMP hash-based selection), so the packet reports of one packet form a
//! trajectory. This crate owns what follows from that: canonical flow keys
//! (Community ID), trajectories, the order of hops (TTL, then the
//! configured topology, then time), clock offsets between points from
//! packets seen in both directions, per-hop one-way delay, per-segment loss
//! with its confidence interval, with telemetry loss (exporters' sequence
//! gaps, reports missing at one point but present further on) subtracted
//! before anything is put on the network, ECMP clusters and NAT seen on the
//! way. It runs streaming (window by window, state partitioned by flow key)
//! and in batch over stored reports: the same [`Correlator`] either way.
//!
//! It does not receive, decode or store anything: the collector and the
//! store hand it Arrow batches, and [`journeys_to_batch`] hands journeys
//! back as rows of the `journeys` table.

#![forbid(unsafe_code)]

mod batch;
mod clock;
mod engine;
mod input;
mod journey;
mod loss;
mod nat;
mod observe;
mod sharing;
mod summary;
mod totals;
mod watermark;

pub use batch::{journey_id, journeys_to_batch, segments_to_batch};
pub use clock::{ClockDomain, ClockOffset, DelayKind};
pub use engine::{Correlator, CorrelatorConfig, CorrelatorStats};
pub use hopscope_schema::key::{self, CanonicalKey, FlowTuple};
pub use journey::{
    DelayStats, FLOW_TOTALS_BASIS, Hop, HopPoint, Journey, JourneyFlag, LossEstimate,
    NatTranslation, PACKETS_BASIS, Segment,
};
pub use loss::wilson_interval;
pub use nat::{NatEventKind, NatTable};
pub use observe::{ExporterId, Observation, read_reports};
pub use summary::{
    EcmpMember, EcmpSet, Pooled, SegmentSummary, summarize_segments, summarize_stored_segments,
};
pub use totals::{FLOW_COLUMNS, FlowRead, FlowTotal, read_flows};
pub use watermark::Watermark;

/// Why input could not be correlated.
#[derive(Debug, thiserror::Error)]
pub enum CorrelateError {
    #[error("input: {0}")]
    Input(String),
    #[error(transparent)]
    Arrow(#[from] arrow_schema::ArrowError),
}
