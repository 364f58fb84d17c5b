//! Just enough HTTP/1.1 to talk to ClickHouse's HTTP interface: one POST
//! per statement on a fresh connection, the statement in the URL or the
//! body, the answer read whole (plain or chunked). No client library: the
//! interface needs no more, and a dependency tree of TLS and async
//! runtimes is not worth four requests.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::ClickHouseError;

/// Where the server is and who to be there.
#[derive(Clone)]
pub struct Endpoint {
    /// `host:port` of the HTTP interface.
    pub address: String,
    pub user: String,
    pub password: String,
    pub timeout: Duration,
}

impl std::fmt::Debug for Endpoint {
    // the password stays out of logs
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("address", &self.address)
            .field("user", &self.user)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The most an answer may hold: a scan of a long range is large, but a
/// peer that never stops sending must not take the memory.
const MOST_ANSWER: u64 = 4 << 30;

impl Endpoint {
    /// POSTs `body` with the URL parameters `params` (`query=...` for an
    /// INSERT whose rows are the body); the answer's body on 200, the
    /// server's message otherwise. The credentials go in an
    /// `Authorization` header, not in the URL, which servers and proxies
    /// log.
    pub fn post(&self, params: &[(&str, &str)], body: &[u8]) -> Result<Vec<u8>, ClickHouseError> {
        let io = |cause: std::io::Error| ClickHouseError::Io {
            address: self.address.clone(),
            cause,
        };
        let mut stream = self.connect().map_err(io)?;
        stream.set_read_timeout(Some(self.timeout)).map_err(io)?;
        stream.set_write_timeout(Some(self.timeout)).map_err(io)?;
        let query: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect();
        let credentials = base64(format!("{}:{}", self.user, self.password).as_bytes());
        let head = format!(
            "POST /?{} HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic {credentials}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            query.join("&"),
            self.address,
            body.len()
        );
        stream.write_all(head.as_bytes()).map_err(io)?;
        stream.write_all(body).map_err(io)?;
        let mut answer = Vec::new();
        stream
            .take(MOST_ANSWER + 1)
            .read_to_end(&mut answer)
            .map_err(io)?;
        if answer.len() as u64 > MOST_ANSWER {
            return Err(ClickHouseError::Protocol(format!(
                "an answer of more than {MOST_ANSWER} octets"
            )));
        }
        let (status, body) = parse_response(&answer)?;
        if status == 200 {
            Ok(body)
        } else {
            Err(ClickHouseError::Server {
                status,
                message: String::from_utf8_lossy(&body).trim().to_string(),
            })
        }
    }

    /// A connection to the first of the address's resolutions that takes
    /// one (`localhost` may resolve to ::1 before 127.0.0.1).
    fn connect(&self) -> std::io::Result<TcpStream> {
        let mut last = std::io::Error::other("the address resolves to nothing");
        for target in self.address.to_socket_addrs()? {
            match TcpStream::connect_timeout(&target, self.timeout) {
                Ok(stream) => return Ok(stream),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

/// Standard base64 with padding (RFC 4648), for Basic authentication.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The status and the body of a whole response.
pub fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>), ClickHouseError> {
    let bad = |what: &str| ClickHouseError::Protocol(what.to_string());
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers in the answer"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| bad("headers are not text"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status line"))?;
    let chunked = lines.any(|l| {
        let (name, value) = l.split_once(':').unwrap_or((l, ""));
        name.eq_ignore_ascii_case("transfer-encoding")
            && value.trim().eq_ignore_ascii_case("chunked")
    });
    let body = &raw[end + 4..];
    Ok((
        status,
        if chunked {
            dechunk(body)?
        } else {
            body.to_vec()
        },
    ))
}

/// The body of a chunked transfer.
fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, ClickHouseError> {
    let bad = || ClickHouseError::Protocol("a malformed chunk in the answer".into());
    let mut out = Vec::with_capacity(body.len());
    loop {
        let line = body.windows(2).position(|w| w == b"\r\n").ok_or_else(bad)?;
        let size = std::str::from_utf8(&body[..line])
            .ok()
            .map(|s| s.split(';').next().unwrap_or("").trim())
            .and_then(|s| usize::from_str_radix(s, 16).ok())
            .ok_or_else(bad)?;
        body = &body[line + 2..];
        if size == 0 {
            return Ok(out);
        }
        if size.checked_add(2).is_none_or(|n| body.len() < n) {
            return Err(bad());
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_chunked_answers_and_errors() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nOk.";
        assert_eq!(parse_response(plain).unwrap(), (200, b"Ok.".to_vec()));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n2;x=y\r\nef\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap(), (200, b"abcdef".to_vec()));
        let refused = b"HTTP/1.1 500 Internal Server Error\r\n\r\nCode: 60, e.displayText() = DB::Exception: Table x doesn't exist";
        assert_eq!(parse_response(refused).unwrap().0, 500);
        for broken in [
            &b"HTTP/1.1 200 OK\r\n"[..],
            b"\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        ] {
            assert!(parse_response(broken).is_err(), "{broken:?}");
        }
    }

    #[test]
    fn a_chunk_size_past_the_end_is_an_error_not_a_panic() {
        let huge = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nab\r\n0\r\n\r\n";
        assert!(parse_response(huge).is_err());
    }

    #[test]
    fn basic_credentials_are_base64() {
        assert_eq!(base64(b"default:"), "ZGVmYXVsdDo=");
        assert_eq!(base64(b"u:pw"), "dTpwdw==");
        assert_eq!(base64(b"abc"), "YWJj");
        assert_eq!(base64(b""), "");
    }

    #[test]
    fn parameters_are_percent_encoded() {
        assert_eq!(
            encode("SELECT 1 FORMAT RowBinary"),
            "SELECT%201%20FORMAT%20RowBinary"
        );
        assert_eq!(encode("a&b=c/é"), "a%26b%3Dc%2F%C3%A9");
    }
}
