//! UDP intake: several sockets per port (SO_REUSEPORT, the kernel spreads
//! exporters over them by address), large receive buffers, and batched
//! receive with `recvmmsg` so that one system call brings up to 64
//! datagrams.
//!
//! This module holds the collector's only unsafe code: the `recvmmsg` and
//! `setsockopt` calls, whose buffers are owned slices that outlive them.

#![allow(unsafe_code)]

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use crate::enrich::{Cidr, canonical};
use crate::intake::Intake;
use crate::now_ns;

/// Datagrams received per system call.
const BATCH: usize = 64;
/// Largest datagram accepted (the IPv4 maximum).
const DATAGRAM: usize = 65_535;
/// How often a blocked receive wakes to check for hand-offs and stop.
const POLL: Duration = Duration::from_millis(100);

/// Binds `count` sockets sharing `addr`; with port 0, the first socket's
/// port is shared by the others. Returns them and the bound address.
pub fn bind(
    addr: SocketAddr,
    count: usize,
    receive_buffer: usize,
) -> io::Result<(Vec<UdpSocket>, SocketAddr)> {
    let mut sockets = Vec::new();
    let mut bound = addr;
    for _ in 0..count.max(1) {
        let socket = Socket::new(Domain::for_address(bound), Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_reuse_port(true)?;
        if bound.is_ipv6() {
            // one socket for both families when bound to [::]
            socket.set_only_v6(false)?;
        }
        grow_receive_buffer(&socket, receive_buffer);
        socket.bind(&bound.into())?;
        socket.set_read_timeout(Some(POLL))?;
        let udp: UdpSocket = socket.into();
        bound = udp.local_addr()?;
        sockets.push(udp);
    }
    Ok((sockets, bound))
}

/// Asks for `bytes` of receive buffer, beyond `rmem_max` when privileged.
fn grow_receive_buffer(socket: &Socket, bytes: usize) {
    let _ = socket.set_recv_buffer_size(bytes);
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        // SAFETY: the option value is a c_int on our stack, its size passed alongside.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
}

/// Receives until `stop`, decoding every datagram from an allowed exporter.
pub fn run(socket: UdpSocket, mut intake: Intake, allow: Arc<Vec<Cidr>>, stop: Arc<AtomicBool>) {
    let metrics = intake.state.metrics.clone();
    let mut receiver = Receiver::new();
    while !stop.load(Ordering::Relaxed) {
        match receiver.receive(&socket) {
            Ok(n) => {
                let now = now_ns();
                for i in 0..n {
                    let (source, datagram) = receiver.datagram(i);
                    if !admits(&allow, source.ip()) {
                        metrics.deny(canonical(source.ip()));
                        continue;
                    }
                    metrics.datagrams.fetch_add(1, Ordering::Relaxed);
                    intake.accept(source, now, datagram);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => {
                metrics.receive_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        if intake.maybe_handoff().is_err() {
            return;
        }
    }
    let _ = intake.handoff();
}

/// Whether the allow-list admits `source` (an empty list admits all); the
/// caller counts a refusal as what it refused, a datagram or a connection.
pub(crate) fn admits(allow: &[Cidr], source: std::net::IpAddr) -> bool {
    allow.is_empty() || allow.iter().any(|c| c.contains_ip(source))
}

/// Buffers for one batch of datagrams.
struct Receiver {
    buffers: Vec<u8>,
    lengths: [usize; BATCH],
    sources: [Option<SocketAddr>; BATCH],
    #[cfg(target_os = "linux")]
    addrs: Vec<libc::sockaddr_storage>,
}

impl Receiver {
    fn new() -> Self {
        Receiver {
            buffers: vec![0u8; BATCH * DATAGRAM],
            lengths: [0; BATCH],
            sources: [None; BATCH],
            #[cfg(target_os = "linux")]
            // SAFETY: sockaddr_storage is plain data for which all zeros is valid.
            addrs: vec![unsafe { std::mem::zeroed() }; BATCH],
        }
    }

    fn datagram(&self, i: usize) -> (SocketAddr, &[u8]) {
        let source = self.sources[i].expect("received datagrams have sources");
        (
            source,
            &self.buffers[i * DATAGRAM..i * DATAGRAM + self.lengths[i]],
        )
    }

    /// Waits up to the socket timeout for datagrams; returns how many came.
    #[cfg(target_os = "linux")]
    fn receive(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        let mut iovecs: Vec<libc::iovec> = self
            .buffers
            .chunks_exact_mut(DATAGRAM)
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            })
            .collect();
        // SAFETY: mmsghdr is plain data for which all zeros is valid.
        let mut headers: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; BATCH];
        for (i, h) in headers.iter_mut().enumerate() {
            h.msg_hdr.msg_iov = &mut iovecs[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_namelen =
                std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        }
        // SAFETY: every header points at an iovec and an address buffer
        // owned by `self` or this frame, valid for the whole call; the
        // kernel writes at most BATCH headers.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                headers.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for (i, header) in headers.iter().take(n).enumerate() {
            self.lengths[i] = header.msg_len as usize;
            self.sources[i] = sockaddr_to_std(&self.addrs[i]);
        }
        // a source we cannot read (no address family we know) is skipped
        let mut kept = 0;
        for i in 0..n {
            if self.sources[i].is_some() {
                if kept != i {
                    self.buffers.copy_within(
                        i * DATAGRAM..i * DATAGRAM + self.lengths[i],
                        kept * DATAGRAM,
                    );
                    self.lengths[kept] = self.lengths[i];
                    self.sources[kept] = self.sources[i];
                }
                kept += 1;
            }
        }
        Ok(kept)
    }

    #[cfg(not(target_os = "linux"))]
    fn receive(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        let (len, source) = socket.recv_from(&mut self.buffers[..DATAGRAM])?;
        self.lengths[0] = len;
        self.sources[0] = Some(source);
        Ok(1)
    }
}

#[cfg(target_os = "linux")]
fn sockaddr_to_std(addr: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(addr.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let a =
                unsafe { &*(addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::new(
                std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)).into(),
                u16::from_be(a.sin_port),
            ))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let a =
                unsafe { &*(addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
            let ip = ip
                .to_ipv4_mapped()
                .map_or(std::net::IpAddr::V6(ip), std::net::IpAddr::V4);
            Some(SocketAddr::new(ip, u16::from_be(a.sin6_port)))
        }
        _ => None,
    }
}
