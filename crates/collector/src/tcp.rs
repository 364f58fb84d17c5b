//! IPFIX over TCP: one thread per connection, each with its own decoder,
//! since templates live exactly as long as their connection (RFC 7011 §8).

use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::enrich::Cidr;
use crate::intake::Intake;
use crate::now_ns;
use crate::udp::allowed;

/// How often blocked reads and accepts wake to hand off and check for stop.
const POLL: Duration = Duration::from_millis(100);
/// The largest IPFIX message (the length field is 16 bits).
const MAX_MESSAGE: usize = 65_535;

/// Accepts connections until `stop`; each gets an intake from `new_intake`.
pub fn run(
    listener: TcpListener,
    new_intake: impl Fn() -> Intake,
    allow: Arc<Vec<Cidr>>,
    stop: Arc<AtomicBool>,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    std::thread::scope(|scope| {
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((stream, peer)) => {
                    let intake = new_intake();
                    let metrics = intake.state.metrics.clone();
                    if !allowed(&allow, peer, &metrics) {
                        metrics.denied_connections.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    metrics.tcp_connections.fetch_add(1, Ordering::Relaxed);
                    let stop = stop.clone();
                    scope.spawn(move || connection(stream, peer, intake, &stop));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(POLL / 2),
                Err(_) => std::thread::sleep(POLL / 2),
            }
        }
    });
    Ok(())
}

/// Reads IPFIX messages from one connection until it closes or `stop`.
fn connection(mut stream: TcpStream, peer: SocketAddr, mut intake: Intake, stop: &AtomicBool) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(POLL));
    let mut buffer: Vec<u8> = Vec::with_capacity(2 * MAX_MESSAGE);
    let mut chunk = vec![0u8; 256 * 1024];
    let metrics = intake.state.metrics.clone();
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buffer.extend_from_slice(&chunk[..n]);
                let now = now_ns();
                let mut at = 0;
                while buffer.len() - at >= 4 {
                    let header = &buffer[at..];
                    let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
                    let not_ipfix = header[..2] != [0, 10];
                    if not_ipfix || len < 16 {
                        // unframeable: the decoder counts the bad header, and
                        // the stream cannot be resynchronised
                        let _ = intake.decoder.decode(
                            peer,
                            hopscope_wire::Transport::Tcp,
                            now,
                            &header[..4],
                            &mut intake.out,
                        );
                        if not_ipfix {
                            metrics.receive_errors.fetch_add(1, Ordering::Relaxed);
                        }
                        at = buffer.len();
                        let _ = stream.shutdown(std::net::Shutdown::Both);
                        break;
                    }
                    if buffer.len() - at < len {
                        break;
                    }
                    intake.accept(peer, now, &buffer[at..at + len]);
                    at += len;
                }
                buffer.drain(..at);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => break,
        }
        if intake.maybe_handoff().is_err() {
            return;
        }
    }
    if !buffer.is_empty() {
        // the connection ended inside a message
        let _ = intake.decoder.decode(
            peer,
            hopscope_wire::Transport::Tcp,
            now_ns(),
            &buffer,
            &mut intake.out,
        );
    }
    intake
        .decoder
        .end_session(peer, hopscope_wire::Transport::Tcp);
    let _ = intake.handoff();
}
