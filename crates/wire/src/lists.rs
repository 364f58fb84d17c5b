//! RFC 6313 structured data: basicList, subTemplateList and
//! subTemplateMultiList. Values are kept raw in `other_fields`; this module
//! checks that their contents fit (so a malformed list is reported, never
//! mis-parsed) and lets a consumer walk them.

use crate::cursor::{Cursor, Truncated};
use crate::template::VARIABLE_LENGTH;

/// Semantic of a list (RFC 6313 §4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListSemantic {
    NoneOf,
    ExactlyOneOf,
    OneOrMoreOf,
    AllOf,
    Ordered,
    Undefined,
    Other(u8),
}

impl From<u8> for ListSemantic {
    fn from(v: u8) -> Self {
        match v {
            0 => Self::NoneOf,
            1 => Self::ExactlyOneOf,
            2 => Self::OneOrMoreOf,
            3 => Self::AllOf,
            4 => Self::Ordered,
            0xff => Self::Undefined,
            other => Self::Other(other),
        }
    }
}

/// A decoded basicList: one element type, repeated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicList<'a> {
    pub semantic: ListSemantic,
    pub enterprise: u32,
    pub element_id: u16,
    pub elements: Vec<&'a [u8]>,
}

/// Parses a basicList value (the field content, without its varlen prefix).
pub fn basic_list(value: &[u8]) -> Result<BasicList<'_>, Truncated> {
    let mut c = Cursor::new(value);
    let semantic = ListSemantic::from(c.u8()?);
    let raw_id = c.u16()?;
    let length = c.u16()?;
    let enterprise = if raw_id & 0x8000 != 0 { c.u32()? } else { 0 };
    let mut elements = Vec::new();
    while c.remaining() > 0 {
        let len = if length == VARIABLE_LENGTH {
            let first = c.u8()?;
            if first < 255 {
                usize::from(first)
            } else {
                usize::from(c.u16()?)
            }
        } else if length == 0 {
            return Err(Truncated);
        } else {
            usize::from(length)
        };
        elements.push(c.bytes(len)?);
    }
    Ok(BasicList {
        semantic,
        enterprise,
        element_id: raw_id & 0x7fff,
        elements,
    })
}

/// A subTemplateList: records of one template, left raw because their
/// template lives in the exporter's session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubTemplateList<'a> {
    pub semantic: ListSemantic,
    pub template_id: u16,
    pub records: &'a [u8],
}

pub fn sub_template_list(value: &[u8]) -> Result<SubTemplateList<'_>, Truncated> {
    let mut c = Cursor::new(value);
    let semantic = ListSemantic::from(c.u8()?);
    let template_id = c.u16()?;
    let records = c.bytes(c.remaining())?;
    Ok(SubTemplateList {
        semantic,
        template_id,
        records,
    })
}

/// A subTemplateMultiList: its semantic and its (template id, records) blocks.
pub type SubTemplateMultiList<'a> = (ListSemantic, Vec<(u16, &'a [u8])>);

/// Walks a subTemplateMultiList's (template id, records) blocks.
pub fn sub_template_multi_list(value: &[u8]) -> Result<SubTemplateMultiList<'_>, Truncated> {
    let mut c = Cursor::new(value);
    let semantic = ListSemantic::from(c.u8()?);
    let mut blocks = Vec::new();
    while c.remaining() > 0 {
        let id = c.u16()?;
        let len = usize::from(c.u16()?);
        if len < 4 {
            return Err(Truncated);
        }
        blocks.push((id, c.bytes(len - 4)?));
    }
    Ok((semantic, blocks))
}

/// Checks that the value of list element `id` (291, 292 or 293) is well
/// formed: a basicList's elements must tile it exactly, a multi-list's
/// blocks must fit.
pub(crate) fn validate(id: u16, value: &[u8]) -> Result<(), Truncated> {
    match id {
        291 => basic_list(value).map(|_| ()),
        292 => sub_template_list(value).map(|_| ()),
        293 => sub_template_multi_list(value).map(|_| ()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_list_of_fixed_and_variable_elements() {
        // ordered list of three interface indexes (IE 10, 4 octets)
        let mut v = vec![4u8, 0, 10, 0, 4];
        for i in [1u32, 2, 3] {
            v.extend_from_slice(&i.to_be_bytes());
        }
        let l = basic_list(&v).unwrap();
        assert_eq!(l.semantic, ListSemantic::Ordered);
        assert_eq!(l.element_id, 10);
        assert_eq!(l.elements.len(), 3);
        // a trailing partial element is an error, not a silent drop
        v.push(0);
        assert!(basic_list(&v).is_err());
        // variable-length strings with an enterprise id
        let v = [3u8, 0x80, 82, 0xff, 0xff, 0, 0, 0, 9, 2, b'e', b'0', 0];
        let l = basic_list(&v).unwrap();
        assert_eq!((l.enterprise, l.element_id), (9, 82));
        assert_eq!(l.elements, vec![&b"e0"[..], &b""[..]]);
    }

    #[test]
    fn multi_list_blocks() {
        let v = [0xffu8, 1, 0, 0, 6, 7, 8, 1, 1, 0, 4];
        let (sem, blocks) = sub_template_multi_list(&v).unwrap();
        assert_eq!(sem, ListSemantic::Undefined);
        assert_eq!(blocks, vec![(256, &[7u8, 8][..]), (257, &[][..])]);
        assert!(sub_template_multi_list(&[0, 1, 0, 0, 2]).is_err());
    }
}
