//! The filter language: close to nfdump's, plus any column by name.
//!
//! ```text
//! filter    = or
//! or        = and { ("or" | "||") and }
//! and       = not { ("and" | "&&") not }
//! not       = ("not" | "!") not | "(" or ")" | primitive
//! primitive = [dir] ("ip" | "host") ADDRESS       dir = "src" | "dst"; none: either
//!           | [dir] "net" CIDR
//!           | [dir] "port" [cmp] NUMBER
//!           | [dir] "as" [cmp] NUMBER
//!           | ("in" | "out") "if" NUMBER
//!           | "proto" (NAME | NUMBER)             tcp udp icmp icmp6 gre esp ah sctp ...
//!           | "tcp" | "udp" | "icmp" | ...        the same as proto NAME
//!           | "ipv4" | "inet" | "ip4" | "ipv6" | "inet6" | "ip6"
//!           | "flags" LETTERS                     all of F S R P A U E C set
//!           | "exporter" ADDRESS
//!           | ("bytes" | "packets") cmp NUMBER
//!           | FIELD cmp VALUE                     any column of the flow table
//! cmp       = "=" | "==" | "!=" | "<" | "<=" | ">" | ">=" | "eq" | "ne" | "lt" | "le" | "gt" | "ge"
//! NUMBER    = digits [ "k" | "M" | "G" ]          k = 1000, as nfdump
//! VALUE     = NUMBER | ADDRESS | CIDR (address columns: contained in) | TIME (RFC 3339 or ns)
//!           | WORD | "quoted text" (text columns)
//! ```
//!
//! A flow whose column is empty (null) matches no comparison on it, and
//! `not` of such a comparison matches it: `not dst port 443` keeps ICMP.
//!
//! Filters come from anyone who reaches the API, so a filter is bounded:
//! at most [`MAX_FILTER_BYTES`] of text, [`MAX_CONDITIONS`] conditions and
//! [`MAX_NESTING`] levels of parentheses and `not`. Chains of `and` and
//! `or` are built as balanced trees, so neither parsing nor evaluating
//! recurses deeper than those bounds allow, whatever the input.

use std::fmt;
use std::net::IpAddr;

use hopscope_schema::{ENRICHMENT_FIELDS, FLOW_FIELDS, Kind, ip_to_mapped};

/// The longest filter text accepted.
pub const MAX_FILTER_BYTES: usize = 16 * 1024;
/// The most conditions (primitives) in one filter.
pub const MAX_CONDITIONS: usize = 1024;
/// The deepest nesting of parentheses and `not` in one filter.
pub const MAX_NESTING: usize = 64;

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Compare {
        field: &'static str,
        op: CmpOp,
        value: Value,
    },
    /// The address column lies in `net/prefix` (prefix over 128 bits; IPv4
    /// networks are mapped, so their prefix is 96 more).
    InNet {
        field: &'static str,
        net: u128,
        prefix: u8,
    },
    /// Every bit of `mask` is set in `tcp_flags`.
    FlagsAll {
        mask: u16,
    },
    /// A journey's `path` ("a > b|c > d") crosses `hop`: a point of that
    /// name, or a point of that node (`isp-pe` for `isp-pe:ge-0/0/1`).
    Through {
        field: &'static str,
        hop: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Uint(u64),
    /// Nanoseconds since the Unix epoch.
    Time(i64),
    Addr([u8; 16]),
    Text(String),
}

/// A filter that does not parse: what was expected and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    pub filter: String,
    /// Byte offset into the filter.
    pub position: usize,
    pub message: String,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let column = self.filter[..self.position.min(self.filter.len())]
            .chars()
            .count();
        writeln!(
            f,
            "bad filter at position {}: {}",
            self.position + 1,
            self.message
        )?;
        writeln!(f, "  {}", self.filter)?;
        write!(f, "  {}^", " ".repeat(column))
    }
}

impl std::error::Error for FilterError {}

/// Every column a filter, a group-by or an aggregate may name, with its kind.
pub fn field_kind(name: &str) -> Option<(&'static str, Kind)> {
    if name == "flows" {
        return Some(("flows", Kind::U64));
    }
    if let Some((_, raw)) = super::volume::unscaled_column(name) {
        return Some((raw, Kind::U64));
    }
    FLOW_FIELDS
        .iter()
        .chain(ENRICHMENT_FIELDS)
        .find(|f| f.name == name)
        .map(|f| (f.name, f.kind))
}

/// Every column a journey filter may name, with its kind.
pub fn journey_field_kind(name: &str) -> Option<(&'static str, Kind)> {
    hopscope_schema::JOURNEY_FIELDS
        .iter()
        .find(|f| f.name == name)
        .map(|f| (f.name, f.kind))
}

/// Parses a filter over flows; an empty filter is `None` (everything matches).
pub fn parse_filter(text: &str) -> Result<Option<Expr>, FilterError> {
    parse_filter_over(text, field_kind)
}

/// Parses a filter over journeys: the same language, with the journey
/// table's columns (`lost > 0`, `path "r2"`...).
pub fn parse_journey_filter(text: &str) -> Result<Option<Expr>, FilterError> {
    parse_filter_over(text, journey_field_kind)
}

fn parse_filter_over(
    text: &str,
    fields: fn(&str) -> Option<(&'static str, Kind)>,
) -> Result<Option<Expr>, FilterError> {
    if text.len() > MAX_FILTER_BYTES {
        return Err(FilterError {
            filter: text.to_string(),
            position: MAX_FILTER_BYTES,
            message: format!(
                "the filter is {} bytes long; the limit is {MAX_FILTER_BYTES}",
                text.len()
            ),
        });
    }
    let tokens = lex(text).map_err(|(position, message)| FilterError {
        filter: text.to_string(),
        position,
        message,
    })?;
    if tokens.is_empty() {
        return Ok(None);
    }
    let mut p = Parser {
        tokens,
        at: 0,
        end: text.len(),
        fields,
        nesting: 0,
        conditions: 0,
    };
    let result = p.or().and_then(|e| match p.peek() {
        None => Ok(e),
        Some(t) => Err((
            t.pos,
            format!("unexpected '{}' after a complete filter", t.text),
        )),
    });
    result.map(Some).map_err(|(position, message)| FilterError {
        filter: text.to_string(),
        position,
        message,
    })
}

#[derive(Debug, Clone, PartialEq)]
enum TokenKind {
    Word,
    Quoted,
    Op,
    Open,
    Close,
}

#[derive(Debug, Clone)]
struct Token {
    kind: TokenKind,
    text: String,
    pos: usize,
}

type ParseResult<T> = Result<T, (usize, String)>;

fn lex(text: &str) -> ParseResult<Vec<Token>> {
    let mut tokens = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        let (kind, end) = match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'(' => (TokenKind::Open, i + 1),
            b')' => (TokenKind::Close, i + 1),
            b'"' | b'\'' => {
                let close = text[i + 1..]
                    .find(c as char)
                    .ok_or((i, "this quote is never closed".to_string()))?;
                tokens.push(Token {
                    kind: TokenKind::Quoted,
                    text: text[i + 1..i + 1 + close].to_string(),
                    pos: i,
                });
                i += close + 2;
                continue;
            }
            b'=' | b'!' | b'<' | b'>' | b'&' | b'|' => {
                let two = bytes.get(i + 1).copied();
                let len = match (c, two) {
                    (b'=', Some(b'=')) | (b'!', Some(b'=')) | (b'<', Some(b'=')) => 2,
                    (b'>', Some(b'=')) | (b'&', Some(b'&')) | (b'|', Some(b'|')) => 2,
                    (b'&', _) | (b'|', _) => {
                        return Err((i, format!("'{}' alone means nothing here", c as char)));
                    }
                    _ => 1,
                };
                (TokenKind::Op, i + len)
            }
            _ => {
                let mut j = i;
                while j < bytes.len() && !b" \t\n\r()\"'=!<>&|".contains(&bytes[j]) {
                    j += 1;
                }
                (TokenKind::Word, j)
            }
        };
        tokens.push(Token {
            kind,
            text: text[start..end].to_string(),
            pos: start,
        });
        i = end;
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    /// Position reported when the filter ends too early.
    end: usize,
    /// The columns the filter may name.
    fields: fn(&str) -> Option<(&'static str, Kind)>,
    /// Parentheses and `not` open around the token being read.
    nesting: usize,
    /// Conditions read so far.
    conditions: usize,
}

#[derive(Clone, Copy, PartialEq)]
enum Direction {
    Src,
    Dst,
    Either,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self, expected: &str) -> ParseResult<Token> {
        let t = self.tokens.get(self.at).cloned().ok_or_else(|| {
            (
                self.end,
                format!("the filter ends where {expected} was expected"),
            )
        })?;
        self.at += 1;
        Ok(t)
    }

    fn or(&mut self) -> ParseResult<Expr> {
        let mut terms = vec![self.and()?];
        while self
            .peek()
            .is_some_and(|t| t.text.eq_ignore_ascii_case("or") || t.text == "||")
        {
            self.at += 1;
            terms.push(self.and()?);
        }
        Ok(balanced(terms, Expr::Or))
    }

    fn and(&mut self) -> ParseResult<Expr> {
        let mut terms = vec![self.not()?];
        while self
            .peek()
            .is_some_and(|t| t.text.eq_ignore_ascii_case("and") || t.text == "&&")
        {
            self.at += 1;
            terms.push(self.not()?);
        }
        Ok(balanced(terms, Expr::And))
    }

    fn not(&mut self) -> ParseResult<Expr> {
        let t = self.next("a condition")?;
        let negation =
            t.text.eq_ignore_ascii_case("not") || (t.kind == TokenKind::Op && t.text == "!");
        if negation || t.kind == TokenKind::Open {
            self.nesting += 1;
            if self.nesting > MAX_NESTING {
                return Err((
                    t.pos,
                    format!(
                        "the filter nests deeper than {MAX_NESTING} levels of parentheses and 'not', the limit"
                    ),
                ));
            }
            let inner = if negation {
                Expr::Not(Box::new(self.not()?))
            } else {
                let inner = self.or()?;
                let close = self.next("')'")?;
                if close.kind != TokenKind::Close {
                    return Err((
                        close.pos,
                        format!("expected ')' but found '{}'", close.text),
                    ));
                }
                inner
            };
            self.nesting -= 1;
            return Ok(inner);
        }
        if t.kind != TokenKind::Word {
            return Err((
                t.pos,
                format!("expected a condition but found '{}'", t.text),
            ));
        }
        self.conditions += 1;
        if self.conditions > MAX_CONDITIONS {
            return Err((
                t.pos,
                format!("the filter has more than {MAX_CONDITIONS} conditions, the limit"),
            ));
        }
        self.primitive(t)
    }

    fn primitive(&mut self, first: Token) -> ParseResult<Expr> {
        let word = first.text.to_ascii_lowercase();
        let (direction, keyword) = match word.as_str() {
            "src" | "dst" => {
                let dir = if word == "src" {
                    Direction::Src
                } else {
                    Direction::Dst
                };
                let next = self.next("ip, net, port or as")?;
                (dir, next)
            }
            _ => (Direction::Either, first),
        };
        let kw = keyword.text.to_ascii_lowercase();
        let directed =
            |src: &'static str, dst: &'static str, build: &dyn Fn(&'static str) -> Expr| {
                match direction {
                    Direction::Src => build(src),
                    Direction::Dst => build(dst),
                    Direction::Either => Expr::Or(Box::new(build(src)), Box::new(build(dst))),
                }
            };
        match kw.as_str() {
            "ip" | "host" => {
                let t = self.next("an address")?;
                let addr = parse_addr(&t.text)
                    .ok_or((t.pos, format!("'{}' is not an IP address", t.text)))?;
                Ok(directed("src_addr", "dst_addr", &|f| Expr::Compare {
                    field: f,
                    op: CmpOp::Eq,
                    value: Value::Addr(addr),
                }))
            }
            "net" => {
                let t = self.next("a network such as 10.0.0.0/8")?;
                let (net, prefix) = parse_cidr(&t.text).ok_or((
                    t.pos,
                    format!("'{}' is not a network (address/length)", t.text),
                ))?;
                Ok(directed("src_addr", "dst_addr", &|f| Expr::InNet {
                    field: f,
                    net,
                    prefix,
                }))
            }
            "port" | "as" => {
                let (op, value) = self.cmp_and_number(Kind::U32)?;
                let (src, dst) = if kw == "port" {
                    ("src_port", "dst_port")
                } else {
                    ("src_as", "dst_as")
                };
                Ok(directed(src, dst, &|f| Expr::Compare {
                    field: f,
                    op,
                    value: value.clone(),
                }))
            }
            _ if direction != Direction::Either => Err((
                keyword.pos,
                format!(
                    "after src/dst expected ip, host, net, port or as, found '{}'",
                    keyword.text
                ),
            )),
            "in" | "out" => {
                let t = self.next("'if'")?;
                if !t.text.eq_ignore_ascii_case("if") {
                    return Err((t.pos, format!("expected 'if' after '{kw}'")));
                }
                let (op, value) = self.cmp_and_number(Kind::U32)?;
                let field = if kw == "in" { "in_if" } else { "out_if" };
                Ok(Expr::Compare { field, op, value })
            }
            "proto" => {
                let t = self.next("a protocol name or number")?;
                let proto = protocol_number(&t.text)
                    .ok_or((t.pos, format!("unknown protocol '{}'", t.text)))?;
                Ok(proto_is(proto))
            }
            "ipv4" | "inet" | "ip4" => Ok(Expr::Compare {
                field: "ip_version",
                op: CmpOp::Eq,
                value: Value::Uint(4),
            }),
            "ipv6" | "inet6" | "ip6" => Ok(Expr::Compare {
                field: "ip_version",
                op: CmpOp::Eq,
                value: Value::Uint(6),
            }),
            "flags" => {
                let t = self.next("TCP flag letters such as SA")?;
                let mask = tcp_flag_mask(&t.text).ok_or((
                    t.pos,
                    format!("'{}' is not a set of TCP flags (F S R P A U E C)", t.text),
                ))?;
                Ok(Expr::FlagsAll { mask })
            }
            "exporter" => {
                let t = self.next("an address")?;
                let addr = parse_addr(&t.text)
                    .ok_or((t.pos, format!("'{}' is not an IP address", t.text)))?;
                Ok(Expr::Compare {
                    field: "sampler_address",
                    op: CmpOp::Eq,
                    value: Value::Addr(addr),
                })
            }
            _ => {
                if let Some(proto) =
                    protocol_number(&kw).filter(|_| !kw.as_bytes()[0].is_ascii_digit())
                {
                    return Ok(proto_is(proto));
                }
                let (field, kind) = (self.fields)(&kw).ok_or((
                    keyword.pos,
                    format!("unknown field or keyword '{}'", keyword.text),
                ))?;
                self.field_condition(field, kind)
            }
        }
    }

    /// An optional comparison operator, then a number.
    fn cmp_and_number(&mut self, kind: Kind) -> ParseResult<(CmpOp, Value)> {
        let op = self.optional_cmp().unwrap_or(CmpOp::Eq);
        let t = self.next("a number")?;
        Ok((op, parse_value(kind, &t)?))
    }

    fn optional_cmp(&mut self) -> Option<CmpOp> {
        let t = self.peek()?;
        let op = match t.text.to_ascii_lowercase().as_str() {
            "=" | "==" | "eq" => CmpOp::Eq,
            "!=" | "ne" => CmpOp::Ne,
            "<" | "lt" => CmpOp::Lt,
            "<=" | "le" => CmpOp::Le,
            ">" | "gt" => CmpOp::Gt,
            ">=" | "ge" => CmpOp::Ge,
            _ => return None,
        };
        self.at += 1;
        Some(op)
    }

    fn field_condition(&mut self, field: &'static str, kind: Kind) -> ParseResult<Expr> {
        let here = self.peek().map_or(self.end, |t| t.pos);
        // `path isp-pe`: journeys through a hop (a whole path compares with =)
        let at = self.at;
        if field == "path" && self.optional_cmp().is_none() {
            let hop = self.next("a point or node name")?;
            return Ok(Expr::Through {
                field,
                hop: hop.text.clone(),
            });
        }
        self.at = at;
        let op = self.optional_cmp().ok_or((
            here,
            format!("expected a comparison (=, !=, <, >, ...) after '{field}'"),
        ))?;
        let t = self.next("a value")?;
        if kind == Kind::Address && t.text.contains('/') {
            let (net, prefix) =
                parse_cidr(&t.text).ok_or((t.pos, format!("'{}' is not a network", t.text)))?;
            let inside = Expr::InNet { field, net, prefix };
            return match op {
                CmpOp::Eq => Ok(inside),
                CmpOp::Ne => Ok(Expr::Not(Box::new(inside))),
                _ => Err((
                    t.pos,
                    "a network can only be compared with = or !=".to_string(),
                )),
            };
        }
        let value = parse_value(kind, &t)?;
        if matches!(kind, Kind::Address | Kind::Text) && !matches!(op, CmpOp::Eq | CmpOp::Ne) {
            return Err((
                t.pos,
                format!("'{field}' can only be compared with = or !="),
            ));
        }
        Ok(Expr::Compare { field, op, value })
    }
}

/// Joins `terms` with `join` as a balanced tree, so that a chain of a
/// thousand conditions is ten levels deep rather than a thousand; an even
/// split puts the earlier half on the left, so `a and b and c` reads
/// `(a and b) and c` as it always has.
fn balanced(mut terms: Vec<Expr>, join: fn(Box<Expr>, Box<Expr>) -> Expr) -> Expr {
    if terms.len() == 1 {
        return terms.pop().expect("one term");
    }
    let right = terms.split_off(terms.len().div_ceil(2));
    join(
        Box::new(balanced(terms, join)),
        Box::new(balanced(right, join)),
    )
}

fn proto_is(proto: u8) -> Expr {
    Expr::Compare {
        field: "proto",
        op: CmpOp::Eq,
        value: Value::Uint(u64::from(proto)),
    }
}

fn parse_value(kind: Kind, t: &Token) -> ParseResult<Value> {
    let bad = |what: &str| (t.pos, format!("'{}' is not {what}", t.text));
    match kind {
        Kind::U8 | Kind::U16 | Kind::U32 | Kind::U64 => {
            let v =
                parse_number(&t.text).ok_or_else(|| bad("a number (digits, optional k/M/G)"))?;
            let max = match kind {
                Kind::U8 => u64::from(u8::MAX),
                Kind::U16 => u64::from(u16::MAX),
                Kind::U32 => u64::from(u32::MAX),
                _ => u64::MAX,
            };
            if v > max {
                return Err((
                    t.pos,
                    format!("{v} does not fit this field (at most {max})"),
                ));
            }
            Ok(Value::Uint(v))
        }
        Kind::Timestamp => super::parse_time(&t.text)
            .map(Value::Time)
            .ok_or_else(|| bad("a time (RFC 3339 such as 2026-11-26T10:00:00Z, or ns)")),
        Kind::Address => parse_addr(&t.text)
            .map(Value::Addr)
            .ok_or_else(|| bad("an IP address")),
        Kind::Text => Ok(Value::Text(t.text.clone())),
    }
}

/// Digits with an optional k/M/G (powers of 1000, as nfdump).
pub fn parse_number(text: &str) -> Option<u64> {
    let (digits, scale) = match text.as_bytes().last()? {
        b'k' | b'K' => (&text[..text.len() - 1], 1_000),
        b'm' | b'M' => (&text[..text.len() - 1], 1_000_000),
        b'g' | b'G' => (&text[..text.len() - 1], 1_000_000_000),
        _ => (text, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(scale)
}

fn parse_addr(text: &str) -> Option<[u8; 16]> {
    text.parse::<IpAddr>().ok().map(ip_to_mapped)
}

fn parse_cidr(text: &str) -> Option<(u128, u8)> {
    let (addr, len) = text.split_once('/')?;
    let ip: IpAddr = addr.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    let (max, offset) = if ip.is_ipv4() { (32, 96) } else { (128, 0) };
    if len > max {
        return None;
    }
    let prefix = len + offset;
    let net = u128::from_be_bytes(ip_to_mapped(ip)) & prefix_mask(prefix);
    Some((net, prefix))
}

/// The mask of the first `prefix` bits of a 128-bit address.
pub fn prefix_mask(prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(prefix))
    }
}

/// Protocol numbers by the names people type.
pub fn protocol_number(name: &str) -> Option<u8> {
    Some(match name.to_ascii_lowercase().as_str() {
        "icmp" => 1,
        "igmp" => 2,
        "tcp" => 6,
        "udp" => 17,
        "gre" => 47,
        "esp" => 50,
        "ah" => 51,
        "icmp6" | "ipv6-icmp" | "icmpv6" => 58,
        "ospf" => 89,
        "pim" => 103,
        "vrrp" => 112,
        "sctp" => 132,
        other => return other.parse().ok(),
    })
}

fn tcp_flag_mask(letters: &str) -> Option<u16> {
    let mut mask = 0u16;
    for c in letters.chars() {
        mask |= match c.to_ascii_uppercase() {
            'F' => 0x01,
            'S' => 0x02,
            'R' => 0x04,
            'P' => 0x08,
            'A' => 0x10,
            'U' => 0x20,
            'E' => 0x40,
            'C' => 0x80,
            _ => return None,
        };
    }
    (mask != 0).then_some(mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Expr {
        parse_filter(text).unwrap().unwrap()
    }

    /// Every spelling of an IP version nfdump's users type.
    #[test]
    fn ip_versions_by_any_name() {
        for (words, version) in [(["ipv4", "inet", "ip4"], 4), (["ipv6", "inet6", "ip6"], 6)] {
            for word in words {
                assert_eq!(
                    parse(word),
                    Expr::Compare {
                        field: "ip_version",
                        op: CmpOp::Eq,
                        value: Value::Uint(version)
                    },
                    "{word}"
                );
            }
        }
    }

    #[test]
    fn nfdump_style_filters_parse() {
        let e = parse("src net 10.0.0.0/8 and dst port 443 and not proto udp");
        let Expr::And(left, right) = e else {
            panic!("not an and: {e:?}")
        };
        assert_eq!(*right, Expr::Not(Box::new(proto_is(17))));
        let Expr::And(net, port) = *left else {
            panic!()
        };
        assert_eq!(
            *net,
            Expr::InNet {
                field: "src_addr",
                net: u128::from_be_bytes(ip_to_mapped("10.0.0.0".parse().unwrap())),
                prefix: 104
            }
        );
        assert_eq!(
            *port,
            Expr::Compare {
                field: "dst_port",
                op: CmpOp::Eq,
                value: Value::Uint(443)
            }
        );
        assert_eq!(
            parse("bytes > 1M"),
            Expr::Compare {
                field: "bytes",
                op: CmpOp::Gt,
                value: Value::Uint(1_000_000)
            }
        );
        assert!(matches!(parse("host 2001:db8::1"), Expr::Or(..)));
        assert!(matches!(
            parse("tcp and (port 80 or port 443)"),
            Expr::And(..)
        ));
        assert_eq!(
            parse("src_country = 'FR'"),
            Expr::Compare {
                field: "src_country",
                op: CmpOp::Eq,
                value: Value::Text("FR".into())
            }
        );
        assert_eq!(parse("flags SA"), Expr::FlagsAll { mask: 0x12 });
        assert!(matches!(parse("dst_addr != 192.168.0.0/16"), Expr::Not(_)));
        assert!(parse_filter("  ").unwrap().is_none());
    }

    #[test]
    fn errors_point_at_the_position() {
        let e = parse_filter("src net 10.0.0.0/8 and dst prot 443").unwrap_err();
        assert_eq!(e.position, 27);
        assert!(e.message.contains("prot"), "{e}");
        let shown = e.to_string();
        assert!(
            shown
                .lines()
                .nth(2)
                .unwrap()
                .ends_with(&format!("{}^", " ".repeat(27))),
            "{shown}"
        );

        let e = parse_filter("proto tcp and").unwrap_err();
        assert_eq!(e.position, 13);
        let e = parse_filter("(port 80").unwrap_err();
        assert!(e.message.contains("')'"), "{e}");
        let e = parse_filter("bytes > lots").unwrap_err();
        assert_eq!(e.position, 8);
        let e = parse_filter("ip_tos = 300").unwrap_err();
        assert!(e.message.contains("at most 255"), "{e}");
        let e = parse_filter("src_addr < 10.0.0.1").unwrap_err();
        assert!(e.message.contains("= or !="), "{e}");
        let e = parse_filter("proto tcp port 80").unwrap_err();
        assert!(e.message.contains("unexpected"), "{e}");
    }

    fn depth(e: &Expr) -> usize {
        match e {
            Expr::And(a, b) | Expr::Or(a, b) => 1 + depth(a).max(depth(b)),
            Expr::Not(a) => 1 + depth(a),
            _ => 1,
        }
    }

    #[test]
    fn hostile_filters_meet_a_named_limit() {
        // the filter that overflowed the stack: 2,200 levels of parentheses
        let deep = format!("{}port 80{}", "(".repeat(2200), ")".repeat(2200));
        let e = parse_filter(&deep).unwrap_err();
        assert!(e.message.contains("64 levels"), "{e}");
        assert_eq!(e.position, MAX_NESTING);
        let nots = "not ".repeat(100) + "tcp";
        assert!(parse_filter(&nots).unwrap_err().message.contains("limit"));
        // at the limit it parses
        let ok = format!("{}port 80{}", "(".repeat(64), ")".repeat(64));
        assert!(parse_filter(&ok).is_ok());

        let many = vec!["port 1"; MAX_CONDITIONS + 1].join(" or ");
        let e = parse_filter(&many).unwrap_err();
        assert!(e.message.contains("1024 conditions"), "{e}");
        let long = "x".repeat(MAX_FILTER_BYTES + 1);
        assert!(
            parse_filter(&long)
                .unwrap_err()
                .message
                .contains("bytes long")
        );

        // a long chain is a shallow tree: 1,000 conditions, 11 levels
        let chain = vec!["tcp"; 1000].join(" and ");
        assert!(depth(&parse(&chain)) <= 11);
    }

    proptest::proptest! {
        #[test]
        fn any_text_parses_or_errors_without_panicking(text in ".{0,64}") {
            if let Err(e) = parse_filter(&text) {
                proptest::prop_assert!(e.position <= text.len());
                let _ = e.to_string();
            }
        }
    }
}
