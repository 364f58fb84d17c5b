//! Decode errors: each names the exporter, the protocol, the set and the
//! offset, and has a reason that doubles as a counter label.

use std::fmt;
use std::net::SocketAddr;

macro_rules! reasons {
    ($($variant:ident => $label:literal, $text:literal;)*) => {
        /// Why a message, set or record could not be decoded.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorKind { $($variant,)* }

        impl ErrorKind {
            /// Every reason, in counter order.
            pub const ALL: &'static [ErrorKind] = &[$(ErrorKind::$variant,)*];

            /// Stable snake_case label for metrics.
            pub fn label(self) -> &'static str {
                match self { $(ErrorKind::$variant => $label,)* }
            }

            fn text(self) -> &'static str {
                match self { $(ErrorKind::$variant => $text,)* }
            }

            pub(crate) fn index(self) -> usize {
                self as usize
            }
        }
    };
}

reasons! {
    Truncated => "truncated", "data ends inside a header or field";
    UnknownVersion => "unknown_version", "not NetFlow v5/v9, IPFIX or sFlow v5";
    BadMessageLength => "bad_message_length", "message length field disagrees with the bytes received";
    BadSetLength => "bad_set_length", "set length shorter than its header or past the end of the message";
    ReservedSetId => "reserved_set_id", "set id 0, 1 or 4-255 is reserved";
    EmptyTemplate => "empty_template", "template with no fields";
    BadScope => "bad_scope", "options template scope count is zero or exceeds the field count";
    TemplateTooLong => "template_too_long", "template records are longer than a message can hold";
    TooManyDomains => "too_many_domains", "the exporter uses more observation domains than a session keeps (limit reached)";
    TooManyTemplates => "too_many_templates", "the exporter defines more templates than its domain, its session or the collector keeps (limit reached)";
    ZeroLengthField => "zero_length_field", "fixed-length field of length zero";
    UnknownTemplate => "unknown_template", "data set for a template the exporter never sent";
    TemplateExpired => "template_expired", "data set for a UDP template past its lifetime";
    RecordPastEnd => "record_past_end", "variable-length field or record runs past its set";
    MalformedList => "malformed_list", "RFC 6313 list whose contents do not fit";
    BadSample => "bad_sample", "sFlow sample or record whose length does not fit";
    UnknownAddressType => "unknown_address_type", "sFlow address type other than IPv4 or IPv6";
    PendingEvicted => "pending_evicted", "data set held for its template was evicted before the template came";
    WithdrawalOverUdp => "withdrawal_over_udp", "template withdrawal received over UDP (ignored, RFC 7011 8.4)";
    UnknownWithdrawal => "unknown_withdrawal", "withdrawal of a template that does not exist";
}

/// A decoding failure with the context to find it in a capture.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct DecodeError {
    pub exporter: SocketAddr,
    pub protocol: &'static str,
    pub domain: Option<u32>,
    pub set_id: Option<u16>,
    /// Byte offset within the message.
    pub offset: usize,
    pub kind: ErrorKind,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} message from {}", self.protocol, self.exporter)?;
        if let Some(d) = self.domain {
            write!(f, ", domain {d}")?;
        }
        if let Some(s) = self.set_id {
            write!(f, ", set {s}")?;
        }
        write!(f, ", offset {}: {}", self.offset, self.kind.text())
    }
}
