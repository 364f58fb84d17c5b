//! One receiver's pipeline stage, the same for UDP sockets, TCP
//! connections and replayed files: decode into column builders, and at
//! regular hand-offs enrich the rows, count what changed, and pass it all
//! to the store writer.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use hopscope_schema::{ExporterHealthBuilder, ExporterHealthRecord, ip_to_mapped};
use hopscope_wire::{
    DecodeOutput, Decoder, Evictions, ExporterStats, PointClock, SessionLimits, Transport,
};

use crate::enrich::{EnrichCache, Enricher};
use crate::metrics::{DomainReport, Metrics, SessionReport};
use crate::now_ns;
use crate::state::StateDelta;

/// What a receiver passes to the store writer.
#[derive(Debug)]
pub struct Handoff {
    pub receiver: u64,
    /// Flows in the stored (enriched) schema.
    pub flows: Option<RecordBatch>,
    pub packet_reports: Option<RecordBatch>,
    pub interface_counters: Option<RecordBatch>,
    /// Per-exporter counters over the interval since the last hand-off.
    pub health: Option<RecordBatch>,
    /// What changed in the receiver's UDP session state, matching exactly
    /// the rows handed off so far: committed together, so a restart
    /// resumes from it.
    pub state: Option<StateDelta>,
    /// Collector receive time of the oldest row in this hand-off.
    pub oldest_ns: Option<i64>,
    /// What exporters said of their observation points in options records
    /// (only when packet reports are handed off: journeys name their hops
    /// by them and measure delays between points of one clock).
    pub points: PointFacts,
}

/// Names and clocks of observation points, by observationPointId.
#[derive(Debug, Default, Clone)]
pub struct PointFacts {
    pub names: Vec<(u64, String)>,
    pub clocks: Vec<(u64, PointClock)>,
}

impl PointFacts {
    /// Every fact the decoder has learnt.
    fn of(decoder: &Decoder) -> Self {
        let domains = || decoder.sessions().flat_map(|s| s.domains()).map(|(_, d)| d);
        PointFacts {
            names: domains()
                .flat_map(|d| d.point_names())
                .map(|(id, name)| (id, name.to_string()))
                .collect(),
            clocks: domains().flat_map(|d| d.point_clocks()).collect(),
        }
    }

    pub fn extend(&mut self, other: PointFacts) {
        self.names.extend(other.names);
        self.clocks.extend(other.clocks);
    }
}

/// The parts of an intake other than its decoder and builders, so that a
/// replay can lend those to the file reader and still hand off.
#[derive(Debug)]
pub struct IntakeState {
    id: u64,
    transport: Transport,
    enricher: Arc<Enricher>,
    cache: EnrichCache,
    sink: SyncSender<Handoff>,
    pub(crate) metrics: Arc<Metrics>,
    handoff_every: Duration,
    batch_rows: usize,
    last_handoff: Instant,
    oldest_ns: Option<i64>,
    /// Counters at the last hand-off, for the health rows' deltas.
    previous: HashMap<SocketAddr, Reported>,
    errors_reported: u64,
    evictions_reported: Evictions,
    /// Each UDP session's message count when its state was last handed
    /// off: a session whose count moved has changed.
    snapshotted: HashMap<SocketAddr, u64>,
}

/// A session's counters at the last hand-off: its totals, and per domain
/// the records and messages lost and the packets its exporter dropped.
type Reported = (ExporterStats, HashMap<u32, (u64, u64, u64)>);

/// A decoder with its builders and its hand-off state.
#[derive(Debug)]
pub struct Intake {
    pub decoder: Decoder,
    pub out: DecodeOutput,
    pub state: IntakeState,
}

/// Where intakes get their receiver ids.
static NEXT_RECEIVER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Intake {
    pub fn new(
        transport: Transport,
        limits: SessionLimits,
        enricher: Arc<Enricher>,
        sink: SyncSender<Handoff>,
        metrics: Arc<Metrics>,
        flush_interval: Duration,
        batch_rows: usize,
    ) -> Intake {
        Intake {
            decoder: Decoder::with_limits(limits),
            out: DecodeOutput::with_capacity(batch_rows.min(16 * 1024)),
            state: IntakeState {
                id: NEXT_RECEIVER.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                transport,
                enricher,
                cache: EnrichCache::default(),
                sink,
                metrics,
                // half the flush interval: rows reach the writer in time for its flush
                handoff_every: flush_interval / 2,
                batch_rows,
                last_handoff: Instant::now(),
                oldest_ns: None,
                previous: HashMap::new(),
                errors_reported: 0,
                evictions_reported: Evictions::default(),
                snapshotted: HashMap::new(),
            },
        }
    }

    /// Decodes one message received at `received_ns`.
    pub fn accept(&mut self, exporter: SocketAddr, received_ns: i64, message: &[u8]) {
        let _ = self.decoder.decode(
            exporter,
            self.state.transport,
            received_ns,
            message,
            &mut self.out,
        );
        self.state.note_received(received_ns);
    }

    /// Hands off if the batch is full or the interval has passed.
    pub fn maybe_handoff(&mut self) -> Result<(), Stopped> {
        if self.state.due(&self.out) {
            self.handoff()?;
        }
        Ok(())
    }

    /// Forgets the sessions silent too long, then hands off whatever there
    /// is now.
    pub fn handoff(&mut self) -> Result<(), Stopped> {
        self.decoder.expire_idle(now_ns());
        let now = self.decoder.evictions();
        let before = std::mem::replace(&mut self.state.evictions_reported, now);
        self.state.metrics.count_evictions(
            now.idle - before.idle,
            now.address_limit - before.address_limit,
            now.table_full - before.table_full,
        );
        self.state.handoff(&self.decoder, &mut self.out)
    }
}

/// The store writer has gone: the receiver should stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped;

impl IntakeState {
    pub(crate) fn note_received(&mut self, received_ns: i64) {
        if self.oldest_ns.is_none() {
            self.oldest_ns = Some(received_ns);
        }
    }

    /// Whether a hand-off is due: the batch is full or the interval passed.
    pub(crate) fn due(&self, out: &DecodeOutput) -> bool {
        out.rows() >= self.batch_rows || self.last_handoff.elapsed() >= self.handoff_every
    }

    pub fn maybe_handoff(
        &mut self,
        decoder: &Decoder,
        out: &mut DecodeOutput,
    ) -> Result<(), Stopped> {
        if self.due(out) {
            self.handoff(decoder, out)?;
        }
        Ok(())
    }

    pub fn handoff(&mut self, decoder: &Decoder, out: &mut DecodeOutput) -> Result<(), Stopped> {
        self.last_handoff = Instant::now();
        let now = now_ns();
        let flows = if out.flows.is_empty() {
            None
        } else {
            let decoded = out.flows.finish().expect("decoders build valid batches");
            Some(
                self.enricher
                    .enrich(&decoded, decoder, &mut self.cache)
                    .expect("enrichment keeps the stored schema"),
            )
        };
        let packet_reports = (!out.packet_reports.is_empty())
            .then(|| out.packet_reports.finish().expect("valid batch"));
        let interface_counters = (!out.interface_counters.is_empty())
            .then(|| out.interface_counters.finish().expect("valid batch"));
        let (health, reports) = self.health(decoder, now);
        let errors = self.new_errors(decoder);
        self.state_metrics(reports, errors);
        let handoff = Handoff {
            receiver: self.id,
            flows,
            interface_counters,
            health,
            state: (self.transport == Transport::Udp).then(|| self.state_delta(decoder)),
            oldest_ns: self.oldest_ns.take(),
            points: if packet_reports.is_some() {
                PointFacts::of(decoder)
            } else {
                PointFacts::default()
            },
            packet_reports,
        };
        // blocking when the writer is behind: the socket buffer then fills
        // and the kernel counts what it drops
        self.sink.send(handoff).map_err(|_| Stopped)
    }

    fn state_metrics(&self, reports: Vec<SessionReport>, errors: Vec<String>) {
        self.metrics.publish(self.id, reports, errors);
    }

    /// Errors logged since the last hand-off, with their context.
    fn new_errors(&mut self, decoder: &Decoder) -> Vec<String> {
        let total = decoder.totals().total_errors();
        let new = total.saturating_sub(self.errors_reported) as usize;
        self.errors_reported = total;
        let recent = decoder.recent_errors();
        recent
            .iter()
            .skip(recent.len().saturating_sub(new))
            .map(|e| e.to_string())
            .collect()
    }

    /// Health rows (deltas since the last hand-off) and the sessions'
    /// cumulative reports.
    fn health(&mut self, decoder: &Decoder, now: i64) -> (Option<RecordBatch>, Vec<SessionReport>) {
        let mut builder = ExporterHealthBuilder::default();
        let mut reports = Vec::new();
        let transport_code = match self.transport {
            Transport::Udp => 1,
            Transport::Tcp => 2,
            Transport::Sctp => 3,
            Transport::File => 4,
        };
        // a session only restored (every socket's decoder restores them
        // all) is reported once an exporter is heard on it
        for session in decoder.sessions().filter(|s| s.messages() > 0) {
            let stats = session.stats();
            let domains: Vec<DomainReport> = session
                .domains()
                .map(|(domain, state)| DomainReport {
                    domain,
                    lost_records: state.lost_records(),
                    lost_messages: state.lost_messages(),
                    exporter_drops: state.exporter_drops(),
                    templates: state.template_count() as u64,
                })
                .collect();
            let (prev, prev_domains) = self.previous.entry(session.exporter).or_default();
            let exporter = Some(ip_to_mapped(session.exporter.ip()));
            let delta = |now: u64, before: u64| Some(now.saturating_sub(before));
            if stats != *prev {
                builder.append(&ExporterHealthRecord {
                    time_received_ns: Some(now),
                    sampler_address: exporter,
                    sampler_port: Some(session.exporter.port()),
                    transport: Some(transport_code),
                    observation_domain_id: None,
                    messages: delta(stats.messages, prev.messages),
                    message_bytes: delta(stats.bytes, prev.bytes),
                    flow_records: delta(stats.flow_records, prev.flow_records),
                    lost_records: delta(stats.lost_records, prev.lost_records),
                    lost_messages: delta(stats.lost_messages, prev.lost_messages),
                    exporter_drops: delta(stats.exporter_drops, prev.exporter_drops),
                    decode_errors: delta(stats.total_errors(), prev.total_errors()),
                    templates_active: Some(stats.templates_active),
                    pending_sets: Some(stats.pending_sets),
                });
            }
            for d in &domains {
                let before = prev_domains.entry(d.domain).or_default();
                let counts = (d.lost_records, d.lost_messages, d.exporter_drops);
                if counts != *before {
                    builder.append(&ExporterHealthRecord {
                        time_received_ns: Some(now),
                        sampler_address: exporter,
                        sampler_port: Some(session.exporter.port()),
                        transport: Some(transport_code),
                        observation_domain_id: Some(d.domain),
                        lost_records: delta(d.lost_records, before.0),
                        lost_messages: delta(d.lost_messages, before.1),
                        exporter_drops: delta(d.exporter_drops, before.2),
                        templates_active: Some(d.templates),
                        ..ExporterHealthRecord::default()
                    });
                    *before = counts;
                }
            }
            *prev = stats.clone();
            reports.push(SessionReport {
                exporter: session.exporter,
                transport: session.transport,
                stats,
                domains,
                skipped_formats: session
                    .skipped_formats()
                    .map(|(format, n)| (format.to_string(), n))
                    .collect(),
                points: {
                    let mut points: Vec<String> = session
                        .domains()
                        .flat_map(|(_, d)| d.point_names().map(|(_, name)| name.to_string()))
                        .collect();
                    points.sort_unstable();
                    points
                },
                last_seen_ns: session.last_seen_ns(),
            });
        }
        // sessions the decoder let go take their last counts with them
        let transport = self.transport;
        self.previous
            .retain(|&exporter, _| decoder.session(exporter, transport).is_some());
        let batch = (!builder.is_empty()).then(|| builder.finish().expect("valid batch"));
        (batch, reports)
    }
}

impl IntakeState {
    /// The UDP sessions heard from since the last hand-off, and those let
    /// go; sessions only restored are the store writer's to keep.
    fn state_delta(&mut self, decoder: &Decoder) -> StateDelta {
        let mut delta = StateDelta::default();
        for session in decoder.sessions() {
            let messages = session.messages();
            if messages == 0 {
                continue;
            }
            let before = self.snapshotted.insert(session.exporter, messages);
            if before != Some(messages) {
                delta.changed.extend(session.snapshot());
            }
        }
        self.snapshotted.retain(|&exporter, _| {
            let held = decoder.session(exporter, Transport::Udp).is_some();
            if !held {
                delta.removed.push(exporter);
            }
            held
        });
        delta
    }
}
