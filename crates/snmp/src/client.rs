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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Security {
    /// SNMPv2c with this community.
    Community(String),
    /// SNMPv3 with this user.
    Usm(User),
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
        })
    }

    pub fn target(&self) -> &Target {
        &self.target
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
        let Security::Usm(user) = self.target.security.clone() else {
            return self.exchange_community(request);
        };
        if self.engine.is_none() {
            self.discover(&user)?;
        }
        for attempt in 0..2 {
            let response = self.exchange_usm(&user, &request)?;
            if response.pdu.kind != PduKind::Report {
                return Ok(response.pdu);
            }
            let reported = response.pdu.bindings.first().map(|(o, _)| o.clone());
            let in_window = reported.as_ref().is_some_and(|o| {
                o.0.starts_with(&USM_STATS) && o.0.get(USM_STATS.len()) == Some(&NOT_IN_TIME_WINDOW)
            });
            if in_window && attempt == 0 {
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
        unreachable!("the loop returns on its second attempt")
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

    fn exchange_community(&mut self, request: Pdu) -> Result<Pdu, SnmpError> {
        let Security::Community(community) = &self.target.security else {
            unreachable!("called for community targets only")
        };
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
        let response = self.round_trip(&bytes, |reply| {
            let r = usm::decode_response(reply, user, engine.as_ref())?;
            Ok((r.msg_id == msg_id).then_some(r))
        })?;
        if response.pdu.kind == PduKind::Response {
            check_status(response.pdu.clone())?;
        }
        Ok(response)
    }

    /// Sends `bytes` until `accept` takes a reply, within the timeout per
    /// try; replies to earlier requests are skipped.
    fn round_trip<T>(
        &mut self,
        bytes: &[u8],
        mut accept: impl FnMut(&[u8]) -> Result<Option<T>, SnmpError>,
    ) -> Result<T, SnmpError> {
        let mut buf = vec![0u8; 65_536];
        for _ in 0..=self.target.retries {
            self.socket.send(bytes)?;
            let deadline = Instant::now() + self.target.timeout;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                self.socket.set_read_timeout(Some(left))?;
                let n = match self.socket.recv(&mut buf) {
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
                if let Some(t) = accept(&buf[..n])? {
                    return Ok(t);
                }
            }
        }
        Err(SnmpError::Timeout)
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
