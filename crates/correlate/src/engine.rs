//! The streaming correlator: reports in, journeys out, window by window.
//!
//! Observations wait in a buffer until their window (aligned to
//! `window_ns`) can no longer grow: the watermark (the newest time the
//! caller vouches for) has passed the window's end plus the longest path
//! delay plus the export lateness. Then the window's observations are
//! grouped into trajectories, the trajectories are spread over partitions
//! by canonical flow key, clock samples are collected in each partition and
//! merged into offsets, and each partition builds its journeys.

use std::collections::HashMap;

use arrow_array::Array;
use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_array::types::{TimestampNanosecondType, UInt32Type, UInt64Type};

use crate::CorrelateError;
use crate::clock::{ClockDomain, ClockOffset, ClockSamples, offsets};
use crate::journey::{Context, Journey, build};
use crate::key::FlowTuple;
use crate::nat::NatTable;
use crate::observe::{ExporterId, Observation, first_hop, read_reports, trajectories};
use crate::sharing::Sharing;
use crate::totals::{
    FlowTotal, NoJourney, Pending, TotalsBuffer, TotalsContext, TotalsKey, read_flows,
    totals_journey,
};

/// How the correlator cuts time and what it is told about the network.
#[derive(Debug, Clone)]
pub struct CorrelatorConfig {
    /// Journeys are built per window of this length.
    pub window_ns: i64,
    /// Longest time one packet takes from the first point to the last.
    pub max_path_delay_ns: i64,
    /// How long after a window's end its reports may still arrive
    /// (probes' export intervals, collector flushes).
    pub lateness_ns: i64,
    /// Clock offsets are estimated per bucket of this length (drift shows
    /// as a slope across buckets).
    pub clock_bucket_ns: i64,
    /// Workers, each owning the flow keys that hash to it.
    pub partitions: usize,
    /// The clock each point reads, where declared (`[[serve.clocks]]`) or
    /// announced by its probe: delays inside a domain are measured.
    pub clock_domains: HashMap<u64, ClockDomain>,
    /// Points in path order, where TTL and time cannot tell (hops behind
    /// one router interface, links).
    pub topology: Vec<u64>,
    /// Names of points by id (the probes send them in options records).
    pub names: HashMap<u64, String>,
    /// Points whose addresses belong to a separate address space (a VRF, a
    /// customer network reusing private addresses), by point id: flows
    /// with equal tuples in different spaces are different journeys, with
    /// Community IDs seeded by the space. Absent points are in space 0.
    pub address_spaces: HashMap<u64, u16>,
    /// How long after a flow's last record arrived its totals are compared
    /// (every point's last record must be in by then).
    pub flow_settle_ns: i64,
    /// Flow records held for the settle time at most: beyond, the flows
    /// whose last record is oldest are compared early (and counted), so a
    /// collector at a million flows a second does not hold 30 seconds of them.
    pub max_pending_flow_records: usize,
    /// Flow records held below which every record is held; above, only
    /// those of points seen sharing flows with another point, and a sample
    /// (see the `sharing` module).
    pub hold_all_flow_records_below: usize,
}

impl Default for CorrelatorConfig {
    fn default() -> Self {
        Self {
            window_ns: 10_000_000_000,
            max_path_delay_ns: 2_000_000_000,
            lateness_ns: 5_000_000_000,
            clock_bucket_ns: 1_000_000_000,
            partitions: std::thread::available_parallelism().map_or(1, |n| n.get()),
            clock_domains: HashMap::new(),
            topology: Vec::new(),
            names: HashMap::new(),
            address_spaces: HashMap::new(),
            flow_settle_ns: 30_000_000_000,
            max_pending_flow_records: 1_000_000,
            hold_all_flow_records_below: 100_000,
        }
    }
}

/// What the correlator did, for `/metrics` and `hopscope status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CorrelatorStats {
    pub reports: u64,
    /// Reports joined with a report of the same packet at another point.
    pub matched: u64,
    /// Reports of windows already closed: counted, not used.
    pub late: u64,
    /// Reports lacking a point, time or digest.
    pub incomplete: u64,
    /// Reports of link-scoped packets (link-local addresses, link-scoped
    /// multicast such as IPv6 neighbour discovery and MLD): they never
    /// cross a router, and the same packet sent on every link would join
    /// unrelated points under a NAT-crossing digest.
    pub link_scoped: u64,
    /// Flow records read (for whole-flow totals).
    pub flow_records: u64,
    /// Flow records that cannot count: sampled, or without time or packets.
    pub flow_records_unusable: u64,
    /// Flows seen at several points, dropped because some point's records
    /// of it are not all in: it never exported the record that ends the
    /// flow, or its first records were let go before it was seen sharing
    /// flows.
    pub flows_unfinished: u64,
    /// Flow records not held for totals: their point shares no flow with
    /// another point that the correlator has seen, so no journey can come
    /// of them (only while many records are held).
    pub flow_records_unshared: u64,
    /// Flow records compared before their settle time because the buffer
    /// was full (`max_pending_flow_records`): a later record of theirs
    /// finds them gone.
    pub flow_records_settled_early: u64,
    /// Reports of trajectories that no packet can take: the tuple changes
    /// along the path in a way no NAT does (both ends, or the protocol),
    /// or, on a shared clock, a point further on (lower TTL) saw it first:
    /// the shared digest is a collision of two packets.
    pub implausible: u64,
    pub windows: u64,
    pub journeys: u64,
}

/// Records an exporter lost (sequence gaps, records not sent, capture
/// drops) around one time: a health row with a loss.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TelemetryLoss {
    pub time_ns: i64,
    pub exporter: ExporterId,
    pub lost: u64,
}

/// Observations in (digest, time) order. Sorting small keys and gathering
/// once moves far fewer bytes than sorting the observations themselves.
fn sorted_by_digest(window: Vec<Observation>) -> Vec<Observation> {
    let mut keys: Vec<(u64, i64, u32)> = window
        .iter()
        .enumerate()
        .map(|(i, o)| (o.digest, o.time_ns, i as u32))
        .collect();
    keys.sort_unstable();
    keys.iter().map(|&(_, _, i)| window[i as usize]).collect()
}

/// Whether one packet can have made these observations: where its tuple
/// changes along the path, a NAT keeps the protocol and one end (source
/// NAT the destination, destination NAT the source), in either direction
/// of the flow. Two packets of unrelated flows sharing a digest mostly
/// differ in both ends (not clients of one server: their collisions pass as
/// a source NAT, so translations are learnt only from several packets).
/// And between points that share a clock, the packet cannot
/// reach a point of lower TTL (further on) before one of higher TTL.
fn plausible(trajectory: &[Observation], domains: &HashMap<u64, ClockDomain>) -> bool {
    tuples_plausible(trajectory) && ttl_order_plausible(trajectory, domains)
}

/// No observation further on the path (lower TTL) earlier on a shared clock
/// than one before it, beyond the clocks' bound.
fn ttl_order_plausible(trajectory: &[Observation], domains: &HashMap<u64, ClockDomain>) -> bool {
    if domains.is_empty() {
        return true;
    }
    let on_clock = |o: &Observation| {
        let d = domains.get(&o.point)?;
        Some((d.id, o.time_ns - d.offset_ns, d.bound_ns))
    };
    trajectory.iter().enumerate().all(|(i, a)| {
        let Some((da, ta, bound_a)) = on_clock(a) else {
            return true;
        };
        trajectory[i + 1..].iter().all(|b| {
            let Some((db, tb, bound_b)) = on_clock(b) else {
                return true;
            };
            let slack = bound_a.max(bound_b) as i64;
            da != db
                || a.ttl == b.ttl
                || (a.ttl > b.ttl && tb >= ta - slack)
                || (b.ttl > a.ttl && ta >= tb - slack)
        })
    })
}

fn tuples_plausible(trajectory: &[Observation]) -> bool {
    let one_nat_apart = |a: &FlowTuple, b: &FlowTuple| {
        a == b
            || a.proto == b.proto
                && ((a.src, a.src_port) == (b.src, b.src_port)
                    || (a.dst, a.dst_port) == (b.dst, b.dst_port))
    };
    // several NATs on the way: each tuple one NAT from one seen before it
    trajectory.iter().enumerate().all(|(i, o)| {
        i == 0
            || trajectory[..i]
                .iter()
                .any(|p| one_nat_apart(&p.tuple, &o.tuple))
    })
}

/// Streams packet reports into journeys.
#[derive(Debug)]
pub struct Correlator {
    config: CorrelatorConfig,
    buffer: Vec<Observation>,
    /// Windows before this time are closed.
    closed_until: i64,
    /// Kept as long as a window or a flow still waiting may need them.
    telemetry: Vec<TelemetryLoss>,
    topology_rank: HashMap<u64, usize>,
    /// Last offsets estimated, used where a window has too few packets.
    last_offsets: HashMap<u64, ClockOffset>,
    /// Translations reported by NAT devices or seen in packet journeys.
    nat: NatTable,
    /// Flow records waiting until every point has exported its last one.
    totals: TotalsBuffer,
    /// Which points' flow records are worth holding.
    sharing: Sharing,
    /// The newest observation time of the reports given, and the newest
    /// receive time of the flow records given: the event time each kind
    /// of window is closed by.
    newest_report_ns: i64,
    newest_flow_received_ns: i64,
    pub stats: CorrelatorStats,
}

impl Correlator {
    pub fn new(config: CorrelatorConfig) -> Self {
        let topology_rank = config
            .topology
            .iter()
            .enumerate()
            .map(|(i, &p)| (p, i))
            .collect();
        Self {
            totals: TotalsBuffer::with_capacity(config.max_pending_flow_records),
            sharing: Sharing::new(
                config.hold_all_flow_records_below,
                config.max_path_delay_ns + config.lateness_ns,
            ),
            config,
            buffer: Vec::new(),
            closed_until: i64::MIN,
            telemetry: Vec::new(),
            topology_rank,
            last_offsets: HashMap::new(),
            nat: NatTable::default(),
            newest_report_ns: i64::MIN,
            newest_flow_received_ns: i64::MIN,
            stats: CorrelatorStats::default(),
        }
    }

    /// The address space a point's addresses belong to.
    fn address_space(&self, point: u64) -> u16 {
        self.config.address_spaces.get(&point).copied().unwrap_or(0)
    }

    /// Names a point (from the collector's options records).
    pub fn set_name(&mut self, point: u64, name: &str) {
        if self.config.names.get(&point).is_none_or(|n| n != name) {
            self.config.names.insert(point, name.to_string());
        }
    }

    /// Declares the clock a point reads.
    pub fn set_clock_domain(&mut self, point: u64, domain: ClockDomain) {
        self.config.clock_domains.insert(point, domain);
    }

    /// Adds a batch of the `packet_reports` table.
    pub fn add_reports(&mut self, batch: &RecordBatch) -> Result<(), CorrelateError> {
        let mut obs = Vec::with_capacity(batch.num_rows());
        self.stats.incomplete += read_reports(batch, &mut obs)?;
        self.add_observations(obs);
        Ok(())
    }

    pub fn add_observations(&mut self, obs: impl IntoIterator<Item = Observation>) {
        let obs = obs.into_iter();
        self.buffer.reserve(obs.size_hint().0);
        for o in obs {
            self.stats.reports += 1;
            self.newest_report_ns = self.newest_report_ns.max(o.time_ns);
            if o.tuple.is_link_scoped() {
                self.stats.link_scoped += 1;
            } else if o.time_ns < self.closed_until {
                self.stats.late += 1;
            } else {
                self.buffer.push(o);
            }
        }
    }

    /// Adds rows of the `health` table: each exporter's records and lost
    /// records (sequence gaps) per flush, from which telemetry loss is
    /// subtracted before any loss is put on the network.
    pub fn add_health(&mut self, batch: &RecordBatch) -> Result<(), CorrelateError> {
        let col = |name: &str| crate::input::column(batch, "health rows", name);
        let time = col("time_received_ns")?.as_primitive::<TimestampNanosecondType>();
        let sampler = col("sampler_address")?.as_fixed_size_binary();
        let domain = col("observation_domain_id")?.as_primitive::<UInt32Type>();
        let lost = col("lost_records")?.as_primitive::<UInt64Type>();
        // packets the probe could not observe (capture drops): their reports
        // are missing as surely as lost ones (counted as if every one had
        // been selected, which only makes the correlator more careful)
        let drops = batch
            .column_by_name("exporter_drops")
            .map(|c| c.as_primitive::<UInt64Type>());
        for i in 0..batch.num_rows() {
            if time.is_null(i) || sampler.is_null(i) {
                continue;
            }
            self.add_telemetry(
                time.value(i),
                (
                    crate::input::address(sampler, i).unwrap_or([0; 16]),
                    if domain.is_null(i) {
                        0
                    } else {
                        domain.value(i)
                    },
                ),
                (if lost.is_null(i) { 0 } else { lost.value(i) })
                    .saturating_add(drops.map_or(0, |d| if d.is_null(i) { 0 } else { d.value(i) })),
            );
        }
        Ok(())
    }

    /// Adds flow records (rows of the `flows` table): NAT events and
    /// post-NAT fields go to the translation table; complete flows seen at
    /// several points become journeys whose loss comes from their totals.
    pub fn add_flows(&mut self, batch: &RecordBatch) -> Result<(), CorrelateError> {
        let read = read_flows(batch)?;
        let slack = self.config.max_path_delay_ns + self.config.lateness_ns;
        for (from, until, event, inside, outside) in read.translations {
            match event {
                Some(e) => self.nat.event(until, e, inside, outside),
                // a flow record's own translation held while it lived
                None => self.nat.add(
                    inside,
                    outside,
                    from.saturating_sub(slack),
                    until.saturating_add(slack),
                ),
            }
        }
        self.stats.flow_records += read.totals.len() as u64;
        self.stats.flow_records_unusable += read.skipped;
        for r in read.totals {
            self.newest_flow_received_ns = self.newest_flow_received_ns.max(r.received_ns);
            if r.tuple.is_link_scoped() {
                self.stats.link_scoped += 1;
                continue;
            }
            let key = (
                self.nat.inside(&r.tuple, r.last_ns),
                self.address_space(r.point),
            );
            if !self.sharing.holds(&key, r.point, self.totals.len()) {
                self.stats.flow_records_unshared += 1;
                continue;
            }
            let this = (r.point, r.last_ns);
            if let Some(other) = self.totals.add(key, r) {
                self.sharing.met([other, this]);
            }
        }
        Ok(())
    }

    /// Records that `exporter` lost `lost` records around `time_ns` (the
    /// share of its reports they were comes from the reports that arrived).
    pub fn add_telemetry(&mut self, time_ns: i64, exporter: ExporterId, lost: u64) {
        if lost > 0 {
            self.telemetry.push(TelemetryLoss {
                time_ns,
                exporter,
                lost,
            });
        }
    }

    /// The event time its input vouches for, to feed a
    /// [`Watermark`](crate::Watermark): the newest observation time of the
    /// packet reports when there are any (windows are cut by it), else the
    /// newest receive time of the flow records (flows settle by it);
    /// `i64::MIN` before any input. Health rows are stamped when they are
    /// handed off, not when anything was observed, so they do not count.
    pub fn event_time_ns(&self) -> i64 {
        if self.newest_report_ns > i64::MIN {
            self.newest_report_ns
        } else {
            self.newest_flow_received_ns
        }
    }

    /// Observations and flow records waiting for their window to close or
    /// their flow to settle.
    pub fn pending(&self) -> usize {
        self.buffer.len() + self.totals.len()
    }

    /// Closes every window the watermark has passed.
    pub fn advance(&mut self, watermark_ns: i64) -> Vec<Journey> {
        let mut out = Vec::new();
        let hold = self.config.max_path_delay_ns + self.config.lateness_ns;
        while let Some(start) = self.next_window() {
            let end = start.saturating_add(self.config.window_ns);
            if watermark_ns < end.saturating_add(hold) {
                break;
            }
            out.extend(self.close(start, end));
        }
        self.rejoin_translated();
        let settled = self
            .totals
            .take_settled(watermark_ns.saturating_sub(self.config.flow_settle_ns));
        out.extend(self.flow_journeys(settled));
        let early = self
            .totals
            .take_oldest_over(self.config.max_pending_flow_records);
        self.stats.flow_records_settled_early +=
            early.iter().map(|(_, p)| p.len() as u64).sum::<u64>();
        out.extend(self.flow_journeys(early));
        // translations and losses older than anything still waiting are done with
        let keep_from = watermark_ns.saturating_sub(10 * self.config.flow_settle_ns);
        self.nat.expire(keep_from);
        self.telemetry.retain(|t| t.time_ns >= keep_from);
        out
    }

    /// Moves the flows buffered under a tuple that a translation added
    /// since has shown to be the outside of another: their records join
    /// the inside's, so that the records of both sides of a NAT settle as
    /// one flow, once the last of them has had its time. Keyed apart, the
    /// side whose records came first would settle alone and cut the
    /// journey at the NAT.
    fn rejoin_translated(&mut self) {
        let changed = self.nat.take_changed();
        if changed.is_empty() || self.totals.len() == 0 {
            return;
        }
        let mut spaces: Vec<u16> = self.config.address_spaces.values().copied().collect();
        spaces.push(0);
        spaces.sort_unstable();
        spaces.dedup();
        for outside in changed {
            for key in self.totals.keys_of(&outside, &spaces) {
                // a translation of another time leaves the flow where it is
                let nat = &self.nat;
                if self
                    .totals
                    .records(&key)
                    .all(|r| nat.inside(&r.tuple, r.last_ns) == key.0)
                {
                    continue;
                }
                let Some(pending) = self.totals.remove(&key) else {
                    continue;
                };
                for r in pending.into_records() {
                    let to = (self.nat.inside(&r.tuple, r.last_ns), key.1);
                    let this = (r.point, r.last_ns);
                    if let Some(other) = self.totals.add(to, r) {
                        self.sharing.met([other, this]);
                    }
                }
            }
        }
    }

    /// Closes every window (end of input).
    pub fn finish(&mut self) -> Vec<Journey> {
        // every record settles now, grouped again by its inside tuple
        self.nat.take_changed();
        let mut out = Vec::new();
        while let Some(start) = self.next_window() {
            out.extend(self.close(start, start.saturating_add(self.config.window_ns)));
        }
        let all = self.totals.take_all();
        out.extend(self.flow_journeys(all));
        out
    }

    /// Journeys from the totals of flows whose records are all in; the
    /// records are grouped again by their inside tuple, as NAT events may
    /// have come after some of them.
    fn flow_journeys(&mut self, flows: Vec<(TotalsKey, Pending)>) -> Vec<Journey> {
        // without any translation the buffer's grouping stands, and a flow
        // of one record is one point: no journey, so not even unpacked
        let groups: Vec<(TotalsKey, Vec<FlowTotal>)> = if self.nat.is_empty() {
            flows
                .into_iter()
                .filter(|(_, p)| p.len() > 1)
                .map(|(k, p)| (k, p.into_records()))
                .collect()
        } else {
            let mut regrouped: HashMap<TotalsKey, Vec<FlowTotal>, foldhash::fast::RandomState> =
                HashMap::default();
            for r in flows.into_iter().flat_map(|(_, p)| p.into_records()) {
                let key = (
                    self.nat.inside(&r.tuple, r.last_ns),
                    self.address_space(r.point),
                );
                regrouped.entry(key).or_default().push(r);
            }
            regrouped.into_iter().collect()
        };
        let cx = TotalsContext {
            names: &self.config.names,
            topology_rank: &self.topology_rank,
            telemetry: &self.telemetry,
        };
        let mut journeys = Vec::new();
        for (key, records) in &groups {
            match totals_journey(records, key.1, &cx) {
                Ok(_) if !self.sharing.complete(key, records) => self.stats.flows_unfinished += 1,
                Ok(j) => journeys.push(j),
                Err(NoJourney::OnePoint) => {}
                Err(NoJourney::Unfinished) => self.stats.flows_unfinished += 1,
            }
        }
        self.stats.journeys += journeys.len() as u64;
        journeys.sort_by_key(|j| (j.first_ns, j.tuple));
        journeys
    }

    fn next_window(&self) -> Option<i64> {
        let min = self.buffer.iter().map(|o| o.time_ns).min()?;
        Some(min - min.rem_euclid(self.config.window_ns))
    }

    fn close(&mut self, start: i64, end: i64) -> Vec<Journey> {
        let horizon = end.saturating_add(self.config.max_path_delay_ns);
        // the window keeps the buffer's allocation; the few later ones move out
        let mut window = std::mem::take(&mut self.buffer);
        self.buffer = window.extract_if(.., |o| o.time_ns >= horizon).collect();
        let mut window = sorted_by_digest(window);
        let mut mine = Vec::new();
        for (s, e) in trajectories(&mut window, self.config.max_path_delay_ns) {
            // a trajectory's observations are in time order
            if !plausible(&window[s as usize..e as usize], &self.config.clock_domains) {
                self.stats.implausible += u64::from(e - s);
            } else if window[s as usize].time_ns < end {
                mine.push((s, e));
            } else {
                // a packet first seen after the window: the next one's
                self.buffer
                    .extend_from_slice(&window[s as usize..e as usize]);
            }
        }
        self.closed_until = end;
        self.stats.windows += 1;
        self.stats.matched += mine
            .iter()
            .filter(|(s, e)| e - s > 1)
            .map(|(s, e)| u64::from(e - s))
            .sum::<u64>();

        let rates = self.telemetry_rates(&window, start, end);
        let journeys = self.build_partitioned(&window, &mine, &rates);
        self.stats.journeys += journeys.len() as u64;
        // translations the packets showed join the flow records of both
        // sides of the NAT, which say nothing of it themselves; one packet
        // is no evidence (a collision of two clients of one server looks
        // like a source NAT), and each holds while the journey's packets
        // may still be on their way, so that a port the NAT reuses soon
        // after joins no other flow
        let slack = self.config.max_path_delay_ns + self.config.lateness_ns;
        for j in &journeys {
            for t in j.nat.iter().filter(|t| t.packets >= 2) {
                self.nat.learn(
                    t.before,
                    t.after,
                    j.first_ns.saturating_sub(slack),
                    j.last_ns.saturating_add(slack),
                );
            }
        }
        journeys
    }

    /// Fraction of each point's records its exporter lost in the window.
    fn telemetry_rates(&self, window: &[Observation], start: i64, end: i64) -> HashMap<u64, f64> {
        let until = end.saturating_add(self.config.max_path_delay_ns + self.config.lateness_ns);
        let mut per_exporter: HashMap<ExporterId, (u64, u64)> = HashMap::new();
        for t in self
            .telemetry
            .iter()
            .filter(|t| t.time_ns >= start && t.time_ns < until)
        {
            let e = per_exporter.entry(t.exporter).or_default();
            e.1 = e.1.saturating_add(t.lost);
        }
        // what did arrive: the window's reports from each exporter that lost some
        // (health rows of a domain carry its losses, not its record counts)
        for o in window {
            if let Some(e) = per_exporter.get_mut(&o.exporter) {
                e.0 += 1;
            }
        }
        let mut rates = HashMap::new();
        for o in window {
            if let Some(&(records, lost)) = per_exporter.get(&o.exporter)
                && lost > 0
            {
                rates.insert(o.point, lost as f64 / (records + lost) as f64);
            }
        }
        rates
    }

    fn build_partitioned(
        &mut self,
        window: &[Observation],
        mine: &[(u32, u32)],
        rates: &HashMap<u64, f64>,
    ) -> Vec<Journey> {
        let parts = self.config.partitions.max(1);
        // per partition: each flow's (tuple, address space) trajectories
        let mut by_partition: Vec<HashMap<TotalsKey, Vec<(u32, u32)>>> =
            (0..parts).map(|_| HashMap::new()).collect();
        for &(s, e) in mine {
            let first = first_hop(&window[s as usize..e as usize]);
            let space = self.address_space(first.point);
            let p = first.tuple.canonical(u32::from(space)).0.partition(parts);
            by_partition[p]
                .entry((first.tuple, space))
                .or_default()
                .push((s, e));
        }
        let bucket = self.config.clock_bucket_ns;
        let samples: Vec<ClockSamples> = std::thread::scope(|scope| {
            let handles: Vec<_> = by_partition
                .iter()
                .map(|groups| {
                    scope.spawn(move || {
                        let mut s = ClockSamples::new(bucket);
                        for (a, b) in groups.values().flatten() {
                            s.add(&window[*a as usize..*b as usize]);
                        }
                        s
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("clock worker"))
                .collect()
        });
        let mut merged = ClockSamples::new(bucket);
        for s in samples {
            merged.merge(s);
        }
        let mut found = offsets(&merged, &self.config.clock_domains);
        for (p, o) in &self.last_offsets {
            found.entry(*p).or_insert(*o);
        }
        self.last_offsets.clone_from(&found);
        let cx = Context {
            offsets: &found,
            telemetry_rate: rates,
            names: &self.config.names,
            topology_rank: &self.topology_rank,
        };
        let cx = &cx;
        let mut journeys: Vec<Journey> = std::thread::scope(|scope| {
            let handles: Vec<_> = by_partition
                .iter()
                .map(|groups| {
                    scope.spawn(move || {
                        groups
                            .iter()
                            .map(|(&(tuple, space), t)| build(tuple, space, window, t, cx))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("journey worker"))
                .collect()
        });
        journeys.sort_by_key(|j| (j.first_ns, j.tuple));
        journeys
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::FlowTuple;

    /// One packet of `tuple` seen at `points` in order, 1 µs apart.
    fn packet(digest: u64, tuple: FlowTuple, points: [u64; 2], t0: i64) -> Vec<Observation> {
        points
            .iter()
            .enumerate()
            .map(|(i, &point)| Observation {
                point,
                exporter: ([0; 16], point as u32),
                time_ns: t0 + i as i64 * 1_000,
                digest,
                ttl: 64 - i as u8,
                length: 100,
                ip_version: 4,
                tuple,
            })
            .collect()
    }

    #[test]
    fn a_digest_shared_by_unrelated_flows_is_no_trajectory() {
        let tuple = |src: u8, dst: u8, sport| FlowTuple {
            src: hopscope_schema::ipv4_mapped([10, 0, 0, src]),
            dst: hopscope_schema::ipv4_mapped([10, 0, 1, dst]),
            src_port: sport,
            dst_port: 53,
            proto: 17,
        };
        let mut c = Correlator::new(CorrelatorConfig::default());
        // digest 7 at points 1, 2 for one flow and at 3, 4 for an unrelated one
        let mut obs = packet(7, tuple(1, 1, 1000), [1, 2], 0);
        obs.extend(packet(7, tuple(2, 2, 2000), [3, 4], 10_000));
        // digest 8: a source NAT between points 5 and 6, which is possible
        let mut natted = packet(8, tuple(3, 3, 3000), [5, 6], 0);
        natted[1].tuple = tuple(9, 3, 9000);
        obs.extend(natted);
        c.add_observations(obs);
        let journeys = c.finish();
        assert_eq!(c.stats.implausible, 4);
        assert_eq!(journeys.len(), 1);
        assert!(journeys[0].flags.contains(&crate::JourneyFlag::Nat));
    }

    #[test]
    fn equal_tuples_in_separate_address_spaces_are_separate_journeys() {
        let tuple = FlowTuple {
            src: hopscope_schema::ipv4_mapped([10, 0, 0, 1]),
            dst: hopscope_schema::ipv4_mapped([10, 0, 0, 2]),
            src_port: 40_000,
            dst_port: 443,
            proto: 6,
        };
        let run = |spaces: HashMap<u64, u16>| {
            let mut c = Correlator::new(CorrelatorConfig {
                address_spaces: spaces,
                ..CorrelatorConfig::default()
            });
            // customer A's flow crosses points 1 and 2, customer B's (same
            // private addresses) points 3 and 4
            for k in 0..20u64 {
                c.add_observations(packet(2 * k, tuple, [1, 2], k as i64 * 1_000_000));
                c.add_observations(packet(2 * k + 1, tuple, [3, 4], k as i64 * 1_000_000));
            }
            c.finish()
        };
        let merged = run(HashMap::new());
        assert_eq!(merged.len(), 1, "one space: the two flows look like one");
        let apart = run(HashMap::from([(3, 7), (4, 7)]));
        assert_eq!(apart.len(), 2);
        assert!(apart.iter().all(|j| j.hops.len() == 2 && j.packets == 20));
        assert_ne!(apart[0].community_id, apart[1].community_id);
        assert!(apart.iter().any(|j| j.community_id == tuple.community_id()));
    }
}

#[cfg(test)]
mod clock_tests {
    use super::*;
    use crate::journey::Segment;
    use crate::key::FlowTuple;

    /// A UDP flow to an echo service.
    fn echo() -> FlowTuple {
        FlowTuple {
            src: hopscope_schema::ipv4_mapped([10, 0, 0, 1]),
            dst: hopscope_schema::ipv4_mapped([10, 0, 0, 2]),
            src_port: 40_000,
            dst_port: 7,
            proto: 17,
        }
    }

    /// A report of packet `digest` of `tuple` at `point`.
    fn o(point: u64, time_ns: i64, ttl: u8, tuple: FlowTuple, digest: u64) -> Observation {
        Observation {
            point,
            exporter: ([0; 16], point as u32),
            time_ns,
            digest,
            ttl,
            length: 100,
            ip_version: 4,
            tuple,
        }
    }

    /// Packets both ways between points 1 (upstream) and 2 (one router
    /// on), 20 ms more delay towards 2 than back, clocks equal.
    fn asymmetric(c: &mut Correlator) {
        let tuple = echo();
        for k in 0..50i64 {
            let t = k * 20_000_000;
            let d = 2 * k as u64;
            c.add_observations([
                o(1, t, 64, tuple, d),
                o(2, t + 20_100_000, 63, tuple, d),
                o(2, t + 1_000_000, 64, tuple.reversed(), d + 1),
                o(1, t + 1_100_000, 63, tuple.reversed(), d + 1),
            ]);
        }
    }

    fn forward(journeys: &[Journey]) -> &Segment {
        let j = journeys
            .iter()
            .find(|j| j.tuple.dst_port == 7)
            .expect("the forward journey");
        &j.segments[0]
    }

    #[test]
    fn a_shared_clock_measures_an_asymmetric_delay() {
        let mut c = Correlator::new(CorrelatorConfig::default());
        for p in [1, 2] {
            c.set_clock_domain(p, ClockDomain::shared(9, 0));
        }
        asymmetric(&mut c);
        let journeys = c.finish();
        let s = forward(&journeys);
        assert_eq!(s.delay_kind, "one-way");
        let d = s.delay.unwrap();
        assert!((d.median_ns - 20_100_000).abs() < 1_000, "{d:?}");
        let back = journeys.iter().find(|j| j.tuple.src_port == 7).unwrap();
        assert_eq!(back.segments[0].delay.unwrap().median_ns, 100_000);
        assert!(
            !journeys
                .iter()
                .any(|j| j.flags.contains(&crate::JourneyFlag::OffsetsEstimated))
        );
    }

    #[test]
    fn estimated_offsets_say_so_with_a_bound_that_holds_the_truth() {
        let mut c = Correlator::new(CorrelatorConfig::default());
        asymmetric(&mut c);
        let journeys = c.finish();
        let s = forward(&journeys);
        assert_eq!(s.delay_kind, "estimated");
        let d = s.delay.unwrap().median_ns;
        // the symmetric split: (20.1 + 0.1) / 2 each way
        assert!((d - 10_100_000).abs() < 1_000, "{d}");
        let bound = s.delay_bound_ns.unwrap() as i64;
        assert!((d - 20_100_000).abs() <= bound, "truth inside ±{bound}");
        let j = journeys.iter().find(|j| j.tuple.dst_port == 7).unwrap();
        assert!(j.flags.contains(&crate::JourneyFlag::OffsetsEstimated));
        // the round trip is exact whatever the split
        let summary = crate::summarize_segments(&journeys).segments;
        let rtt = summary[0].rtt_median_ns.unwrap();
        assert!((rtt - 20_200_000).abs() < 1_000, "{rtt}");
    }

    #[test]
    fn on_a_shared_clock_a_packet_cannot_arrive_before_it_left() {
        let mut c = Correlator::new(CorrelatorConfig::default());
        for p in [1, 2] {
            c.set_clock_domain(p, ClockDomain::shared(9, 1_000));
        }
        let tuple = echo();
        c.add_observations([
            // one router on (TTL 63) but 5 µs earlier on the same clock
            o(1, 10_000, 64, tuple, 1),
            o(2, 5_000, 63, tuple, 1),
            // within the clocks' 1 µs bound: possible
            o(1, 20_000, 64, tuple, 2),
            o(2, 19_500, 63, tuple, 2),
        ]);
        let journeys = c.finish();
        assert_eq!(c.stats.implausible, 2);
        assert_eq!(journeys.len(), 1);
        assert_eq!(journeys[0].packets, 1);
    }

    #[test]
    fn points_of_different_domains_are_estimated_between_them() {
        let mut c = Correlator::new(CorrelatorConfig::default());
        c.set_clock_domain(1, ClockDomain::shared(1, 0));
        c.set_clock_domain(2, ClockDomain::shared(2, 50_000));
        asymmetric(&mut c);
        assert_eq!(forward(&c.finish()).delay_kind, "estimated");
    }
}
