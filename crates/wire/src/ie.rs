//! The IANA information-element registry, generated at build time from the
//! registry XML in `data/iana/`.

/// Abstract data types of RFC 7012 (and RFC 6313 lists, RFC 9740 unsigned256).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    OctetArray,
    Unsigned8,
    Unsigned16,
    Unsigned32,
    Unsigned64,
    Unsigned256,
    Signed8,
    Signed16,
    Signed32,
    Signed64,
    Float32,
    Float64,
    Boolean,
    MacAddress,
    String,
    DateTimeSeconds,
    DateTimeMilliseconds,
    DateTimeMicroseconds,
    DateTimeNanoseconds,
    Ipv4Address,
    Ipv6Address,
    BasicList,
    SubTemplateList,
    SubTemplateMultiList,
}

/// One registered information element.
#[derive(Debug, Clone, Copy)]
pub struct InfoElement {
    pub id: u16,
    pub name: &'static str,
    pub data_type: DataType,
    pub semantics: &'static str,
    pub units: &'static str,
    pub deprecated: bool,
}

include!(concat!(env!("OUT_DIR"), "/iana_elements.rs"));

/// The enterprise number of RFC 5103 reverse elements.
pub const REVERSE_PEN: u32 = 29305;

/// The enterprise number of hopscope's own elements: RFC 5612's number for
/// documentation, until the project registers one, so that no vendor's
/// elements are mistaken for them.
pub const HOPSCOPE_PEN: u32 = 32473;

/// hopscope elements (enterprise [`HOPSCOPE_PEN`]), in a probe's options
/// record scoped by its observationPointId: the clock its timestamps read.
pub mod hopscope {
    /// unsigned64: points announcing the same domain read one clock (one
    /// host's kernel clock, or clocks that PTP or NTP keep together).
    pub const CLOCK_DOMAIN_ID: u16 = 1;
    /// unsigned64, nanoseconds: the most two clocks of the domain differ by.
    pub const CLOCK_BOUND_NANOSECONDS: u16 = 2;
}

/// Looks up an IANA element by id.
pub fn lookup(id: u16) -> Option<&'static InfoElement> {
    IANA_ELEMENTS
        .binary_search_by_key(&id, |e| e.id)
        .ok()
        .map(|i| &IANA_ELEMENTS[i])
}

/// Every registered element, sorted by id.
pub fn all() -> &'static [InfoElement] {
    IANA_ELEMENTS
}

/// A readable name for an element: the IANA name, `reverseName` for RFC 5103
/// reverse elements, `pen:id` for other enterprises.
pub fn display_name(enterprise: u32, id: u16) -> String {
    match (enterprise, lookup(id)) {
        (0, Some(e)) => e.name.to_string(),
        (REVERSE_PEN, Some(e)) => {
            let mut name = String::from("reverse");
            let mut chars = e.name.chars();
            if let Some(first) = chars.next() {
                name.extend(first.to_uppercase());
                name.push_str(chars.as_str());
            }
            name
        }
        (HOPSCOPE_PEN, _) if id == hopscope::CLOCK_DOMAIN_ID => "hopscopeClockDomainId".into(),
        (HOPSCOPE_PEN, _) if id == hopscope::CLOCK_BOUND_NANOSECONDS => {
            "hopscopeClockBoundNanoseconds".into()
        }
        (0, None) => format!("ie{id}"),
        (pen, _) => format!("{pen}:{id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_has_the_elements_hopscope_relies_on() {
        assert_eq!(lookup(1).unwrap().name, "octetDeltaCount");
        assert_eq!(lookup(8).unwrap().data_type, DataType::Ipv4Address);
        assert_eq!(
            lookup(156).unwrap().data_type,
            DataType::DateTimeNanoseconds
        );
        assert_eq!(lookup(326).unwrap().name, "digestHashValue");
        assert_eq!(lookup(292).unwrap().data_type, DataType::SubTemplateList);
        assert_eq!(lookup(6).unwrap().data_type, DataType::Unsigned16);
        assert!(all().len() > 450);
        assert!(lookup(0).is_none());
    }

    #[test]
    fn names_reverse_and_enterprise_elements() {
        assert_eq!(display_name(REVERSE_PEN, 1), "reverseOctetDeltaCount");
        assert_eq!(display_name(6871, 14), "6871:14");
    }
}
