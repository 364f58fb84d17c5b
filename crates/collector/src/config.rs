//! What the collector listens on, whom it accepts, and what it adds.
//!
//! The same struct comes from the `[serve]` section of the TOML file, from
//! flags and from `HOPSCOPE_*` variables (the binary merges them).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::enrich::Cidr;

/// Everything the collector needs to run.
#[derive(Debug, Clone)]
pub struct CollectorConfig {
    /// UDP listeners (NetFlow v5/v9, IPFIX, sFlow on any of them).
    pub udp: Vec<SocketAddr>,
    /// Sockets per UDP listener sharing the port with SO_REUSEPORT, each
    /// with its own receiving thread.
    pub udp_sockets: usize,
    /// SO_RCVBUF asked for each UDP socket (the kernel may cap it; see
    /// `net.core.rmem_max`).
    pub udp_receive_buffer: usize,
    /// IPFIX over TCP listeners.
    pub tcp: Vec<SocketAddr>,
    /// What TCP clients may hold: connections, handshakes, silence.
    pub tcp_limits: crate::TcpLimits,
    /// What exporters may hold: sessions, templates, domains. Each UDP
    /// socket's decoder has these bounds of its own.
    pub session_limits: hopscope_wire::SessionLimits,
    /// IPFIX files and pcaps of export traffic replayed at start.
    pub replay: Vec<PathBuf>,
    /// Exporters allowed to send; empty allows every address.
    pub allow: Vec<Cidr>,
    /// Names given to exporters, by address.
    pub exporter_names: Vec<(IpAddr, String)>,
    /// Networks that name and tag flow addresses.
    pub networks: Vec<NetworkTag>,
    /// Sampling rates of exporters that announce none (`[[serve.sampling]]`).
    pub sampling: Vec<hopscope_wire::SamplingRule>,
    /// Which points and interfaces are the network's boundary (`[[serve.boundary]]`).
    pub boundaries: Vec<crate::BoundaryRule>,
    /// The networks inside (`[serve] inside`; the private ranges when
    /// empty): traffic from elsewhere that leaves is transit.
    pub inside: Vec<Cidr>,
    /// MaxMind-format database for country (and AS when flows lack it).
    pub mmdb: Vec<PathBuf>,
    /// How often decoded flows are committed to the store: the most a
    /// crash can lose.
    pub flush_interval: Duration,
    /// Most flows decoded but not yet handed to the store, per receiver,
    /// before a hand-off is forced.
    pub batch_rows: usize,
    /// Told what each flush committed: how the pipeline's bus follows the
    /// store.
    pub on_commit: Option<crate::sink::CommitHook>,
    /// Interface names an SNMP poller keeps current, for flows whose
    /// exporter's options records name no interface.
    pub polled_interfaces: Option<Arc<crate::PolledInterfaces>>,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        Self {
            udp: Vec::new(),
            udp_sockets: std::thread::available_parallelism().map_or(1, |n| n.get()),
            udp_receive_buffer: 32 << 20,
            tcp: Vec::new(),
            tcp_limits: crate::TcpLimits::default(),
            session_limits: hopscope_wire::SessionLimits::default(),
            replay: Vec::new(),
            allow: Vec::new(),
            exporter_names: Vec::new(),
            networks: Vec::new(),
            sampling: Vec::new(),
            boundaries: Vec::new(),
            inside: Vec::new(),
            mmdb: Vec::new(),
            flush_interval: Duration::from_secs(5),
            batch_rows: 64 * 1024,
            on_commit: None,
            polled_interfaces: None,
        }
    }
}

/// A configured network: flows from or to it get its name, role and site.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkTag {
    pub cidr: Cidr,
    pub name: String,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub site: Option<String>,
}
