//! The wire formats of flow export: IPFIX (RFC 7011, with RFC 5103 biflows,
//! RFC 6313 lists and RFC 5655 files), NetFlow v9 and v5, and sFlow v5.
//!
//! Decoding goes straight into the Arrow column builders of
//! `hopscope-schema`: a template is compiled once into a field plan, and each
//! data record walks that plan into a reused row, so no record allocates.
//! Every exporter's state (templates scoped by transport session and domain,
//! sequence numbers, sampling rates, interface names) lives in a
//! [`Session`], and every byte that cannot be decoded is counted by reason in
//! its [`ExporterStats`] and reported with the exporter, set and offset.
//!
//! The crate also encodes: [`encoder`] turns flow batches into IPFIX messages
//! and [`file`] reads and writes IPFIX files. It does no I/O on sockets and
//! keeps no data beyond the state the protocols require.

#![forbid(unsafe_code)]

mod cursor;
mod decoder;
pub mod encoder;
mod error;
pub mod file;
mod flow_plan;
pub mod ie;
pub mod lists;
mod netflow_v5;
mod output;
mod record;
mod sampling;
mod section;
mod session;
mod sflow;
mod snapshot;
pub mod template;
mod templated;
pub mod time;

pub use cursor::Truncated;
pub use decoder::{Decoder, Evictions, MessageSummary, Protocol};
pub use error::{DecodeError, ErrorKind};
pub use output::DecodeOutput;
pub use sampling::SamplingRule;
pub use session::{
    DomainState, ExporterStats, PointClock, SKIPPED_FORMATS_KEPT, SequenceEvent, SequenceTracker,
    Session, SessionLimits, SkippedFormat, Transport,
};
pub use snapshot::{DomainSnapshot, SessionSnapshot, TemplateSnapshot};
