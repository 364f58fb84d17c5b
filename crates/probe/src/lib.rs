//! The probe: meters packets into flows at one observation point, selects
//! packets with a hash that every probe computes alike (PSAMP, RFC
//! 5475/5476), and exports flow records, packet reports and metadata as
//! IPFIX.
//!
//! Packets come from a [`PacketSource`] (pcap and pcapng files, or a live
//! interface through an AF_PACKET ring on Linux); each
//! frame is parsed by `hopscope-packet`, offered to the [`Selector`] and
//! metered by the [`FlowCache`]; the [`Meter`] ties these together and
//! yields Arrow batches of the schema crate's flow and packet-report tables,
//! which an [`Exporter`] sends as IPFIX to a file, a UDP or a TCP collector.
//! This crate owns no decoding and no storage.

mod cache;
mod export;
#[cfg(target_os = "linux")]
mod live;
mod meter;
mod process;
mod select;
mod source;
mod table;

pub use cache::{CacheConfig, EndReason, FlowCache, FlowKey};
pub use cache::{FORWARD, FlowState, REVERSE};
pub use export::{ExportCounters, ExportError, ExportTarget, Exporter, ProbeReport};
#[cfg(target_os = "linux")]
pub(crate) use live::MappedFile;
#[cfg(target_os = "linux")]
pub use live::{AfPacketSource, LiveConfig, stop_requested};
pub use meter::{Meter, MeterConfig, MeterStats};
pub use process::{MeteringProcess, ProcessError};
pub use select::{
    HashFunction, Profile, Selector, SelectorConfig, bob_hash, crc32, observation_point_id,
};
pub use source::{CaptureCounters, Frame, PacketSource, PcapFileSource, SourceError};
