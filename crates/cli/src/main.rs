//! `hopscope`: the command line. Each subcommand lives in its own module;
//! this file only parses arguments and dispatches.

#![forbid(unsafe_code)]

mod capacity;
mod config;
mod decode;
mod demo;
mod detect;
mod journeys;
mod policy;
mod probe;
mod query;
mod serve;
mod simulate;
mod slo;
mod sql;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

/// The collector and the probe build and drop a record batch every few
/// thousand flows; glibc's allocator hands the freed column buffers back to
/// the kernel and takes fresh zeroed pages for the next batch, which was a
/// fifth of the decoders' time (page faults), where mimalloc reuses them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// End-to-end flow telemetry: collect, meter, correlate and query flows.
#[derive(Debug, Parser)]
#[command(name = "hopscope", version, about, propagate_version = true)]
struct Cli {
    /// Configuration file (TOML); flags and HOPSCOPE_* variables win over it.
    #[arg(long, global = true, env = "HOPSCOPE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// A live multi-hop network on this machine: five simulated devices
    /// (NAT, a lossy WAN link, ECMP, clock errors, incidents now and then)
    /// export IPFIX to a collector on a temporary store; open the printed
    /// URL for the web UI. Ctrl-C stops.
    Demo(DemoArgs),
    /// Decode captures of flow exports (pcap/pcapng of NetFlow v5/v9, IPFIX,
    /// sFlow; IPFIX files; raw datagram payloads) and print the records.
    ///
    /// Files are read in the order given as one exporter session, so a file
    /// of templates followed by a file of data decodes as it would live.
    Decode(DecodeArgs),
    /// Meter packets from captures into flows, select packets with a hash
    /// shared by every probe (PSAMP), and export flows, packet reports and
    /// metadata as IPFIX.
    Probe(Box<ProbeArgs>),
    /// Collect flows (NetFlow v5/v9, IPFIX, sFlow over UDP; IPFIX over TCP
    /// and files) into the embedded store, and serve the HTTP API and
    /// /metrics.
    Serve(Box<ServeArgs>),
    /// Query stored flows: a filter, group-by fields, aggregates, top-N and
    /// time buckets (see docs/query.md for the filter language).
    Query(Box<QueryArgs>),
    /// Read-only SQL over the stored Parquet files (DataFusion; in builds
    /// with the `sql` feature): tables flows, flows_1m, flows_1h, health,
    /// packet_reports, interface_counters.
    Sql(SqlArgs),
    /// The health of a running `hopscope serve`: exporters, records,
    /// decode errors, telemetry loss, drops, store lag.
    Status(StatusArgs),
    /// Journeys: flows followed across observation points, rebuilt from the
    /// stored packet reports of a range, with per-hop delay and per-segment
    /// loss; printed as path diagrams, or pooled per segment.
    Journeys(JourneysArgs),
    /// Service level objectives (`[[slo]]` of --config): each one's error
    /// budget, burn rates and bad buckets over a range, from the buckets
    /// `serve` judged (or judged again from the journeys with --recompute);
    /// `hopscope slo check` only checks the configuration.
    Slo(SloArgs),
    /// Alerts that fired and resolved over a range, and those firing now.
    Alerts(AlertsArgs),
    /// Security detections (port scans, floods, address lists; `[detect]`
    /// of --config): the alerts `serve` raised over a range and the worst
    /// offenders, or every detection run again over the stored flows
    /// with --recompute.
    Detect(DetectArgs),
    /// Capacity: each link's utilisation (SNMP counters, sFlow counter
    /// samples, flows scaled by sampling, compared), its 95th percentile
    /// of 5-minute samples per direction as billing computes it, headroom
    /// to `[capacity] threshold` of its speed, and the day its forecast
    /// crosses it; port groups billed together. `--link` for one link's
    /// daily figures and what grew.
    Capacity(CapacityArgs),
    /// Segmentation policy (`[policy]` of --config, or a rules file):
    /// what each intent rule allowed or denied over a range, and the
    /// journeys that bypassed a path rule's point. `hopscope policy check
    /// RULES.toml` runs proposed rules over the past (what-if).
    Policy(PolicyArgs),
    /// Root cause: the segments of the path ranked by the evidence against
    /// them (loss and delay beyond the baseline before the range, votes of
    /// the affected journeys), for an alert, an SLO or a journey filter.
    Rca(RcaArgs),
    /// Simulate a path (chain, diamond, nat, tunnel or a TOML scenario): one pcap per
    /// observation point and the true answer (truth.json).
    Simulate(SimulateArgs),
}

#[derive(Debug, clap::Args)]
struct JourneysArgs {
    /// Journey filter: the flow filter language over journey columns
    /// (`lost > 0`, `host 10.0.0.1`, `proto tcp`, `hop_count > 3`).
    #[arg(default_value = "")]
    filter: Vec<String>,
    #[arg(long, env = "HOPSCOPE_DATA_DIR", default_value = "hopscope-data")]
    data_dir: PathBuf,
    #[command(flatten)]
    range: RangeArgs,
    /// Journeys are built per window of this length (default 10s).
    #[arg(long)]
    window: Option<String>,
    /// Every probe shares one clock (one host, PTP): offsets are zero, not estimated.
    #[arg(long)]
    same_clock: bool,
    /// Estimate every offset from the traffic, whatever clocks the probes
    /// announced ([[serve.clocks]] of --config still holds).
    #[arg(long, conflicts_with = "same_clock")]
    estimate_clocks: bool,
    /// Loss and delay per segment, pooled over the journeys.
    #[arg(long)]
    segments: bool,
    /// With --segments: per bucket of this width (1m, 5m), from the
    /// segments `serve` stored, so that a burst shows as a burst.
    #[arg(long, requires = "segments")]
    bucket: Option<String>,
    /// At most N journeys, the most lossy first.
    #[arg(long, short = 'n')]
    limit: Option<usize>,
    /// JSON (one journey per line; the segment table as one array).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct SloArgs {
    /// `check`: validate the [[slo]] of --config and say what each promises.
    #[arg(value_parser = ["check"])]
    action: Option<String>,
    #[arg(long, env = "HOPSCOPE_DATA_DIR", default_value = "hopscope-data")]
    data_dir: PathBuf,
    #[command(flatten)]
    range: RangeArgs,
    /// Judge the range again from the stored journeys and segments.
    #[arg(long)]
    recompute: bool,
    /// JSON: one document with every SLO, its budget and its buckets.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct AlertsArgs {
    #[arg(long, env = "HOPSCOPE_DATA_DIR", default_value = "hopscope-data")]
    data_dir: PathBuf,
    #[command(flatten)]
    range: RangeArgs,
    /// JSON: the events and the alerts firing.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct DetectArgs {
    #[arg(long, env = "HOPSCOPE_DATA_DIR", default_value = "hopscope-data")]
    data_dir: PathBuf,
    #[command(flatten)]
    range: RangeArgs,
    /// Run the detections again over the stored flows of the range (with
    /// the thresholds of --config), instead of reading what `serve` raised.
    #[arg(long)]
    recompute: bool,
    /// JSON: the events, the alerts firing and the offenders.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct CapacityArgs {
    #[arg(long, env = "HOPSCOPE_DATA_DIR", default_value = "hopscope-data")]
    data_dir: PathBuf,
    /// The range (default: `[capacity] history`, 28 days).
    #[command(flatten)]
    range: RangeArgs,
    /// One link, as `EXPORTER:IFINDEX` or `EXPORTER:IFNAME`: its daily
    /// percentiles, forecast and the traffic that grew the most.
    #[arg(long)]
    link: Option<String>,
    /// Links listed (the least headroom first).
    #[arg(long, default_value_t = 20)]
    top: usize,
    /// The width of the samples (default: `[capacity] sample`, 5m, as
    /// billing has it; 1m for a closer look).
    #[arg(long)]
    sample: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct PolicyArgs {
    /// `check`, then a rules file (zones, rules, paths; or a configuration
    /// file with [policy]); none: the configured policy.
    #[arg(value_names = ["check", "RULES.toml"])]
    action: Vec<String>,
    #[arg(long, env = "HOPSCOPE_DATA_DIR", default_value = "hopscope-data")]
    data_dir: PathBuf,
    #[command(flatten)]
    range: RangeArgs,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct RcaArgs {
    /// Journey filter (the journeys' filter language); empty for all.
    #[arg(default_value = "")]
    filter: Vec<String>,
    #[arg(long, env = "HOPSCOPE_DATA_DIR", default_value = "hopscope-data")]
    data_dir: PathBuf,
    #[command(flatten)]
    range: RangeArgs,
    /// The journeys of this SLO (of --config) instead of a filter.
    #[arg(long, conflicts_with = "alert")]
    slo: Option<String>,
    /// The journeys behind this alert (its id, as `hopscope alerts` shows it).
    #[arg(long)]
    alert: Option<String>,
    /// How long before the range the baseline runs.
    #[arg(long, default_value = "1h")]
    baseline: String,
    /// At most N candidates.
    #[arg(long, short = 'n', default_value_t = 10)]
    limit: usize,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct DemoArgs {
    /// The web UI and API.
    #[arg(long, env = "HOPSCOPE_HTTP", default_value = "127.0.0.1:8080")]
    http: String,
    /// Keep the store here (default: a temporary directory, removed at exit).
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
    /// Keep the temporary store at exit.
    #[arg(long)]
    keep: bool,
    /// Copy every table to this ClickHouse server as well (see docs/clickhouse.md).
    #[arg(long, env = "HOPSCOPE_CLICKHOUSE", hide_env_values = true)]
    clickhouse: Option<String>,
    /// Stop after this long (such as 60s) instead of at Ctrl-C.
    #[arg(long)]
    duration: Option<String>,
    /// No incidents: the steady state only (a 2 % loss on the WAN link).
    #[arg(long)]
    calm: bool,
    /// New flows per second on the path.
    #[arg(long, default_value_t = 150)]
    flows_per_second: u32,
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

#[derive(Debug, clap::Args)]
struct SimulateArgs {
    /// chain, diamond, nat, tunnel, or a scenario file (TOML).
    #[arg(long, default_value = "chain")]
    scenario: String,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// When the traffic starts: RFC 3339, ns, or `now` (the scenario's own
    /// start unless given).
    #[arg(long)]
    start: Option<String>,
    /// Loss probability put on link --loss-link.
    #[arg(long)]
    loss: Option<f64>,
    #[arg(long, default_value_t = 2)]
    loss_link: usize,
    /// Directory for the pcaps and truth.json.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Where the store keeps its segments and the collector its state.
    #[arg(long, env = "HOPSCOPE_DATA_DIR", default_value = "hopscope-data")]
    data_dir: PathBuf,
    /// UDP listeners (NetFlow v5/v9, IPFIX, sFlow on any); "none" for no UDP.
    #[arg(
        long,
        env = "HOPSCOPE_UDP",
        value_delimiter = ',',
        default_value = "0.0.0.0:2055,0.0.0.0:4739,0.0.0.0:6343"
    )]
    udp: Vec<String>,
    /// IPFIX-over-TCP listeners; "none" for no TCP.
    #[arg(
        long,
        env = "HOPSCOPE_TCP",
        value_delimiter = ',',
        default_value = "0.0.0.0:4739"
    )]
    tcp: Vec<String>,
    /// Sockets (and threads) per UDP port, sharing it with SO_REUSEPORT; 0: one per core.
    #[arg(long, env = "HOPSCOPE_UDP_SOCKETS", default_value_t = 0)]
    udp_sockets: usize,
    /// Receive buffer per UDP socket, bytes (forced past rmem_max when privileged).
    #[arg(long, env = "HOPSCOPE_RECEIVE_BUFFER", default_value_t = 32 << 20)]
    receive_buffer: usize,
    /// IPFIX files or pcaps of exports to replay into the store.
    #[arg(long, env = "HOPSCOPE_REPLAY", value_delimiter = ',')]
    replay: Vec<PathBuf>,
    /// Stop once the replays are done (a batch import) instead of serving on.
    #[arg(long)]
    exit_after_replay: bool,
    /// Exporter networks allowed to send (CIDR); by default every address.
    #[arg(long, env = "HOPSCOPE_ALLOW", value_delimiter = ',')]
    allow: Vec<String>,
    /// Names of exporters, ADDRESS=NAME.
    #[arg(long, env = "HOPSCOPE_EXPORTER_NAME", value_delimiter = ',')]
    exporter_name: Vec<String>,
    /// MaxMind-format databases for country and AS (GeoLite2-Country, -ASN...).
    #[arg(long, env = "HOPSCOPE_MMDB", value_delimiter = ',')]
    mmdb: Vec<PathBuf>,
    /// How often received flows are committed: the most a crash can lose.
    #[arg(long, env = "HOPSCOPE_FLUSH_INTERVAL", default_value = "5s")]
    flush_interval: String,
    /// HTTP API and /metrics; "none" for no HTTP.
    #[arg(long, env = "HOPSCOPE_HTTP", default_value = "127.0.0.1:8080")]
    http: String,
    /// Token the API requires (mandatory when --http is not a loopback address).
    #[arg(long, env = "HOPSCOPE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Copy every table to this ClickHouse server as well
    /// (clickhouse://[user[:password]@]host[:port][/database]; see docs/clickhouse.md).
    #[arg(long, env = "HOPSCOPE_CLICKHOUSE", hide_env_values = true)]
    clickhouse: Option<String>,
    /// Delete raw flows older than this (0 keeps them).
    #[arg(long, env = "HOPSCOPE_RETENTION", default_value = "7d")]
    retention: String,
    /// Delete the oldest data beyond this size (such as 50G; 0 for no limit).
    #[arg(long, env = "HOPSCOPE_MAX_SIZE", default_value = "0")]
    max_size: String,
    /// UDP exporter sessions (address and port) kept over all sockets; past
    /// it, sessions heard once and then the longest silent make room.
    #[arg(long, env = "HOPSCOPE_MAX_SESSIONS", default_value_t = 4096)]
    max_sessions: usize,
    /// UDP sessions (source ports) kept per exporter address.
    #[arg(long, env = "HOPSCOPE_MAX_SESSIONS_PER_EXPORTER", default_value_t = 64)]
    max_sessions_per_exporter: usize,
    /// A UDP session silent this long is forgotten.
    #[arg(long, env = "HOPSCOPE_SESSION_IDLE_TIMEOUT", default_value = "30m")]
    session_idle_timeout: String,
    /// Templates one exporter session holds over all its domains.
    #[arg(
        long,
        env = "HOPSCOPE_MAX_TEMPLATES_PER_EXPORTER",
        default_value_t = 16_384
    )]
    max_templates_per_exporter: usize,
    /// TCP connections open at once, over all sources.
    #[arg(long, env = "HOPSCOPE_TCP_MAX_CONNECTIONS", default_value_t = 1024)]
    tcp_max_connections: usize,
    /// TCP connections open at once from one source address.
    #[arg(long, env = "HOPSCOPE_TCP_MAX_PER_SOURCE", default_value_t = 64)]
    tcp_max_per_source: usize,
    /// TCP connections at once that have not yet sent a whole message.
    #[arg(long, env = "HOPSCOPE_TCP_MAX_HANDSHAKES", default_value_t = 128)]
    tcp_max_handshakes: usize,
    /// Time a TCP connection has to send its first whole message.
    #[arg(long, env = "HOPSCOPE_TCP_HANDSHAKE_TIMEOUT", default_value = "30s")]
    tcp_handshake_timeout: String,
    /// A TCP connection silent this long is closed.
    #[arg(long, env = "HOPSCOPE_TCP_IDLE_TIMEOUT", default_value = "10m")]
    tcp_idle_timeout: String,
    /// How long a closed TCP connection's counters stay in status and /metrics.
    #[arg(long, env = "HOPSCOPE_TCP_CLOSED_LINGER", default_value = "5m")]
    tcp_closed_linger: String,
}

impl ServeArgs {
    /// Every flag at its default (or its `HOPSCOPE_*` variable), as
    /// `hopscope serve` alone takes them: what the demo starts from.
    fn defaults() -> Self {
        use clap::{Args, FromArgMatches};
        let matches = Self::augment_args(clap::Command::new("serve")).get_matches_from(["serve"]);
        Self::from_arg_matches(&matches).expect("the defaults parse")
    }
}

#[derive(Debug, clap::Args)]
struct QueryArgs {
    /// The filter, such as 'src net 10.0.0.0/8 and dst port 443' (empty: every flow).
    #[arg(default_value = "")]
    filter: Vec<String>,
    #[arg(long, env = "HOPSCOPE_DATA_DIR", default_value = "hopscope-data")]
    data_dir: PathBuf,
    /// Query this ClickHouse server's flows instead of the data directory's
    /// (clickhouse://[user[:password]@]host[:port][/database]; not read from
    /// HOPSCOPE_CLICKHOUSE, which says where serve copies to).
    #[arg(long)]
    clickhouse: Option<String>,
    /// Group by these fields (comma-separated; srcip, dstip, srcport, dstport, exporter as nfdump says them).
    #[arg(long, short = 'g')]
    group_by: Option<String>,
    /// Aggregates: flows, bytes, packets, bps, pps, bpp, raw_bytes, raw_packets, sum(F), min(F), max(F), avg(F), p95(F).
    #[arg(long, short = 'a')]
    aggregates: Option<String>,
    /// Volumes as the exporters counted them: not scaled by sampling rates.
    #[arg(long)]
    unscaled: bool,
    /// Count every record at every point that saw it, rather than traffic
    /// once at the network's boundary ([[serve.boundary]]) without events.
    #[arg(long)]
    every_point: bool,
    #[command(flatten)]
    range: RangeArgs,
    /// Time buckets of this width (1m, 1h) as the first group key.
    #[arg(long)]
    bucket: Option<String>,
    /// At most N rows (top N by the order; with buckets, the top N series).
    #[arg(long, short = 'n', alias = "top")]
    limit: Option<usize>,
    /// Order by this result column; "-col" or "col desc" for descending.
    #[arg(long, allow_hyphen_values = true)]
    order: Option<String>,
    /// Columns when listing flows (comma-separated).
    #[arg(long)]
    columns: Option<String>,
    /// raw: read raw flows only; auto (default) uses rollups where exact.
    #[arg(long)]
    source: Option<String>,
    /// Scan threads (0: every core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Print what was scanned and pruned to stderr.
    #[arg(long)]
    explain: bool,
    #[command(flatten)]
    output: OutputArgs,
}

/// The time range of a query: the same flags for flows and journeys.
#[derive(Debug, clap::Args)]
struct RangeArgs {
    /// Only the last DURATION (15m, 1h, 7d).
    #[arg(long)]
    since: Option<String>,
    /// Start of the range (RFC 3339 or ns).
    #[arg(long)]
    from: Option<String>,
    /// End of the range, excluded.
    #[arg(long)]
    to: Option<String>,
}

impl RangeArgs {
    /// The range asked for, or the last `default` up to now.
    fn or_last(&self, default: &str) -> anyhow::Result<(i64, i64)> {
        Ok(hopscope_store::query::time_range_or_last(
            self.since.as_deref(),
            self.from.as_deref(),
            self.to.as_deref(),
            default,
            now_ns(),
        )?)
    }
}

#[derive(Debug, clap::Args)]
struct SqlArgs {
    /// The query, such as "SELECT proto, sum(bytes) FROM flows GROUP BY proto".
    query: String,
    #[arg(long, env = "HOPSCOPE_DATA_DIR", default_value = "hopscope-data")]
    data_dir: PathBuf,
    /// Give up after this long.
    #[arg(long, default_value = "60s")]
    timeout: String,
    /// Memory for joins, sorts and aggregations (such as 512M, 2G).
    #[arg(long, default_value = "1G")]
    memory: String,
    /// Print at most this many rows.
    #[arg(long, default_value_t = 100_000)]
    max_rows: usize,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, clap::Args)]
struct StatusArgs {
    /// The API of the running collector.
    #[arg(long, env = "HOPSCOPE_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    #[arg(long, env = "HOPSCOPE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The whole status as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct ProbeArgs {
    /// Capture files (pcap or pcapng) to meter, in order.
    #[arg(long, env = "HOPSCOPE_PROBE_PCAP", value_delimiter = ',')]
    pcap: Vec<PathBuf>,
    /// Live interface to capture from (Linux AF_PACKET ring; needs CAP_NET_RAW).
    #[arg(long, env = "HOPSCOPE_PROBE_INTERFACE")]
    interface: Vec<String>,
    /// Stop a live capture after this long (10s, 5m); by default on SIGINT/SIGTERM.
    #[arg(long, env = "HOPSCOPE_PROBE_DURATION")]
    duration: Option<String>,
    /// Capture threads on the live interface, sharing it by flow (each exports on its own session).
    #[arg(long, env = "HOPSCOPE_PROBE_WORKERS", default_value_t = 1)]
    workers: usize,
    /// Share the interface with other probes in this fanout group (hashed by flow).
    #[arg(long, env = "HOPSCOPE_PROBE_FANOUT_GROUP")]
    fanout_group: Option<u16>,
    /// Where IPFIX goes: file:PATH, udp://HOST:PORT or tcp://HOST:PORT.
    #[arg(long, env = "HOPSCOPE_PROBE_EXPORT")]
    export: Option<String>,
    /// Name of this observation point (exported in an options record).
    #[arg(
        long,
        env = "HOPSCOPE_PROBE_OBSERVATION_POINT",
        default_value = "probe"
    )]
    observation_point: String,
    /// Observation point id (IE 138); by default derived from the name.
    #[arg(long, env = "HOPSCOPE_PROBE_OBSERVATION_POINT_ID")]
    observation_point_id: Option<u64>,
    /// Observation domain id of the exported messages.
    #[arg(long, env = "HOPSCOPE_PROBE_DOMAIN", default_value_t = 0)]
    domain: u32,
    /// Export both directions of a connection in one record (RFC 5103).
    #[arg(long, env = "HOPSCOPE_PROBE_BIFLOW")]
    biflow: bool,
    /// Export long flows after this long (15s, 2m...).
    #[arg(long, env = "HOPSCOPE_PROBE_ACTIVE_TIMEOUT", default_value = "60s")]
    active_timeout: String,
    /// Export flows idle for this long.
    #[arg(long, env = "HOPSCOPE_PROBE_IDLE_TIMEOUT", default_value = "15s")]
    idle_timeout: String,
    /// Most flows kept at once; beyond it flows are exported early (and counted).
    #[arg(long, env = "HOPSCOPE_PROBE_MAX_FLOWS", default_value_t = 1 << 20)]
    max_flows: usize,
    /// Select N packets in M for packet reports, such as 1/100.
    #[arg(long, env = "HOPSCOPE_PROBE_SELECT")]
    select: Option<String>,
    /// Selection hash: bob or crc32 (RFC 5475), the same at every probe.
    #[arg(long, env = "HOPSCOPE_PROBE_HASH", default_value = "bob")]
    hash: String,
    /// Selection hash seed, the same at every probe.
    #[arg(long, env = "HOPSCOPE_PROBE_SEED", default_value_t = 0x6870_7363)]
    seed: u32,
    /// Invariant fields hashed: nat-free, nat-crossing or tunnel (the inner packet's).
    #[arg(long, env = "HOPSCOPE_PROBE_PROFILE", default_value = "nat-free")]
    profile: String,
    /// Tunnels (GRE, VXLAN): meter the inner packet (keyed by tunnel id too) or the outer one.
    #[arg(long, env = "HOPSCOPE_PROBE_TUNNELS", default_value = "inner", value_parser = ["inner", "outer"])]
    tunnels: String,
    /// Meter only what this classic BPF program accepts: the output of
    /// `tcpdump -ddd 'EXPRESSION'` (also attached to a live socket).
    #[arg(long, env = "HOPSCOPE_PROBE_BPF")]
    bpf: Option<String>,
    /// Transport payload octets included in the hash (with the IP id and
    /// total length: 16 tell apart packets of protocols whose first octets
    /// are constant headers).
    #[arg(long, env = "HOPSCOPE_PROBE_PAYLOAD_PREFIX", default_value_t = 16)]
    payload_prefix: usize,
    /// The clock this probe's timestamps read, announced to the collector
    /// so that delays between points of one clock are measured, not
    /// estimated: `host` (this kernel's clock: every probe on the host
    /// shares it), a NAME shared by hosts that PTP or NTP keep together
    /// (with --clock-bound), or `none`. `auto`: `host` on live interfaces,
    /// `none` for capture files (their times are another host's).
    #[arg(long, env = "HOPSCOPE_PROBE_CLOCK", default_value = "auto")]
    clock: String,
    /// The most clocks of a named --clock differ by (50us for PTP, a few
    /// ms for NTP); 0 for `host`.
    #[arg(long, env = "HOPSCOPE_PROBE_CLOCK_BOUND")]
    clock_bound: Option<String>,
}

#[derive(Debug, clap::Args)]
struct DecodeArgs {
    /// Files to decode, in order.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    #[command(flatten)]
    output: OutputArgs,
    /// Which table to print.
    #[arg(long, value_enum, default_value_t = Table::Flows)]
    table: Table,
    /// Print at most this many rows (0 for all).
    #[arg(long, default_value_t = 0)]
    limit: usize,
}

#[derive(Debug, Clone, clap::Args)]
struct OutputArgs {
    /// Output as JSON lines (one object per record).
    #[arg(long, conflicts_with = "csv")]
    json: bool,
    /// Output as CSV.
    #[arg(long)]
    csv: bool,
}

impl OutputArgs {
    fn format(&self) -> hopscope_store::render::Format {
        if self.json {
            hopscope_store::render::Format::Json
        } else if self.csv {
            hopscope_store::render::Format::Csv
        } else {
            hopscope_store::render::Format::Table
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Table {
    Flows,
    PacketReports,
    InterfaceCounters,
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let result = Cli::from_arg_matches(&matches)
        .map_err(anyhow::Error::from)
        .and_then(|cli| {
            let mut config = match &cli.config {
                Some(path) => config::load(path)?,
                None => config::ConfigFile::default(),
            };
            match cli.command {
                Command::Decode(args) => decode::run(&args),
                Command::Demo(args) => demo::run(&args),
                Command::Probe(mut args) => {
                    if let Some(sub) = matches.subcommand_matches("probe") {
                        config.probe.apply(&mut args, sub);
                    }
                    probe::run(&args)
                }
                Command::Serve(mut args) => {
                    if let Some(sub) = matches.subcommand_matches("serve") {
                        config.serve.apply(&mut args, sub);
                    }
                    let assurance = config.assurance()?;
                    serve::run(&args, &config.serve, assurance)
                }
                Command::Query(args) => query::run(&args),
                Command::Status(args) => status::run(&args),
                Command::Sql(args) => sql::run(&args),
                Command::Journeys(args) => journeys::run(&args, &config.serve),
                Command::Slo(args) => slo::run_slo(&args, &config),
                Command::Alerts(args) => slo::run_alerts(&args),
                Command::Rca(args) => slo::run_rca(&args, &config),
                Command::Detect(args) => detect::run(&args, &config),
                Command::Capacity(args) => capacity::run(&args, &config),
                Command::Policy(args) => policy::run(&args, &config),
                Command::Simulate(args) => simulate::run(&args),
            }
        });
    match result {
        Ok(code) => code,
        // the reader went away (`hopscope query | head`): it has what it wanted
        Err(e) if reader_went_away(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Whether `e` is a write to a pipe whose reader closed it.
fn reader_went_away(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|cause| cause.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

/// The store in `data_dir`, which must exist: reading commands never
/// create an empty one where a path was mistyped.
fn open_store(data_dir: &std::path::Path) -> anyhow::Result<hopscope_store::Store> {
    use anyhow::Context;
    if !data_dir.join("store.json").exists() {
        anyhow::bail!(
            "{} holds no hopscope store (run `hopscope serve --data-dir {}` first)",
            data_dir.display(),
            data_dir.display()
        );
    }
    hopscope_store::Store::open(data_dir, hopscope_store::WriteOptions::default())
        .with_context(|| format!("opening {}", data_dir.display()))
}

/// The wall clock, Unix nanoseconds (receive times, export times, live timeouts).
fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}
