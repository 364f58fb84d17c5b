//! Column kinds: the few physical types a hopscope column can have, each tied
//! to its Rust value, its Arrow builder and its Arrow data type.

use std::sync::Arc;

use arrow_array::ArrayRef;
use arrow_array::builder::{
    ArrayBuilder, FixedSizeBinaryBuilder, TimestampNanosecondBuilder, UInt8Builder, UInt16Builder,
    UInt32Builder, UInt64Builder,
};
use arrow_schema::{DataType, TimeUnit};

/// The physical kind of a column, used where code needs to branch on it
/// (DDL generation, formatting, filter parsing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    U8,
    U16,
    U32,
    U64,
    /// Nanoseconds since the Unix epoch, UTC.
    Timestamp,
    /// 16-byte address, IPv4 mapped into IPv6.
    Address,
}

impl Kind {
    /// The Arrow type of columns of this kind.
    pub fn data_type(self) -> DataType {
        match self {
            Kind::U8 => DataType::UInt8,
            Kind::U16 => DataType::UInt16,
            Kind::U32 => DataType::UInt32,
            Kind::U64 => DataType::UInt64,
            Kind::Timestamp => DataType::Timestamp(TimeUnit::Nanosecond, Some(Arc::from("UTC"))),
            Kind::Address => DataType::FixedSizeBinary(16),
        }
    }

    /// The ClickHouse type of columns of this kind (nullable).
    pub fn clickhouse_type(self) -> &'static str {
        match self {
            Kind::U8 => "Nullable(UInt8)",
            Kind::U16 => "Nullable(UInt16)",
            Kind::U32 => "Nullable(UInt32)",
            Kind::U64 => "Nullable(UInt64)",
            Kind::Timestamp => "Nullable(DateTime64(9, 'UTC'))",
            Kind::Address => "Nullable(IPv6)",
        }
    }
}

/// Ties a column kind to its Rust value type and Arrow builder.
pub trait ColumnKind {
    type Value: Copy + Default + std::fmt::Debug + PartialEq;
    type Builder: ArrayBuilder;
    const KIND: Kind;
    fn builder(capacity: usize) -> Self::Builder;
    fn append(builder: &mut Self::Builder, value: Option<Self::Value>);
    fn finish(builder: &mut Self::Builder) -> ArrayRef;
}

macro_rules! primitive_kind {
    ($(#[$doc:meta])* $name:ident, $value:ty, $builder:ty, $kind:expr) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name;
        impl ColumnKind for $name {
            type Value = $value;
            type Builder = $builder;
            const KIND: Kind = $kind;
            fn builder(capacity: usize) -> Self::Builder {
                <$builder>::with_capacity(capacity)
            }
            #[inline]
            fn append(builder: &mut Self::Builder, value: Option<Self::Value>) {
                builder.append_option(value);
            }
            fn finish(builder: &mut Self::Builder) -> ArrayRef {
                Arc::new(builder.finish())
            }
        }
    };
}

primitive_kind!(/// Unsigned 8-bit column.
    U8, u8, UInt8Builder, Kind::U8);
primitive_kind!(/// Unsigned 16-bit column.
    U16, u16, UInt16Builder, Kind::U16);
primitive_kind!(/// Unsigned 32-bit column.
    U32, u32, UInt32Builder, Kind::U32);
primitive_kind!(/// Unsigned 64-bit column.
    U64, u64, UInt64Builder, Kind::U64);

/// Timestamp column: nanoseconds since the Unix epoch, UTC.
#[derive(Debug)]
pub struct Ts;
impl ColumnKind for Ts {
    type Value = i64;
    type Builder = TimestampNanosecondBuilder;
    const KIND: Kind = Kind::Timestamp;
    fn builder(capacity: usize) -> Self::Builder {
        TimestampNanosecondBuilder::with_capacity(capacity).with_timezone("UTC")
    }
    #[inline]
    fn append(builder: &mut Self::Builder, value: Option<i64>) {
        builder.append_option(value);
    }
    fn finish(builder: &mut Self::Builder) -> ArrayRef {
        Arc::new(builder.finish())
    }
}

/// Address column: 16 bytes, IPv4 mapped into IPv6.
#[derive(Debug)]
pub struct Addr;
impl ColumnKind for Addr {
    type Value = [u8; 16];
    type Builder = FixedSizeBinaryBuilder;
    const KIND: Kind = Kind::Address;
    fn builder(capacity: usize) -> Self::Builder {
        FixedSizeBinaryBuilder::with_capacity(capacity, 16)
    }
    #[inline]
    fn append(builder: &mut Self::Builder, value: Option<[u8; 16]>) {
        match value {
            // The builder only rejects values of the wrong width; ours are always 16.
            Some(v) => builder
                .append_value(v)
                .expect("16-byte value in a 16-byte column"),
            None => builder.append_null(),
        }
    }
    fn finish(builder: &mut Self::Builder) -> ArrayRef {
        Arc::new(builder.finish())
    }
}
