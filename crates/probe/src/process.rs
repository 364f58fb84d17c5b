//! A metering process: one observation point's meter and the exporter it
//! feeds, the unit that `hopscope probe` runs per interface and `hopscope
//! demo` per simulated device port.

use arrow_schema::ArrowError;

use hopscope_wire::PointClock;

use crate::{ExportError, Exporter, Meter, ProbeReport};

/// Why exporting what the meter had ready failed.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("building a batch: {0}")]
    Batch(#[from] ArrowError),
    #[error(transparent)]
    Export(#[from] ExportError),
}

/// A meter, its exporter, and the observation point they speak for.
#[derive(Debug)]
pub struct MeteringProcess {
    pub meter: Meter,
    pub exporter: Exporter,
    pub observation_point: String,
    pub observation_point_id: u64,
    /// The clock the point's timestamps read, announced with its name.
    pub clock: Option<PointClock>,
}

impl MeteringProcess {
    /// Encodes and sends what the meter has ready.
    pub fn export(&mut self, now_secs: u32) -> Result<(), ProcessError> {
        if self.meter.pending_flows() > 0 {
            let flows = self.meter.take_flows()?;
            self.exporter.export_flows(&flows, now_secs)?;
        }
        if self.meter.pending_reports() > 0 {
            let reports = self.meter.take_reports()?;
            self.exporter.export_reports(&reports, now_secs)?;
        }
        self.exporter.flush()?;
        Ok(())
    }

    /// Sends the options records (selector, observation point name,
    /// reliability statistics); `capture_drops` are packets lost before the
    /// meter saw them, counted with those it could not meter.
    pub fn export_options(&mut self, capture_drops: u64, now_secs: u32) -> Result<(), ExportError> {
        let s = &self.meter.stats;
        self.exporter.export_options(
            &ProbeReport {
                observation_point_id: self.observation_point_id,
                observation_point_name: &self.observation_point,
                clock: self.clock,
                metering_process_id: 1,
                selector: self.meter.selector(),
                // missed, not left out by choice: frames that are not IP
                // (ARP) or do not parse are the metering filter's, said
                // apart, so that a collector does not read them as reports
                // it will never get
                ignored_packets: capture_drops,
                left_out: (s.frames, s.not_ip + s.malformed + s.filtered),
                flows_exported: s.flows_exported,
            },
            now_secs,
        );
        self.exporter.flush()
    }
}
