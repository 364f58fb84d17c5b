//! Reading and writing export streams: IPFIX files (RFC 5655: a sequence of
//! messages framed by their length field, the same framing as TCP), and
//! pcap/pcapng captures of export traffic (UDP payloads with their sender).

use std::borrow::Cow;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use hopscope_packet::pcap::{PcapReader, read_full};
use hopscope_packet::{LinkType, parse_frame};
use hopscope_schema::{ip_to_mapped, mapped_to_ip};
use pcap_file::pcapng::{Block, PcapNgReader};

use crate::templated::IPFIX_HEADER_LEN;

/// Errors while reading a stream of messages.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("I/O: {0}")]
    Io(#[from] io::Error),
    #[error("offset {offset}: not an IPFIX message header (version {version}, length {length})")]
    BadHeader {
        offset: u64,
        version: u16,
        length: u16,
    },
    #[error("offset {offset}: stream ends inside a message")]
    TruncatedMessage { offset: u64 },
    #[error("pcapng capture: {0}")]
    PcapNg(#[from] pcap_file::PcapError),
    #[error("pcap capture: {0}")]
    Pcap(#[from] hopscope_packet::pcap::PcapError),
}

/// Length of the IPFIX message starting with `header`, if it is one.
pub fn ipfix_message_length(header: &[u8]) -> Option<usize> {
    let h = header.get(..4)?;
    let length = usize::from(u16::from_be_bytes([h[2], h[3]]));
    (h[0..2] == [0, 10] && length >= IPFIX_HEADER_LEN).then_some(length)
}

/// Divides a stream that arrives in pieces (a TCP connection) into IPFIX
/// messages, holding the tail of an incomplete one. Between messages it
/// holds no buffer at all, so a silent connection costs nothing here.
#[derive(Debug, Default)]
pub struct StreamFramer {
    partial: Vec<u8>,
}

/// The stream holds octets that cannot begin an IPFIX message: it cannot
/// be resynchronised, and the connection must end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unframeable {
    /// The four octets that were to be a message header.
    pub header: [u8; 4],
}

impl StreamFramer {
    /// Takes the next piece of the stream, calling `each` with every whole
    /// message it completes, in order; returns how many.
    pub fn feed(&mut self, data: &[u8], mut each: impl FnMut(&[u8])) -> Result<usize, Unframeable> {
        let joined;
        let mut input: &[u8] = if self.partial.is_empty() {
            data
        } else {
            self.partial.extend_from_slice(data);
            joined = std::mem::take(&mut self.partial);
            &joined
        };
        let mut messages = 0;
        while input.len() >= 4 {
            let Some(len) = ipfix_message_length(input) else {
                return Err(Unframeable {
                    header: [input[0], input[1], input[2], input[3]],
                });
            };
            if input.len() < len {
                break;
            }
            each(&input[..len]);
            messages += 1;
            input = &input[len..];
        }
        if !input.is_empty() {
            self.partial.extend_from_slice(input);
        }
        Ok(messages)
    }

    /// The octets of a message not yet complete.
    pub fn pending(&self) -> &[u8] {
        &self.partial
    }
}

/// Reads IPFIX messages one by one from a file or a TCP stream.
#[derive(Debug)]
pub struct IpfixReader<R> {
    inner: R,
    buf: Vec<u8>,
    offset: u64,
}

impl<R: Read> IpfixReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            buf: Vec::with_capacity(65536),
            offset: 0,
        }
    }

    /// The next message, `None` at a clean end of stream.
    pub fn next_message(&mut self) -> Option<Result<&[u8], StreamError>> {
        let mut header = [0u8; IPFIX_HEADER_LEN];
        match read_full(&mut self.inner, &mut header) {
            Ok(0) => return None,
            Ok(n) if n < header.len() => {
                return Some(Err(StreamError::TruncatedMessage {
                    offset: self.offset,
                }));
            }
            Ok(_) => {}
            Err(e) => return Some(Err(e.into())),
        }
        let Some(length) = ipfix_message_length(&header) else {
            return Some(Err(StreamError::BadHeader {
                offset: self.offset,
                version: u16::from_be_bytes([header[0], header[1]]),
                length: u16::from_be_bytes([header[2], header[3]]),
            }));
        };
        self.buf.clear();
        self.buf.extend_from_slice(&header);
        self.buf.resize(length, 0);
        match read_full(&mut self.inner, &mut self.buf[IPFIX_HEADER_LEN..]) {
            Ok(n) if n == length - IPFIX_HEADER_LEN => {}
            Ok(_) => {
                return Some(Err(StreamError::TruncatedMessage {
                    offset: self.offset,
                }));
            }
            Err(e) => return Some(Err(e.into())),
        }
        self.offset += length as u64;
        Some(Ok(&self.buf))
    }
}

/// Writes IPFIX messages to a file (RFC 5655) or stream.
#[derive(Debug)]
pub struct IpfixWriter<W> {
    inner: W,
    messages: u64,
}

impl<W: Write> IpfixWriter<W> {
    pub fn new(inner: W) -> Self {
        Self { inner, messages: 0 }
    }

    /// Writes one complete message, checking that it is one.
    pub fn write_message(&mut self, message: &[u8]) -> io::Result<()> {
        if ipfix_message_length(message) != Some(message.len()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a complete IPFIX message",
            ));
        }
        self.inner.write_all(message)?;
        self.messages += 1;
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }

    pub fn messages_written(&self) -> u64 {
        self.messages
    }

    pub fn into_inner(mut self) -> io::Result<W> {
        self.inner.flush()?;
        Ok(self.inner)
    }
}

/// One UDP datagram found in a capture.
#[derive(Debug, Clone)]
pub struct CapturedDatagram<'a> {
    /// Capture time, Unix nanoseconds.
    pub timestamp_ns: i64,
    pub source: SocketAddr,
    pub destination: SocketAddr,
    pub payload: Cow<'a, [u8]>,
}

/// Counts of what a capture held besides export datagrams.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaptureStats {
    pub frames: u64,
    pub datagrams: u64,
    /// Frames that were not UDP over IPv4/IPv6 (ARP, TCP, fragments...).
    pub skipped: u64,
}

enum CaptureReader<R: Read> {
    Pcap(PcapReader<R>, LinkType),
    PcapNg(PcapNgReader<R>),
}

/// Reads the UDP datagrams of a pcap or pcapng capture of export traffic.
pub struct CaptureDatagrams<R: Read> {
    reader: CaptureReader<R>,
    pub stats: CaptureStats,
}

impl<R: Read> std::fmt::Debug for CaptureDatagrams<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureDatagrams")
            .field("stats", &self.stats)
            .finish()
    }
}

/// Whether the bytes start a pcap or pcapng file.
pub fn is_capture(head: &[u8]) -> bool {
    matches!(
        head.get(..4),
        Some(
            [0xd4, 0xc3, 0xb2, 0xa1]
                | [0xa1, 0xb2, 0xc3, 0xd4]
                | [0x4d, 0x3c, 0xb2, 0xa1]
                | [0xa1, 0xb2, 0x3c, 0x4d]
                | [0x0a, 0x0d, 0x0d, 0x0a]
        )
    )
}

impl<R: Read> CaptureDatagrams<R> {
    /// Opens a capture; `pcapng` selects the format (see [`is_capture`]).
    pub fn new(reader: R, pcapng: bool) -> Result<Self, StreamError> {
        let reader = if pcapng {
            CaptureReader::PcapNg(PcapNgReader::new(reader)?)
        } else {
            let r = PcapReader::new(reader)?;
            let link = LinkType::from_pcap(r.linktype()).unwrap_or(LinkType::Ethernet);
            CaptureReader::Pcap(r, link)
        };
        Ok(Self {
            reader,
            stats: CaptureStats::default(),
        })
    }

    /// The next UDP datagram, skipping (and counting) everything else.
    pub fn next_datagram(&mut self) -> Option<Result<CapturedDatagram<'static>, StreamError>> {
        loop {
            let (link, ts, data): (LinkType, i64, Vec<u8>) = match &mut self.reader {
                CaptureReader::Pcap(r, link) => match r.next_record()? {
                    Ok(p) => (*link, p.timestamp_ns, p.data.to_vec()),
                    Err(e) => return Some(Err(e.into())),
                },
                CaptureReader::PcapNg(r) => {
                    let packet = match r.next_block()? {
                        Ok(Block::EnhancedPacket(p)) => Some((
                            p.interface_id,
                            p.timestamp.as_nanos() as i64,
                            p.data.into_owned(),
                        )),
                        Ok(Block::SimplePacket(p)) => Some((0, 0, p.data.into_owned())),
                        Ok(_) => None,
                        Err(e) => return Some(Err(e.into())),
                    };
                    let Some((interface, ts, data)) = packet else {
                        continue;
                    };
                    let link = r
                        .interfaces()
                        .get(interface as usize)
                        .and_then(|i| LinkType::from_pcap(u32::from(i.linktype)))
                        .unwrap_or(LinkType::Ethernet);
                    (link, ts, data)
                }
            };
            self.stats.frames += 1;
            let s = parse_frame(link, &data);
            let (Some(src), Some(dst), Some(17), Some(sp), Some(dp), Some(at)) = (
                s.src_addr,
                s.dst_addr,
                s.proto,
                s.src_port,
                s.dst_port,
                s.payload_offset,
            ) else {
                self.stats.skipped += 1;
                continue;
            };
            // the UDP length bounds the payload (Ethernet may pad short frames)
            let udp_len = data
                .get(at - 4..at - 2)
                .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])));
            let end = udp_len
                .map_or(data.len(), |l| (at - 8 + l).min(data.len()))
                .max(at);
            self.stats.datagrams += 1;
            return Some(Ok(CapturedDatagram {
                timestamp_ns: ts,
                source: SocketAddr::new(mapped_to_ip(src), sp),
                destination: SocketAddr::new(mapped_to_ip(dst), dp),
                payload: Cow::Owned(data[at..end].to_vec()),
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_in_pieces_frames_as_a_whole() {
        let mut m1 = vec![0, 10, 0, 16];
        m1.extend_from_slice(&[0; 12]);
        let mut m2 = vec![0, 10, 0, 20];
        m2.extend_from_slice(&[1; 16]);
        let stream: Vec<u8> = [m1.clone(), m2.clone(), vec![0, 10, 0]].concat();
        let mut framer = StreamFramer::default();
        let mut got = Vec::new();
        for octet in &stream {
            framer
                .feed(std::slice::from_ref(octet), |m| got.push(m.to_vec()))
                .unwrap();
        }
        assert_eq!(got, vec![m1, m2]);
        assert_eq!(framer.pending(), &[0, 10, 0]);
        // between messages nothing is held
        let mut quiet = StreamFramer::default();
        quiet.feed(&got[0], |_| {}).unwrap();
        assert_eq!(quiet.partial.capacity(), 0);
        // a header that is no IPFIX cannot be resynchronised
        // (a length shorter than the header)
        let bad = framer.feed(&[3, 9], |_| {}).unwrap_err();
        assert_eq!(bad.header, [0, 10, 0, 3]);
        assert_eq!(
            StreamFramer::default().feed(&[0, 9, 0, 20], |_| {}),
            Err(Unframeable {
                header: [0, 9, 0, 20]
            })
        );
    }

    #[test]
    fn writer_and_reader_frame_messages() {
        let mut m1 = vec![0, 10, 0, 16];
        m1.extend_from_slice(&[0; 12]);
        let mut m2 = vec![0, 10, 0, 20];
        m2.extend_from_slice(&[1; 16]);
        let mut w = IpfixWriter::new(Vec::new());
        w.write_message(&m1).unwrap();
        w.write_message(&m2).unwrap();
        assert!(w.write_message(&m2[..19]).is_err());
        let bytes = w.into_inner().unwrap();
        let mut r = IpfixReader::new(&bytes[..]);
        assert_eq!(r.next_message().unwrap().unwrap(), &m1[..]);
        assert_eq!(r.next_message().unwrap().unwrap(), &m2[..]);
        assert!(r.next_message().is_none());
        // a file cut mid-message is an error, not a silent end
        let mut r = IpfixReader::new(&bytes[..30]);
        r.next_message().unwrap().unwrap();
        assert!(matches!(
            r.next_message(),
            Some(Err(StreamError::TruncatedMessage { offset: 16 }))
        ));
    }
}

/// Length of a message whose header gives it: IPFIX by its length field,
/// NetFlow v5 by its record count. NetFlow v9 and sFlow do not say.
pub fn self_delimited_length(message: &[u8]) -> Option<usize> {
    match message.get(..4)? {
        [0, 5, hi, lo] => Some(24 + 48 * usize::from(u16::from_be_bytes([*hi, *lo]))),
        _ => ipfix_message_length(message),
    }
}

/// Whether the bytes are two or more IPFIX messages that end exactly at the
/// end of the file (a single message is read as a datagram).
fn is_ipfix_file(bytes: &[u8]) -> bool {
    let mut offset = 0;
    let mut messages = 0;
    while offset < bytes.len() {
        match ipfix_message_length(&bytes[offset..]) {
            Some(len) => offset += len,
            None => return false,
        }
        messages += 1;
    }
    offset == bytes.len() && messages > 1
}

/// What [`replay_file`] fed to the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// pcap or pcapng of export traffic.
    Capture,
    /// RFC 5655 IPFIX file (several messages).
    IpfixFile,
    /// One raw datagram payload.
    Datagram,
}

/// Exporter address given to files that carry no sender (raw datagrams, IPFIX files).
pub const FILE_EXPORTER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

/// Feeds a file of any supported kind to the decoder: captures datagram by
/// datagram with their senders and capture times, IPFIX files message by
/// message (stream semantics), and a raw datagram as one UDP message from
/// [`FILE_EXPORTER`], so that a template file followed by a data file decode
/// as one session. Message-level decode errors are counted by the decoder;
/// only an unreadable file is an `Err`.
pub fn replay_file(
    path: &std::path::Path,
    decoder: &mut crate::Decoder,
    out: &mut crate::DecodeOutput,
    received_ns: i64,
) -> Result<FileKind, StreamError> {
    let clock = ReplayClock {
        received_ns,
        capture_times: true,
    };
    replay_file_with(path, decoder, out, clock, |_, _| {})
}

/// The receive time a replay gives its records.
#[derive(Debug, Clone, Copy)]
pub struct ReplayClock {
    /// The time of records from IPFIX files and raw datagrams, and of
    /// captured datagrams when `capture_times` is off.
    pub received_ns: i64,
    /// Captured datagrams are received at their capture time.
    pub capture_times: bool,
}

/// [`replay_file`] with a choice of clock, calling `each` after every
/// message so that the caller can hand decoded rows on while a large file
/// is still being read.
pub fn replay_file_with(
    path: &std::path::Path,
    decoder: &mut crate::Decoder,
    out: &mut crate::DecodeOutput,
    clock: ReplayClock,
    mut each: impl FnMut(&crate::Decoder, &mut crate::DecodeOutput),
) -> Result<FileKind, StreamError> {
    let received_ns = clock.received_ns;
    use crate::Transport;
    use std::io::Read as _;
    let mut file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    let mut head = [0u8; 4];
    let got = file.read(&mut head)?;
    // captures and large IPFIX files are streamed; a datagram is at most 64 KiB
    if is_capture(&head[..got]) {
        let reader = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(path)?);
        let mut datagrams = CaptureDatagrams::new(reader, head == [0x0a, 0x0d, 0x0d, 0x0a])?;
        while let Some(d) = datagrams.next_datagram() {
            let d = d?;
            let at = if clock.capture_times {
                d.timestamp_ns
            } else {
                received_ns
            };
            let _ = decoder.decode(d.source, Transport::Udp, at, &d.payload, out);
            each(decoder, out);
        }
        return Ok(FileKind::Capture);
    }
    if size > 2 * 65536 && head[..2] == [0, 10] {
        let reader = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(path)?);
        let mut messages = IpfixReader::new(reader);
        while let Some(m) = messages.next_message() {
            let _ = decoder.decode(FILE_EXPORTER, Transport::File, received_ns, m?, out);
            each(decoder, out);
        }
        decoder.end_session(FILE_EXPORTER, Transport::File);
        return Ok(FileKind::IpfixFile);
    }
    let bytes = std::fs::read(path)?;
    if is_ipfix_file(&bytes) {
        let mut messages = IpfixReader::new(&bytes[..]);
        while let Some(m) = messages.next_message() {
            let _ = decoder.decode(FILE_EXPORTER, Transport::File, received_ns, m?, out);
            each(decoder, out);
        }
        decoder.end_session(FILE_EXPORTER, Transport::File);
        return Ok(FileKind::IpfixFile);
    }
    // Some archives concatenate datagrams; split where the protocol tells the length.
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        // split only where what follows is itself a whole message; anything
        // else stays with the datagram, whose decoder reports it
        let len = self_delimited_length(rest)
            .filter(|&len| {
                len < rest.len()
                    && self_delimited_length(&rest[len..])
                        .is_some_and(|next| next <= rest.len() - len)
            })
            .unwrap_or(rest.len());
        let _ = decoder.decode(
            FILE_EXPORTER,
            Transport::Udp,
            received_ns,
            &rest[..len],
            out,
        );
        each(decoder, out);
        rest = &rest[len..];
    }
    Ok(FileKind::Datagram)
}

/// Writes UDP datagrams into a pcap file (Ethernet, IPv4 or IPv6, UDP), so
/// that exports can be read by tshark, replayed or kept as fixtures.
pub struct CaptureWriter<W: Write> {
    writer: pcap_file::pcap::PcapWriter<W>,
    ip_id: u16,
}

impl<W: Write> std::fmt::Debug for CaptureWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureWriter").finish_non_exhaustive()
    }
}

impl<W: Write> CaptureWriter<W> {
    pub fn new(inner: W) -> Result<Self, StreamError> {
        let header = pcap_file::pcap::PcapHeader {
            ts_resolution: pcap_file::TsResolution::NanoSecond,
            ..Default::default()
        };
        Ok(Self {
            writer: pcap_file::pcap::PcapWriter::with_header(inner, header)?,
            ip_id: 0,
        })
    }

    /// Writes one datagram from `source` to `destination` (same family).
    pub fn write_datagram(
        &mut self,
        timestamp_ns: i64,
        source: SocketAddr,
        destination: SocketAddr,
        payload: &[u8],
    ) -> Result<(), StreamError> {
        let mut frame = Vec::with_capacity(14 + 40 + 8 + payload.len());
        frame.extend_from_slice(&[0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1]);
        let udp_len = (8 + payload.len()) as u16;
        let mut udp = Vec::with_capacity(usize::from(udp_len));
        udp.extend_from_slice(&source.port().to_be_bytes());
        udp.extend_from_slice(&destination.port().to_be_bytes());
        udp.extend_from_slice(&udp_len.to_be_bytes());
        udp.extend_from_slice(&[0, 0]); // checksum 0: "not computed" for IPv4
        udp.extend_from_slice(payload);
        match (source.ip(), destination.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                frame.extend_from_slice(&0x0800u16.to_be_bytes());
                let total = 20 + udp_len;
                self.ip_id = self.ip_id.wrapping_add(1);
                let mut ip = [0u8; 20];
                ip[0] = 0x45;
                ip[2..4].copy_from_slice(&total.to_be_bytes());
                ip[4..6].copy_from_slice(&self.ip_id.to_be_bytes());
                ip[8] = 64;
                ip[9] = 17;
                ip[12..16].copy_from_slice(&s.octets());
                ip[16..20].copy_from_slice(&d.octets());
                let sum = checksum(&ip);
                ip[10..12].copy_from_slice(&sum.to_be_bytes());
                frame.extend_from_slice(&ip);
            }
            (s, d) => {
                frame.extend_from_slice(&0x86ddu16.to_be_bytes());
                let mut ip = [0u8; 40];
                ip[0] = 0x60;
                ip[4..6].copy_from_slice(&udp_len.to_be_bytes());
                ip[6] = 17;
                ip[7] = 64;
                ip[8..24].copy_from_slice(&ip_to_mapped(s));
                ip[24..40].copy_from_slice(&ip_to_mapped(d));
                frame.extend_from_slice(&ip);
                // IPv6 requires a UDP checksum
                let mut pseudo = Vec::with_capacity(40 + udp.len());
                pseudo.extend_from_slice(&ip[8..40]);
                pseudo.extend_from_slice(&u32::from(udp_len).to_be_bytes());
                pseudo.extend_from_slice(&[0, 0, 0, 17]);
                pseudo.extend_from_slice(&udp);
                let sum = match checksum(&pseudo) {
                    0 => 0xffff,
                    s => s,
                };
                udp[6..8].copy_from_slice(&sum.to_be_bytes());
            }
        }
        frame.extend_from_slice(&udp);
        let ts = std::time::Duration::from_nanos(timestamp_ns.max(0) as u64);
        let packet = pcap_file::pcap::PcapPacket::new(ts, frame.len() as u32, &frame);
        self.writer.write_packet(&packet)?;
        Ok(())
    }

    pub fn into_inner(self) -> W {
        self.writer.into_writer()
    }
}

/// The Internet checksum (RFC 1071).
fn checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
