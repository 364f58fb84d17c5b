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

/// Reads a classic pcap file.
#[derive(Debug)]
pub struct PcapReader<R> {
    inner: R,
    big_endian: bool,
    nanos: bool,
    linktype: u32,
    offset: u64,
    buf: Vec<u8>,
    done: bool,
}

impl<R: Read> PcapReader<R> {
    pub fn new(mut inner: R) -> Result<Self, PcapError> {
        let mut h = [0u8; 24];
        inner.read_exact(&mut h)?;
        let magic = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let (big_endian, nanos) = match magic {
            0xa1b2_c3d4 => (false, false),
            0xa1b2_3c4d => (false, true),
            0xd4c3_b2a1 => (true, false),
            0x4d3c_b2a1 => (true, true),
            other => return Err(PcapError::BadMagic(other)),
        };
        let word = |b: &[u8]| {
            let a = [b[0], b[1], b[2], b[3]];
            if big_endian {
                u32::from_be_bytes(a)
            } else {
                u32::from_le_bytes(a)
            }
        };
        Ok(Self {
            inner,
            big_endian,
            nanos,
            linktype: word(&h[20..24]),
            offset: 24,
            buf: Vec::with_capacity(65536),
            done: false,
        })
    }

    /// LINKTYPE_ of the file.
    pub fn linktype(&self) -> u32 {
        self.linktype
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
        let word = |b: &[u8]| {
            let a = [b[0], b[1], b[2], b[3]];
            if self.big_endian {
                u32::from_be_bytes(a)
            } else {
                u32::from_le_bytes(a)
            }
        };
        let (secs, frac, incl, orig) = (
            word(&h[0..4]),
            word(&h[4..8]),
            word(&h[8..12]),
            word(&h[12..16]),
        );
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
        let frac_ns = if self.nanos {
            i64::from(frac)
        } else {
            i64::from(frac) * 1000
        };
        Some(Ok(Record {
            timestamp_ns: i64::from(secs) * 1_000_000_000 + frac_ns,
            orig_len: orig,
            data: &self.buf,
        }))
    }

    /// The data of the record `next_record` returned last.
    pub fn last_record(&self) -> &[u8] {
        &self.buf
    }

    fn fail<T>(&mut self, e: PcapError) -> Option<Result<T, PcapError>> {
        self.done = true;
        Some(Err(e))
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
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
