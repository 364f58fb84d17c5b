//! Packet sources: where frames come from. Files (pcap, pcapng) today; live
//! capture implements the same trait.

use std::io::Read;

use hopscope_packet::LinkType;
use hopscope_packet::pcap::{PcapError, PcapReader, Record};
use pcap_file::pcapng::{Block, PcapNgReader};

/// One captured frame.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// Capture time, Unix nanoseconds.
    pub timestamp_ns: i64,
    pub link: LinkType,
    pub data: &'a [u8],
    /// Length on the wire (the capture may hold fewer octets).
    pub wire_len: u32,
    /// Interface index within the source.
    pub interface: u32,
    /// A VLAN tag the capture took off the frame (live capture with VLAN
    /// offload); `None` when any tag is still in the frame.
    pub vlan: Option<u16>,
}

/// What a source could not deliver, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaptureCounters {
    pub frames: u64,
    /// Frames the kernel dropped before capture (live sources).
    pub kernel_drops: u64,
    /// Frames of a link type the parser does not follow.
    pub unknown_link: u64,
    /// Loopback's outgoing copies, skipped: on `lo` the kernel hands every
    /// packet to a capture twice, sent and received.
    pub loopback_copies: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("pcapng file: {0}")]
    PcapNg(#[from] pcap_file::PcapError),
    #[error("pcap file: {0}")]
    Pcap(#[from] PcapError),
}

/// A source of frames, read one at a time.
pub trait PacketSource {
    /// The next frame; `None` at the end. An `Err` ends the source too (a
    /// file cut mid-record): what came before it stays valid.
    fn next_frame(&mut self) -> Option<Result<Frame<'_>, SourceError>>;
    fn counters(&self) -> CaptureCounters;
}

enum Reader<R: Read> {
    Pcap(PcapReader<R>, Option<LinkType>),
    PcapNg(PcapNgReader<R>),
    /// A classic pcap mapped into memory (Linux), read in place.
    #[cfg(target_os = "linux")]
    Mapped(
        crate::MappedFile,
        hopscope_packet::pcap::PcapCursor,
        Option<LinkType>,
    ),
}

/// A reader with the four octets read to tell the format put back in front.
type Sniffed<R> = std::io::Chain<std::io::Cursor<[u8; 4]>, R>;

/// pcap or pcapng file, pure Rust.
pub struct PcapFileSource<R: Read> {
    reader: Reader<Sniffed<R>>,
    buf: Vec<u8>,
    counters: CaptureCounters,
    done: bool,
}

impl<R: Read> std::fmt::Debug for PcapFileSource<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcapFileSource")
            .field("counters", &self.counters)
            .finish()
    }
}

impl<R: Read> PcapFileSource<R> {
    /// Opens a capture, telling pcap from pcapng by the first four octets.
    pub fn new(mut inner: R) -> Result<Self, SourceError> {
        let mut magic = [0u8; 4];
        inner.read_exact(&mut magic)?;
        let chained = std::io::Cursor::new(magic).chain(inner);
        let reader = if magic == [0x0a, 0x0d, 0x0d, 0x0a] {
            Reader::PcapNg(PcapNgReader::new(chained)?)
        } else {
            let r = PcapReader::new(chained)?;
            let link = LinkType::from_pcap(r.linktype());
            Reader::Pcap(r, link)
        };
        Ok(Self {
            reader,
            buf: Vec::with_capacity(65536),
            counters: CaptureCounters::default(),
            done: false,
        })
    }
}

/// The frame of a classic-pcap record, or the error that ends the file.
fn classic_frame<'a>(
    counters: &mut CaptureCounters,
    done: &mut bool,
    link: LinkType,
    record: Result<Record<'a>, PcapError>,
) -> Option<Result<Frame<'a>, SourceError>> {
    match record {
        Ok(r) => {
            counters.frames += 1;
            Some(Ok(Frame {
                timestamp_ns: r.timestamp_ns,
                link,
                data: r.data,
                wire_len: r.orig_len,
                interface: 0,
                vlan: None,
            }))
        }
        Err(e) => {
            *done = true;
            Some(Err(e.into()))
        }
    }
}

/// Reads through a classic pcap whose link type the parser does not follow,
/// counting its frames.
fn skip_unknown(
    counters: &mut CaptureCounters,
    done: &mut bool,
    mut next: impl FnMut() -> Option<Result<(), PcapError>>,
) -> Option<Result<Frame<'static>, SourceError>> {
    loop {
        match next()? {
            Ok(()) => {
                counters.frames += 1;
                counters.unknown_link += 1;
            }
            Err(e) => {
                *done = true;
                return Some(Err(e.into()));
            }
        }
    }
}

impl<R: Read> PacketSource for PcapFileSource<R> {
    fn next_frame(&mut self) -> Option<Result<Frame<'_>, SourceError>> {
        if self.done {
            return None;
        }
        let Self {
            reader,
            buf,
            counters,
            done,
        } = self;
        match reader {
            #[cfg(target_os = "linux")]
            Reader::Mapped(map, cursor, link) => {
                // the frame lent by the last call is no longer borrowed
                map.release_before(cursor.offset());
                map.prefetch_after(cursor.offset());
                let bytes = map.bytes();
                match *link {
                    None => skip_unknown(counters, done, || {
                        cursor.next_record(bytes).map(|r| r.map(drop))
                    }),
                    Some(link) => classic_frame(counters, done, link, cursor.next_record(bytes)?),
                }
            }
            // classic pcap read through a buffer: frames are lent from the reader's buffer
            Reader::Pcap(r, link) => match *link {
                None => skip_unknown(counters, done, || r.next_record().map(|r| r.map(drop))),
                Some(link) => classic_frame(counters, done, link, r.next_record()?),
            },
            Reader::PcapNg(r) => loop {
                let block = match r.next_block()? {
                    Ok(b) => b,
                    Err(e) => {
                        *done = true;
                        return Some(Err(e.into()));
                    }
                };
                let (interface, ts, wire_len) = match block {
                    Block::EnhancedPacket(p) => {
                        buf.clear();
                        buf.extend_from_slice(&p.data);
                        (
                            p.interface_id,
                            p.timestamp.as_nanos() as i64,
                            p.original_len,
                        )
                    }
                    Block::SimplePacket(p) => {
                        buf.clear();
                        buf.extend_from_slice(&p.data);
                        (0, 0, p.original_len)
                    }
                    _ => continue,
                };
                counters.frames += 1;
                let link = r
                    .interfaces()
                    .get(interface as usize)
                    .and_then(|i| LinkType::from_pcap(u32::from(i.linktype)));
                let Some(link) = link else {
                    counters.unknown_link += 1;
                    continue;
                };
                return Some(Ok(Frame {
                    timestamp_ns: ts,
                    link,
                    data: buf,
                    wire_len,
                    interface,
                    vlan: None,
                }));
            },
        }
    }

    fn counters(&self) -> CaptureCounters {
        self.counters.clone()
    }
}

impl PcapFileSource<std::io::BufReader<std::fs::File>> {
    /// Opens a capture file; on Linux a classic pcap is mapped into memory.
    pub fn open(path: &std::path::Path) -> Result<Self, SourceError> {
        #[cfg(target_os = "linux")]
        if let Ok(map) = crate::MappedFile::open(path)
            && let Ok(cursor) = hopscope_packet::pcap::PcapCursor::new(map.bytes())
        {
            let link = LinkType::from_pcap(cursor.linktype());
            return Ok(Self {
                reader: Reader::Mapped(map, cursor, link),
                buf: Vec::new(),
                counters: CaptureCounters::default(),
                done: false,
            });
        }
        // large reads: a capture is read once, front to back
        Self::new(std::io::BufReader::with_capacity(
            1 << 20,
            std::fs::File::open(path)?,
        ))
    }
}
