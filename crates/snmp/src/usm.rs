//! SNMPv3 messages with the user-based security model (RFC 3412, 3414):
//! keys from passwords, HMAC authentication (MD5 and SHA-1 truncated to 96
//! bits, SHA-256 to 192 bits as RFC 7860 has it) and AES-128 privacy in
//! CFB mode (RFC 3826). DES privacy is not offered: RFC 3414's DES is
//! broken and the agents that still need it are configured to refuse it.

use aes::Aes128;
use aes::cipher::{BlockEncrypt, KeyInit, generic_array::GenericArray};
use hmac::{Hmac, Mac};
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::SnmpError;
use crate::ber::{self, INTEGER, OCTET_STRING, Reader, SEQUENCE};
use crate::pdu::Pdu;

/// How messages are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthProtocol {
    Md5,
    Sha1,
    Sha256,
}

impl AuthProtocol {
    /// Parses `md5`, `sha` (or `sha1`) and `sha256`, as net-snmp names them.
    pub fn parse(text: &str) -> Option<AuthProtocol> {
        Some(match text.to_ascii_lowercase().as_str() {
            "md5" => AuthProtocol::Md5,
            "sha" | "sha1" | "sha-1" => AuthProtocol::Sha1,
            "sha256" | "sha-256" => AuthProtocol::Sha256,
            _ => return None,
        })
    }

    /// Octets of the truncated HMAC in `msgAuthenticationParameters`.
    fn mac_len(self) -> usize {
        match self {
            AuthProtocol::Md5 | AuthProtocol::Sha1 => 12,
            AuthProtocol::Sha256 => 24,
        }
    }

    fn hash(self, parts: &[&[u8]]) -> Vec<u8> {
        fn run<D: Digest>(parts: &[&[u8]]) -> Vec<u8> {
            let mut d = D::new();
            for p in parts {
                d.update(p);
            }
            d.finalize().to_vec()
        }
        match self {
            AuthProtocol::Md5 => run::<Md5>(parts),
            AuthProtocol::Sha1 => run::<Sha1>(parts),
            AuthProtocol::Sha256 => run::<Sha256>(parts),
        }
    }

    fn hmac(self, key: &[u8], message: &[u8]) -> Vec<u8> {
        fn run<M: Mac + KeyInit>(key: &[u8], message: &[u8]) -> Vec<u8> {
            let mut mac = <M as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
            mac.update(message);
            mac.finalize().into_bytes().to_vec()
        }
        let mut full = match self {
            AuthProtocol::Md5 => run::<Hmac<Md5>>(key, message),
            AuthProtocol::Sha1 => run::<Hmac<Sha1>>(key, message),
            AuthProtocol::Sha256 => run::<Hmac<Sha256>>(key, message),
        };
        full.truncate(self.mac_len());
        full
    }

    /// The key of RFC 3414 A.2: the password repeated over a megabyte,
    /// hashed, then localised to the engine.
    pub fn localized_key(self, password: &[u8], engine_id: &[u8]) -> Vec<u8> {
        const EXPANDED: usize = 1 << 20;
        let mut expanded = Vec::with_capacity(EXPANDED);
        if !password.is_empty() {
            while expanded.len() < EXPANDED {
                let take = password.len().min(EXPANDED - expanded.len());
                expanded.extend_from_slice(&password[..take]);
            }
        }
        let ku = self.hash(&[&expanded]);
        self.hash(&[&ku, engine_id, &ku])
    }
}

/// How messages are encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrivProtocol {
    Aes128,
}

impl PrivProtocol {
    /// Parses `aes` (or `aes128`).
    pub fn parse(text: &str) -> Option<PrivProtocol> {
        matches!(
            text.to_ascii_lowercase().as_str(),
            "aes" | "aes128" | "aes-128"
        )
        .then_some(PrivProtocol::Aes128)
    }
}

/// A USM user with its passwords.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub auth: Option<(AuthProtocol, String)>,
    /// Privacy needs authentication (RFC 3414 3.1.1).
    pub privacy: Option<(PrivProtocol, String)>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // the passwords stay out of logs
        f.debug_struct("User")
            .field("name", &self.name)
            .field("auth", &self.auth.as_ref().map(|(p, _)| p))
            .field("privacy", &self.privacy.as_ref().map(|(p, _)| p))
            .finish()
    }
}

/// What the agent's engine said of itself, and the user's keys for it.
#[derive(Clone)]
pub(crate) struct Engine {
    pub id: Vec<u8>,
    pub boots: i64,
    /// The engine's time when `at` was taken.
    pub time: i64,
    pub at: std::time::Instant,
    auth_key: Option<Vec<u8>>,
    priv_key: Option<[u8; 16]>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // a localised key is as good as the password for this engine
        f.debug_struct("Engine")
            .field("id", &self.id)
            .field("boots", &self.boots)
            .field("time", &self.time)
            .finish_non_exhaustive()
    }
}

impl Engine {
    pub(crate) fn new(user: &User, id: Vec<u8>, boots: i64, time: i64) -> Engine {
        let auth_key = user
            .auth
            .as_ref()
            .map(|(p, password)| p.localized_key(password.as_bytes(), &id));
        // the privacy key is localised with the authentication hash
        let priv_key = user.auth.as_ref().zip(user.privacy.as_ref()).map(
            |((auth, _), (PrivProtocol::Aes128, password))| {
                let k = auth.localized_key(password.as_bytes(), &id);
                let mut key = [0u8; 16];
                key.copy_from_slice(&k[..16]);
                key
            },
        );
        Engine {
            id,
            boots,
            time,
            at: std::time::Instant::now(),
            auth_key,
            priv_key,
        }
    }

    fn time_now(&self) -> i64 {
        // engine times are below 2^31 (RFC 3414 2.2.1): no overflow here
        self.time + self.at.elapsed().as_secs().min(i32::MAX as u64) as i64
    }
}

const FLAG_AUTH: u8 = 1;
const FLAG_PRIV: u8 = 2;
const FLAG_REPORTABLE: u8 = 4;
const USM: i64 = 3;

/// `msgSecurityParameters` as RFC 3414 2.4 lays them out.
struct SecurityParameters<'a> {
    engine_id: &'a [u8],
    boots: i64,
    time: i64,
    user: &'a [u8],
    auth: &'a [u8],
    privacy: &'a [u8],
}

impl SecurityParameters<'_> {
    /// The encoding and where the authentication octets start in it.
    fn encode(&self) -> (Vec<u8>, usize) {
        let mut body = Vec::new();
        ber::tlv(&mut body, OCTET_STRING, self.engine_id);
        ber::tlv(&mut body, INTEGER, &ber::signed(self.boots));
        ber::tlv(&mut body, INTEGER, &ber::signed(self.time));
        ber::tlv(&mut body, OCTET_STRING, self.user);
        let before_auth = body.len();
        ber::tlv(&mut body, OCTET_STRING, self.auth);
        let auth_in_body = before_auth + (body.len() - before_auth - self.auth.len());
        ber::tlv(&mut body, OCTET_STRING, self.privacy);
        let mut out = Vec::new();
        ber::tlv(&mut out, SEQUENCE, &body);
        let header = out.len() - body.len();
        (out, header + auth_in_body)
    }
}

/// Encodes a request for `engine` (or, without one, the discovery request
/// that asks the agent for its engine id), with `salt` for privacy.
pub(crate) fn encode_request(
    msg_id: i32,
    user: &User,
    engine: Option<&Engine>,
    pdu: &Pdu,
    salt: u64,
) -> Result<Vec<u8>, SnmpError> {
    let secure = engine.filter(|e| !e.id.is_empty());
    let (auth, privacy) = match secure {
        Some(e) => (
            user.auth
                .as_ref()
                .map(|(p, _)| *p)
                .zip(e.auth_key.as_deref()),
            e.priv_key,
        ),
        None => (None, None),
    };
    let mut flags = FLAG_REPORTABLE;
    if auth.is_some() {
        flags |= FLAG_AUTH;
    }
    if privacy.is_some() {
        flags |= FLAG_PRIV;
    }
    let (engine_id, boots, time) =
        secure.map_or((&[][..], 0, 0), |e| (&e.id[..], e.boots, e.time_now()));
    let mut scoped_body = Vec::new();
    ber::tlv(&mut scoped_body, OCTET_STRING, engine_id);
    ber::tlv(&mut scoped_body, OCTET_STRING, b"");
    pdu.encode(&mut scoped_body);
    let mut scoped = Vec::new();
    ber::tlv(&mut scoped, SEQUENCE, &scoped_body);
    let salt_octets = salt.to_be_bytes();
    let data = match privacy {
        Some(key) => {
            let iv = aes_iv(boots, time, &salt_octets);
            aes_cfb(&key, &iv, &mut scoped, true);
            let mut d = Vec::new();
            ber::tlv(&mut d, OCTET_STRING, &scoped);
            d
        }
        None => scoped,
    };
    let mac_len = auth.map_or(0, |(p, _)| p.mac_len());
    let zeros = vec![0u8; mac_len];
    let params = SecurityParameters {
        engine_id,
        boots,
        time,
        user: if secure.is_some() {
            user.name.as_bytes()
        } else {
            b""
        },
        auth: &zeros,
        privacy: if privacy.is_some() { &salt_octets } else { b"" },
    };
    let (security, auth_at) = params.encode();
    let mut global = Vec::new();
    ber::tlv(&mut global, INTEGER, &ber::signed(i64::from(msg_id)));
    ber::tlv(&mut global, INTEGER, &ber::signed(65_507));
    ber::tlv(&mut global, OCTET_STRING, &[flags]);
    ber::tlv(&mut global, INTEGER, &ber::signed(USM));
    let mut body = Vec::new();
    ber::tlv(&mut body, INTEGER, &[3]);
    ber::tlv(&mut body, SEQUENCE, &global);
    let before_security = body.len();
    ber::tlv(&mut body, OCTET_STRING, &security);
    let security_in_body = before_security + (body.len() - before_security - security.len());
    body.extend_from_slice(&data);
    let mut message = Vec::new();
    ber::tlv(&mut message, SEQUENCE, &body);
    let header = message.len() - body.len();
    if let Some((protocol, key)) = auth {
        let at = header + security_in_body + auth_at;
        let mac = protocol.hmac(key, &message);
        message[at..at + mac_len].copy_from_slice(&mac);
    }
    Ok(message)
}

/// What a v3 response said: its message id, the engine's view of itself,
/// the PDU, and whether it was authenticated and encrypted (its digest
/// checked, its data decrypted with the user's keys).
#[derive(Debug)]
pub(crate) struct Response {
    pub msg_id: i32,
    pub engine_id: Vec<u8>,
    pub boots: i64,
    pub time: i64,
    pub pdu: Pdu,
    pub authenticated: bool,
    pub encrypted: bool,
}

/// Decodes, checks and decrypts a v3 message with the keys of `engine`
/// (none during discovery, when only unauthenticated reports are read).
pub(crate) fn decode_response(
    bytes: &[u8],
    user: &User,
    engine: Option<&Engine>,
) -> Result<Response, SnmpError> {
    let mut outer = Reader::new(bytes);
    let mut r = Reader::new(outer.expect(SEQUENCE, "a message is not a sequence")?);
    if r.integer("a message without a version")? != 3 {
        return Err(SnmpError::Malformed("not an SNMPv3 message"));
    }
    let mut global = Reader::new(r.expect(SEQUENCE, "a message without global data")?);
    let msg_id = global.integer("a message without an id")?;
    global.integer("a message without a maximum size")?;
    let flags = global
        .expect(OCTET_STRING, "a message without flags")?
        .first()
        .copied()
        .unwrap_or(0);
    if global.integer("a message without a security model")? != USM {
        return Err(SnmpError::Malformed("a security model other than USM"));
    }
    let mut security =
        Reader::new(r.expect(OCTET_STRING, "a message without security parameters")?);
    let mut p = Reader::new(security.expect(SEQUENCE, "security parameters are not a sequence")?);
    let engine_id = p.expect(OCTET_STRING, "no engine id")?.to_vec();
    let boots = p.integer("no engine boots")?;
    let time = p.integer("no engine time")?;
    let engine_range = 0..=i64::from(i32::MAX);
    if !engine_range.contains(&boots) || !engine_range.contains(&time) {
        return Err(SnmpError::Malformed("engine boots or time out of range"));
    }
    let _user = p.expect(OCTET_STRING, "no user name")?;
    let auth_params = p.expect(OCTET_STRING, "no authentication parameters")?;
    let priv_params = p.expect(OCTET_STRING, "no privacy parameters")?;
    let data = r.remaining();
    if flags & FLAG_AUTH != 0 {
        let keyed = engine
            .and_then(|e| e.auth_key.as_deref())
            .zip(user.auth.as_ref().map(|(p, _)| *p));
        let (key, protocol) = keyed.ok_or(SnmpError::Malformed(
            "an authenticated message without a key for it",
        ))?;
        // offsets into `bytes`: every slice the reader gave points into it
        let at = auth_params.as_ptr() as usize - bytes.as_ptr() as usize;
        let mut zeroed = bytes.to_vec();
        zeroed[at..at + auth_params.len()].fill(0);
        // in constant time: how much of a forged digest was right stays unknown
        let mac = protocol.hmac(key, &zeroed);
        let differ = mac.len() != auth_params.len()
            || mac
                .iter()
                .zip(auth_params)
                .fold(0u8, |d, (a, b)| d | (a ^ b))
                != 0;
        if differ {
            return Err(SnmpError::Authentication);
        }
    }
    let mut decrypted;
    let scoped = if flags & FLAG_PRIV != 0 {
        let key = engine.and_then(|e| e.priv_key).ok_or(SnmpError::Malformed(
            "an encrypted message without a key for it",
        ))?;
        let mut d = Reader::new(data);
        decrypted = d
            .expect(OCTET_STRING, "encrypted data is not an octet string")?
            .to_vec();
        let salt: [u8; 8] = priv_params
            .try_into()
            .map_err(|_| SnmpError::Malformed("privacy parameters are not eight octets"))?;
        aes_cfb(&key, &aes_iv(boots, time, &salt), &mut decrypted, false);
        &decrypted[..]
    } else {
        data
    };
    let mut s = Reader::new(scoped);
    // a wrong privacy key shows here, as garbage where a sequence should be
    let mut body = Reader::new(s.expect(
        SEQUENCE,
        "the scoped PDU does not decode (wrong privacy password?)",
    )?);
    body.expect(OCTET_STRING, "a scoped PDU without a context engine id")?;
    body.expect(OCTET_STRING, "a scoped PDU without a context name")?;
    let pdu = Pdu::decode(&mut body)?;
    Ok(Response {
        msg_id: i32::try_from(msg_id)
            .map_err(|_| SnmpError::Malformed("a message id out of range"))?,
        engine_id,
        boots,
        time,
        pdu,
        authenticated: flags & FLAG_AUTH != 0,
        encrypted: flags & FLAG_PRIV != 0,
    })
}

fn aes_iv(boots: i64, time: i64, salt: &[u8; 8]) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..4].copy_from_slice(&(boots as u32).to_be_bytes());
    iv[4..8].copy_from_slice(&(time as u32).to_be_bytes());
    iv[8..].copy_from_slice(salt);
    iv
}

/// AES-128 in CFB mode with 128-bit feedback, in place, no padding.
fn aes_cfb(key: &[u8; 16], iv: &[u8; 16], data: &mut [u8], encrypt: bool) {
    let cipher = Aes128::new(GenericArray::from_slice(key));
    let mut feedback = *iv;
    for chunk in data.chunks_mut(16) {
        let mut stream = GenericArray::clone_from_slice(&feedback);
        cipher.encrypt_block(&mut stream);
        let mut next = [0u8; 16];
        for (i, byte) in chunk.iter_mut().enumerate() {
            let cipher_byte = if encrypt { *byte ^ stream[i] } else { *byte };
            *byte ^= stream[i];
            next[i] = if encrypt { *byte } else { cipher_byte };
        }
        feedback = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ber::Oid;
    use crate::pdu::PduKind;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn keys_match_rfc_3414_appendix_a3() {
        // A.3.1 and A.3.2: password "maplesyrup", engine id 00…02
        let engine = hex("000000000000000000000002");
        assert_eq!(
            AuthProtocol::Md5.localized_key(b"maplesyrup", &engine),
            hex("526f5eed9fcce26f8964c2930787d82b")
        );
        assert_eq!(
            AuthProtocol::Sha1.localized_key(b"maplesyrup", &engine),
            hex("6695febc9288e36282235fc7151f128497b38f3f")
        );
    }

    #[test]
    fn aes_cfb_round_trips_any_length() {
        let key = [7u8; 16];
        let iv = [9u8; 16];
        for len in [0, 1, 15, 16, 17, 100] {
            let plain: Vec<u8> = (0..len as u8).collect();
            let mut data = plain.clone();
            aes_cfb(&key, &iv, &mut data, true);
            if len > 0 {
                assert_ne!(data, plain);
            }
            aes_cfb(&key, &iv, &mut data, false);
            assert_eq!(data, plain);
        }
    }

    #[test]
    fn an_authenticated_encrypted_message_reads_back() {
        let user = User {
            name: "ops".into(),
            auth: Some((AuthProtocol::Sha256, "authpassword".into())),
            privacy: Some((PrivProtocol::Aes128, "privpassword".into())),
        };
        let engine = Engine::new(&user, hex("80001f8880aabbccdd"), 3, 1000);
        let pdu = Pdu::request(PduKind::Get, 5, &[Oid::parse("1.3.6.1.2.1.1.5.0").unwrap()]);
        let bytes = encode_request(42, &user, Some(&engine), &pdu, 0x0102_0304_0506_0708).unwrap();
        let back = decode_response(&bytes, &user, Some(&engine)).unwrap();
        assert_eq!(back.msg_id, 42);
        assert_eq!(back.pdu, pdu);
        // one changed octet fails authentication
        let mut tampered = bytes.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(decode_response(&tampered, &user, Some(&engine)).is_err());
        // the wrong privacy password cannot read it
        let wrong = User {
            privacy: Some((PrivProtocol::Aes128, "another".into())),
            ..user.clone()
        };
        let engine_wrong = Engine::new(&wrong, engine.id.clone(), 3, 1000);
        assert!(decode_response(&bytes, &wrong, Some(&engine_wrong)).is_err());
    }
}
