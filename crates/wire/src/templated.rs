//! IPFIX (RFC 7011) and NetFlow v9 (RFC 3954): the two template-based
//! protocols share sets, templates, the pending buffer and record decoding;
//! they differ in headers, set ids and template record layout.

use std::sync::Arc;

use crate::cursor::{Cursor, Truncated};
use crate::decoder::{ErrorLog, MessageSummary, Protocol};
use crate::error::{DecodeError, ErrorKind};
use crate::output::DecodeOutput;
use crate::record::{MessageContext, decode_set};
use crate::session::{Counted, ExporterClock, PendingSet, Session, SessionLimits, StoredTemplate};
use crate::template::{FieldSpec, RecordKind, Template};
use hopscope_schema::FlowType;

pub(crate) const IPFIX_HEADER_LEN: usize = 16;
const V9_HEADER_LEN: usize = 20;

/// Per-protocol differences.
#[derive(Debug, Clone, Copy)]
struct Dialect {
    protocol: Protocol,
    header_len: usize,
    template_set: u16,
    options_set: u16,
}

const IPFIX: Dialect = Dialect {
    protocol: Protocol::Ipfix,
    header_len: IPFIX_HEADER_LEN,
    template_set: 2,
    options_set: 3,
};
const V9: Dialect = Dialect {
    protocol: Protocol::NetflowV9,
    header_len: V9_HEADER_LEN,
    template_set: 0,
    options_set: 1,
};

/// Decodes one IPFIX or NetFlow v9 message; `templates_held` is the
/// decoder's count of templates over all sessions, for its cap.
#[allow(clippy::too_many_arguments)]
pub(crate) fn decode(
    session: &mut Session,
    limits: &SessionLimits,
    templates_held: &mut usize,
    log: &mut ErrorLog<'_>,
    exporter: [u8; 16],
    received_ns: i64,
    message: &[u8],
    out: &mut DecodeOutput,
) -> Result<MessageSummary, DecodeError> {
    let ipfix = message.get(1) == Some(&10);
    let dialect = if ipfix { IPFIX } else { V9 };
    let mut summary = MessageSummary::new(dialect.protocol);
    let mut c = Cursor::new(message);
    let header = (|| -> Result<_, Truncated> {
        let _version = c.u16()?;
        let length_or_count = c.u16()?;
        if ipfix {
            let export_secs = c.u32()?;
            let seq = c.u32()?;
            let domain = c.u32()?;
            Ok((
                usize::from(length_or_count),
                i64::from(export_secs) * 1000,
                None,
                seq,
                domain,
            ))
        } else {
            let uptime = c.u32()?;
            let unix_secs = c.u32()?;
            let seq = c.u32()?;
            let source = c.u32()?;
            let export_ms = i64::from(unix_secs) * 1000;
            Ok((
                message.len(),
                export_ms,
                Some(export_ms - i64::from(uptime)),
                seq,
                source,
            ))
        }
    })();
    let Ok((length, export_time_ms, uptime_base_ms, sequence, domain_id)) = header else {
        return Err(log.report(
            &mut session.stats,
            None,
            None,
            None,
            0,
            ErrorKind::Truncated,
        ));
    };
    if length < dialect.header_len || length > message.len() {
        return Err(log.report(
            &mut session.stats,
            None,
            Some(domain_id),
            None,
            2,
            ErrorKind::BadMessageLength,
        ));
    }
    if length < message.len() {
        // Trailing bytes after the message: report, decode the message itself.
        log.report(
            &mut session.stats,
            Some(&mut summary),
            Some(domain_id),
            None,
            length,
            ErrorKind::BadMessageLength,
        );
    }
    let message = &message[..length];
    let ctx = MessageContext {
        received_ns,
        flow_type: if ipfix {
            FlowType::Ipfix as u8
        } else {
            FlowType::NetflowV9 as u8
        },
        exporter,
        domain: domain_id,
        sequence,
        export_time_ms,
        uptime_base_ms,
    };
    if session.domain_mut(domain_id, limits).is_none() {
        return Err(log.report(
            &mut session.stats,
            None,
            Some(domain_id),
            None,
            12,
            ErrorKind::TooManyDomains,
        ));
    }

    let mut offset = dialect.header_len;
    let mut data_records: u32 = 0;
    let mut sequence_known = true;
    while message.len() - offset >= 4 {
        let set_id = u16::from_be_bytes([message[offset], message[offset + 1]]);
        let set_len = usize::from(u16::from_be_bytes([
            message[offset + 2],
            message[offset + 3],
        ]));
        if !ipfix && set_len == 0 && message[offset..].iter().all(|&b| b == 0) {
            // NetFlow v9 exporters (PAN-OS) zero-fill the rest of the datagram
            offset = message.len();
            break;
        }
        if set_len < 4 || offset + set_len > message.len() {
            // No way to find the next set: the rest of the message is lost.
            log.report(
                &mut session.stats,
                Some(&mut summary),
                Some(domain_id),
                Some(set_id),
                offset,
                ErrorKind::BadSetLength,
            );
            sequence_known = false;
            offset = message.len();
            break;
        }
        let body = &message[offset + 4..offset + set_len];
        if set_id == dialect.template_set || set_id == dialect.options_set {
            template_set(
                session,
                limits,
                templates_held,
                log,
                &mut summary,
                dialect,
                &ctx,
                set_id,
                body,
                offset,
                out,
            );
        } else if set_id < 256 {
            log.report(
                &mut session.stats,
                Some(&mut summary),
                Some(domain_id),
                Some(set_id),
                offset,
                ErrorKind::ReservedSetId,
            );
        } else {
            match data_set(
                session,
                limits,
                log,
                &mut summary,
                &ctx,
                set_id,
                body,
                offset,
                out,
            ) {
                Some(n) => data_records += n,
                None => sequence_known = false,
            }
        }
        offset += set_len;
    }
    // NetFlow v9 exporters pad datagrams; in IPFIX a stray tail is an error.
    if ipfix && offset < message.len() {
        log.report(
            &mut session.stats,
            Some(&mut summary),
            Some(domain_id),
            None,
            offset,
            ErrorKind::BadSetLength,
        );
    }

    let stats = &mut session.stats;
    if let Some(domain) = session.domains.get_mut(&domain_id) {
        if ipfix {
            if sequence_known {
                domain.observe_records(
                    stats,
                    sequence,
                    data_records,
                    summary.options_records,
                    ExporterClock::Unknown,
                    Counted::Records,
                );
            } else {
                domain.sequence.resync();
            }
        } else {
            // v9 counts export packets, not records
            let clock = uptime_base_ms.map_or(ExporterClock::Unknown, ExporterClock::Boot);
            domain.observe_sequence(stats, sequence, 1, clock, Counted::Messages);
        }
    }
    Ok(summary)
}

#[allow(clippy::too_many_arguments)]
fn template_set(
    session: &mut Session,
    limits: &SessionLimits,
    templates_held: &mut usize,
    log: &mut ErrorLog<'_>,
    summary: &mut MessageSummary,
    dialect: Dialect,
    ctx: &MessageContext,
    set_id: u16,
    body: &[u8],
    set_offset: usize,
    out: &mut DecodeOutput,
) {
    let options = set_id == dialect.options_set;
    let ipfix = dialect.protocol == Protocol::Ipfix;
    let mut c = Cursor::new(body);
    while c.remaining() >= 4 {
        let record_offset = set_offset + 4 + c.position();
        let parsed = if ipfix {
            ipfix_template(&mut c, options)
        } else {
            v9_template(&mut c, options)
        };
        let report =
            |session: &mut Session, log: &mut ErrorLog<'_>, summary: &mut MessageSummary, kind| {
                log.report(
                    &mut session.stats,
                    Some(summary),
                    Some(ctx.domain),
                    Some(set_id),
                    record_offset,
                    kind,
                );
            };
        match parsed {
            Err(kind) => {
                report(session, log, summary, kind);
                return;
            }
            Ok(TemplateRecord::Padding) => return,
            Ok(TemplateRecord::Withdraw(id)) => {
                if !session.transport.is_stream() {
                    report(session, log, summary, ErrorKind::WithdrawalOverUdp);
                    continue;
                }
                let Some(domain) = session.domains.get_mut(&ctx.domain) else {
                    continue;
                };
                let before = domain.templates.len();
                let withdraw_all = ipfix && ((id == 2 && !options) || (id == 3 && options));
                if withdraw_all {
                    let keep_options = !options;
                    domain
                        .templates
                        .retain(|_, t| (t.template.kind == RecordKind::Options) == keep_options);
                } else {
                    domain.templates.remove(&id);
                }
                let removed = before - domain.templates.len();
                session.stats.templates_withdrawn += removed as u64;
                if removed == 0 {
                    report(session, log, summary, ErrorKind::UnknownWithdrawal);
                }
            }
            Ok(TemplateRecord::Define(template)) => {
                session.stats.templates_received += 1;
                // a new template is refused once its domain, its session or
                // the decoder holds as many as it may
                let new = session
                    .domain(ctx.domain)
                    .is_none_or(|d| d.template(template.id).is_none());
                let session_full =
                    new && session.template_count() >= limits.max_templates_per_session;
                let Some(domain) = session.domain_mut(ctx.domain, limits) else {
                    return;
                };
                let id = template.id;
                if new
                    && (domain.templates.len() >= limits.max_templates_per_domain
                        || session_full
                        || *templates_held >= limits.max_templates)
                {
                    report(session, log, summary, ErrorKind::TooManyTemplates);
                    continue;
                }
                if new {
                    *templates_held += 1;
                }
                let stored = domain
                    .templates
                    .entry(id)
                    .or_insert_with(|| StoredTemplate {
                        template: Arc::new(template.clone()),
                        refreshed_ns: ctx.received_ns,
                    });
                if !stored.template.same_layout(&template) {
                    stored.template = Arc::new(template);
                }
                stored.refreshed_ns = ctx.received_ns;
                drain_pending(session, limits, log, summary, ctx.domain, id, out);
            }
        }
    }
}

enum TemplateRecord {
    Define(Template),
    Withdraw(u16),
    Padding,
}

fn ipfix_template(c: &mut Cursor<'_>, options: bool) -> Result<TemplateRecord, ErrorKind> {
    let id = c.u16().map_err(|_| ErrorKind::Truncated)?;
    let count = c.u16().map_err(|_| ErrorKind::Truncated)?;
    if count == 0 {
        // RFC 7011 §8.1: a record with no fields withdraws; id 0 is padding.
        return Ok(if id == 0 {
            TemplateRecord::Padding
        } else {
            TemplateRecord::Withdraw(id)
        });
    }
    if id < 256 {
        return Err(ErrorKind::ReservedSetId);
    }
    let scope = if options {
        c.u16().map_err(|_| ErrorKind::Truncated)?
    } else {
        0
    };
    if options && (scope == 0 || scope > count) {
        return Err(ErrorKind::BadScope);
    }
    // never allocate by an untrusted count: at most what the bytes can hold
    let mut fields = Vec::with_capacity(usize::from(count).min(c.remaining() / 4));
    for _ in 0..count {
        let raw = c.u16().map_err(|_| ErrorKind::TemplateTooLong)?;
        let length = c.u16().map_err(|_| ErrorKind::TemplateTooLong)?;
        let enterprise = if raw & 0x8000 != 0 {
            c.u32().map_err(|_| ErrorKind::TemplateTooLong)?
        } else {
            0
        };
        fields.push(FieldSpec {
            enterprise,
            id: raw & 0x7fff,
            length,
        });
    }
    Ok(TemplateRecord::Define(if options {
        Template::options(id, scope, fields)
    } else {
        Template::new(id, 0, fields)
    }))
}

fn v9_template(c: &mut Cursor<'_>, options: bool) -> Result<TemplateRecord, ErrorKind> {
    let id = c.u16().map_err(|_| ErrorKind::Truncated)?;
    if id == 0 && c.remaining() < 4 {
        return Ok(TemplateRecord::Padding);
    }
    let (scope_fields, option_fields) = if options {
        let scope_len = c.u16().map_err(|_| ErrorKind::Truncated)?;
        let option_len = c.u16().map_err(|_| ErrorKind::Truncated)?;
        (usize::from(scope_len) / 4, usize::from(option_len) / 4)
    } else {
        (0, usize::from(c.u16().map_err(|_| ErrorKind::Truncated)?))
    };
    let count = scope_fields + option_fields;
    if count == 0 {
        return if id == 0 {
            Ok(TemplateRecord::Padding)
        } else {
            Err(ErrorKind::EmptyTemplate)
        };
    }
    if id < 256 {
        return Err(ErrorKind::ReservedSetId);
    }
    let mut fields = Vec::with_capacity(count.min(c.remaining() / 4));
    for _ in 0..count {
        let field_type = c.u16().map_err(|_| ErrorKind::TemplateTooLong)?;
        let length = c.u16().map_err(|_| ErrorKind::TemplateTooLong)?;
        fields.push(FieldSpec {
            enterprise: 0,
            id: field_type,
            length,
        });
    }
    if options {
        // v9 options records pad to 4 octets at the end of the template set
        let rest = c.remaining() % 4;
        let _ = c.skip(rest.min(c.remaining()));
        Ok(TemplateRecord::Define(Template::options(
            id,
            scope_fields as u16,
            fields,
        )))
    } else {
        Ok(TemplateRecord::Define(Template::new(id, 0, fields)))
    }
}

/// Decodes a data set; `None` when it waits for its template (record count unknown).
#[allow(clippy::too_many_arguments)]
fn data_set(
    session: &mut Session,
    limits: &SessionLimits,
    log: &mut ErrorLog<'_>,
    summary: &mut MessageSummary,
    ctx: &MessageContext,
    set_id: u16,
    body: &[u8],
    set_offset: usize,
    out: &mut DecodeOutput,
) -> Option<u32> {
    let udp = !session.transport.is_stream();
    let Session { domains, stats, .. } = &mut *session;
    let domain = domains.get_mut(&ctx.domain)?;
    let template = match domain.templates.get(&set_id) {
        Some(t) if udp && ctx.received_ns - t.refreshed_ns > limits.template_lifetime_ns => {
            domain.templates.remove(&set_id);
            log.report(
                stats,
                Some(summary),
                Some(ctx.domain),
                Some(set_id),
                set_offset,
                ErrorKind::TemplateExpired,
            );
            None
        }
        Some(t) => Some(Arc::clone(&t.template)),
        None => None,
    };
    let Some(template) = template else {
        hold_pending(session, limits, log, ctx, set_id, body, summary);
        return None;
    };
    let outcome = decode_set(
        &template,
        body,
        ctx,
        domain,
        out,
        &mut stats.sampling_unknown,
    );
    match template.kind {
        RecordKind::Flow => {
            summary.flows += outcome.records;
            stats.flow_records += u64::from(outcome.records);
        }
        RecordKind::PacketReport => {
            summary.packet_reports += outcome.records;
            stats.packet_reports += u64::from(outcome.records);
        }
        RecordKind::Options => {
            summary.options_records += outcome.records;
            stats.options_records += u64::from(outcome.records);
            stats.exporter_drops = stats.exporter_drops.saturating_add(outcome.exporter_drops);
            stats.lost_records = stats.lost_records.saturating_add(outcome.records_not_sent);
        }
    }
    if let Some((at, kind)) = outcome.error {
        log.report(
            stats,
            Some(summary),
            Some(ctx.domain),
            Some(set_id),
            set_offset + 4 + at,
            kind,
        );
    }
    Some(outcome.records)
}

fn hold_pending(
    session: &mut Session,
    limits: &SessionLimits,
    log: &mut ErrorLog<'_>,
    ctx: &MessageContext,
    set_id: u16,
    body: &[u8],
    summary: &mut MessageSummary,
) {
    while !session.pending.is_empty()
        && (session.pending.len() >= limits.max_pending_sets
            || session.pending_bytes + body.len() > limits.max_pending_bytes)
    {
        evict_oldest(session, log, ErrorKind::PendingEvicted, Some(summary));
    }
    if body.len() > limits.max_pending_bytes {
        log.report(
            &mut session.stats,
            Some(summary),
            Some(ctx.domain),
            Some(set_id),
            0,
            ErrorKind::PendingEvicted,
        );
        return;
    }
    session.pending_bytes += body.len();
    session.pending.push_back(PendingSet {
        domain: ctx.domain,
        template_id: set_id,
        flow_type: ctx.flow_type,
        sequence: ctx.sequence,
        export_time_ms: ctx.export_time_ms,
        uptime_base_ms: ctx.uptime_base_ms,
        received_ns: ctx.received_ns,
        body: body.to_vec(),
    });
}

fn evict_oldest(
    session: &mut Session,
    log: &mut ErrorLog<'_>,
    kind: ErrorKind,
    summary: Option<&mut MessageSummary>,
) {
    if let Some(p) = session.pending.pop_front() {
        session.pending_bytes -= p.body.len();
        log.protocol = if p.flow_type == FlowType::NetflowV9 as u8 {
            Protocol::NetflowV9
        } else {
            Protocol::Ipfix
        };
        log.report(
            &mut session.stats,
            summary,
            Some(p.domain),
            Some(p.template_id),
            0,
            kind,
        );
    }
}

/// Counts every held data set as never decodable (its template never came).
pub(crate) fn evict_all_pending(session: &mut Session, log: &mut ErrorLog<'_>) {
    while !session.pending.is_empty() {
        evict_oldest(session, log, ErrorKind::UnknownTemplate, None);
    }
}

/// Decodes the held data sets that were waiting for this template.
#[allow(clippy::too_many_arguments)]
fn drain_pending(
    session: &mut Session,
    limits: &SessionLimits,
    log: &mut ErrorLog<'_>,
    summary: &mut MessageSummary,
    domain: u32,
    template_id: u16,
    out: &mut DecodeOutput,
) {
    if !session
        .pending
        .iter()
        .any(|p| p.domain == domain && p.template_id == template_id)
    {
        return;
    }
    let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut session.pending)
        .into_iter()
        .partition(|p| p.domain == domain && p.template_id == template_id);
    session.pending = waiting.into();
    session.pending_bytes = session.pending.iter().map(|p| p.body.len()).sum();
    for p in ready {
        let ctx = MessageContext {
            received_ns: p.received_ns,
            flow_type: p.flow_type,
            exporter: hopscope_schema::ip_to_mapped(session.exporter.ip()),
            domain: p.domain,
            sequence: p.sequence,
            export_time_ms: p.export_time_ms,
            uptime_base_ms: p.uptime_base_ms,
        };
        data_set(
            session,
            limits,
            log,
            summary,
            &ctx,
            p.template_id,
            &p.body,
            0,
            out,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Decoder;
    use crate::session::Transport;

    fn addr() -> std::net::SocketAddr {
        "192.0.2.1:4739".parse().unwrap()
    }

    fn ipfix_message(seq: u32, sets: &[&[u8]]) -> Vec<u8> {
        let body: usize = sets.iter().map(|s| s.len()).sum();
        let mut m = Vec::new();
        m.extend_from_slice(&10u16.to_be_bytes());
        m.extend_from_slice(&((16 + body) as u16).to_be_bytes());
        m.extend_from_slice(&1_700_000_000u32.to_be_bytes());
        m.extend_from_slice(&seq.to_be_bytes());
        m.extend_from_slice(&7u32.to_be_bytes());
        for s in sets {
            m.extend_from_slice(s);
        }
        m
    }

    fn set(id: u16, body: &[u8]) -> Vec<u8> {
        let mut s = id.to_be_bytes().to_vec();
        s.extend_from_slice(&((body.len() + 4) as u16).to_be_bytes());
        s.extend_from_slice(body);
        s
    }

    fn template_256() -> Vec<u8> {
        // id 256, 3 fields: sourceIPv4Address, octetDeltaCount (reduced to 4), interfaceName (varlen)
        set(2, &[1, 0, 0, 3, 0, 8, 0, 4, 0, 1, 0, 4, 0, 82, 0xff, 0xff])
    }

    fn data_256(records: usize) -> Vec<u8> {
        let mut b = Vec::new();
        for i in 0..records {
            b.extend_from_slice(&[10, 0, 0, i as u8]);
            b.extend_from_slice(&(100 * i as u32).to_be_bytes());
            b.extend_from_slice(&[2, b'e', b'0']);
        }
        set(256, &b)
    }

    #[test]
    fn data_before_template_is_held_then_decoded() {
        let mut d = Decoder::new();
        let mut out = DecodeOutput::default();
        let s = d
            .decode(
                addr(),
                Transport::Udp,
                0,
                &ipfix_message(0, &[&data_256(2)]),
                &mut out,
            )
            .unwrap();
        assert_eq!(s.flows, 0);
        assert_eq!(d.totals().pending_sets, 1);
        let s = d
            .decode(
                addr(),
                Transport::Udp,
                1,
                &ipfix_message(2, &[&template_256()]),
                &mut out,
            )
            .unwrap();
        assert_eq!(s.flows, 2);
        assert_eq!(out.flows.len(), 2);
        assert_eq!(d.totals().pending_sets, 0);
        assert_eq!(d.totals().total_errors(), 0);
    }

    #[test]
    fn sequence_gap_is_telemetry_loss() {
        let mut d = Decoder::new();
        let mut out = DecodeOutput::default();
        d.decode(
            addr(),
            Transport::Udp,
            0,
            &ipfix_message(0, &[&template_256(), &data_256(3)]),
            &mut out,
        )
        .unwrap();
        // records 3..=7 never arrive
        d.decode(
            addr(),
            Transport::Udp,
            0,
            &ipfix_message(8, &[&data_256(1)]),
            &mut out,
        )
        .unwrap();
        assert_eq!(d.totals().lost_records, 5);
    }

    #[test]
    fn withdrawal_applies_over_tcp_and_is_ignored_over_udp() {
        let withdraw = set(2, &[1, 0, 0, 0]);
        for (transport, decoded) in [(Transport::Tcp, 0), (Transport::Udp, 1)] {
            let mut d = Decoder::new();
            let mut out = DecodeOutput::default();
            d.decode(
                addr(),
                transport,
                0,
                &ipfix_message(0, &[&template_256(), &withdraw]),
                &mut out,
            )
            .unwrap();
            d.decode(
                addr(),
                transport,
                0,
                &ipfix_message(0, &[&data_256(1)]),
                &mut out,
            )
            .unwrap();
            assert_eq!(out.flows.len(), decoded, "{transport:?}");
        }
    }

    #[test]
    fn bad_set_length_names_exporter_set_and_offset() {
        let mut d = Decoder::new();
        let mut out = DecodeOutput::default();
        let mut m = ipfix_message(0, &[&template_256()]);
        m.extend_from_slice(&[1, 0, 0, 200]); // set 256 claiming 200 octets
        let len = m.len() as u16;
        m[2..4].copy_from_slice(&len.to_be_bytes());
        let s = d.decode(addr(), Transport::Udp, 0, &m, &mut out).unwrap();
        assert_eq!(s.errors, 1);
        let e = d.recent_errors().back().unwrap();
        assert_eq!(e.kind, ErrorKind::BadSetLength);
        assert_eq!((e.set_id, e.offset), (Some(256), 36));
        assert!(e.to_string().contains("192.0.2.1:4739"), "{e}");
    }

    #[test]
    fn template_lifetime_expires_udp_templates() {
        let limits = SessionLimits {
            template_lifetime_ns: 10,
            ..Default::default()
        };
        let mut d = Decoder::with_limits(limits);
        let mut out = DecodeOutput::default();
        d.decode(
            addr(),
            Transport::Udp,
            0,
            &ipfix_message(0, &[&template_256()]),
            &mut out,
        )
        .unwrap();
        d.decode(
            addr(),
            Transport::Udp,
            100,
            &ipfix_message(0, &[&data_256(1)]),
            &mut out,
        )
        .unwrap();
        assert_eq!(out.flows.len(), 0);
        assert_eq!(d.totals().error_count(ErrorKind::TemplateExpired), 1);
    }

    /// Options template 300: scope samplerId (48), samplingInterval (34).
    fn sampler_options(sampler: u8, interval: u32) -> Vec<u8> {
        let mut b = vec![1, 44, 0, 2, 0, 1, 0, 48, 0, 1, 0, 34, 0, 4];
        let tpl = set(3, &b);
        b = vec![sampler];
        b.extend_from_slice(&interval.to_be_bytes());
        let mut out = tpl;
        out.extend_from_slice(&set(300, &b));
        out
    }

    /// Flow template 257 with samplerId, and one record of it.
    fn sampled_flow(sampler: u8) -> Vec<u8> {
        let mut out = set(2, &[1, 1, 0, 2, 0, 8, 0, 4, 0, 48, 0, 1]);
        out.extend_from_slice(&set(257, &[10, 0, 0, 1, sampler]));
        out
    }

    fn sampling_of(out: &mut DecodeOutput) -> Vec<(Option<u64>, u8)> {
        use arrow_array::Array;
        use arrow_array::cast::AsArray;
        use arrow_array::types::{UInt8Type, UInt64Type};
        let b = out.flows.finish().unwrap();
        let rate = b
            .column_by_name("sampling_rate")
            .unwrap()
            .as_primitive::<UInt64Type>()
            .clone();
        let source = b
            .column_by_name("sampling_rate_source")
            .unwrap()
            .as_primitive::<UInt8Type>()
            .clone();
        (0..b.num_rows())
            .map(|i| (rate.is_valid(i).then(|| rate.value(i)), source.value(i)))
            .collect()
    }

    #[test]
    fn sampling_rate_comes_from_options_scoped_by_sampler() {
        let mut d = Decoder::new();
        let mut out = DecodeOutput::default();
        // before any options: kept, marked unknown, counted
        d.decode(
            addr(),
            Transport::Udp,
            0,
            &ipfix_message(0, &[&sampled_flow(5)]),
            &mut out,
        )
        .unwrap();
        assert_eq!(d.totals().sampling_unknown, 1);
        d.decode(
            addr(),
            Transport::Udp,
            0,
            &ipfix_message(1, &[&sampler_options(5, 100), &sampler_options(6, 10)]),
            &mut out,
        )
        .unwrap();
        d.decode(
            addr(),
            Transport::Udp,
            0,
            &ipfix_message(3, &[&sampled_flow(5), &sampled_flow(6)]),
            &mut out,
        )
        .unwrap();
        let options = hopscope_schema::SamplingSource::Options as u8;
        assert_eq!(
            sampling_of(&mut out),
            vec![(None, 0), (Some(100), options), (Some(10), options)]
        );
        assert_eq!(d.totals().total_errors(), 0);
    }

    #[test]
    fn packet_reports_go_to_their_own_table() {
        // selectionSequenceId, observationTimeNanoseconds, digestHashValue (4 octets: reduced), ipTTL
        let tpl = set(
            2,
            &[
                1, 2, 0, 4, 1, 45, 0, 8, 1, 69, 0, 8, 1, 70, 0, 4, 0, 192, 0, 1,
            ],
        );
        let mut rec = 7u64.to_be_bytes().to_vec();
        rec.extend_from_slice(
            &crate::time::unix_ns_to_ntp(1_800_000_000_123_456_789).to_be_bytes(),
        );
        rec.extend_from_slice(&0xdead_beefu32.to_be_bytes());
        rec.push(61);
        let mut d = Decoder::new();
        let mut out = DecodeOutput::default();
        let s = d
            .decode(
                addr(),
                Transport::Udp,
                0,
                &ipfix_message(0, &[&tpl, &set(258, &rec)]),
                &mut out,
            )
            .unwrap();
        assert_eq!((s.flows, s.packet_reports), (0, 1));
        let batch = out.packet_reports.finish().unwrap();
        use arrow_array::cast::AsArray;
        use arrow_array::types::{TimestampNanosecondType, UInt64Type};
        assert_eq!(
            batch
                .column_by_name("digest")
                .unwrap()
                .as_primitive::<UInt64Type>()
                .value(0),
            0xdead_beef
        );
        assert_eq!(
            batch
                .column_by_name("observation_time_ns")
                .unwrap()
                .as_primitive::<TimestampNanosecondType>()
                .value(0),
            1_800_000_000_123_456_789
        );
    }

    #[test]
    fn an_exporter_cannot_grow_its_state_without_bound() {
        let limits = SessionLimits {
            max_domains: 2,
            max_templates_per_domain: 1,
            ..Default::default()
        };
        let mut d = Decoder::with_limits(limits);
        let mut out = DecodeOutput::default();
        for domain in 0..3u32 {
            let mut m = ipfix_message(0, &[&template_256()]);
            m[12..16].copy_from_slice(&domain.to_be_bytes());
            let _ = d.decode(addr(), Transport::Udp, 0, &m, &mut out);
        }
        assert_eq!(d.totals().error_count(ErrorKind::TooManyDomains), 1);
        // a second template in a full domain is refused and counted
        let second = set(2, &[1, 1, 0, 1, 0, 8, 0, 4]);
        let mut m = ipfix_message(0, &[&second]);
        m[12..16].copy_from_slice(&0u32.to_be_bytes());
        d.decode(addr(), Transport::Udp, 0, &m, &mut out).unwrap();
        assert_eq!(d.totals().error_count(ErrorKind::TooManyTemplates), 1);
        assert_eq!(d.totals().templates_active, 2);
    }

    /// One template set defining `count` templates from id 256 on.
    fn templates(count: u16) -> Vec<u8> {
        let mut body = Vec::new();
        for id in 256..256 + count {
            body.extend_from_slice(&id.to_be_bytes());
            body.extend_from_slice(&[0, 1, 0, 8, 0, 4]);
        }
        set(2, &body)
    }

    #[test]
    fn templates_are_capped_per_session_and_in_all() {
        let limits = SessionLimits {
            max_templates_per_session: 100,
            max_templates: 250,
            ..Default::default()
        };
        let mut d = Decoder::with_limits(limits);
        let mut out = DecodeOutput::default();
        // one exporter spreads 40 templates over each of 10 domains
        for domain in 0..10u32 {
            let mut m = ipfix_message(0, &[&templates(40)]);
            m[12..16].copy_from_slice(&domain.to_be_bytes());
            let _ = d.decode(addr(), Transport::Udp, 0, &m, &mut out);
        }
        assert_eq!(d.totals().templates_active, 100);
        assert_eq!(d.totals().error_count(ErrorKind::TooManyTemplates), 300);
        // a template sent again is a refresh, not a new one
        let mut m = ipfix_message(1, &[&templates(40)]);
        m[12..16].copy_from_slice(&0u32.to_be_bytes());
        d.decode(addr(), Transport::Udp, 0, &m, &mut out).unwrap();
        assert_eq!(d.totals().error_count(ErrorKind::TooManyTemplates), 300);
        // other exporters fill the decoder's cap
        for port in 1..=3u16 {
            let other = std::net::SocketAddr::new(addr().ip(), addr().port() + port);
            let m = ipfix_message(0, &[&templates(100)]);
            let _ = d.decode(other, Transport::Udp, 0, &m, &mut out);
        }
        assert_eq!(d.totals().templates_active, 250);
    }
}
