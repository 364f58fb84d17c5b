//! IPFIX over TCP: every connection of a listener served by one thread
//! that waits on all of them at once (epoll through mio), with one decoder
//! and one set of column builders shared by them all.
//!
//! A collector's TCP port is open to whoever reaches it, so a connection
//! costs only what its data needs: a socket and a few counters while it is
//! silent, a buffer only while a message is incomplete. Admission is
//! decided before anything is allocated (the allow-list, then the limits
//! overall, per source and on handshakes: connections that have not yet
//! sent a whole message), silent connections are closed after a timeout, and every
//! refusal and every close is counted by why. Templates live as long as
//! their connection (RFC 7011 §8); the counters of a closed connection stay
//! in `status` for a while, then leave it.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hopscope_wire::Transport;
use hopscope_wire::file::StreamFramer;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::enrich::Cidr;
use crate::intake::Intake;
use crate::metrics::{TcpClose, TcpRefusal};
use crate::now_ns;
use crate::udp::admits;

/// How often the loop wakes to hand off, expire and check for stop.
const POLL: Duration = Duration::from_millis(100);
/// Octets read from one connection per system call, into the buffer that
/// every connection of the listener shares.
const READ_CHUNK: usize = 256 * 1024;
/// The listener's token; connections take the others.
const LISTENER: Token = Token(usize::MAX);
/// Reads from one connection before the others get their turn: a fast
/// sender cannot hold the loop (hand-offs, timeouts, other exporters).
const READS_PER_TURN: usize = 16;

/// Bounds on what TCP clients may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpLimits {
    /// Open connections over all sources.
    pub max_connections: usize,
    /// Open connections from one source address.
    pub max_per_source: usize,
    /// Open connections still in their handshake: accepted, but without a
    /// whole IPFIX message yet (where a scanner or a slow client sits).
    pub max_handshaking: usize,
    /// How long a connection may take to send its first whole message.
    pub handshake_timeout: Duration,
    /// How long a connection may stay silent once it has sent one.
    pub idle_timeout: Duration,
    /// How long the counters of a closed connection stay in `status` and
    /// `/metrics`.
    pub closed_linger: Duration,
}

impl Default for TcpLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_per_source: 64,
            max_handshaking: 128,
            handshake_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(600),
            closed_linger: Duration::from_secs(300),
        }
    }
}

/// One open connection: the socket, and the tail of a message still
/// arriving (unallocated between messages).
struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    framer: StreamFramer,
    opened: Instant,
    last_data: Instant,
    /// Whether a whole message has arrived yet.
    framed: bool,
}

/// Serves `listener` until `stop`, decoding into `intake`.
pub fn run(
    listener: TcpListener,
    mut intake: Intake,
    allow: Arc<Vec<Cidr>>,
    limits: TcpLimits,
    stop: Arc<AtomicBool>,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let mut listener = mio::net::TcpListener::from_std(listener);
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut events = Events::with_capacity(256);
    let mut table = Table::new(limits);
    let mut chunk = vec![0u8; READ_CHUNK];
    while !stop.load(Ordering::Relaxed) {
        // connections with data left from their last turn do not wait
        let wait = if table.ready.is_empty() && !table.retry_accept {
            POLL
        } else {
            Duration::ZERO
        };
        match poll.poll(&mut events, Some(wait)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        let mut accept = std::mem::take(&mut table.retry_accept);
        for event in &events {
            if event.token() == LISTENER {
                accept = true;
            } else {
                table.ready.push_back(event.token());
            }
        }
        if accept {
            table.accept_all(&listener, &poll, &allow, &mut chunk, &mut intake);
        }
        for _ in 0..table.ready.len() {
            let Some(token) = table.ready.pop_front() else {
                break;
            };
            table.read(token, &poll, &mut chunk, &mut intake);
            if intake.maybe_handoff().is_err() {
                return Ok(());
            }
        }
        // timeouts are seconds long: a look at every connection each POLL
        // is enough, however busy the turns
        if table.last_expiry.elapsed() >= POLL {
            table.expire(&poll, &mut intake);
        }
        if intake.maybe_handoff().is_err() {
            return Ok(());
        }
    }
    let tokens: Vec<Token> = table.open.keys().copied().collect();
    for token in tokens {
        table.close(token, &poll, &mut intake, None);
    }
    let _ = intake.handoff();
    Ok(())
}

/// The open connections of one listener and the counts that admit more.
struct Table {
    limits: TcpLimits,
    open: HashMap<Token, Connection>,
    per_source: HashMap<IpAddr, usize>,
    handshaking: usize,
    next_token: usize,
    /// Closed connections whose counters are still shown, oldest first
    /// (at most as many as may be open).
    closed: VecDeque<(Instant, SocketAddr)>,
    /// Connections whose last turn ended with data possibly left: epoll
    /// (edge-triggered) will not say so again.
    ready: VecDeque<Token>,
    /// The last accept failed for want of resources: try again next turn,
    /// as no new event will come for connections already queued.
    retry_accept: bool,
    last_expiry: Instant,
}

impl Table {
    fn new(limits: TcpLimits) -> Self {
        Self {
            limits,
            open: HashMap::new(),
            per_source: HashMap::new(),
            handshaking: 0,
            next_token: 0,
            closed: VecDeque::new(),
            ready: VecDeque::new(),
            retry_accept: false,
            last_expiry: Instant::now(),
        }
    }

    /// Accepts every waiting connection, refusing (and counting) those
    /// outside the allow-list or past a limit before anything is kept.
    /// Each connection accepted is read at once: an exporter whose first
    /// message is already waiting is past its handshake before the next
    /// connection is weighed.
    fn accept_all(
        &mut self,
        listener: &mio::net::TcpListener,
        poll: &Poll,
        allow: &[Cidr],
        chunk: &mut [u8],
        intake: &mut Intake,
    ) {
        let metrics = intake.state.metrics.clone();
        loop {
            let (mut stream, peer) = match listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // the client gave up while queued: the next may not have
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {
                    metrics.refuse_tcp(TcpRefusal::AcceptFailed, None);
                    continue;
                }
                // out of descriptors or memory: try again next turn
                Err(_) => {
                    metrics.refuse_tcp(TcpRefusal::AcceptFailed, None);
                    self.retry_accept = true;
                    return;
                }
            };
            let refusal = if !admits(allow, peer.ip()) {
                Some(TcpRefusal::Denied)
            } else if self.open.len() >= self.limits.max_connections {
                Some(TcpRefusal::ConnectionLimit)
            } else if self.per_source.get(&peer.ip()).copied().unwrap_or(0)
                >= self.limits.max_per_source
            {
                Some(TcpRefusal::SourceLimit)
            } else {
                None
            };
            if let Some(why) = refusal {
                metrics.refuse_tcp(why, Some(peer.ip()));
                // dropping the stream closes it
                continue;
            }
            let token = Token(self.next_token);
            self.next_token = (self.next_token + 1) % (usize::MAX - 1);
            if poll
                .registry()
                .register(&mut stream, token, Interest::READABLE)
                .is_err()
            {
                metrics.refuse_tcp(TcpRefusal::AcceptFailed, Some(peer.ip()));
                continue;
            }
            *self.per_source.entry(peer.ip()).or_default() += 1;
            self.handshaking += 1;
            metrics.tcp_opened(1);
            // a reconnection from the same address and port is a new
            // session: the closed one's templates and numbers are not its own
            intake.decoder.forget_session(peer, Transport::Tcp);
            let now = Instant::now();
            self.open.insert(
                token,
                Connection {
                    stream,
                    peer,
                    framer: StreamFramer::default(),
                    opened: now,
                    last_data: now,
                    framed: false,
                },
            );
            self.read(token, poll, chunk, intake);
            // the handshake limit weighs only connections whose first
            // message is not already here
            let still_shaking = self.open.get(&token).is_some_and(|c| !c.framed);
            if still_shaking && self.handshaking > self.limits.max_handshaking {
                self.close(token, poll, intake, None);
                metrics.refuse_tcp(TcpRefusal::HandshakeLimit, Some(peer.ip()));
                continue;
            }
            metrics.tcp_connections.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Reads what `token`'s connection has sent, decoding every whole
    /// message; closes it at its end, on an error, or on data that cannot
    /// be framed.
    fn read(&mut self, token: Token, poll: &Poll, chunk: &mut [u8], intake: &mut Intake) {
        let Some(c) = self.open.get_mut(&token) else {
            return;
        };
        let mut ending = None;
        // edge-triggered: read until the socket has nothing more, or the
        // turn is over and the connection queues for the next
        let mut reads = 0;
        loop {
            if reads == READS_PER_TURN {
                self.ready.push_back(token);
                break;
            }
            reads += 1;
            match c.stream.read(chunk) {
                Ok(0) => {
                    ending = Some(TcpClose::Peer);
                    break;
                }
                Ok(n) => {
                    c.last_data = Instant::now();
                    let was_framed = c.framed;
                    if let Err(why) = frame(c, &chunk[..n], intake) {
                        ending = Some(why);
                        break;
                    }
                    if c.framed && !was_framed {
                        self.handshaking -= 1;
                    }
                    if intake.state.due(&intake.out) {
                        // the batch is full: hand off before reading on
                        self.ready.push_back(token);
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    ending = Some(TcpClose::Error);
                    break;
                }
            }
        }
        if let Some(why) = ending {
            self.close(token, poll, intake, Some(why));
        }
    }

    /// Closes connections past their opening or idle timeout, and forgets
    /// the sessions of those closed longer ago than the linger.
    fn expire(&mut self, poll: &Poll, intake: &mut Intake) {
        let now = Instant::now();
        self.last_expiry = now;
        let limits = self.limits;
        let late: Vec<(Token, TcpClose)> = self
            .open
            .iter()
            .filter_map(|(&token, c)| {
                if !c.framed && now.duration_since(c.opened) > limits.handshake_timeout {
                    Some((token, TcpClose::HandshakeTimeout))
                } else if now.duration_since(c.last_data) > limits.idle_timeout {
                    Some((token, TcpClose::IdleTimeout))
                } else {
                    None
                }
            })
            .collect();
        for (token, why) in late {
            self.close(token, poll, intake, Some(why));
        }
        while let Some(&(at, peer)) = self.closed.front() {
            if now.duration_since(at) < limits.closed_linger {
                break;
            }
            self.closed.pop_front();
            // the same address and port may have connected again since
            if !self.open.values().any(|c| c.peer == peer) {
                intake.decoder.forget_session(peer, Transport::Tcp);
            }
        }
    }

    /// Ends a connection: what it left unfinished is counted, its
    /// templates are withdrawn, and its counters linger. `why` is `None`
    /// when the collector itself stops.
    fn close(&mut self, token: Token, poll: &Poll, intake: &mut Intake, why: Option<TcpClose>) {
        let Some(mut c) = self.open.remove(&token) else {
            return;
        };
        let _ = poll.registry().deregister(&mut c.stream);
        let metrics = &intake.state.metrics;
        if let Some(why) = why {
            metrics.close_tcp(why);
        }
        metrics.tcp_opened(-1);
        if let Some(n) = self.per_source.get_mut(&c.peer.ip()) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&c.peer.ip());
            }
        }
        if !c.framed {
            self.handshaking -= 1;
            // it never sent a whole message: no session to show, nothing
            // to linger (a flood of such connections must not leave any)
            if !c.framer.pending().is_empty() {
                metrics.receive_errors.fetch_add(1, Ordering::Relaxed);
            }
            intake.decoder.forget_session(c.peer, Transport::Tcp);
            return;
        }
        if !c.framer.pending().is_empty() {
            // the connection ended inside a message
            let _ = intake.decoder.decode(
                c.peer,
                Transport::Tcp,
                now_ns(),
                c.framer.pending(),
                &mut intake.out,
            );
        }
        intake.decoder.end_session(c.peer, Transport::Tcp);
        self.closed.push_back((Instant::now(), c.peer));
        // at most as many linger as may be open: the oldest goes first
        if self.closed.len() > self.limits.max_connections
            && let Some((_, oldest)) = self.closed.pop_front()
            && !self.open.values().any(|o| o.peer == oldest)
        {
            intake.decoder.forget_session(oldest, Transport::Tcp);
        }
    }
}

/// Decodes every whole message that `data` completes on `c`; fails on a
/// header that cannot be an IPFIX message, after which the stream cannot
/// be resynchronised.
fn frame(c: &mut Connection, data: &[u8], intake: &mut Intake) -> Result<(), TcpClose> {
    let now = now_ns();
    let peer = c.peer;
    let framed = c
        .framer
        .feed(data, |message| intake.accept(peer, now, message));
    match framed {
        Ok(messages) => {
            c.framed |= messages > 0;
            Ok(())
        }
        Err(bad) => {
            // the decoder counts the bad header by its reason
            let _ = intake
                .decoder
                .decode(peer, Transport::Tcp, now, &bad.header, &mut intake.out);
            intake
                .state
                .metrics
                .receive_errors
                .fetch_add(1, Ordering::Relaxed);
            Err(TcpClose::Unframeable)
        }
    }
}
