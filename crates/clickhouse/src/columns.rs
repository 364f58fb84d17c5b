//! hopscope's column kinds as ClickHouse types, and rows in ClickHouse's
//! RowBinary format both ways: what a batch is written as, and what a
//! SELECT's answer is read back into.
//!
//! RowBinary is ClickHouse's simplest binary format and the same on
//! every version from 18.16 on: little-endian integers, a null flag
//! before each nullable value, 16 network-order octets for an address,
//! a LEB128 length before a string. Its columns are not named in the
//! answer, so a SELECT names them and the types come from the table.

use std::sync::Arc;

use arrow_array::builder::{
    ArrayBuilder, BinaryBuilder, FixedSizeBinaryBuilder, ListBuilder, StringBuilder, StructBuilder,
    TimestampNanosecondBuilder, UInt8Builder, UInt16Builder, UInt32Builder, UInt64Builder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{TimestampNanosecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use hopscope_schema::other_fields_type;

use crate::ClickHouseError;

/// The column types hopscope's tables use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    UInt8,
    UInt16,
    UInt32,
    UInt64,
    /// Nanoseconds since the epoch, UTC.
    Time,
    /// 16 octets, IPv4 mapped into IPv6.
    Address,
    Text,
    /// The information elements hopscope keeps undecoded (`other_fields`):
    /// three parallel arrays (enterprise, element id, value), empty for
    /// none. 18.16 keeps an array of tuples as such arrays anyway, and
    /// has no nullable arrays.
    OtherFields,
}

/// Which ClickHouse a table is made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// What 18.16 (Debian's) understands: times as Int64 nanoseconds,
    /// addresses as FixedString(16), no TTL.
    Portable,
    /// 21 and later: DateTime64(9, 'UTC'), IPv6 (DateTime64 came in
    /// 20.1, reading nanoseconds into it by `fromUnixTimestamp64Nano` in
    /// 20.5).
    Modern,
}

impl Dialect {
    /// The dialect of a server by its `version()`.
    pub fn of_version(version: &str) -> Dialect {
        let major: u32 = version
            .split('.')
            .next()
            .and_then(|m| m.trim().parse().ok())
            .unwrap_or(0);
        if major >= 21 {
            Dialect::Modern
        } else {
            Dialect::Portable
        }
    }

    /// An SQL expression of the time `ns` comparable with a time column.
    pub fn time_literal(self, ns: i64) -> String {
        match self {
            Dialect::Portable => format!("toInt64({ns})"),
            Dialect::Modern => format!("fromUnixTimestamp64Nano(toInt64({ns}), 'UTC')"),
        }
    }

    /// The day partition of a time column.
    pub fn day_of(self, column: &str) -> String {
        match self {
            Dialect::Portable => {
                format!("toYYYYMMDD(toDateTime(intDiv(`{column}`, 1000000000), 'UTC'))")
            }
            Dialect::Modern => format!("toYYYYMMDD(`{column}`)"),
        }
    }
}

impl ColumnType {
    /// The type of an Arrow column of hopscope's.
    pub fn of_arrow(name: &str, data_type: &DataType) -> Result<ColumnType, ClickHouseError> {
        Ok(match data_type {
            DataType::UInt8 => ColumnType::UInt8,
            DataType::UInt16 => ColumnType::UInt16,
            DataType::UInt32 => ColumnType::UInt32,
            DataType::UInt64 => ColumnType::UInt64,
            DataType::Timestamp(TimeUnit::Nanosecond, _) => ColumnType::Time,
            DataType::FixedSizeBinary(16) => ColumnType::Address,
            DataType::Utf8 => ColumnType::Text,
            t if *t == other_fields_type() => ColumnType::OtherFields,
            other => {
                return Err(ClickHouseError::Unsupported(format!(
                    "column {name} is {other}, which no ClickHouse column holds here"
                )));
            }
        })
    }

    /// The type and nullability of a ClickHouse column (as `DESCRIBE`
    /// names it) in either dialect.
    pub fn of_clickhouse(name: &str, text: &str) -> Result<(ColumnType, bool), ClickHouseError> {
        let unwrap = |t: &'_ str, wrapper: &str| {
            t.strip_prefix(wrapper)
                .and_then(|r| r.strip_prefix('('))
                .and_then(|r| r.strip_suffix(')'))
                .map(str::to_string)
        };
        let mut t = text.trim().to_string();
        if let Some(inner) = unwrap(&t, "LowCardinality") {
            t = inner;
        }
        let nullable = match unwrap(&t, "Nullable") {
            Some(inner) => {
                t = inner;
                true
            }
            None => false,
        };
        let kind = match t.as_str() {
            "UInt8" => ColumnType::UInt8,
            "UInt16" => ColumnType::UInt16,
            "UInt32" => ColumnType::UInt32,
            "UInt64" => ColumnType::UInt64,
            "Int64" => ColumnType::Time,
            "FixedString(16)" | "IPv6" => ColumnType::Address,
            "String" => ColumnType::Text,
            t if t.starts_with("DateTime64(9") => ColumnType::Time,
            other => {
                return Err(ClickHouseError::Unsupported(format!(
                    "column {name} is {other} in ClickHouse, not a type hopscope writes"
                )));
            }
        };
        Ok((kind, nullable))
    }

    /// The ClickHouse type of the column in `dialect`; `None` for
    /// `other_fields`, which is three columns (see [`Column::definitions`]).
    pub fn clickhouse(self, dialect: Dialect, nullable: bool) -> Option<String> {
        let t = match (self, dialect) {
            (ColumnType::UInt8, _) => "UInt8",
            (ColumnType::UInt16, _) => "UInt16",
            (ColumnType::UInt32, _) => "UInt32",
            (ColumnType::UInt64, _) => "UInt64",
            (ColumnType::Time, Dialect::Portable) => "Int64",
            (ColumnType::Time, Dialect::Modern) => "DateTime64(9, 'UTC')",
            (ColumnType::Address, Dialect::Portable) => "FixedString(16)",
            (ColumnType::Address, Dialect::Modern) => "IPv6",
            (ColumnType::Text, _) => "String",
            (ColumnType::OtherFields, _) => return None,
        };
        Some(if nullable {
            format!("Nullable({t})")
        } else {
            t.to_string()
        })
    }

    fn arrow(self) -> DataType {
        match self {
            ColumnType::UInt8 => DataType::UInt8,
            ColumnType::UInt16 => DataType::UInt16,
            ColumnType::UInt32 => DataType::UInt32,
            ColumnType::UInt64 => DataType::UInt64,
            ColumnType::Time => DataType::Timestamp(TimeUnit::Nanosecond, Some(Arc::from("UTC"))),
            ColumnType::Address => DataType::FixedSizeBinary(16),
            ColumnType::Text => DataType::Utf8,
            ColumnType::OtherFields => other_fields_type(),
        }
    }
}

/// The ClickHouse columns that hold `other_fields`.
pub const OTHER_FIELDS: [(&str, &str); 3] = [
    ("other_fields_enterprise", "Array(UInt32)"),
    ("other_fields_element_id", "Array(UInt16)"),
    ("other_fields_value", "Array(String)"),
];

impl Column {
    /// The column as an SQL list of the ClickHouse columns holding it.
    pub fn sql(&self) -> String {
        if self.kind == ColumnType::OtherFields {
            OTHER_FIELDS
                .iter()
                .map(|(name, _)| format!("`{name}`"))
                .collect::<Vec<_>>()
                .join(", ")
        } else {
            format!("`{}`", self.name)
        }
    }

    /// The column's definitions in a `CREATE TABLE` (`other_fields` is
    /// three).
    pub fn definitions(&self, dialect: Dialect) -> Vec<String> {
        match self.kind.clickhouse(dialect, self.nullable) {
            Some(t) => vec![format!("`{}` {t}", self.name)],
            None => OTHER_FIELDS
                .iter()
                .map(|(name, ty)| format!("`{name}` {ty}"))
                .collect(),
        }
    }
}

/// A column of a table: its name, type and nullability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub kind: ColumnType,
    pub nullable: bool,
}

/// The Arrow schema of rows read as `columns`.
pub fn schema(columns: &[Column]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(&c.name, c.kind.arrow(), c.nullable))
            .collect::<Vec<_>>(),
    ))
}

/// Appends the rows of `batch` in RowBinary, its columns in `columns`'
/// order (each must be in the batch: the table was made from it).
pub fn encode(
    batch: &RecordBatch,
    columns: &[Column],
    out: &mut Vec<u8>,
) -> Result<(), ClickHouseError> {
    let arrays: Vec<&ArrayRef> = columns
        .iter()
        .map(|c| {
            batch.column_by_name(&c.name).ok_or_else(|| {
                ClickHouseError::Unsupported(format!("a batch has no column {}", c.name))
            })
        })
        .collect::<Result<_, _>>()?;
    for row in 0..batch.num_rows() {
        for (c, array) in columns.iter().zip(&arrays) {
            if c.kind == ColumnType::OtherFields {
                encode_other_fields(array.as_ref(), row, out);
                continue;
            }
            if c.nullable {
                if array.is_null(row) {
                    out.push(1);
                    continue;
                }
                out.push(0);
            } else if array.is_null(row) {
                return Err(ClickHouseError::Unsupported(format!(
                    "column {} has a null, which its table does not hold",
                    c.name
                )));
            }
            match c.kind {
                ColumnType::UInt8 => out.push(array.as_primitive::<UInt8Type>().value(row)),
                ColumnType::UInt16 => out.extend_from_slice(
                    &array.as_primitive::<UInt16Type>().value(row).to_le_bytes(),
                ),
                ColumnType::UInt32 => out.extend_from_slice(
                    &array.as_primitive::<UInt32Type>().value(row).to_le_bytes(),
                ),
                ColumnType::UInt64 => out.extend_from_slice(
                    &array.as_primitive::<UInt64Type>().value(row).to_le_bytes(),
                ),
                ColumnType::Time => out.extend_from_slice(
                    &array
                        .as_primitive::<TimestampNanosecondType>()
                        .value(row)
                        .to_le_bytes(),
                ),
                ColumnType::Address => {
                    out.extend_from_slice(array.as_fixed_size_binary().value(row));
                }
                ColumnType::Text => {
                    let text = array.as_string::<i32>().value(row).as_bytes();
                    leb128(text.len() as u64, out);
                    out.extend_from_slice(text);
                }
                ColumnType::OtherFields => unreachable!("written above"),
            }
        }
    }
    Ok(())
}

/// One row's undecoded elements: their count, then each element's
/// enterprise, id and value.
fn encode_other_fields(array: &dyn Array, row: usize, out: &mut Vec<u8>) {
    if array.is_null(row) {
        out.extend_from_slice(&[0; 3]);
        return;
    }
    let elements = array.as_list::<i32>().value(row);
    let elements = elements.as_struct();
    let enterprise = elements.column(0).as_primitive::<UInt32Type>();
    let id = elements.column(1).as_primitive::<UInt16Type>();
    let value = elements.column(2).as_binary::<i32>();
    let n = elements.len();
    leb128(n as u64, out);
    for i in 0..n {
        out.extend_from_slice(&enterprise.value(i).to_le_bytes());
    }
    leb128(n as u64, out);
    for i in 0..n {
        out.extend_from_slice(&id.value(i).to_le_bytes());
    }
    leb128(n as u64, out);
    for i in 0..n {
        leb128(value.value(i).len() as u64, out);
        out.extend_from_slice(value.value(i));
    }
}

fn leb128(mut n: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// One column's values as they are read.
enum Builder {
    UInt8(UInt8Builder),
    UInt16(UInt16Builder),
    UInt32(UInt32Builder),
    UInt64(UInt64Builder),
    Time(TimestampNanosecondBuilder),
    Address(FixedSizeBinaryBuilder),
    Text(StringBuilder),
    OtherFields(ListBuilder<StructBuilder>),
}

impl Builder {
    fn new(kind: ColumnType) -> Builder {
        match kind {
            ColumnType::UInt8 => Builder::UInt8(UInt8Builder::new()),
            ColumnType::UInt16 => Builder::UInt16(UInt16Builder::new()),
            ColumnType::UInt32 => Builder::UInt32(UInt32Builder::new()),
            ColumnType::UInt64 => Builder::UInt64(UInt64Builder::new()),
            ColumnType::Time => {
                Builder::Time(TimestampNanosecondBuilder::new().with_timezone("UTC"))
            }
            ColumnType::Address => Builder::Address(FixedSizeBinaryBuilder::new(16)),
            ColumnType::Text => Builder::Text(StringBuilder::new()),
            ColumnType::OtherFields => {
                let DataType::List(item) = other_fields_type() else {
                    unreachable!("other_fields is a list")
                };
                let DataType::Struct(fields) = item.data_type().clone() else {
                    unreachable!("of structs")
                };
                Builder::OtherFields(
                    ListBuilder::new(StructBuilder::from_fields(fields, 0)).with_field(item),
                )
            }
        }
    }

    fn null(&mut self) {
        match self {
            Builder::UInt8(b) => b.append_null(),
            Builder::UInt16(b) => b.append_null(),
            Builder::UInt32(b) => b.append_null(),
            Builder::UInt64(b) => b.append_null(),
            Builder::Time(b) => b.append_null(),
            Builder::Address(b) => b.append_null(),
            Builder::Text(b) => b.append_null(),
            Builder::OtherFields(b) => b.append_null(),
        }
    }

    fn value(&mut self, input: &mut Input<'_>) -> Result<(), ClickHouseError> {
        match self {
            Builder::UInt8(b) => b.append_value(input.take::<1>()?[0]),
            Builder::UInt16(b) => b.append_value(u16::from_le_bytes(input.take()?)),
            Builder::UInt32(b) => b.append_value(u32::from_le_bytes(input.take()?)),
            Builder::UInt64(b) => b.append_value(u64::from_le_bytes(input.take()?)),
            Builder::Time(b) => b.append_value(i64::from_le_bytes(input.take()?)),
            Builder::Address(b) => b
                .append_value(input.take::<16>()?)
                .map_err(|e| ClickHouseError::Protocol(e.to_string()))?,
            Builder::Text(b) => {
                let n = input.leb128()?;
                let text = input.bytes(n)?;
                b.append_value(
                    std::str::from_utf8(text)
                        .map_err(|_| ClickHouseError::Protocol("a string is not UTF-8".into()))?,
                );
            }
            Builder::OtherFields(b) => {
                let n = input.leb128()?;
                let s = b.values();
                for _ in 0..n {
                    field::<UInt32Builder>(s, 0).append_value(u32::from_le_bytes(input.take()?));
                }
                input.same_length(n)?;
                for _ in 0..n {
                    field::<UInt16Builder>(s, 1).append_value(u16::from_le_bytes(input.take()?));
                }
                input.same_length(n)?;
                for _ in 0..n {
                    let length = input.leb128()?;
                    field::<BinaryBuilder>(s, 2).append_value(input.bytes(length)?);
                    s.append(true);
                }
                // none reads back as null, as the store has it
                b.append(n > 0);
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::UInt8(b) => Arc::new(b.finish()),
            Builder::UInt16(b) => Arc::new(b.finish()),
            Builder::UInt32(b) => Arc::new(b.finish()),
            Builder::UInt64(b) => Arc::new(b.finish()),
            Builder::Time(b) => Arc::new(b.finish()),
            Builder::Address(b) => Arc::new(b.finish()),
            Builder::Text(b) => Arc::new(b.finish()),
            Builder::OtherFields(b) => Arc::new(b.finish()),
        }
    }
}

fn field<T: ArrayBuilder>(s: &mut StructBuilder, i: usize) -> &mut T {
    s.field_builder::<T>(i)
        .expect("other_fields' struct has these builders")
}

/// The unread rest of an answer.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn bytes(&mut self, n: usize) -> Result<&[u8], ClickHouseError> {
        if self.0.len() < n {
            return Err(ClickHouseError::Protocol(
                "the answer ends inside a row".into(),
            ));
        }
        let (taken, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(taken)
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], ClickHouseError> {
        Ok(self.bytes(N)?.try_into().expect("N octets taken"))
    }

    /// The next array's length, which must be `n` (parallel arrays).
    fn same_length(&mut self, n: usize) -> Result<(), ClickHouseError> {
        if self.leb128()? == n {
            Ok(())
        } else {
            Err(ClickHouseError::Protocol(
                "other_fields' arrays differ in length".into(),
            ))
        }
    }

    fn leb128(&mut self) -> Result<usize, ClickHouseError> {
        let mut n: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = self.take::<1>()?[0];
            n |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return usize::try_from(n)
                    .map_err(|_| ClickHouseError::Protocol("a string longer than memory".into()));
            }
        }
        Err(ClickHouseError::Protocol(
            "a string length of more than 64 bits".into(),
        ))
    }
}

/// Reads RowBinary rows of `columns`, handing them on in batches of at
/// most `rows_per_batch` rows.
pub fn decode(
    answer: &[u8],
    columns: &[Column],
    rows_per_batch: usize,
    each: &mut dyn FnMut(RecordBatch) -> Result<(), ClickHouseError>,
) -> Result<u64, ClickHouseError> {
    let schema = schema(columns);
    let mut input = Input(answer);
    let mut builders: Vec<Builder> = columns.iter().map(|c| Builder::new(c.kind)).collect();
    let (mut rows, mut total) = (0usize, 0u64);
    let mut flush =
        |builders: &mut Vec<Builder>, rows: &mut usize| -> Result<(), ClickHouseError> {
            if *rows > 0 {
                let arrays = builders.iter_mut().map(Builder::finish).collect();
                let batch = RecordBatch::try_new(schema.clone(), arrays)
                    .map_err(|e| ClickHouseError::Protocol(e.to_string()))?;
                *rows = 0;
                each(batch)?;
            }
            Ok(())
        };
    while !input.0.is_empty() {
        for (c, b) in columns.iter().zip(builders.iter_mut()) {
            if c.nullable && c.kind != ColumnType::OtherFields && input.take::<1>()?[0] != 0 {
                b.null();
            } else {
                b.value(&mut input)?;
            }
        }
        rows += 1;
        total += 1;
        if rows == rows_per_batch {
            flush(&mut builders, &mut rows)?;
        }
    }
    flush(&mut builders, &mut rows)?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{
        FixedSizeBinaryArray, StringArray, TimestampNanosecondArray, UInt8Array, UInt64Array,
    };

    fn columns() -> Vec<Column> {
        let c = |name: &str, kind, nullable| Column {
            name: name.into(),
            kind,
            nullable,
        };
        vec![
            c("time_received_ns", ColumnType::Time, false),
            c("proto", ColumnType::UInt8, true),
            c("bytes", ColumnType::UInt64, true),
            c("src_addr", ColumnType::Address, true),
            c("exporter_name", ColumnType::Text, true),
        ]
    }

    fn batch() -> RecordBatch {
        let long = "é".repeat(100);
        RecordBatch::try_new(
            schema(&columns()),
            vec![
                Arc::new(
                    TimestampNanosecondArray::from(vec![1, -2, i64::MAX]).with_timezone("UTC"),
                ),
                Arc::new(UInt8Array::from(vec![Some(6), None, Some(17)])),
                Arc::new(UInt64Array::from(vec![Some(u64::MAX), Some(0), None])),
                Arc::new(
                    FixedSizeBinaryArray::try_from_sparse_iter_with_size(
                        [Some([1u8; 16]), None, Some([0xff; 16])].into_iter(),
                        16,
                    )
                    .unwrap(),
                ),
                Arc::new(StringArray::from(vec![
                    Some("r1"),
                    Some(long.as_str()),
                    None,
                ])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn rows_read_back_as_written() {
        let mut bytes = Vec::new();
        encode(&batch(), &columns(), &mut bytes).unwrap();
        let mut read = Vec::new();
        let rows = decode(&bytes, &columns(), 2, &mut |b| {
            read.push(b);
            Ok(())
        })
        .unwrap();
        assert_eq!((rows, read.len()), (3, 2));
        let again = arrow_select::concat::concat_batches(&read[0].schema(), &read).unwrap();
        assert_eq!(again, batch());
    }

    #[test]
    fn a_cut_answer_and_a_null_in_a_non_null_column_are_errors() {
        let mut bytes = Vec::new();
        encode(&batch(), &columns(), &mut bytes).unwrap();
        let mut none = |_| Ok(());
        for cut in [1, 9, bytes.len() - 1] {
            assert!(
                decode(&bytes[..cut], &columns(), 10, &mut none).is_err(),
                "{cut}"
            );
        }
        let mut strict = columns();
        strict[1].nullable = false;
        assert!(encode(&batch(), &strict, &mut Vec::new()).is_err());
    }

    #[test]
    fn types_in_both_dialects_and_back() {
        for kind in [
            ColumnType::UInt8,
            ColumnType::UInt16,
            ColumnType::UInt32,
            ColumnType::UInt64,
            ColumnType::Time,
            ColumnType::Address,
            ColumnType::Text,
        ] {
            for dialect in [Dialect::Portable, Dialect::Modern] {
                for nullable in [false, true] {
                    let text = kind.clickhouse(dialect, nullable).unwrap();
                    assert_eq!(
                        ColumnType::of_clickhouse("c", &text).unwrap(),
                        (kind, nullable),
                        "{text}"
                    );
                    assert_eq!(ColumnType::of_arrow("c", &kind.arrow()).unwrap(), kind);
                }
            }
        }
        assert!(ColumnType::of_clickhouse("c", "Float64").is_err());
        let other = Column {
            name: "other_fields".into(),
            kind: ColumnType::OtherFields,
            nullable: true,
        };
        assert_eq!(other.definitions(Dialect::Portable).len(), 3);
        assert_eq!(
            ColumnType::OtherFields.clickhouse(Dialect::Modern, true),
            None
        );
        assert_eq!(Dialect::of_version("18.16.1"), Dialect::Portable);
        assert_eq!(Dialect::of_version("26.9.2.1"), Dialect::Modern);
        assert_eq!(Dialect::of_version("nonsense"), Dialect::Portable);
    }
}
