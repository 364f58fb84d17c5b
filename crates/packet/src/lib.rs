//! L2–L4 packet parsing: from a captured frame to the fields a flow record
//! needs (MACs, VLAN, addresses, protocol, ports, TTL, TCP flags, ICMP type).
//!
//! The parser works on borrowed bytes, never allocates and never panics; a
//! frame it cannot follow to the end yields what it found so far plus the
//! reason it stopped. It is used by the sFlow decoder (sampled packet
//! headers) and by the probe. It owns no flow state: keys, caches and
//! selection hashes live in the crates that use it.

#![forbid(unsafe_code)]

pub mod bpf;
mod parse;
pub mod pcap;

pub use parse::{
    LinkType, PacketSummary, StopReason, Tunnel, TunnelKind, parse_frame, parse_frame_inner,
};
