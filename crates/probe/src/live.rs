//! Live capture on Linux: an AF_PACKET socket with a TPACKET_V3 ring.
//!
//! The kernel fills blocks of a ring shared with the process; the probe reads
//! each frame in place, with its nanosecond timestamp, and hands the block
//! back when done. Several probes on one interface share its load through a
//! fanout group (hashed by flow, so a flow stays with one worker). Drops the
//! kernel counts (ring full) are read with PACKET_STATISTICS and reported.
//!
//! Most of the probe's unsafe code is here: the socket calls, the shared
//! ring and mapped captures (the flow table's zeroed allocation is the
//! rest, in `table.rs`; prefetches come from `hopscope-memory`). The ring is read through raw-pointer volatile accesses
//! only for the block status word the kernel and we hand back and forth;
//! everything else is read from slices of a block we own at that moment.

#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{Ordering, fence};
use std::time::Duration;

use hopscope_packet::LinkType;

use crate::source::{CaptureCounters, Frame, PacketSource, SourceError};

/// Ring geometry and sharing.
#[derive(Debug, Clone, Copy)]
pub struct LiveConfig {
    /// Octets per ring block (a power of two, a multiple of the page size).
    pub block_size: usize,
    pub blocks: usize,
    /// A block is handed over when full or this old.
    pub block_timeout: Duration,
    /// Join this fanout group (hashed by flow) to share the interface with other probes.
    pub fanout_group: Option<u16>,
}

impl Default for LiveConfig {
    fn default() -> Self {
        Self {
            block_size: 1 << 20,
            blocks: 64,
            block_timeout: Duration::from_millis(100),
            fanout_group: None,
        }
    }
}

// Offsets in struct tpacket_block_desc (tpacket_hdr_v1 at 8) and struct tpacket3_hdr.
const BLOCK_STATUS: usize = 8;
const BLOCK_NUM_PKTS: usize = 12;
const BLOCK_FIRST_PKT: usize = 16;
const PKT_NEXT: usize = 0;
const PKT_SEC: usize = 4;
const PKT_NSEC: usize = 8;
const PKT_SNAPLEN: usize = 12;
const PKT_LEN: usize = 16;
const PKT_STATUS: usize = 20;
const PKT_MAC: usize = 24;
const PKT_VLAN_TCI: usize = 32;
// struct sockaddr_ll, after the header at TPACKET_ALIGN(sizeof(struct tpacket3_hdr))
const PKT_SLL_HATYPE: usize = 48 + 8;
const PKT_SLL_PKTTYPE: usize = 48 + 10;
const ARPHRD_LOOPBACK: u16 = 772;
const PACKET_OUTGOING: u8 = 4;

fn word(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

/// An AF_PACKET TPACKET_V3 capture on one interface.
#[derive(Debug)]
pub struct AfPacketSource {
    fd: OwnedFd,
    ring: NonNull<u8>,
    config: LiveConfig,
    interface_index: u32,
    /// Block being read, with the next packet's offset and how many remain.
    block: usize,
    reading: Option<(usize, u32)>,
    counters: CaptureCounters,
}

// SAFETY: the ring's mapping and the socket are owned by this value alone
// and touched only through `&mut self` or by reads of blocks the kernel has
// handed over, so moving it to another thread is sound.
unsafe impl Send for AfPacketSource {}

fn last_error(what: &str) -> SourceError {
    let e = io::Error::last_os_error();
    SourceError::Io(io::Error::new(e.kind(), format!("{what}: {e}")))
}

fn setsockopt<T>(fd: i32, level: i32, name: i32, value: &T, what: &str) -> Result<(), SourceError> {
    // SAFETY: `value` points to a live `T` of the size given, which the
    // kernel only reads during the call.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(last_error(what))
    } else {
        Ok(())
    }
}

impl AfPacketSource {
    /// Opens a capture on `interface` (needs CAP_NET_RAW).
    pub fn open(interface: &str, config: LiveConfig) -> Result<Self, SourceError> {
        let name = CString::new(interface)
            .map_err(|_| SourceError::Io(io::ErrorKind::InvalidInput.into()))?;
        // SAFETY: `name` is a NUL-terminated string that outlives the call.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if index == 0 {
            return Err(last_error(&format!("interface {interface}")));
        }
        let protocol = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: a plain system call with constant arguments; the result is checked.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(protocol)) };
        if raw < 0 {
            return Err(last_error("AF_PACKET socket (needs CAP_NET_RAW)"));
        }
        // SAFETY: `raw` is a descriptor just opened (checked above) that
        // nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let s = fd.as_raw_fd();
        let version: libc::c_int = libc::tpacket_versions::TPACKET_V3 as libc::c_int;
        setsockopt(
            s,
            libc::SOL_PACKET,
            libc::PACKET_VERSION,
            &version,
            "PACKET_VERSION",
        )?;
        let frame_size = 2048u32;
        let req = libc::tpacket_req3 {
            tp_block_size: config.block_size as u32,
            tp_block_nr: config.blocks as u32,
            tp_frame_size: frame_size,
            tp_frame_nr: (config.block_size * config.blocks) as u32 / frame_size,
            tp_retire_blk_tov: config.block_timeout.as_millis() as u32,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        setsockopt(
            s,
            libc::SOL_PACKET,
            libc::PACKET_RX_RING,
            &req,
            "PACKET_RX_RING",
        )?;
        let len = config.block_size * config.blocks;
        // SAFETY: a new shared mapping of the ring the kernel just set up on
        // `s` (PACKET_RX_RING, of exactly `len` octets); the result is checked.
        let ring = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                s,
                0,
            )
        };
        if ring == libc::MAP_FAILED {
            return Err(last_error("mmap of the capture ring"));
        }
        let ring = NonNull::new(ring.cast::<u8>()).ok_or_else(|| last_error("mmap"))?;
        let source = Self {
            fd,
            ring,
            config,
            interface_index: index,
            block: 0,
            reading: None,
            counters: CaptureCounters::default(),
        };
        // SAFETY: sockaddr_ll is plain old data, for which all zeroes is valid.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = protocol;
        addr.sll_ifindex = index as i32;
        // SAFETY: `addr` is a live sockaddr_ll of the size given, read
        // only during the call.
        let rc = unsafe {
            libc::bind(
                s,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(last_error(&format!("bind to {interface}")));
        }
        if let Some(group) = config.fanout_group {
            let arg: u32 = u32::from(group) | (libc::PACKET_FANOUT_HASH << 16);
            setsockopt(
                s,
                libc::SOL_PACKET,
                libc::PACKET_FANOUT,
                &arg,
                "PACKET_FANOUT",
            )?;
        }
        Ok(source)
    }

    /// Lets the kernel drop what the filter rejects before it reaches the ring.
    pub fn attach_filter(
        &self,
        program: &hopscope_packet::bpf::BpfProgram,
    ) -> Result<(), SourceError> {
        let mut code: Vec<libc::sock_filter> = program
            .instructions()
            .iter()
            .map(|i| libc::sock_filter {
                code: i.code,
                jt: i.jt,
                jf: i.jf,
                k: i.k,
            })
            .collect();
        let prog = libc::sock_fprog {
            len: code.len() as u16,
            filter: code.as_mut_ptr(),
        };
        setsockopt(
            self.fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            &prog,
            "SO_ATTACH_FILTER",
        )
    }

    pub fn interface_index(&self) -> u32 {
        self.interface_index
    }

    fn status_ptr(&self, block: usize) -> *mut u32 {
        // SAFETY: in bounds of the mapping: block < blocks, and the status
        // word is inside the block's header.
        unsafe {
            self.ring
                .as_ptr()
                .add(block * self.config.block_size + BLOCK_STATUS)
                .cast::<u32>()
        }
    }

    fn block_ready(&self, block: usize) -> bool {
        // SAFETY: an aligned word inside the mapping, which the kernel
        // writes concurrently: hence the volatile read and the fence after.
        let status = unsafe { std::ptr::read_volatile(self.status_ptr(block)) };
        fence(Ordering::Acquire);
        status & libc::TP_STATUS_USER != 0
    }

    fn release(&self, block: usize) {
        fence(Ordering::Release);
        // SAFETY: an aligned word inside the mapping; after the fence, no
        // borrow of the block's bytes outlives handing it back.
        unsafe { std::ptr::write_volatile(self.status_ptr(block), libc::TP_STATUS_KERNEL) };
    }

    /// The block we own (its status says user); valid until `release`.
    fn block_bytes(&self, block: usize) -> &[u8] {
        // SAFETY: the block is inside the mapping, and the kernel does not
        // write it while its status says it is ours (until `release`).
        unsafe {
            std::slice::from_raw_parts(
                self.ring.as_ptr().add(block * self.config.block_size),
                self.config.block_size,
            )
        }
    }

    /// Waits up to `timeout` for a block; false on timeout.
    fn wait(&self, timeout: Duration) -> Result<bool, SourceError> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN | libc::POLLERR,
            revents: 0,
        };
        // SAFETY: one live pollfd, for the duration of the call.
        let rc = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as i32) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(false);
            }
            return Err(SourceError::Io(e));
        }
        Ok(self.block_ready(self.block))
    }

    /// Reads the kernel's drop counter (it resets on reading) into the counters.
    pub fn refresh_drops(&mut self) {
        // SAFETY: tpacket_stats_v3 is plain old data, for which all zeroes is valid.
        let mut stats: libc::tpacket_stats_v3 = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tpacket_stats_v3>() as libc::socklen_t;
        // SAFETY: `stats` and `len` are live and of the sizes given; the
        // kernel writes at most `len` octets.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut stats as *mut libc::tpacket_stats_v3).cast(),
                &mut len,
            )
        };
        if rc == 0 {
            self.counters.kernel_drops += u64::from(stats.tp_drops);
        }
    }

    /// Makes sure a packet is waiting in the block being read: hands
    /// finished blocks back and waits up to `timeout` for the next one.
    fn advance(&mut self, timeout: Duration) -> Result<bool, SourceError> {
        loop {
            match self.reading {
                Some((_, 0)) => {
                    self.release(self.block);
                    self.block = (self.block + 1) % self.config.blocks;
                    self.reading = None;
                }
                Some(_) => return Ok(true),
                None => {
                    if !self.block_ready(self.block) && !self.wait(timeout)? {
                        return Ok(false);
                    }
                    let block = self.block_bytes(self.block);
                    self.reading = Some((
                        word(block, BLOCK_FIRST_PKT) as usize,
                        word(block, BLOCK_NUM_PKTS),
                    ));
                }
            }
        }
    }

    /// Where the next packet of the current block lies; steps past it.
    fn next_packet(&mut self) -> Option<PacketAt> {
        loop {
            let (offset, remaining) = self.reading?;
            let block = self.block_bytes(self.block);
            let block_len = block.len();
            let header = block.get(offset..)?;
            let next = word(header, PKT_NEXT) as usize;
            let mac = header
                .get(PKT_MAC..PKT_MAC + 2)
                .map_or(0, |b| usize::from(u16::from_ne_bytes([b[0], b[1]])));
            let packet = PacketAt {
                start: offset + mac,
                len: word(header, PKT_SNAPLEN) as usize,
                timestamp_ns: i64::from(word(header, PKT_SEC)) * 1_000_000_000
                    + i64::from(word(header, PKT_NSEC)),
                wire_len: word(header, PKT_LEN),
                vlan: (word(header, PKT_STATUS) & libc::TP_STATUS_VLAN_VALID != 0)
                    .then(|| (word(header, PKT_VLAN_TCI) & 0x0fff) as u16),
            };
            // loopback delivers each packet as sent and again as received:
            // the sent copy would count it twice (on other links a sent
            // packet is seen once, as sent, and kept)
            let hatype = header
                .get(PKT_SLL_HATYPE..PKT_SLL_HATYPE + 2)
                .map(|b| u16::from_ne_bytes([b[0], b[1]]));
            let loopback_copy = hatype == Some(ARPHRD_LOOPBACK)
                && header.get(PKT_SLL_PKTTYPE) == Some(&PACKET_OUTGOING);
            self.reading = Some((offset + next, remaining - 1));
            if packet.start + packet.len > block_len {
                // a header the kernel would never write: give up on the rest of this block
                self.reading = Some((offset, 0));
                return None;
            }
            if loopback_copy {
                self.counters.loopback_copies += 1;
                if remaining > 1 {
                    continue;
                }
                return None;
            }
            self.counters.frames += 1;
            return Some(packet);
        }
    }

    fn frame(&self, p: PacketAt) -> Frame<'_> {
        Frame {
            timestamp_ns: p.timestamp_ns,
            link: LinkType::Ethernet,
            data: &self.block_bytes(self.block)[p.start..p.start + p.len],
            wire_len: p.wire_len,
            interface: self.interface_index,
            vlan: p.vlan,
        }
    }

    /// The next frame, or `Ok(None)` when none came within `timeout` (so
    /// that a quiet link still runs the flow timeouts).
    pub fn next_frame_within(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<Frame<'_>>, SourceError> {
        let packet = loop {
            if !self.advance(timeout)? {
                return Ok(None);
            }
            if let Some(p) = self.next_packet() {
                break p;
            }
        };
        Ok(Some(self.frame(packet)))
    }
}

/// A packet's place in the current block.
#[derive(Debug, Clone, Copy)]
struct PacketAt {
    start: usize,
    len: usize,
    timestamp_ns: i64,
    wire_len: u32,
    vlan: Option<u16>,
}

impl PacketSource for AfPacketSource {
    /// Blocks until a frame arrives; [`next_frame_within`](AfPacketSource::next_frame_within)
    /// returns on a quiet link.
    fn next_frame(&mut self) -> Option<Result<Frame<'_>, SourceError>> {
        let packet = loop {
            match self.advance(Duration::from_secs(1)) {
                Ok(true) => {
                    if let Some(p) = self.next_packet() {
                        break p;
                    }
                }
                Ok(false) => {}
                Err(e) => return Some(Err(e)),
            }
        };
        Some(Ok(self.frame(packet)))
    }

    fn counters(&self) -> CaptureCounters {
        self.counters.clone()
    }
}

impl Drop for AfPacketSource {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `open`, of this length; no borrow of
        // it can outlive `self`.
        unsafe {
            libc::munmap(
                self.ring.as_ptr().cast(),
                self.config.block_size * self.config.blocks,
            );
        }
    }
}

/// Set once SIGINT or SIGTERM arrives, so that a live probe can export what
/// it has metered before it exits.
pub fn stop_requested() -> &'static std::sync::atomic::AtomicBool {
    use std::sync::Once;
    use std::sync::atomic::AtomicBool;
    static STOP: AtomicBool = AtomicBool::new(false);
    static INSTALL: Once = Once::new();
    extern "C" fn on_signal(_: libc::c_int) {
        STOP.store(true, Ordering::SeqCst);
    }
    // SAFETY: the handler only stores to an atomic, which is
    // async-signal-safe; installed once.
    INSTALL.call_once(|| unsafe {
        let handler = on_signal as extern "C" fn(libc::c_int);
        libc::signal(libc::SIGINT, handler as libc::sighandler_t);
        libc::signal(libc::SIGTERM, handler as libc::sighandler_t);
    });
    &STOP
}

/// A file mapped read-only into memory: a capture is read once, front to
/// back, without copying it through `read` into a buffer.
#[derive(Debug)]
pub(crate) struct MappedFile {
    ptr: NonNull<u8>,
    len: usize,
    /// Octets before this were handed back to the kernel.
    released: std::cell::Cell<usize>,
    /// Cache lines before this were asked for ahead of the reader.
    prefetched: std::cell::Cell<usize>,
}

// SAFETY: the mapping is read-only and owned by this value alone; the
// cells are touched only through `&self` on the thread that holds it.
unsafe impl Send for MappedFile {}

impl MappedFile {
    pub(crate) fn open(path: &std::path::Path) -> io::Result<Self> {
        let file = std::fs::File::open(path)?;
        let len = usize::try_from(file.metadata()?.len())
            .map_err(|_| io::Error::from(io::ErrorKind::FileTooLarge))?;
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "empty file"));
        }
        // SAFETY: a new private read-only mapping of an open file of `len`
        // octets (> 0); the result is checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a hint about the mapping just made, of its length.
        unsafe { libc::madvise(ptr, len, libc::MADV_SEQUENTIAL) };
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
        Ok(Self {
            ptr,
            len,
            released: std::cell::Cell::new(0),
            prefetched: std::cell::Cell::new(0),
        })
    }

    /// Hands back the pages before `offset` (already read) so that the
    /// resident size stays small however large the file; nothing before
    /// `offset` may be borrowed any more.
    pub(crate) fn release_before(&self, offset: usize) {
        const STEP: usize = 64 << 20;
        let page = 4096;
        let end = offset.min(self.len) / page * page;
        let released = self.released.get();
        if end >= released + STEP {
            // SAFETY: a page-aligned range inside the mapping that no borrow
            // reaches any more (the caller's promise); a private read-only
            // mapping reads the file again if it is touched after all.
            unsafe {
                libc::madvise(
                    self.ptr.as_ptr().add(released).cast(),
                    end - released,
                    libc::MADV_DONTNEED,
                );
            }
            self.released.set(end);
        }
    }

    /// Asks the processor for the cache lines of the next few KiB after
    /// `offset`. Records have no fixed stride and the hardware prefetcher
    /// stops at every 4 KiB page, so without this each frame's first read
    /// waits for memory (a fifth of the probe's time on a large capture).
    pub(crate) fn prefetch_after(&self, offset: usize) {
        const AHEAD: usize = 4096;
        const LINE: usize = 64;
        let end = (offset + AHEAD).min(self.len);
        let mut at = self.prefetched.get().max(offset & !(LINE - 1));
        let bytes = self.bytes();
        while at < end {
            hopscope_memory::prefetch(&bytes[at]);
            at += LINE;
        }
        self.prefetched.set(at);
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping lives as long as self, is `len` octets long
        // and is never written.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for MappedFile {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `open`, of this length; no borrow of
        // it can outlive `self`.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}
