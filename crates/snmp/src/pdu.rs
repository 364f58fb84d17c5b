//! Protocol data units (RFC 3416) and the community-based message of
//! SNMPv2c (RFC 1901) around them.

use crate::SnmpError;
use crate::ber::{self, INTEGER, OBJECT_ID, OCTET_STRING, Oid, Reader, SEQUENCE, Value};

/// The PDU kinds hopscope sends and reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PduKind {
    Get,
    GetNext,
    Response,
    GetBulk,
    Report,
}

impl PduKind {
    fn tag(self) -> u8 {
        match self {
            PduKind::Get => 0xa0,
            PduKind::GetNext => 0xa1,
            PduKind::Response => 0xa2,
            PduKind::GetBulk => 0xa5,
            PduKind::Report => 0xa8,
        }
    }

    fn from_tag(tag: u8) -> Option<PduKind> {
        Some(match tag {
            0xa0 => PduKind::Get,
            0xa1 => PduKind::GetNext,
            0xa2 => PduKind::Response,
            0xa5 => PduKind::GetBulk,
            0xa8 => PduKind::Report,
            _ => return None,
        })
    }
}

/// One PDU. For `GetBulk` the two middle fields are non-repeaters and
/// max-repetitions; for the others error status and index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pdu {
    pub kind: PduKind,
    pub request_id: i32,
    pub error_status: i64,
    pub error_index: i64,
    pub bindings: Vec<(Oid, Value)>,
}

impl Pdu {
    /// A request for `oids` (values Null).
    pub fn request(kind: PduKind, request_id: i32, oids: &[Oid]) -> Pdu {
        Pdu {
            kind,
            request_id,
            error_status: 0,
            error_index: 0,
            bindings: oids.iter().map(|o| (o.clone(), Value::Null)).collect(),
        }
    }

    /// A GetBulk request: `max_repetitions` successors of each OID.
    pub fn bulk(request_id: i32, oids: &[Oid], max_repetitions: u16) -> Pdu {
        Pdu {
            error_index: i64::from(max_repetitions),
            ..Pdu::request(PduKind::GetBulk, request_id, oids)
        }
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let mut bindings = Vec::new();
        for (oid, value) in &self.bindings {
            let mut binding = Vec::new();
            Value::Oid(oid.clone()).encode(&mut binding);
            value.encode(&mut binding);
            ber::tlv(&mut bindings, SEQUENCE, &binding);
        }
        let mut body = Vec::with_capacity(bindings.len() + 16);
        ber::tlv(&mut body, INTEGER, &ber::signed(i64::from(self.request_id)));
        ber::tlv(&mut body, INTEGER, &ber::signed(self.error_status));
        ber::tlv(&mut body, INTEGER, &ber::signed(self.error_index));
        ber::tlv(&mut body, SEQUENCE, &bindings);
        ber::tlv(out, self.kind.tag(), &body);
    }

    pub(crate) fn decode(reader: &mut Reader<'_>) -> Result<Pdu, SnmpError> {
        let (tag, content) = reader.next()?;
        let kind =
            PduKind::from_tag(tag).ok_or(SnmpError::Malformed("a PDU of an unexpected type"))?;
        let mut r = Reader::new(content);
        let request_id = r.integer("a PDU without a request id")?;
        let error_status = r.integer("a PDU without an error status")?;
        let error_index = r.integer("a PDU without an error index")?;
        let mut list = Reader::new(r.expect(SEQUENCE, "a PDU without bindings")?);
        let mut bindings = Vec::new();
        while !list.is_empty() {
            let mut binding = Reader::new(list.expect(SEQUENCE, "a binding is not a sequence")?);
            let oid = Oid::decode(binding.expect(OBJECT_ID, "a binding without an OID")?)?;
            let (tag, content) = binding.next()?;
            bindings.push((oid, Value::decode(tag, content)?));
        }
        Ok(Pdu {
            kind,
            request_id: i32::try_from(request_id)
                .map_err(|_| SnmpError::Malformed("a request id out of range"))?,
            error_status,
            error_index,
            bindings,
        })
    }
}

/// A whole SNMPv2c message: version 1 (v2c), the community, the PDU.
pub fn encode_community(community: &[u8], pdu: &Pdu) -> Vec<u8> {
    let mut body = Vec::new();
    ber::tlv(&mut body, INTEGER, &[1]);
    ber::tlv(&mut body, OCTET_STRING, community);
    pdu.encode(&mut body);
    let mut out = Vec::with_capacity(body.len() + 4);
    ber::tlv(&mut out, SEQUENCE, &body);
    out
}

/// The PDU of an SNMPv2c message, with its community.
pub fn decode_community(bytes: &[u8]) -> Result<(Vec<u8>, Pdu), SnmpError> {
    let mut outer = Reader::new(bytes);
    let mut r = Reader::new(outer.expect(SEQUENCE, "a message is not a sequence")?);
    let version = r.integer("a message without a version")?;
    if version != 1 {
        return Err(SnmpError::Malformed("not an SNMPv2c message"));
    }
    let community = r.expect(OCTET_STRING, "a message without a community")?;
    Ok((community.to_vec(), Pdu::decode(&mut r)?))
}

/// The message's version field, to tell v2c from v3 before decoding.
pub fn version_of(bytes: &[u8]) -> Result<i64, SnmpError> {
    let mut outer = Reader::new(bytes);
    Reader::new(outer.expect(SEQUENCE, "a message is not a sequence")?)
        .integer("a message without a version")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_get_request_is_what_net_snmp_sends() {
        // snmpget -v2c -c public 127.0.0.1 1.3.6.1.2.1.1.3.0 with request id 1,
        // as tshark shows it
        let pdu = Pdu::request(PduKind::Get, 1, &[Oid::parse("1.3.6.1.2.1.1.3.0").unwrap()]);
        let bytes = encode_community(b"public", &pdu);
        let expected = [
            0x30, 0x26, 0x02, 0x01, 0x01, 0x04, 0x06, b'p', b'u', b'b', b'l', b'i', b'c', 0xa0,
            0x19, 0x02, 0x01, 0x01, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x30, 0x0e, 0x30, 0x0c,
            0x06, 0x08, 0x2b, 0x06, 0x01, 0x02, 0x01, 0x01, 0x03, 0x00, 0x05, 0x00,
        ];
        assert_eq!(bytes, expected);
        let (community, back) = decode_community(&bytes).unwrap();
        assert_eq!(community, b"public");
        assert_eq!(back, pdu);
    }

    #[test]
    fn truncated_messages_are_errors() {
        let pdu = Pdu::bulk(7, &[Oid::parse("1.3.6.1.2.1.2.2.1.2").unwrap()], 25);
        let bytes = encode_community(b"public", &pdu);
        for cut in 0..bytes.len() {
            assert!(decode_community(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }
}
