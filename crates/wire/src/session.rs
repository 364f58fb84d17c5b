//! Per-exporter state: templates scoped by transport session and domain,
//! sequence tracking (telemetry loss), sampling rates and interface names
//! learnt from options records, and the counters of everything dropped.

use std::collections::VecDeque;

/// Maps of the per-message path: keyed by exporter-chosen values, seeded per
/// process against crafted collisions, and much faster than SipHash.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::error::ErrorKind;
use crate::template::Template;

/// How the messages of a session arrive; it decides template semantics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Templates expire after their lifetime; withdrawals are ignored.
    Udp,
    /// Withdrawals apply; templates live as long as the connection.
    Tcp,
    Sctp,
    /// An RFC 5655 file: stream semantics.
    File,
}

impl Transport {
    pub fn is_stream(self) -> bool {
        !matches!(self, Transport::Udp)
    }
}

/// Counts of one exporter (transport session), every one of them real.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExporterStats {
    pub messages: u64,
    pub bytes: u64,
    pub flow_records: u64,
    pub packet_reports: u64,
    pub options_records: u64,
    pub counter_records: u64,
    pub templates_received: u64,
    pub templates_withdrawn: u64,
    /// Templates held right now (filled in by `Session::stats`).
    pub templates_active: u64,
    /// Data sets waiting for their template right now (filled in by `Session::stats`).
    pub pending_sets: u64,
    /// Records whose sampling rate is unknown (kept, marked).
    pub sampling_unknown: u64,
    /// Records of formats the decoder does not read, skipped by their
    /// length (by format: [`Session::skipped_formats`]).
    pub skipped_records: u64,
    /// Records the exporter sent that never arrived (IPFIX, v5 sequence gaps).
    pub lost_records: u64,
    /// Messages the exporter sent that never arrived (NetFlow v9, sFlow gaps).
    pub lost_messages: u64,
    /// Packets the exporter itself reported dropping (sFlow sample drops).
    pub exporter_drops: u64,
    pub reordered_messages: u64,
    pub sequence_resets: u64,
    /// Errors by [`ErrorKind`], indexed by `ErrorKind::ALL` order.
    pub errors: [u64; ErrorKind::ALL.len()],
}

impl ExporterStats {
    pub fn error_count(&self, kind: ErrorKind) -> u64 {
        self.errors[kind.index()]
    }

    pub fn total_errors(&self) -> u64 {
        self.errors.iter().sum()
    }

    /// Counts what a sequence number said: a gap as units lost, a late
    /// message as units found after all, a jump as an exporter restart.
    fn count_sequence(&mut self, event: SequenceEvent, counted: Counted) {
        let lost = match counted {
            Counted::Records => &mut self.lost_records,
            Counted::Messages => &mut self.lost_messages,
        };
        match event {
            SequenceEvent::Gap(n) => *lost += u64::from(n),
            SequenceEvent::Late(n) => {
                *lost = lost.saturating_sub(u64::from(n));
                self.reordered_messages += 1;
            }
            SequenceEvent::Reset => self.sequence_resets += 1,
            SequenceEvent::First | SequenceEvent::InOrder | SequenceEvent::Held => {}
        }
    }

    pub(crate) fn count_error(&mut self, kind: ErrorKind) {
        self.errors[kind.index()] += 1;
    }

    /// Adds another exporter's counts to these.
    pub fn accumulate(&mut self, other: &ExporterStats) {
        self.messages += other.messages;
        self.bytes += other.bytes;
        self.flow_records += other.flow_records;
        self.packet_reports += other.packet_reports;
        self.options_records += other.options_records;
        self.counter_records += other.counter_records;
        self.templates_received += other.templates_received;
        self.templates_withdrawn += other.templates_withdrawn;
        self.templates_active += other.templates_active;
        self.pending_sets += other.pending_sets;
        self.sampling_unknown += other.sampling_unknown;
        self.skipped_records += other.skipped_records;
        self.lost_records = self.lost_records.saturating_add(other.lost_records);
        self.lost_messages += other.lost_messages;
        self.exporter_drops = self.exporter_drops.saturating_add(other.exporter_drops);
        self.reordered_messages += other.reordered_messages;
        self.sequence_resets += other.sequence_resets;
        for (a, b) in self.errors.iter_mut().zip(other.errors.iter()) {
            *a += b;
        }
    }
}

/// What a message says of its exporter's clock, by which a restart shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExporterClock {
    /// Nothing (IPFIX).
    Unknown,
    /// When it booted, Unix ms: export time less uptime (NetFlow v5, v9).
    Boot(i64),
    /// Its uptime, ms, without an export time to set it against (sFlow):
    /// the collector's clock would make a stall of its own look like a boot.
    Uptime(u32),
}

/// What a protocol's sequence numbers count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counted {
    /// IPFIX, NetFlow v5 and sFlow samples: data records.
    Records,
    /// NetFlow v9 and sFlow datagrams: export packets.
    Messages,
}

/// What a sequence number says about the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceEvent {
    First,
    InOrder,
    /// This many units (records or messages) were never received.
    Gap(u32),
    /// A message older than expected arrived: `units` counted lost earlier arrived after all.
    Late(u32),
    /// The stream started again: the exporter restarted (its uptime went
    /// back), or the number fell far behind.
    Reset,
    /// A jump forward too large to take on one message's word: held until
    /// the next message says whether the stream really moved there (then
    /// the jump is counted as loss) or it was a stray (then it is not).
    Held,
}

/// Tracks one sequence-number stream.
///
/// RFC 7011 numbers a message by the data records sent *before* it, options
/// records included. Exporters differ: softflowd counts the message's own
/// records and leaves options records out. Each of the four readings
/// (before or including this message; with or without options records)
/// explains an in-order stream, so every one is accepted as in order, and
/// after two messages that only another reading explains the tracker
/// measures gaps by that one: an exporter's convention is never reported
/// as telemetry loss.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SequenceTracker {
    /// The last in-order message: its number and its units (all, and
    /// without options records).
    last: Option<(u32, [u32; 2])>,
    /// The reading in use: bit 0 set counts the message's own units,
    /// bit 1 set leaves options records out.
    convention: u8,
    /// Messages explained only by each other reading, towards a switch.
    votes: [u8; 4],
    /// A large jump forward waiting for the next message to confirm it:
    /// the message's number, its units, and how far ahead it was.
    #[serde(default)]
    held: Option<(u32, [u32; 2], u32)>,
}

/// A jump forward this large is held until the next message confirms it;
/// one behind by this much is a restart.
const RESET_THRESHOLD: u32 = 1 << 24;
/// Messages explained only by another reading before switching to it.
const CONVENTION_VOTES: u8 = 2;

impl SequenceTracker {
    /// Observes a message with sequence number `seq` covering `units`.
    pub fn observe(&mut self, seq: u32, units: u32) -> SequenceEvent {
        self.observe_records(seq, units, 0, false)
    }

    /// Observes a message of `units` data records of which `options` are
    /// options records; `restarted` says the exporter gave evidence of a
    /// restart with this message (its uptime went back).
    ///
    /// A restart is read from that evidence or from a number that fell far
    /// behind, never from the size of a jump forward alone: after a long
    /// outage the numbers jump by however much was lost, and that is loss.
    /// Such a jump is held for one message, so that one stray or forged
    /// number cannot report billions of records lost.
    pub fn observe_records(
        &mut self,
        seq: u32,
        units: u32,
        options: u32,
        restarted: bool,
    ) -> SequenceEvent {
        let counts = [units, units.saturating_sub(options)];
        let Some((last_seq, last_counts)) = self.last else {
            self.last = Some((seq, counts));
            return SequenceEvent::First;
        };
        let held = self.held.take();
        if restarted {
            self.last = Some((seq, counts));
            return SequenceEvent::Reset;
        }
        let expected_after = |(before, before_counts): (u32, [u32; 2]), convention: u8| {
            let kind = usize::from(convention >> 1);
            let step = if convention & 1 == 1 {
                counts[kind]
            } else {
                before_counts[kind]
            };
            before.wrapping_add(step)
        };
        if let Some((held_seq, held_counts, ahead)) = held
            && (0..4u8).any(|c| expected_after((held_seq, held_counts), c) == seq)
        {
            // the stream did move on from the jump: it was loss
            self.last = Some((seq, counts));
            return SequenceEvent::Gap(ahead);
        }
        let expected = |convention: u8| expected_after((last_seq, last_counts), convention);
        let mine = expected(self.convention);
        let event = if seq == mine {
            self.votes = [0; 4];
            SequenceEvent::InOrder
        } else if let Some(other) = (0..4u8).find(|&c| expected(c) == seq) {
            let votes = &mut self.votes[usize::from(other)];
            *votes += 1;
            if *votes >= CONVENTION_VOTES {
                self.convention = other;
                self.votes = [0; 4];
            }
            SequenceEvent::InOrder
        } else {
            let ahead = seq.wrapping_sub(mine);
            let behind = mine.wrapping_sub(seq);
            if ahead < RESET_THRESHOLD {
                SequenceEvent::Gap(ahead)
            } else if behind < RESET_THRESHOLD {
                SequenceEvent::Late(units.min(behind))
            } else if seq < mine && seq < RESET_THRESHOLD {
                // far past the wrap and near zero: an exporter numbering
                // again from its start (IPFIX says nothing else of a restart)
                SequenceEvent::Reset
            } else if ahead < 1 << 31 {
                self.held = Some((seq, counts, ahead));
                return SequenceEvent::Held;
            } else {
                SequenceEvent::Reset
            }
        };
        if !matches!(event, SequenceEvent::Late(_)) {
            self.last = Some((seq, counts));
        }
        event
    }

    /// Forgets the stream (after a message whose record count is unknown).
    pub fn resync(&mut self) {
        self.last = None;
    }
}

/// A template with the time it was last (re)sent, for UDP lifetimes.
#[derive(Debug, Clone)]
pub(crate) struct StoredTemplate {
    pub template: Arc<Template>,
    pub refreshed_ns: i64,
}

/// The clock an observation point announces that its timestamps read.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct PointClock {
    /// Points of one id read one clock.
    pub id: u64,
    /// The most two clocks of the domain differ by.
    pub bound_ns: u64,
}

/// State of one observation domain within a session.
#[derive(Debug, Default)]
pub struct DomainState {
    pub(crate) templates: FastMap<u16, StoredTemplate>,
    pub(crate) sequence: SequenceTracker,
    /// Sampling rate (one in N) by sampler/selector id; `None` is domain-wide.
    pub(crate) sampling: FastMap<Option<u64>, u64>,
    /// Interface names from options records, by ifIndex.
    pub(crate) interface_names: FastMap<u32, String>,
    /// Interface descriptions (ifAlias) from options records, by ifIndex.
    pub(crate) interface_descriptions: FastMap<u32, String>,
    /// Sampler and selector names from options records, by their id.
    pub(crate) sampler_names: FastMap<u64, String>,
    /// Observation point names from options records (IE 138 with IE 82).
    pub(crate) point_names: FastMap<u64, String>,
    /// VRF names from options records (VRFname 236 scoped by ingressVRFID 234), by VRF id.
    pub(crate) vrf_names: FastMap<u32, String>,
    /// The clocks observation points announce (hopscope's probe), by observationPointId.
    pub(crate) point_clocks: FastMap<u64, PointClock>,
    /// `systemInitTimeMilliseconds` from options records.
    pub(crate) system_init_ms: Option<i64>,
    /// Highest drop count reported per sFlow source, to count the increase.
    pub(crate) sflow_drops: FastMap<u32, u32>,
    /// sFlow per-source sample sequence numbers.
    pub(crate) sflow_samples: FastMap<u32, SequenceTracker>,
    /// This domain's share of the session's telemetry loss.
    pub(crate) loss: ExporterStats,
    /// When the exporter booted, by its last message (export time less its
    /// uptime): a boot that moves forward is a restart.
    pub(crate) boot_ms: Option<i64>,
    /// The uptime of the last message, where there is no export time
    /// (sFlow): an uptime that goes back is a restart.
    pub(crate) uptime_ms: Option<u32>,
    /// The last ignoredPacketTotalCount and notSentFlowTotalCount reported.
    pub(crate) reported_ignored: Option<u64>,
    pub(crate) reported_not_sent: Option<u64>,
}

impl DomainState {
    pub fn sampling_rate(&self, sampler: Option<u64>) -> Option<u64> {
        self.sampling.get(&sampler).copied()
    }

    pub fn interface_name(&self, if_index: u32) -> Option<&str> {
        self.interface_names.get(&if_index).map(String::as_str)
    }

    /// Every observation point name learnt from options records, by
    /// observationPointId: how journeys name their hops.
    pub fn point_names(&self) -> impl Iterator<Item = (u64, &str)> {
        self.point_names.iter().map(|(&i, n)| (i, n.as_str()))
    }

    /// The clocks points announced, by observationPointId: delays between
    /// points of one clock are measured, not estimated.
    pub fn point_clocks(&self) -> impl Iterator<Item = (u64, PointClock)> {
        self.point_clocks.iter().map(|(&i, c)| (i, *c))
    }

    /// Templates held right now.
    pub fn template_count(&self) -> usize {
        self.templates.len()
    }

    /// Every interface name learnt from options records, by ifIndex.
    pub fn interface_names(&self) -> impl Iterator<Item = (u32, &str)> {
        self.interface_names.iter().map(|(&i, n)| (i, n.as_str()))
    }

    /// Every VRF name learnt from options records, by VRF id.
    pub fn vrf_names(&self) -> impl Iterator<Item = (u32, &str)> {
        self.vrf_names.iter().map(|(&i, n)| (i, n.as_str()))
    }

    /// Every interface description learnt, by ifIndex.
    pub fn interface_descriptions(&self) -> impl Iterator<Item = (u32, &str)> {
        self.interface_descriptions
            .iter()
            .map(|(&i, n)| (i, n.as_str()))
    }

    /// Every sampler or selector name learnt, by its id.
    pub fn sampler_names(&self) -> impl Iterator<Item = (u64, &str)> {
        self.sampler_names.iter().map(|(&i, n)| (i, n.as_str()))
    }

    pub fn template(&self, id: u16) -> Option<&Template> {
        self.templates.get(&id).map(|t| &*t.template)
    }

    /// Records the domain's sequence number `seq` covering `units` and counts
    /// what it says, both in the session's counters and the domain's own.
    /// `clock` is what the message says of the exporter's uptime.
    pub(crate) fn observe_sequence(
        &mut self,
        stats: &mut ExporterStats,
        seq: u32,
        units: u32,
        clock: ExporterClock,
        counted: Counted,
    ) {
        self.observe_records(stats, seq, units, 0, clock, counted);
    }

    /// [`observe_sequence`](Self::observe_sequence) for a message of `units`
    /// data records of which `options` are options records.
    pub(crate) fn observe_records(
        &mut self,
        stats: &mut ExporterStats,
        seq: u32,
        units: u32,
        options: u32,
        clock: ExporterClock,
        counted: Counted,
    ) {
        let restarted = self.rebooted(clock);
        let event = self
            .sequence
            .observe_records(seq, units, options, restarted);
        self.count(stats, event, counted);
    }

    /// Whether `clock` says the exporter booted again since its last
    /// message. Export times have a granularity of a second, so a boot
    /// that moves by less is jitter.
    fn rebooted(&mut self, clock: ExporterClock) -> bool {
        match clock {
            ExporterClock::Unknown => false,
            ExporterClock::Boot(boot) => {
                let before = self.boot_ms.replace(boot);
                before.is_some_and(|b| boot - b > 2_000)
            }
            ExporterClock::Uptime(uptime) => {
                let before = self.uptime_ms.replace(uptime);
                before.is_some_and(|u| uptime < u)
            }
        }
    }

    /// Counts a sequence event of one of the domain's streams.
    pub(crate) fn count(
        &mut self,
        stats: &mut ExporterStats,
        event: SequenceEvent,
        counted: Counted,
    ) {
        stats.count_sequence(event, counted);
        self.loss.count_sequence(event, counted);
    }

    /// Records this domain's exporter sent that never arrived.
    pub fn lost_records(&self) -> u64 {
        self.loss.lost_records
    }

    /// Messages this domain's exporter sent that never arrived.
    pub fn lost_messages(&self) -> u64 {
        self.loss.lost_messages
    }

    /// Packets this domain's exporter reported it could not observe or meter.
    pub fn exporter_drops(&self) -> u64 {
        self.loss.exporter_drops
    }
}

/// A data set that arrived before its template.
#[derive(Debug)]
pub(crate) struct PendingSet {
    pub domain: u32,
    pub template_id: u16,
    pub flow_type: u8,
    pub sequence: u32,
    pub export_time_ms: i64,
    pub uptime_base_ms: Option<i64>,
    pub received_ns: i64,
    pub body: Vec<u8>,
}

/// One transport session: an exporter address and port over one transport.
#[derive(Debug)]
pub struct Session {
    pub exporter: SocketAddr,
    pub transport: Transport,
    pub(crate) domains: FastMap<u32, DomainState>,
    pub(crate) pending: VecDeque<PendingSet>,
    pub(crate) pending_bytes: usize,
    pub(crate) stats: ExporterStats,
    /// When the last message arrived (collector clock, Unix ns).
    pub(crate) last_seen_ns: i64,
    /// Records skipped by format, at most [`SKIPPED_FORMATS_KEPT`] formats.
    skipped: std::collections::BTreeMap<SkippedFormat, u64>,
}

/// A record format the decoder skips (sFlow's sample, flow and counter
/// records of formats it does not read, enterprise ones among them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SkippedFormat {
    /// What kind of record: `sflow sample`, `sflow flow`, `sflow counters`;
    /// `other` holds the formats past the bound.
    pub kind: &'static str,
    /// sFlow's data format: enterprise (20 bits) and format (12 bits).
    pub enterprise: u32,
    pub format: u32,
}

impl std::fmt::Display for SkippedFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            "other" => f.write_str("other"),
            kind => write!(f, "{kind} {}:{}", self.enterprise, self.format),
        }
    }
}

/// Formats counted apart per session; more fall into `other`, so that an
/// exporter cannot grow the state without end.
pub const SKIPPED_FORMATS_KEPT: usize = 64;

/// Bounds that keep a session's memory fixed whatever the exporter sends,
/// and the decoder's whatever all exporters (or forged sources) send.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// How long a UDP template stays valid without being resent.
    pub template_lifetime_ns: i64,
    pub max_pending_sets: usize,
    pub max_pending_bytes: usize,
    pub max_templates_per_domain: usize,
    /// Templates one session (exporter address and port) holds over all
    /// its domains.
    pub max_templates_per_session: usize,
    /// Templates the decoder holds over all its sessions.
    pub max_templates: usize,
    pub max_domains: usize,
    pub max_interface_names: usize,
    /// UDP sessions the decoder keeps; past it the least useful make room
    /// (those heard once, then the longest silent).
    pub max_sessions: usize,
    /// UDP sessions of one exporter address (one per source port); past it
    /// its longest silent session makes room, as after an exporter restart.
    pub max_sessions_per_address: usize,
    /// A UDP session silent this long is forgotten (its templates would
    /// have expired by then).
    pub session_idle_ns: i64,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            template_lifetime_ns: 30 * 60 * 1_000_000_000,
            max_pending_sets: 512,
            max_pending_bytes: 4 << 20,
            max_templates_per_domain: 4096,
            max_templates_per_session: 16_384,
            max_templates: 65_536,
            max_domains: 1024,
            max_interface_names: 65536,
            max_sessions: 2048,
            max_sessions_per_address: 64,
            session_idle_ns: 30 * 60 * 1_000_000_000,
        }
    }
}

impl Session {
    pub fn new(exporter: SocketAddr, transport: Transport) -> Self {
        Self {
            exporter,
            transport,
            domains: FastMap::default(),
            pending: VecDeque::new(),
            pending_bytes: 0,
            stats: ExporterStats::default(),
            last_seen_ns: 0,
            skipped: Default::default(),
        }
    }

    /// Counts a record skipped for its format (sFlow's 32-bit data format).
    pub(crate) fn skip(&mut self, kind: &'static str, data_format: u32) {
        let mut key = SkippedFormat {
            kind,
            enterprise: data_format >> 12,
            format: data_format & 0xfff,
        };
        if self.skipped.len() >= SKIPPED_FORMATS_KEPT && !self.skipped.contains_key(&key) {
            key = SkippedFormat {
                kind: "other",
                enterprise: 0,
                format: 0,
            };
        }
        *self.skipped.entry(key).or_default() += 1;
        self.stats.skipped_records += 1;
    }

    /// Records skipped by format, since the session began.
    pub fn skipped_formats(&self) -> impl Iterator<Item = (SkippedFormat, u64)> + '_ {
        self.skipped.iter().map(|(k, n)| (*k, *n))
    }

    /// Messages received (without copying the other counters).
    pub fn messages(&self) -> u64 {
        self.stats.messages
    }

    /// When its last message arrived (collector clock, Unix ns).
    pub fn last_seen_ns(&self) -> i64 {
        self.last_seen_ns
    }

    /// Templates held over all its domains.
    pub fn template_count(&self) -> usize {
        self.domains.values().map(|d| d.templates.len()).sum()
    }

    /// State of a domain, created on first use.
    pub(crate) fn domain_mut(
        &mut self,
        domain: u32,
        limits: &SessionLimits,
    ) -> Option<&mut DomainState> {
        if !self.domains.contains_key(&domain) && self.domains.len() >= limits.max_domains {
            return None;
        }
        Some(self.domains.entry(domain).or_default())
    }

    pub fn domain(&self, domain: u32) -> Option<&DomainState> {
        self.domains.get(&domain)
    }

    pub fn domains(&self) -> impl Iterator<Item = (u32, &DomainState)> {
        self.domains.iter().map(|(k, v)| (*k, v))
    }

    /// The session's counters, with its gauges (templates held, data sets
    /// waiting) read from its state now rather than kept up to date on
    /// every message.
    pub fn stats(&self) -> ExporterStats {
        let mut stats = self.stats.clone();
        stats.templates_active = self.template_count() as u64;
        stats.pending_sets = self.pending.len() as u64;
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_gaps_late_arrivals_and_resets() {
        let mut t = SequenceTracker::default();
        assert_eq!(t.observe(100, 10), SequenceEvent::First);
        assert_eq!(t.observe(110, 5), SequenceEvent::InOrder);
        assert_eq!(t.observe(120, 5), SequenceEvent::Gap(5));
        assert_eq!(t.observe(115, 5), SequenceEvent::Late(5));
        assert_eq!(t.observe(125, 1), SequenceEvent::InOrder);
        assert_eq!(t.observe(3_000_000_000, 1), SequenceEvent::Reset);
        // wrap-around is not loss
        let mut w = SequenceTracker::default();
        w.observe(u32::MAX - 1, 2);
        assert_eq!(w.observe(0, 1), SequenceEvent::InOrder);
    }

    #[test]
    fn a_long_outage_is_loss_and_a_restart_is_not() {
        // 20 M records lost in an outage: held for one message, then counted
        let mut t = SequenceTracker::default();
        t.observe(1_000, 10);
        assert_eq!(t.observe(20_001_010, 10), SequenceEvent::Held);
        assert_eq!(t.observe(20_001_020, 10), SequenceEvent::Gap(20_000_000));
        assert_eq!(t.observe(20_001_030, 10), SequenceEvent::InOrder);
        // a stray number far ahead is not loss when the stream goes on
        assert_eq!(t.observe(900_000_000, 10), SequenceEvent::Held);
        assert_eq!(t.observe(20_001_040, 10), SequenceEvent::InOrder);
        // an IPFIX exporter restarting late in its numbers: past the wrap,
        // near zero, is a restart and not 1.3 billion records lost
        let mut ipfix = SequenceTracker::default();
        ipfix.observe(3_000_000_000, 10);
        assert_eq!(ipfix.observe(0, 10), SequenceEvent::Reset);
        assert_eq!(ipfix.observe(10, 10), SequenceEvent::InOrder);
        // the exporter's uptime went back: a restart, whatever the jump
        assert_eq!(
            t.observe_records(500_000_000, 10, 0, true),
            SequenceEvent::Reset
        );
        assert_eq!(t.observe(500_000_010, 10), SequenceEvent::InOrder);
    }

    #[test]
    fn a_reboot_is_read_from_the_exporters_clock() {
        let mut d = DomainState::default();
        let mut stats = ExporterStats::default();
        let boot = 1_800_000_000_000;
        let clock = ExporterClock::Boot;
        d.observe_sequence(&mut stats, 100, 1, clock(boot), Counted::Messages);
        d.observe_sequence(&mut stats, 101, 1, clock(boot + 999), Counted::Messages);
        // booted an hour later, its numbers far ahead: a restart, not loss
        let later = clock(boot + 3_600_000);
        d.observe_sequence(&mut stats, 90_000_000, 1, later, Counted::Messages);
        assert_eq!((stats.sequence_resets, stats.lost_messages), (1, 0));
        // sFlow: only an uptime that goes back is a restart
        let mut s = DomainState::default();
        let mut stats = ExporterStats::default();
        let up = ExporterClock::Uptime;
        s.observe_sequence(&mut stats, 7, 1, up(5_000), Counted::Messages);
        s.observe_sequence(&mut stats, 8, 1, up(9_000), Counted::Messages);
        s.observe_sequence(&mut stats, 10, 1, up(60_000), Counted::Messages);
        assert_eq!((stats.sequence_resets, stats.lost_messages), (0, 1));
        s.observe_sequence(&mut stats, 3, 1, up(1_000), Counted::Messages);
        assert_eq!(stats.sequence_resets, 1);
    }

    #[test]
    fn an_exporter_counting_its_own_records_is_not_loss() {
        // softflowd: each message's number includes its own records
        let mut t = SequenceTracker::default();
        let mut seq = 0;
        let mut events = Vec::new();
        for n in [20, 28, 28, 27, 28, 20, 28, 13] {
            seq += n;
            events.push(t.observe(seq, n));
        }
        assert!(
            events[1..].iter().all(|e| *e == SequenceEvent::InOrder),
            "{events:?}"
        );
        // and real loss is still seen, measured by its convention
        seq += 28; // a message of 28 records never arrives
        seq += 27;
        assert_eq!(t.observe(seq, 27), SequenceEvent::Gap(28));
        // nor does it count options records: a message of 20 flows and one
        seq += 20;
        assert_eq!(t.observe_records(seq, 21, 1, false), SequenceEvent::InOrder);
        seq += 28;
        assert_eq!(t.observe(seq, 28), SequenceEvent::InOrder);
    }
}
