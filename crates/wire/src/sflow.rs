//! sFlow v5 (sflow.org, version 5): flow samples become flow rows (one
//! sampled packet each, with the sampling rate of its sample), counter
//! samples become interface-counter rows.

use hopscope_packet::LinkType;
use hopscope_schema::{FlowRecord, FlowType, InterfaceCounterRecord, SamplingSource, ipv4_mapped};

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
            // enterprise sample formats: skipped by their length, counted
            other => {
                session.skip("sflow sample", other);
                Ok(())
            }
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
    // an interface is a format (0 ifIndex, 1 discarded with a reason, 2
    // several interfaces) and a value: 2 + 30 bits, or two words expanded
    let (input, (out_format, out_value)) = if expanded {
        let (in_fmt, in_val, out_fmt, out_val) = (c.u32()?, c.u32()?, c.u32()?, c.u32()?);
        ((in_fmt == 0).then_some(in_val), (out_fmt, out_val))
    } else {
        let (i, o) = (c.u32()?, c.u32()?);
        (
            (i >> 30 == 0).then_some(i & 0x3fff_ffff),
            (o >> 30, o & 0x3fff_ffff),
        )
    };
    let output = (out_format == 0).then_some(out_value);
    let forwarding_status = (out_format == 1).then(|| dropped_status(out_value));
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
        forwarding_status,
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
        if !flow_record(format, data, &mut row)? {
            session.skip("sflow flow", format);
        }
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

/// The forwardingStatus (IE 89: status in the top two of eight bits,
/// reason below) of a packet sFlow says was discarded, from sFlow's reason:
/// an ICMP unreachable code (0-255), or 256 unknown, 257 TTL exceeded, 258
/// ACL, 259 no buffer space, 260 RED, 261 traffic shaping or rate limiting,
/// 262 packet too big (for protocols without ICMP).
fn dropped_status(reason: u32) -> u32 {
    const DROPPED: u32 = 0b10 << 6;
    let iana_reason = match reason {
        // network, host, protocol, port unreachable; unknown network, host
        0..=3 | 6 | 7 => 3, // unroutable
        4 | 262 => 5,       // fragmentation needed and DF set
        // communication administratively prohibited (and for network, host)
        9 | 10 | 13 | 258 => 1, // ACL deny
        257 => 9,               // bad TTL
        260 => 11,              // WRED
        261 => 10,              // policer
        _ => 0,                 // unknown
    };
    DROPPED | iana_reason
}

/// An 802.1Q VLAN id, of 12 bits: sFlow says "unknown" with 0xFFFFFFFF,
/// which is no VLAN 65535.
fn vlan(value: u32) -> Option<u16> {
    u16::try_from(value).ok().filter(|&v| v < 4096)
}

/// Decodes one flow record into `row`; `false` for a format it does not read.
fn flow_record(format: u32, data: &[u8], row: &mut FlowRecord) -> Result<bool, Truncated> {
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
                crate::section::fill_flow(row, link, header);
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
            // "unknown" leaves what the frame's own tag said
            row.src_vlan = vlan(c.u32()?).or(row.src_vlan);
            let _src_priority = c.u32()?;
            row.dst_vlan = vlan(c.u32()?).or(row.dst_vlan);
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
        _ => return Ok(false),
    }
    Ok(true)
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
            // Ethernet, VLAN, processor... counters: not in the schema yet
            session.skip("sflow counters", format);
            continue;
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
            counter_source: Some(hopscope_schema::COUNTER_SOURCE_SFLOW),
        };
        out.interface_counters.append(&row);
        session.stats.counter_records += 1;
        summary.counter_records += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Decoder, Transport};
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{UInt16Type, UInt32Type};

    fn words(out: &mut Vec<u8>, values: &[u32]) {
        for v in values {
            out.extend_from_slice(&v.to_be_bytes());
        }
    }

    /// A record or sample: its data format, its length, its words.
    fn item(out: &mut Vec<u8>, format: u32, body: &[u32]) {
        words(out, &[format, 4 * body.len() as u32]);
        words(out, body);
    }

    /// One datagram: a discarded packet in a compact sample (output
    /// 0x40000000 + 257, TTL exceeded) with "unknown" VLANs and a user
    /// record (1004) the decoder does not read; a packet discarded by an
    /// ACL (258) in an expanded sample; an enterprise sample format.
    fn datagram() -> Vec<u8> {
        let mut d = Vec::new();
        words(&mut d, &[5, 1, 0xc000_0201, 0, 1, 1000, 3]);
        let mut records = Vec::new();
        item(&mut records, 1001, &[u32::MAX, 0, u32::MAX, 0]);
        item(&mut records, 1004, &[0, 0]);
        let mut sample = Vec::new();
        words(&mut sample, &[1, 3, 512, 0, 0, 3, 0x4000_0000 + 257, 2]);
        sample.extend_from_slice(&records);
        words(&mut d, &[1, sample.len() as u32]);
        d.extend_from_slice(&sample);
        let mut expanded = Vec::new();
        words(&mut expanded, &[1, 0, 3, 512, 0, 0, 0, 3, 1, 258, 0]);
        words(&mut d, &[3, expanded.len() as u32]);
        d.extend_from_slice(&expanded);
        item(&mut d, (9 << 12) | 7, &[1, 2, 3]);
        d
    }

    #[test]
    fn discards_vlans_and_unread_formats_are_decoded_as_they_are() {
        let mut decoder = Decoder::new();
        let mut out = DecodeOutput::default();
        let exporter = "192.0.2.1:6343".parse().unwrap();
        decoder
            .decode(exporter, Transport::Udp, 0, &datagram(), &mut out)
            .unwrap();
        let flows = out.flows.finish().unwrap();
        assert_eq!(flows.num_rows(), 2);
        let column = |name| flows.column_by_name(name).unwrap().clone();
        let status = column("forwarding_status");
        let status = status.as_primitive::<UInt32Type>();
        // dropped (0b10 in the top two bits), bad TTL (9) and ACL deny (1)
        assert_eq!(status.values(), &[128 + 9, 128 + 1]);
        let out_if = column("out_if");
        assert_eq!(out_if.null_count(), 2, "a discard has no output interface");
        let in_if = column("in_if");
        assert_eq!(in_if.as_primitive::<UInt32Type>().value(0), 3);
        let vlan = column("src_vlan");
        assert!(
            vlan.as_primitive::<UInt16Type>().is_null(0),
            "0xFFFFFFFF is no VLAN"
        );
        let session = decoder.session(exporter, Transport::Udp).unwrap();
        let skipped: Vec<(String, u64)> = session
            .skipped_formats()
            .map(|(f, n)| (f.to_string(), n))
            .collect();
        assert_eq!(
            skipped,
            [
                ("sflow flow 0:1004".to_string(), 1),
                ("sflow sample 9:7".to_string(), 1)
            ]
        );
        assert_eq!(session.stats().skipped_records, 2);
        assert_eq!(session.stats().total_errors(), 0);
    }

    #[test]
    fn drop_reasons_map_to_forwarding_status() {
        assert_eq!(dropped_status(256), 128);
        assert_eq!(dropped_status(1), 128 + 3, "host unreachable: unroutable");
        assert_eq!(dropped_status(13), 128 + 1);
        assert_eq!(dropped_status(261), 128 + 10);
        assert_eq!(vlan(4095), Some(4095));
        assert_eq!(vlan(4096), None);
    }
}
