//! The subset of ASN.1 BER that SNMP uses (RFC 3416's types), encoding and
//! decoding. Decoding works on borrowed bytes, never panics, and refuses
//! lengths that run past the buffer or past four length octets.

use std::fmt;

use crate::SnmpError;

pub(crate) const INTEGER: u8 = 0x02;
pub(crate) const OCTET_STRING: u8 = 0x04;
pub(crate) const NULL: u8 = 0x05;
pub(crate) const OBJECT_ID: u8 = 0x06;
pub(crate) const SEQUENCE: u8 = 0x30;
const IP_ADDRESS: u8 = 0x40;
const COUNTER32: u8 = 0x41;
const GAUGE32: u8 = 0x42;
const TIME_TICKS: u8 = 0x43;
const OPAQUE: u8 = 0x44;
const COUNTER64: u8 = 0x46;
const NO_SUCH_OBJECT: u8 = 0x80;
const NO_SUCH_INSTANCE: u8 = 0x81;
const END_OF_MIB_VIEW: u8 = 0x82;

/// An object identifier, as its arcs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Oid(pub Vec<u32>);

impl Oid {
    /// Parses dotted text (`1.3.6.1.2.1.1.3.0`); `None` when it is not one.
    pub fn parse(text: &str) -> Option<Oid> {
        let arcs: Option<Vec<u32>> = text
            .trim()
            .trim_start_matches('.')
            .split('.')
            .map(|a| a.parse().ok())
            .collect();
        arcs.filter(|a| a.len() >= 2 && a[0] <= 2).map(Oid)
    }

    /// This OID with `arc` appended.
    pub fn child(&self, arc: u32) -> Oid {
        let mut arcs = self.0.clone();
        arcs.push(arc);
        Oid(arcs)
    }

    pub fn starts_with(&self, prefix: &Oid) -> bool {
        self.0.starts_with(&prefix.0)
    }

    fn encode(&self) -> Vec<u8> {
        let arcs = &self.0;
        let mut out = Vec::with_capacity(arcs.len() + 4);
        let first = arcs.first().copied().unwrap_or(0) * 40 + arcs.get(1).copied().unwrap_or(0);
        push_base128(&mut out, first);
        for &arc in arcs.iter().skip(2) {
            push_base128(&mut out, arc);
        }
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Oid, SnmpError> {
        let mut arcs = Vec::with_capacity(bytes.len() + 1);
        let mut value: u64 = 0;
        for (i, &b) in bytes.iter().enumerate() {
            value = (value << 7) | u64::from(b & 0x7f);
            if value > u64::from(u32::MAX) {
                return Err(SnmpError::Malformed("an OID arc exceeds 32 bits"));
            }
            if b & 0x80 == 0 {
                if arcs.is_empty() {
                    // the first octets carry two arcs: 40 × first + second
                    let first = (value / 40).min(2);
                    arcs.push(first as u32);
                    arcs.push((value - first * 40) as u32);
                } else {
                    arcs.push(value as u32);
                }
                value = 0;
            } else if i + 1 == bytes.len() {
                return Err(SnmpError::Malformed("an OID ends inside an arc"));
            }
        }
        if arcs.is_empty() {
            return Err(SnmpError::Malformed("an empty OID"));
        }
        Ok(Oid(arcs))
    }
}

impl fmt::Display for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, arc) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{arc}")?;
        }
        Ok(())
    }
}

fn push_base128(out: &mut Vec<u8>, value: u32) {
    let mut groups = [0u8; 5];
    let mut n = 0;
    let mut v = value;
    loop {
        groups[n] = (v & 0x7f) as u8;
        n += 1;
        v >>= 7;
        if v == 0 {
            break;
        }
    }
    for i in (0..n).rev() {
        out.push(groups[i] | if i > 0 { 0x80 } else { 0 });
    }
}

/// A variable's value (RFC 3416 `ObjectSyntax`, with the exceptions a
/// response may carry in its place).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Integer(i64),
    OctetString(Vec<u8>),
    Null,
    Oid(Oid),
    IpAddress([u8; 4]),
    Counter32(u32),
    Gauge32(u32),
    TimeTicks(u32),
    Opaque(Vec<u8>),
    Counter64(u64),
    NoSuchObject,
    NoSuchInstance,
    EndOfMibView,
}

impl Value {
    /// The value as an unsigned number, for counters, gauges and integers.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::Integer(i) => u64::try_from(i).ok(),
            Value::Counter32(v) | Value::Gauge32(v) | Value::TimeTicks(v) => Some(u64::from(v)),
            Value::Counter64(v) => Some(v),
            _ => None,
        }
    }

    /// The value as text (an octet string, lossily decoded).
    pub fn as_text(&self) -> Option<String> {
        match self {
            Value::OctetString(b) => Some(
                String::from_utf8_lossy(b)
                    .trim_end_matches('\0')
                    .to_string(),
            ),
            _ => None,
        }
    }

    /// Whether the agent has no value here (an exception, not data).
    pub fn is_exception(&self) -> bool {
        matches!(
            self,
            Value::NoSuchObject | Value::NoSuchInstance | Value::EndOfMibView
        )
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::Integer(i) => tlv(out, INTEGER, &signed(*i)),
            Value::OctetString(b) => tlv(out, OCTET_STRING, b),
            Value::Null => tlv(out, NULL, &[]),
            Value::Oid(o) => tlv(out, OBJECT_ID, &o.encode()),
            Value::IpAddress(a) => tlv(out, IP_ADDRESS, a),
            Value::Counter32(v) => tlv(out, COUNTER32, &unsigned(u64::from(*v))),
            Value::Gauge32(v) => tlv(out, GAUGE32, &unsigned(u64::from(*v))),
            Value::TimeTicks(v) => tlv(out, TIME_TICKS, &unsigned(u64::from(*v))),
            Value::Opaque(b) => tlv(out, OPAQUE, b),
            Value::Counter64(v) => tlv(out, COUNTER64, &unsigned(*v)),
            Value::NoSuchObject => tlv(out, NO_SUCH_OBJECT, &[]),
            Value::NoSuchInstance => tlv(out, NO_SUCH_INSTANCE, &[]),
            Value::EndOfMibView => tlv(out, END_OF_MIB_VIEW, &[]),
        }
    }

    pub(crate) fn decode(tag: u8, content: &[u8]) -> Result<Value, SnmpError> {
        let narrow = |v: u64| {
            u32::try_from(v).map_err(|_| SnmpError::Malformed("a 32-bit value has more bits"))
        };
        Ok(match tag {
            INTEGER => Value::Integer(decode_signed(content)?),
            OCTET_STRING => Value::OctetString(content.to_vec()),
            NULL => Value::Null,
            OBJECT_ID => Value::Oid(Oid::decode(content)?),
            IP_ADDRESS => Value::IpAddress(
                content
                    .try_into()
                    .map_err(|_| SnmpError::Malformed("an IpAddress is not four octets"))?,
            ),
            COUNTER32 => Value::Counter32(narrow(decode_unsigned(content)?)?),
            GAUGE32 => Value::Gauge32(narrow(decode_unsigned(content)?)?),
            TIME_TICKS => Value::TimeTicks(narrow(decode_unsigned(content)?)?),
            OPAQUE => Value::Opaque(content.to_vec()),
            COUNTER64 => Value::Counter64(decode_unsigned(content)?),
            NO_SUCH_OBJECT => Value::NoSuchObject,
            NO_SUCH_INSTANCE => Value::NoSuchInstance,
            END_OF_MIB_VIEW => Value::EndOfMibView,
            _ => return Err(SnmpError::Malformed("a value of an unknown type")),
        })
    }
}

/// Appends tag, length and content.
pub(crate) fn tlv(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let octets = len.to_be_bytes();
        let skip = octets.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (octets.len() - skip) as u8);
        out.extend_from_slice(&octets[skip..]);
    }
    out.extend_from_slice(content);
}

/// The shortest two's-complement octets of `v`.
pub(crate) fn signed(v: i64) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let mut start = 0;
    while start < 7 {
        let (b, next) = (bytes[start], bytes[start + 1]);
        if (b == 0 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    bytes[start..].to_vec()
}

/// The octets of an unsigned value: a leading zero when the top bit is set.
fn unsigned(v: u64) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count().min(7);
    let mut out = Vec::with_capacity(9);
    if bytes[skip] & 0x80 != 0 {
        out.push(0);
    }
    out.extend_from_slice(&bytes[skip..]);
    out
}

fn decode_signed(content: &[u8]) -> Result<i64, SnmpError> {
    if content.is_empty() || content.len() > 8 {
        return Err(SnmpError::Malformed(
            "an INTEGER of no or more than 8 octets",
        ));
    }
    let negative = content[0] & 0x80 != 0;
    let mut v: i64 = if negative { -1 } else { 0 };
    for &b in content {
        v = (v << 8) | i64::from(b);
    }
    Ok(v)
}

fn decode_unsigned(content: &[u8]) -> Result<u64, SnmpError> {
    // agents pad with a leading zero; some send 9 octets for Counter64
    let trimmed = match content {
        [0, rest @ ..] if !rest.is_empty() => rest,
        c => c,
    };
    if content.is_empty() || trimmed.len() > 8 {
        return Err(SnmpError::Malformed(
            "an unsigned value of no or more than 8 octets",
        ));
    }
    Ok(trimmed.iter().fold(0u64, |v, &b| (v << 8) | u64::from(b)))
}

/// A cursor over concatenated TLVs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The next tag and its content.
    pub(crate) fn next(&mut self) -> Result<(u8, &'a [u8]), SnmpError> {
        let short = SnmpError::Malformed("a value runs past the end of its message");
        let [tag, first, rest @ ..] = self.bytes else {
            return Err(short);
        };
        let (len, rest) = if first & 0x80 == 0 {
            (usize::from(*first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return Err(SnmpError::Malformed("a length of no or more than 4 octets"));
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |v, &b| (v << 8) | usize::from(b));
            (len, &rest[n..])
        };
        if rest.len() < len {
            return Err(short);
        }
        let (content, after) = rest.split_at(len);
        self.bytes = after;
        Ok((*tag, content))
    }

    /// The next TLV's content, which must carry `tag`.
    pub(crate) fn expect(&mut self, tag: u8, what: &'static str) -> Result<&'a [u8], SnmpError> {
        match self.next()? {
            (t, content) if t == tag => Ok(content),
            _ => Err(SnmpError::Malformed(what)),
        }
    }

    pub(crate) fn integer(&mut self, what: &'static str) -> Result<i64, SnmpError> {
        decode_signed(self.expect(INTEGER, what)?)
    }

    /// What is left to read, as it is.
    pub(crate) fn remaining(&self) -> &'a [u8] {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(v: Value) {
        let mut out = Vec::new();
        v.encode(&mut out);
        let mut r = Reader::new(&out);
        let (tag, content) = r.next().unwrap();
        assert_eq!(Value::decode(tag, content).unwrap(), v);
        assert!(r.is_empty());
    }

    #[test]
    fn values_survive_a_round_trip() {
        for i in [0, 1, -1, 127, 128, -128, -129, 255, 256, i64::MAX, i64::MIN] {
            round_trip(Value::Integer(i));
        }
        for v in [0, 1, 127, 128, 255, 65_535, u64::from(u32::MAX), u64::MAX] {
            round_trip(Value::Counter64(v));
        }
        round_trip(Value::Counter32(u32::MAX));
        round_trip(Value::Gauge32(1_000_000_000));
        round_trip(Value::OctetString(vec![7; 300]));
        round_trip(Value::Oid(
            Oid::parse("1.3.6.1.2.1.31.1.1.1.6.4294967295").unwrap(),
        ));
        round_trip(Value::IpAddress([192, 0, 2, 1]));
        round_trip(Value::EndOfMibView);
    }

    #[test]
    fn encodings_match_the_standard() {
        // X.690's own examples and net-snmp's encoding of sysUpTime.0
        let mut out = Vec::new();
        Value::Oid(Oid::parse("1.3.6.1.2.1.1.3.0").unwrap()).encode(&mut out);
        assert_eq!(out, [0x06, 0x08, 0x2b, 6, 1, 2, 1, 1, 3, 0]);
        assert_eq!(signed(128), [0x00, 0x80]);
        assert_eq!(signed(-128), [0x80]);
        assert_eq!(unsigned(u64::from(u32::MAX)), [0, 0xff, 0xff, 0xff, 0xff]);
        let mut long = Vec::new();
        tlv(&mut long, OCTET_STRING, &[0; 200]);
        assert_eq!(&long[..3], [0x04, 0x81, 200]);
    }

    #[test]
    fn broken_input_is_an_error_not_a_panic() {
        for bad in [
            &[0x02][..],
            &[0x02, 0x05, 1],
            &[0x04, 0x85, 1, 1, 1, 1, 1],
            &[0x04, 0x84, 0xff, 0xff, 0xff, 0xff],
            &[0x06, 0x01, 0x81],
        ] {
            let mut r = Reader::new(bad);
            let decoded = r.next().and_then(|(t, c)| Value::decode(t, c));
            assert!(decoded.is_err(), "{bad:?}");
        }
    }
}
