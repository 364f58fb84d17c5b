//! A blocking SNMP session with one agent over UDP: requests with
//! timeouts and retries, SNMPv3 engine discovery, and table walks by
//! GetBulk.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use crate::SnmpError;
use crate::ber::{Oid, Value};
use crate::pdu::{self, Pdu, PduKind};
use crate::usm::{self, Engine, User};

/// How requests to an agent are secured.
#[derive(Clone, PartialEq, Eq)]
pub enum Security {
    /// SNMPv2c with this community.
    Community(String),
    /// SNMPv3 with this user.
    Usm(User),
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // a community is a password: kept out of logs
            Security::Community(_) => f.write_str("Community(..)"),
            Security::Usm(user) => f.debug_tuple("Usm").field(user).finish(),
        }
    }
}

/// An agent and how to talk to it.
#[derive(Debug, Clone)]
pub struct Target {
    pub address: SocketAddr,
    pub security: Security,
    /// How long to wait for each response.
    pub timeout: Duration,
    /// Requests sent again after a timeout.
    pub retries: u32,
}

/// A session with one agent.
#[derive(Debug)]
pub struct Session {
    socket: UdpSocket,
    target: Target,
    next_id: i32,
    engine: Option<Engine>,
    salt: u64,
    /// One receive buffer for the session's answers.
    buffer: Vec<u8>,
}

/// usmStats counters an agent reports instead of answering (RFC 3414 5).
const USM_STATS: [u32; 9] = [1, 3, 6, 1, 6, 3, 15, 1, 1];
const NOT_IN_TIME_WINDOW: u32 = 2;

impl Session {
    pub fn new(target: Target) -> Result<Session, SnmpError> {
        let bind: SocketAddr = if target.address.is_ipv4() {
            "0.0.0.0:0".parse().expect("a literal address")
        } else {
            "[::]:0".parse().expect("a literal address")
        };
        let socket = UdpSocket::bind(bind)?;
        socket.connect(target.address)?;
        // ids and salts differ between sessions and processes
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id()) << 32;
        Ok(Session {
            socket,
            target,
            next_id: (seed as i32 & 0x3fff_ffff).max(1),
            engine: None,
            salt: seed,
            buffer: vec![0u8; 65_536],
        })
    }

    /// The values of `oids`.
    pub fn get(&mut self, oids: &[Oid]) -> Result<Vec<(Oid, Value)>, SnmpError> {
        let id = self.take_id();
        Ok(self
            .exchange(Pdu::request(PduKind::Get, id, oids))?
            .bindings)
    }

    /// Every instance under `column`, in OID order, by GetBulk requests of
    /// `max_repetitions` (bounded to 100 000 rows against a looping agent).
    pub fn walk(
        &mut self,
        column: &Oid,
        max_repetitions: u16,
    ) -> Result<Vec<(Oid, Value)>, SnmpError> {
        const MAX_ROWS: usize = 100_000;
        let mut rows = Vec::new();
        let mut from = column.clone();
        loop {
            let id = self.take_id();
            let response =
                self.exchange(Pdu::bulk(id, std::slice::from_ref(&from), max_repetitions))?;
            if response.bindings.is_empty() {
                return Ok(rows);
            }
            for (oid, value) in response.bindings {
                if !oid.starts_with(column) || value.is_exception() {
                    return Ok(rows);
                }
                if oid <= from {
                    return Err(SnmpError::Malformed("the agent's walk went backwards"));
                }
                from = oid.clone();
                rows.push((oid, value));
                if rows.len() >= MAX_ROWS {
                    return Ok(rows);
                }
            }
        }
    }

    fn take_id(&mut self) -> i32 {
        let id = self.next_id;
        self.next_id = if id >= 0x3fff_ffff { 1 } else { id + 1 };
        id
    }

    /// Sends `request` and returns the agent's response PDU: the
    /// discovery first for SNMPv3, and again once if the agent says our
    /// clock is out of its window (it rebooted).
    fn exchange(&mut self, request: Pdu) -> Result<Pdu, SnmpError> {
        let user = match self.target.security.clone() {
            Security::Community(community) => return self.exchange_community(&community, request),
            Security::Usm(user) => user,
        };
        if self.engine.is_none() {
            self.discover(&user)?;
        }
        let mut resynchronised = false;
        loop {
            let response = self.exchange_usm(&user, &request)?;
            if response.pdu.kind != PduKind::Report {
                return Ok(response.pdu);
            }
            let reported = response.pdu.bindings.first().map(|(o, _)| o.clone());
            let in_window = reported.as_ref().is_some_and(|o| {
                o.0.starts_with(&USM_STATS) && o.0.get(USM_STATS.len()) == Some(&NOT_IN_TIME_WINDOW)
            });
            // the agent sends this report authenticated (RFC 3414 3.2 7b): an
            // unauthenticated one may be anyone's, and must not move our clock
            let ours = self
                .engine
                .as_ref()
                .is_some_and(|e| e.id == response.engine_id);
            if in_window && !resynchronised && response.authenticated && ours {
                resynchronised = true;
                self.engine = Some(Engine::new(
                    &user,
                    response.engine_id,
                    response.boots,
                    response.time,
                ));
                continue;
            }
            return Err(SnmpError::Report(
                reported.map(|o| report_name(&o)).unwrap_or("a report"),
            ));
        }
    }

    fn discover(&mut self, user: &User) -> Result<(), SnmpError> {
        let id = self.take_id();
        let response = self.exchange_usm(user, &Pdu::request(PduKind::Get, id, &[]))?;
        if response.engine_id.is_empty() {
            return Err(SnmpError::Malformed("the agent did not give its engine id"));
        }
        self.engine = Some(Engine::new(
            user,
            response.engine_id,
            response.boots,
            response.time,
        ));
        Ok(())
    }

    fn exchange_community(&mut self, community: &str, request: Pdu) -> Result<Pdu, SnmpError> {
        let bytes = pdu::encode_community(community.as_bytes(), &request);
        let id = request.request_id;
        self.round_trip(&bytes, |reply| {
            let (_, pdu) = pdu::decode_community(reply)?;
            Ok((pdu.request_id == id).then_some(pdu))
        })
        .and_then(check_status)
    }

    fn exchange_usm(&mut self, user: &User, request: &Pdu) -> Result<usm::Response, SnmpError> {
        let msg_id = self.take_id();
        self.salt = self.salt.wrapping_add(1);
        let bytes = usm::encode_request(msg_id, user, self.engine.as_ref(), request, self.salt)?;
        let engine = self.engine.clone();
        // once there are keys, an answer must use them: one without its
        // digest (or unencrypted, with privacy) is not the agent's
        let keyed = engine.is_some() && user.auth.is_some();
        let response = self.round_trip(&bytes, |reply| {
            let r = usm::decode_response(reply, user, engine.as_ref())?;
            let secured = !keyed || (r.authenticated && (r.encrypted || user.privacy.is_none()));
            let answer = r.pdu.kind == PduKind::Response;
            Ok((r.msg_id == msg_id && (secured || !answer)).then_some(r))
        })?;
        if response.pdu.kind == PduKind::Response {
            check_status(response.pdu.clone())?;
        }
        Ok(response)
    }

    /// Sends `bytes` until `accept` takes a reply, within the timeout per
    /// try; replies to earlier requests, and datagrams that do not decode
    /// (anyone can send one), are skipped. Without an answer, the error of
    /// the last datagram refused, else a timeout.
    fn round_trip<T>(
        &mut self,
        bytes: &[u8],
        mut accept: impl FnMut(&[u8]) -> Result<Option<T>, SnmpError>,
    ) -> Result<T, SnmpError> {
        let mut refused = None;
        for _ in 0..=self.target.retries {
            self.socket.send(bytes)?;
            let deadline = Instant::now() + self.target.timeout;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                self.socket.set_read_timeout(Some(left))?;
                let n = match self.socket.recv(&mut self.buffer) {
                    Ok(n) => n,
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        break;
                    }
                    // an ICMP port unreachable: nothing listens there
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        return Err(SnmpError::Refused);
                    }
                    Err(e) => return Err(e.into()),
                };
                match accept(&self.buffer[..n]) {
                    Ok(Some(t)) => return Ok(t),
                    Ok(None) => {}
                    Err(e) => refused = Some(e),
                }
            }
        }
        Err(refused.unwrap_or(SnmpError::Timeout))
    }
}

fn check_status(pdu: Pdu) -> Result<Pdu, SnmpError> {
    if pdu.error_status != 0 {
        return Err(SnmpError::Agent {
            status: pdu.error_status,
            index: pdu.error_index,
        });
    }
    Ok(pdu)
}

/// The name of the usmStats counter a report carries.
fn report_name(oid: &Oid) -> &'static str {
    if !oid.0.starts_with(&USM_STATS) {
        return "an unexpected report";
    }
    match oid.0.get(USM_STATS.len()) {
        Some(1) => "unsupported security level (usmStatsUnsupportedSecLevels)",
        Some(2) => "not in time window (usmStatsNotInTimeWindows)",
        Some(3) => "unknown user name (usmStatsUnknownUserNames)",
        Some(4) => "unknown engine id (usmStatsUnknownEngineIDs)",
        Some(5) => "wrong digest: the authentication password (usmStatsWrongDigests)",
        Some(6) => "decryption error: the privacy password (usmStatsDecryptionErrors)",
        _ => "an unexpected report",
    }
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;

    use super::*;
    use crate::usm::{AuthProtocol, PrivProtocol};

    /// An agent on loopback that answers the discovery honestly, then
    /// answers the authenticated request twice: first with an
    /// unauthenticated response (what anyone who can spoof the agent's
    /// address could send), then with the real one. Fault injection: no
    /// real agent sends the first.
    #[test]
    fn an_unauthenticated_answer_is_not_taken_for_the_agents() {
        let agent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let address = agent.local_addr().unwrap();
        let user = User {
            name: "ops".into(),
            auth: Some((AuthProtocol::Sha1, "authpassword".into())),
            privacy: Some((PrivProtocol::Aes128, "privpassword".into())),
        };
        let anyone = User {
            name: "ops".into(),
            auth: None,
            privacy: None,
        };
        let serving = user.clone();
        let server = std::thread::spawn(move || {
            let engine = Engine::new(&serving, b"\x80\x00\x1f\x88\x04test".to_vec(), 1, 100);
            let mut buf = [0u8; 4096];
            // the discovery: a report with the engine's id
            let (n, from) = agent.recv_from(&mut buf).unwrap();
            let asked = usm::decode_response(&buf[..n], &serving, None).unwrap();
            let report = Pdu {
                kind: PduKind::Report,
                ..Pdu::request(PduKind::Report, asked.pdu.request_id, &[])
            };
            let bare = Engine::new(&anyone, engine.id.clone(), 1, 100);
            let reply =
                usm::encode_request(asked.msg_id, &anyone, Some(&bare), &report, 0).unwrap();
            agent.send_to(&reply, from).unwrap();
            // the request, authenticated and encrypted
            let (n, from) = agent.recv_from(&mut buf).unwrap();
            let asked = usm::decode_response(&buf[..n], &serving, Some(&engine)).unwrap();
            let oid = asked.pdu.bindings[0].0.clone();
            let answer = |value: u64| Pdu {
                kind: PduKind::Response,
                bindings: vec![(oid.clone(), Value::Counter64(value))],
                ..Pdu::request(PduKind::Response, asked.pdu.request_id, &[])
            };
            let spoofed =
                usm::encode_request(asked.msg_id, &anyone, Some(&bare), &answer(666), 0).unwrap();
            agent.send_to(&spoofed, from).unwrap();
            let real =
                usm::encode_request(asked.msg_id, &serving, Some(&engine), &answer(42), 9).unwrap();
            agent.send_to(&real, from).unwrap();
        });
        let mut session = Session::new(Target {
            address,
            security: Security::Usm(user),
            timeout: Duration::from_secs(2),
            retries: 0,
        })
        .unwrap();
        let got = session
            .get(&[Oid::parse("1.3.6.1.2.1.31.1.1.1.6.1").unwrap()])
            .unwrap();
        server.join().unwrap();
        assert_eq!(got[0].1, Value::Counter64(42));
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let community = format!("{:?}", Security::Community("s3cret".into()));
        assert!(!community.contains("s3cret"), "{community}");
        let user = User {
            name: "ops".into(),
            auth: Some((AuthProtocol::Sha256, "authpassword".into())),
            privacy: Some((PrivProtocol::Aes128, "privpassword".into())),
        };
        let engine = format!("{:?}", Engine::new(&user, b"id".to_vec(), 1, 1));
        let user = format!("{user:?}");
        for text in [&engine, &user] {
            assert!(
                !text.contains("password") && !text.contains("key"),
                "{text}"
            );
        }
    }
}
