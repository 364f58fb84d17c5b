//! SNMP as hopscope needs it: a client that reads IF-MIB's interface
//! table (names, descriptions, speeds, states, octet counters) from the
//! exporters, so that capacity planning knows how fast each link is and
//! has the device's own counters to hold flow volumes against.
//!
//! It speaks SNMPv2c and SNMPv3 (USM with MD5, SHA-1 or SHA-256
//! authentication and AES-128 privacy) over UDP, blocking, one session per
//! agent; polling on a schedule, caching and counting failures belong to
//! the pipeline that runs it. Decoding never panics: a malformed or
//! unauthenticated response is an error.

#![forbid(unsafe_code)]

mod ber;
mod client;
pub mod ifmib;
mod pdu;
mod usm;

pub use ber::{Oid, Value};
pub use client::{Security, Session, Target};
pub use usm::{AuthProtocol, PrivProtocol, User};

/// Why a request got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum SnmpError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("no response within the timeout")]
    Timeout,
    #[error("nothing listens at the agent's address (ICMP port unreachable)")]
    Refused,
    #[error("malformed response: {0}")]
    Malformed(&'static str),
    #[error("the response's authentication digest is wrong: check the authentication password")]
    Authentication,
    #[error("the agent refused the request: {0}")]
    Report(&'static str),
    #[error("the agent answered with error status {status} at binding {index}")]
    Agent { status: i64, index: i64 },
}

impl SnmpError {
    /// Whether the agent did not answer at all (as opposed to answering
    /// with something wrong), for counting the two apart.
    pub fn is_timeout(&self) -> bool {
        matches!(self, SnmpError::Timeout)
    }
}

/// The bindings of a v2c or v3 message as an agent would send them,
/// read without keys (an authenticated v3 message is an error): what the
/// fuzzer drives, since every response goes through these decoders.
pub fn decode_message(bytes: &[u8]) -> Result<Vec<(Oid, Value)>, SnmpError> {
    if pdu::version_of(bytes)? == 3 {
        let nobody = User {
            name: String::new(),
            auth: None,
            privacy: None,
        };
        return Ok(usm::decode_response(bytes, &nobody, None)?.pdu.bindings);
    }
    Ok(pdu::decode_community(bytes)?.1.bindings)
}
