//! NetFlow v5: a fixed 24-octet header and 48-octet records.

use hopscope_schema::{FlowRecord, FlowType, SamplingSource, ipv4_mapped};

use crate::cursor::Cursor;
use crate::decoder::{ErrorLog, MessageSummary, Protocol};
use crate::error::{DecodeError, ErrorKind};
use crate::output::DecodeOutput;
use crate::session::{Counted, ExporterClock, Session, SessionLimits};

const HEADER_LEN: usize = 24;
const RECORD_LEN: usize = 48;
/// Cisco's limit; a larger count is a corrupt header.
const MAX_RECORDS: usize = 30;

pub(crate) fn decode(
    session: &mut Session,
    limits: &SessionLimits,
    log: &mut ErrorLog<'_>,
    exporter: [u8; 16],
    received_ns: i64,
    message: &[u8],
    out: &mut DecodeOutput,
) -> Result<MessageSummary, DecodeError> {
    let mut summary = MessageSummary::new(Protocol::NetflowV5);
    if message.len() < HEADER_LEN {
        return Err(log.report(
            &mut session.stats,
            None,
            None,
            None,
            0,
            ErrorKind::Truncated,
        ));
    }
    let mut c = Cursor::new(message);
    let header = (|| {
        c.skip(2)?;
        Ok::<_, crate::cursor::Truncated>((
            c.u16()?,
            c.u32()?,
            c.u32()?,
            c.u32()?,
            c.u32()?,
            c.u8()?,
            c.u8()?,
            c.u16()?,
        ))
    })();
    let Ok((count, uptime, secs, nsecs, sequence, engine_type, engine_id, sampling)) = header
    else {
        return Err(log.report(
            &mut session.stats,
            None,
            None,
            None,
            0,
            ErrorKind::Truncated,
        ));
    };
    let count = usize::from(count);
    let domain_id = u32::from(engine_type) << 8 | u32::from(engine_id);
    if count > MAX_RECORDS || message.len() < HEADER_LEN + count * RECORD_LEN {
        return Err(log.report(
            &mut session.stats,
            None,
            Some(domain_id),
            None,
            2,
            ErrorKind::BadMessageLength,
        ));
    }
    let used = HEADER_LEN + count * RECORD_LEN;
    if message.len() > used {
        // a datagram holds one message: trailing bytes are reported, the records kept
        log.report(
            &mut session.stats,
            Some(&mut summary),
            Some(domain_id),
            None,
            used,
            ErrorKind::BadMessageLength,
        );
    }
    let export_ms = i64::from(secs) * 1000 + i64::from(nsecs) / 1_000_000;
    let interval = u64::from(sampling & 0x3fff);
    let (rate, source) = if interval > 0 {
        (Some(interval), SamplingSource::Header)
    } else {
        (None, SamplingSource::Unknown)
    };
    let uptime_to_ns = |t: u32| -> i64 {
        // how long before export the uptime clock read t, tolerating its wrap
        let back = uptime.wrapping_sub(t) as i32;
        (export_ms - i64::from(back)) * 1_000_000
    };
    for i in 0..count {
        let r = &message[HEADER_LEN + i * RECORD_LEN..HEADER_LEN + (i + 1) * RECORD_LEN];
        let u16_at = |o: usize| u16::from_be_bytes([r[o], r[o + 1]]);
        let u32_at = |o: usize| u32::from_be_bytes([r[o], r[o + 1], r[o + 2], r[o + 3]]);
        let row = FlowRecord {
            time_received_ns: Some(received_ns),
            flow_type: Some(FlowType::NetflowV5 as u8),
            sequence_num: Some(sequence),
            sampler_address: Some(exporter),
            observation_domain_id: Some(domain_id),
            src_addr: Some(ipv4_mapped([r[0], r[1], r[2], r[3]])),
            dst_addr: Some(ipv4_mapped([r[4], r[5], r[6], r[7]])),
            next_hop: Some(ipv4_mapped([r[8], r[9], r[10], r[11]])),
            in_if: Some(u32::from(u16_at(12))),
            out_if: Some(u32::from(u16_at(14))),
            packets: Some(u64::from(u32_at(16))),
            bytes: Some(u64::from(u32_at(20))),
            time_flow_start_ns: Some(uptime_to_ns(u32_at(24))),
            time_flow_end_ns: Some(uptime_to_ns(u32_at(28))),
            src_port: Some(u16_at(32)),
            dst_port: Some(u16_at(34)),
            tcp_flags: Some(u16::from(r[37])),
            proto: Some(r[38]),
            ip_tos: Some(r[39]),
            src_as: Some(u32::from(u16_at(40))),
            dst_as: Some(u32::from(u16_at(42))),
            src_net: Some(r[44]),
            dst_net: Some(r[45]),
            ip_version: Some(4),
            sampling_rate: rate,
            sampling_rate_source: Some(source as u8),
            ..FlowRecord::default()
        };
        out.flows.append(&row);
    }
    let records = count as u32;
    summary.flows = records;
    session.stats.flow_records += u64::from(records);
    if rate.is_none() {
        session.stats.sampling_unknown += u64::from(records);
    }
    if session.domain_mut(domain_id, limits).is_some() {
        let Session { domains, stats, .. } = session;
        if let Some(domain) = domains.get_mut(&domain_id) {
            let boot_ms = i64::from(secs) * 1000 + i64::from(nsecs / 1_000_000) - i64::from(uptime);
            domain.observe_sequence(
                stats,
                sequence,
                records,
                ExporterClock::Boot(boot_ms),
                Counted::Records,
            );
        }
    }
    Ok(summary)
}
