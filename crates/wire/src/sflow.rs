//! sFlow v5 (sflow.org, version 5): flow samples become flow rows (one
//! sampled packet each, with the sampling rate of its sample), counter
//! samples become interface-counter rows.

use hopscope_packet::{LinkType, parse_frame};
use hopscope_schema::{
    FlowRecord, FlowType, InterfaceCounterRecord, SamplingSource, ipv4_mapped, mac_to_u64,
};

use crate::cursor::{Cursor, Truncated};
use crate::decoder::{ErrorLog, MessageSummary, Protocol};
use crate::error::{DecodeError, ErrorKind};
use crate::output::DecodeOutput;
use crate::session::{Counted, ExporterClock, SequenceTracker, Session, SessionLimits};

/// More samples than fit in a 64 KiB datagram is a corrupt header.
const MAX_SAMPLES: u32 = 4096;

pub(crate) fn decode(
    session: &mut Session,
    limits: &SessionLimits,
    log: &mut ErrorLog<'_>,
    received_ns: i64,
    message: &[u8],
    out: &mut DecodeOutput,
) -> Result<MessageSummary, DecodeError> {
    let mut summary = MessageSummary::new(Protocol::SFlow5);
    let mut c = Cursor::new(message);
    let header = (|| {
        let _version = c.u32()?;
        let agent = address(&mut c)?;
        Ok::<_, Truncated>((agent, c.u32()?, c.u32()?, c.u32()?, c.u32()?))
    })();
    let (agent, sub_agent, sequence, uptime, samples) = match header {
        Ok((Ok(agent), sub, seq, up, n)) => (agent, sub, seq, up, n),
        Ok((Err(()), ..)) => {
            return Err(log.report(
                &mut session.stats,
                None,
                None,
                None,
                4,
                ErrorKind::UnknownAddressType,
            ));
        }
        Err(_) => {
            return Err(log.report(
                &mut session.stats,
                None,
                None,
                None,
                0,
                ErrorKind::Truncated,
            ));
        }
    };
    if samples > MAX_SAMPLES {
        return Err(log.report(
            &mut session.stats,
            None,
            Some(sub_agent),
            None,
            c.position() - 4,
            ErrorKind::BadSample,
        ));
    }
    if session.domain_mut(sub_agent, limits).is_none() {
        return Err(log.report(
            &mut session.stats,
            None,
            Some(sub_agent),
            None,
            0,
            ErrorKind::TooManyDomains,
        ));
    }
    let datagram = Datagram {
        agent,
        sub_agent,
        sequence,
        received_ns,
    };
    for _ in 0..samples {
        let sample_offset = c.position();
        let (format, body) = match (c.u32(), c.u32()) {
            (Ok(format), Ok(len)) => match c.bytes(len as usize) {
                Ok(body) => (format, body),
                Err(_) => {
                    log.report(
                        &mut session.stats,
                        Some(&mut summary),
                        Some(sub_agent),
                        None,
                        sample_offset,
                        ErrorKind::BadSample,
                    );
                    break;
                }
            },
            _ => {
                log.report(
                    &mut session.stats,
                    Some(&mut summary),
                    Some(sub_agent),
                    None,
                    sample_offset,
                    ErrorKind::Truncated,
                );
                break;
            }
        };
        let result = match format {
            1 => flow_sample(session, &datagram, body, false, out, &mut summary),
            3 => flow_sample(session, &datagram, body, true, out, &mut summary),
            2 => counter_sample(session, &datagram, body, false, out, &mut summary),
            4 => counter_sample(session, &datagram, body, true, out, &mut summary),
            _ => Ok(()), // enterprise sample formats: skipped by their length
        };
        if result.is_err() {
            log.report(
                &mut session.stats,
                Some(&mut summary),
                Some(sub_agent),
                None,
                sample_offset,
                ErrorKind::BadSample,
            );
        }
    }
    let Session { domains, stats, .. } = session;
    if let Some(domain) = domains.get_mut(&sub_agent) {
        let clock = ExporterClock::Uptime(uptime);
        domain.observe_sequence(stats, sequence, 1, clock, Counted::Messages);
    }
    Ok(summary)
}

struct Datagram {
    agent: [u8; 16],
    sub_agent: u32,
    sequence: u32,
    received_ns: i64,
}

/// An sFlow address: type 1 IPv4, 2 IPv6; `Err(())` for any other type.
fn address(c: &mut Cursor<'_>) -> Result<Result<[u8; 16], ()>, Truncated> {
    Ok(match c.u32()? {
        1 => {
            let b = c.bytes(4)?;
            Ok(ipv4_mapped([b[0], b[1], b[2], b[3]]))
        }
        2 => Ok(c.bytes(16)?.try_into().map_err(|_| Truncated)?),
        _ => Err(()),
    })
}

fn flow_sample(
    session: &mut Session,
    dg: &Datagram,
    body: &[u8],
    expanded: bool,
    out: &mut DecodeOutput,
    summary: &mut MessageSummary,
) -> Result<(), Truncated> {
    let mut c = Cursor::new(body);
    let sample_seq = c.u32()?;
    let source_id = if expanded {
        (c.u32()? << 24) | (c.u32()? & 0x00ff_ffff)
    } else {
        c.u32()?
    };
    let rate = c.u32()?;
    let _pool = c.u32()?;
    let drops = c.u32()?;
    let (input, output) = if expanded {
        let (in_fmt, in_val, out_fmt, out_val) = (c.u32()?, c.u32()?, c.u32()?, c.u32()?);
        (
            (in_fmt == 0).then_some(in_val),
            (out_fmt == 0).then_some(out_val),
        )
    } else {
        let (i, o) = (c.u32()?, c.u32()?);
        // top two bits: 0 = ifIndex, 1 = discarded, 2 = several interfaces
        (
            (i >> 30 == 0).then_some(i & 0x3fff_ffff),
            (o >> 30 == 0).then_some(o & 0x3fff_ffff),
        )
    };
    let records = c.u32()?;
    let mut row = FlowRecord {
        time_received_ns: Some(dg.received_ns),
        time_flow_start_ns: Some(dg.received_ns),
        time_flow_end_ns: Some(dg.received_ns),
        flow_type: Some(FlowType::SFlow5 as u8),
        sequence_num: Some(dg.sequence),
        sampler_address: Some(dg.agent),
        observation_domain_id: Some(dg.sub_agent),
        in_if: input,
        out_if: output,
        packets: Some(1),
        sampling_rate: (rate > 0).then_some(u64::from(rate)),
        sampling_rate_source: Some(if rate > 0 {
            SamplingSource::Header
        } else {
            SamplingSource::Unknown
        } as u8),
        ..FlowRecord::default()
    };
    for _ in 0..records.min(1024) {
        let format = c.u32()?;
        let len = c.u32()? as usize;
        let data = c.bytes(len)?;
        flow_record(format, data, &mut row)?;
    }
    let stats = &mut session.stats;
    if rate == 0 {
        stats.sampling_unknown += 1;
    }
    if let Some(domain) = session.domains.get_mut(&dg.sub_agent) {
        let seen = domain.sflow_drops.entry(source_id).or_insert(drops);
        stats.exporter_drops += u64::from(drops.wrapping_sub(*seen));
        *seen = drops;
        let event = domain
            .sflow_samples
            .entry(source_id)
            .or_insert_with(SequenceTracker::default)
            .observe(sample_seq, 1);
        domain.count(stats, event, Counted::Records);
    }
    out.flows.append(&row);
    stats.flow_records += 1;
    summary.flows += 1;
    Ok(())
}

fn flow_record(format: u32, data: &[u8], row: &mut FlowRecord) -> Result<(), Truncated> {
    let mut c = Cursor::new(data);
    match format {
        // raw packet header
        1 => {
            let protocol = c.u32()?;
            let frame_length = c.u32()?;
            let _stripped = c.u32()?;
            let header_len = c.u32()? as usize;
            let header = c.bytes(header_len)?;
            row.bytes = Some(u64::from(frame_length));
            let link = match protocol {
                1 => Some(LinkType::Ethernet),
                11 | 12 => Some(LinkType::RawIp),
                _ => None,
            };
            if let Some(link) = link {
                let p = parse_frame(link, header);
                row.src_mac = p.src_mac.map(mac_to_u64);
                row.dst_mac = p.dst_mac.map(mac_to_u64);
                row.src_vlan = row.src_vlan.or(p.vlan);
                row.ip_version = p.ip_version;
                row.src_addr = p.src_addr;
                row.dst_addr = p.dst_addr;
                row.proto = p.proto;
                row.minimum_ttl = p.ttl;
                row.maximum_ttl = p.ttl;
                row.ip_tos = p.tos;
                row.src_port = p.src_port;
                row.dst_port = p.dst_port;
                row.tcp_flags = p.tcp_flags;
                row.icmp_type = p.icmp_type;
                row.icmp_code = p.icmp_code;
                row.ipv6_flow_label = p.flow_label.filter(|_| p.ip_version == Some(6));
                row.mpls_top_label = p.mpls_top_label;
            }
        }
        // sampled IPv4 / IPv6
        3 | 4 => {
            let length = c.u32()?;
            let proto = c.u32()?;
            let (src, dst) = if format == 3 {
                let s = c.bytes(4)?;
                let d = c.bytes(4)?;
                (
                    ipv4_mapped([s[0], s[1], s[2], s[3]]),
                    ipv4_mapped([d[0], d[1], d[2], d[3]]),
                )
            } else {
                (
                    c.bytes(16)?.try_into().map_err(|_| Truncated)?,
                    c.bytes(16)?.try_into().map_err(|_| Truncated)?,
                )
            };
            let (sp, dp, flags, tos) = (c.u32()?, c.u32()?, c.u32()?, c.u32()?);
            row.bytes = row.bytes.or(Some(u64::from(length)));
            row.ip_version = row.ip_version.or(Some(if format == 3 { 4 } else { 6 }));
            row.proto = row.proto.or(Some(proto as u8));
            row.src_addr = row.src_addr.or(Some(src));
            row.dst_addr = row.dst_addr.or(Some(dst));
            row.src_port = row.src_port.or(Some(sp as u16));
            row.dst_port = row.dst_port.or(Some(dp as u16));
            row.tcp_flags = row.tcp_flags.or(Some(flags as u16));
            row.ip_tos = row.ip_tos.or(Some(tos as u8));
        }
        // extended switch
        1001 => {
            row.src_vlan = Some(c.u32()? as u16);
            let _src_priority = c.u32()?;
            row.dst_vlan = Some(c.u32()? as u16);
        }
        // extended router
        1002 => {
            row.next_hop = address(&mut c)?.ok();
            row.src_net = Some(c.u32()? as u8);
            row.dst_net = Some(c.u32()? as u8);
        }
        // extended gateway
        1003 => {
            row.bgp_next_hop = address(&mut c)?.ok();
            let own_as = c.u32()?;
            row.src_as = Some(c.u32()?);
            let _src_peer_as = c.u32()?;
            let segments = c.u32()?;
            let mut last_as = None;
            for _ in 0..segments.min(256) {
                let _kind = c.u32()?;
                let count = c.u32()?;
                for _ in 0..count.min(1024) {
                    last_as = Some(c.u32()?);
                }
            }
            // an empty path means the destination is in the agent's own AS
            row.dst_as = Some(last_as.unwrap_or(own_as));
        }
        _ => {}
    }
    Ok(())
}

fn counter_sample(
    session: &mut Session,
    dg: &Datagram,
    body: &[u8],
    expanded: bool,
    out: &mut DecodeOutput,
    summary: &mut MessageSummary,
) -> Result<(), Truncated> {
    let mut c = Cursor::new(body);
    let sample_seq = c.u32()?;
    if expanded {
        c.skip(8)?;
    } else {
        c.skip(4)?;
    }
    let records = c.u32()?;
    for _ in 0..records.min(1024) {
        let format = c.u32()?;
        let len = c.u32()? as usize;
        let data = c.bytes(len)?;
        if format != 1 {
            continue; // Ethernet, VLAN, processor... counters: not in the schema yet
        }
        let mut r = Cursor::new(data);
        let mut u32f = || r.u32().map(u64::from);
        let if_index = u32f()? as u32;
        let if_type = u32f()? as u32;
        let if_speed = (u32f()? << 32) | u32f()?;
        let if_direction = u32f()? as u32;
        let if_status = u32f()? as u32;
        let in_octets = (u32f()? << 32) | u32f()?;
        let row = InterfaceCounterRecord {
            time_received_ns: Some(dg.received_ns),
            sampler_address: Some(dg.agent),
            observation_domain_id: Some(dg.sub_agent),
            sequence_num: Some(sample_seq),
            if_index: Some(if_index),
            if_type: Some(if_type),
            if_speed: Some(if_speed),
            if_direction: Some(if_direction),
            if_status: Some(if_status),
            in_octets: Some(in_octets),
            in_ucast_pkts: Some(u32f()?),
            in_multicast_pkts: Some(u32f()?),
            in_broadcast_pkts: Some(u32f()?),
            in_discards: Some(u32f()?),
            in_errors: Some(u32f()?),
            in_unknown_protos: Some(u32f()?),
            out_octets: Some((u32f()? << 32) | u32f()?),
            out_ucast_pkts: Some(u32f()?),
            out_multicast_pkts: Some(u32f()?),
            out_broadcast_pkts: Some(u32f()?),
            out_discards: Some(u32f()?),
            out_errors: Some(u32f()?),
            promiscuous_mode: Some(u32f()? as u32),
        };
        out.interface_counters.append(&row);
        session.stats.counter_records += 1;
        summary.counter_records += 1;
    }
    Ok(())
}
