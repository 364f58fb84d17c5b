//! Classic pcap files (libpcap format), read record by record.
//!
//! A small reader of our own because captures made with a snapshot length
//! (`tcpdump -s 128`) hold records whose original length exceeds the
//! snapshot length, which some readers reject; and because a probe must
//! meter what came before a file cut mid-record and say where it was cut.

use std::io::{self, Read};

/// Why a capture could not be read further.
#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    #[error("I/O: {0}")]
    Io(#[from] io::Error),
    #[error("not a pcap file (magic {0:#010x})")]
    BadMagic(u32),
    #[error("record at offset {offset} claims {length} octets, more than any capture holds")]
    BadLength { offset: u64, length: u32 },
    #[error("file ends inside the record at offset {offset}")]
    Truncated { offset: u64 },
}

/// One captured packet.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// Unix nanoseconds.
    pub timestamp_ns: i64,
    /// Length on the wire.
    pub orig_len: u32,
    pub data: &'a [u8],
}

/// Records larger than this are corrupt, whatever the header's snapshot length says.
const MAX_RECORD: u32 = 256 * 1024;

/// What the 24-octet file header says.
#[derive(Debug, Clone, Copy)]
struct FileHeader {
    big_endian: bool,
    nanos: bool,
    linktype: u32,
}

impl FileHeader {
    fn parse(h: &[u8]) -> Result<Self, PcapError> {
        if h.len() < 24 {
            return Err(PcapError::Truncated { offset: 0 });
        }
        let magic = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let (big_endian, nanos) = match magic {
            0xa1b2_c3d4 => (false, false),
            0xa1b2_3c4d => (false, true),
            0xd4c3_b2a1 => (true, false),
            0x4d3c_b2a1 => (true, true),
            other => return Err(PcapError::BadMagic(other)),
        };
        let header = Self {
            big_endian,
            nanos,
            linktype: 0,
        };
        Ok(Self {
            linktype: header.word(&h[20..24]),
            ..header
        })
    }

    fn word(&self, b: &[u8]) -> u32 {
        let a = [b[0], b[1], b[2], b[3]];
        if self.big_endian {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        }
    }

    /// (timestamp ns, captured length, original length) of a 16-octet record header.
    fn record(&self, h: &[u8]) -> (i64, u32, u32) {
        let (secs, frac) = (self.word(&h[0..4]), self.word(&h[4..8]));
        let frac_ns = if self.nanos {
            i64::from(frac)
        } else {
            i64::from(frac) * 1000
        };
        (
            i64::from(secs) * 1_000_000_000 + frac_ns,
            self.word(&h[8..12]),
            self.word(&h[12..16]),
        )
    }
}

/// Walks a classic pcap file that is already in memory (or mapped):
/// records are lent from the bytes themselves, with no copy. The cursor
/// keeps only its place, so the bytes can live beside it.
#[derive(Debug, Clone)]
pub struct PcapCursor {
    header: FileHeader,
    offset: usize,
    done: bool,
}

impl PcapCursor {
    pub fn new(bytes: &[u8]) -> Result<Self, PcapError> {
        Ok(Self {
            header: FileHeader::parse(bytes)?,
            offset: 24,
            done: false,
        })
    }

    pub fn linktype(&self) -> u32 {
        self.header.linktype
    }

    /// Where the next record starts.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The next record of `bytes` (the same bytes every call); `None` at the end.
    pub fn next_record<'a>(&mut self, bytes: &'a [u8]) -> Option<Result<Record<'a>, PcapError>> {
        if self.done || self.offset >= bytes.len() {
            return None;
        }
        let at = self.offset as u64;
        let Some(h) = bytes.get(self.offset..self.offset + 16) else {
            self.done = true;
            return Some(Err(PcapError::Truncated { offset: at }));
        };
        let (timestamp_ns, incl, orig_len) = self.header.record(h);
        if incl > MAX_RECORD {
            self.done = true;
            return Some(Err(PcapError::BadLength {
                offset: at,
                length: incl,
            }));
        }
        let start = self.offset + 16;
        let Some(data) = bytes.get(start..start + incl as usize) else {
            self.done = true;
            return Some(Err(PcapError::Truncated { offset: at }));
        };
        self.offset = start + incl as usize;
        Some(Ok(Record {
            timestamp_ns,
            orig_len,
            data,
        }))
    }
}

/// Reads a classic pcap file.
#[derive(Debug)]
pub struct PcapReader<R> {
    inner: R,
    header: FileHeader,
    offset: u64,
    buf: Vec<u8>,
    done: bool,
}

impl<R: Read> PcapReader<R> {
    pub fn new(mut inner: R) -> Result<Self, PcapError> {
        let mut h = [0u8; 24];
        inner.read_exact(&mut h)?;
        Ok(Self {
            inner,
            header: FileHeader::parse(&h)?,
            offset: 24,
            buf: Vec::with_capacity(65536),
            done: false,
        })
    }

    /// LINKTYPE_ of the file.
    pub fn linktype(&self) -> u32 {
        self.header.linktype
    }

    /// The next record; `None` at a clean end of file.
    pub fn next_record(&mut self) -> Option<Result<Record<'_>, PcapError>> {
        if self.done {
            return None;
        }
        let mut h = [0u8; 16];
        let got = match read_full(&mut self.inner, &mut h) {
            Ok(n) => n,
            Err(e) => return self.fail(e.into()),
        };
        if got == 0 {
            self.done = true;
            return None;
        }
        if got < h.len() {
            return self.fail(PcapError::Truncated {
                offset: self.offset,
            });
        }
        let (timestamp_ns, incl, orig_len) = self.header.record(&h);
        if incl > MAX_RECORD {
            return self.fail(PcapError::BadLength {
                offset: self.offset,
                length: incl,
            });
        }
        self.buf.resize(incl as usize, 0);
        match read_full(&mut self.inner, &mut self.buf) {
            Ok(n) if n == incl as usize => {}
            Ok(_) => {
                return self.fail(PcapError::Truncated {
                    offset: self.offset,
                });
            }
            Err(e) => return self.fail(e.into()),
        }
        self.offset += 16 + u64::from(incl);
        Some(Ok(Record {
            timestamp_ns,
            orig_len,
            data: &self.buf,
        }))
    }

    fn fail<T>(&mut self, e: PcapError) -> Option<Result<T, PcapError>> {
        self.done = true;
        Some(Err(e))
    }
}

/// Reads until `buf` is full or the input ends; the count read (less than
/// the buffer only at the end). Shared by every reader of framed files.
pub fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(records: &[(&[u8], u32)]) -> Vec<u8> {
        let mut f = vec![
            0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0, 0, 1, 0, 0, 0,
        ];
        for (i, (data, orig)) in records.iter().enumerate() {
            f.extend_from_slice(&(1_700_000_000u32 + i as u32).to_le_bytes());
            f.extend_from_slice(&500u32.to_le_bytes());
            f.extend_from_slice(&(data.len() as u32).to_le_bytes());
            f.extend_from_slice(&orig.to_le_bytes());
            f.extend_from_slice(data);
        }
        f
    }

    #[test]
    fn reads_records_beyond_the_snapshot_length() {
        let f = file(&[(&[1; 64], 1500), (&[2; 10], 10)]);
        let mut r = PcapReader::new(&f[..]).unwrap();
        assert_eq!(r.linktype(), 1);
        let first = r.next_record().unwrap().unwrap();
        assert_eq!((first.orig_len, first.data.len()), (1500, 64));
        assert_eq!(first.timestamp_ns, 1_700_000_000_000_500_000);
        assert_eq!(r.next_record().unwrap().unwrap().data, &[2; 10]);
        assert!(r.next_record().is_none());
    }

    #[test]
    fn slices_read_the_same_records_without_copying() {
        let f = file(&[(&[1; 64], 1500), (&[2; 10], 10)]);
        let mut c = PcapCursor::new(&f).unwrap();
        let first = c.next_record(&f).unwrap().unwrap();
        assert_eq!((first.orig_len, first.data.len()), (1500, 64));
        assert_eq!(first.timestamp_ns, 1_700_000_000_000_500_000);
        assert_eq!(c.next_record(&f).unwrap().unwrap().data, &[2; 10]);
        assert!(c.next_record(&f).is_none());
        let cut = &f[..f.len() - 3];
        let mut c = PcapCursor::new(cut).unwrap();
        c.next_record(cut).unwrap().unwrap();
        assert!(matches!(
            c.next_record(cut),
            Some(Err(PcapError::Truncated { offset: 104 }))
        ));
    }

    #[test]
    fn a_file_cut_mid_record_says_where() {
        let f = file(&[(&[1; 20], 20), (&[2; 20], 20)]);
        let mut r = PcapReader::new(&f[..f.len() - 5]).unwrap();
        assert!(r.next_record().unwrap().is_ok());
        assert!(matches!(
            r.next_record(),
            Some(Err(PcapError::Truncated { offset: 60 }))
        ));
        assert!(r.next_record().is_none());
    }

    #[test]
    fn absurd_lengths_are_errors_not_allocations() {
        let mut f = file(&[(&[1; 4], 4)]);
        f[32..36].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut r = PcapReader::new(&f[..]).unwrap();
        assert!(matches!(
            r.next_record(),
            Some(Err(PcapError::BadLength { .. }))
        ));
    }
}
