//! Measures how often packet digests collide across flows, per profile and
//! payload prefix: `digest_collisions [PCAP...]` over the captures given
//! and over two adversarial streams built here (NTP client requests and DNS
//! queries for one name from many hosts: IP id 0 with DF, one length, a
//! payload whose first octets are constant). A collision is a packet whose
//! digest another packet had less than 2 s before (the correlator's
//! longest path delay): of another flow, the correlator would join the two
//! flows' points (or reject the trajectory as implausible); of the same
//! flow with other contents, it would pair the wrong packets.
//! Prints a Markdown table for BENCHMARKS.md (bench/digest-collisions).

use std::collections::HashMap;

use hopscope_packet::{LinkType, parse_frame};
use hopscope_probe::{PacketSource, PcapFileSource, Profile, Selector, SelectorConfig, crc32};

/// The correlator's default longest path delay: digests further apart in
/// time never meet.
const HORIZON_NS: i64 = 2_000_000_000;

/// Packets as (time, frame), in time order.
type Stream = Vec<(i64, LinkType, Vec<u8>)>;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut inputs: Vec<(String, Stream)> = Vec::new();
    for path in &args {
        let mut source = match PcapFileSource::open(std::path::Path::new(path)) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{path}: {e}");
                std::process::exit(1);
            }
        };
        let mut stream = Stream::new();
        while let Some(Ok(frame)) = source.next_frame() {
            stream.push((frame.timestamp_ns, frame.link, frame.data.to_vec()));
        }
        let name = std::path::Path::new(path)
            .file_name()
            .map_or(path.clone(), |n| n.to_string_lossy().into_owned());
        inputs.push((name, stream));
    }
    inputs.push(("NTP requests, 5,000 hosts".into(), adversarial(ntp_payload)));
    inputs.push((
        "DNS queries, one name, 5,000 hosts".into(),
        adversarial(dns_payload),
    ));

    println!(
        "| traffic | packets | profile | payload octets | other flow | same flow, other packet | per million packets |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, stream) in &inputs {
        for profile in [Profile::NatFree, Profile::NatCrossing] {
            for prefix in [8, 16, 32, 64] {
                let (across, within) = count(stream, profile, prefix);
                let n = stream.len().max(1) as f64;
                println!(
                    "| {name} | {} | {} | {prefix} | {across} | {within} | {:.0} |",
                    stream.len(),
                    profile.name(),
                    (across + within) as f64 * 1e6 / n
                );
            }
        }
    }
}

/// Packets whose digest another packet had within the horizon: of another
/// flow, and of the same flow with other contents (a retransmission, equal
/// to the octet, is the same packet as far as anyone can tell).
fn count(stream: &Stream, profile: Profile, payload_prefix: usize) -> (u64, u64) {
    let mut selector = Selector::new(SelectorConfig {
        profile,
        payload_prefix,
        ..SelectorConfig::default()
    });
    // digest -> (last time, the flow that had it, its contents' hash)
    let mut seen: HashMap<u64, (i64, [u8; 37], u32)> = HashMap::new();
    let (mut across, mut within) = (0, 0);
    for (time, link, frame) in stream {
        let p = parse_frame(*link, frame);
        if p.proto.is_none() {
            continue;
        }
        let Some(digest) = selector.consider(&p, frame) else {
            continue;
        };
        let mut flow = [0u8; 37];
        flow[..16].copy_from_slice(&p.src_addr.unwrap_or_default());
        flow[16..32].copy_from_slice(&p.dst_addr.unwrap_or_default());
        flow[32..34].copy_from_slice(&p.src_port.unwrap_or(0).to_be_bytes());
        flow[34..36].copy_from_slice(&p.dst_port.unwrap_or(0).to_be_bytes());
        flow[36] = p.proto.unwrap_or(0);
        let contents = crc32(
            frame
                .get(p.payload_offset.unwrap_or(frame.len())..)
                .unwrap_or(&[]),
            0,
        ) ^ p.fragment_id.unwrap_or(0);
        if let Some((t, other, other_contents)) = seen.insert(digest, (*time, flow, contents))
            && time - t < HORIZON_NS
        {
            if other != flow {
                across += 1;
            } else if other_contents != contents {
                within += 1;
            }
        }
    }
    (across, within)
}

/// 100,000 UDP datagrams in 10 s from 5,000 hosts to one server, as a
/// stack sends them with DF: IP id 0, each host's source port fixed.
fn adversarial(payload: fn(u64) -> Vec<u8>) -> Stream {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..100_000u64)
        .map(|i| {
            let host = next() % 5_000;
            let body = payload(next());
            let ip_len = 20 + 8 + body.len();
            let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 8, 0];
            f.extend_from_slice(&[
                0x45,
                0,
                (ip_len >> 8) as u8,
                ip_len as u8,
                0,
                0,
                0x40,
                0,
                64,
                17,
                0,
                0,
            ]);
            f.extend_from_slice(&[10, 1, (host >> 8) as u8, host as u8, 192, 0, 2, 53]);
            let sport = 40_000 + (host % 20_000) as u16;
            let dport: u16 = if body.len() == 48 { 123 } else { 53 };
            f.extend_from_slice(&sport.to_be_bytes());
            f.extend_from_slice(&dport.to_be_bytes());
            f.extend_from_slice(&((8 + body.len()) as u16).to_be_bytes());
            f.extend_from_slice(&[0, 0]);
            f.extend_from_slice(&body);
            (i as i64 * 100_000, LinkType::Ethernet, f)
        })
        .collect()
}

/// An NTP v4 client request: only the transmit timestamp (octets 40-47) varies.
fn ntp_payload(random: u64) -> Vec<u8> {
    let mut b = vec![0u8; 48];
    b[0] = 0x23;
    b[40..48].copy_from_slice(&random.to_be_bytes());
    b
}

/// A DNS query for one name: only the 16-bit id varies.
fn dns_payload(random: u64) -> Vec<u8> {
    let mut b = vec![
        (random >> 8) as u8,
        random as u8,
        1,
        0,
        0,
        1,
        0,
        0,
        0,
        0,
        0,
        0,
    ];
    b.extend_from_slice(b"\x07example\x03com\x00\x00\x01\x00\x01");
    b
}
