//! Writes a synthetic pcap for benchmarks: `make_pcap OUT PACKETS FLOWS`.
//! Ethernet/IPv4 with TCP (80 %) and UDP flows between many hosts, packet
//! sizes from 64 to 1500 octets, one microsecond apart; deterministic.

use std::io::{BufWriter, Write};

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(out), Some(packets), Some(flows)) = (args.get(1), args.get(2), args.get(3)) else {
        eprintln!("usage: make_pcap OUT PACKETS FLOWS");
        std::process::exit(2);
    };
    let packets: u64 = packets.parse().expect("PACKETS is a number");
    let flows: u64 = flows.parse().expect("FLOWS is a number");
    let mut w = BufWriter::new(std::fs::File::create(out)?);
    w.write_all(&[
        0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 1, 0, 0, 0,
    ])?;
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut frame = [0u8; 1514];
    for i in 0..packets {
        let flow = next() % flows;
        let tcp = !flow.is_multiple_of(5);
        let ip_len = 46 + (next() % 1455) as usize;
        let f = &mut frame[..14 + ip_len];
        f[..12].copy_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&[8, 0]);
        let ip = &mut f[14..];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&(i as u16).to_be_bytes());
        ip[8] = 64;
        ip[9] = if tcp { 6 } else { 17 };
        ip[12..16].copy_from_slice(&[10, (flow >> 16) as u8, (flow >> 8) as u8, flow as u8]);
        ip[16..20].copy_from_slice(&[192, 0, 2, (flow % 200) as u8]);
        let l4 = &mut ip[20..];
        l4[0..2].copy_from_slice(&(1024 + (flow % 60000) as u16).to_be_bytes());
        l4[2..4].copy_from_slice(&(if tcp { 443u16 } else { 53 }).to_be_bytes());
        if tcp {
            l4[4..8].copy_from_slice(&(i as u32).to_be_bytes());
            l4[12] = 0x50;
            l4[13] = 0x18;
        } else {
            l4[4..6].copy_from_slice(&((ip_len - 20) as u16).to_be_bytes());
        }
        let (secs, micros) = (1_764_000_000 + i / 1_000_000, i % 1_000_000);
        w.write_all(&(secs as u32).to_le_bytes())?;
        w.write_all(&(micros as u32).to_le_bytes())?;
        w.write_all(&(f.len() as u32).to_le_bytes())?;
        w.write_all(&(f.len() as u32).to_le_bytes())?;
        w.write_all(f)?;
    }
    w.flush()
}
