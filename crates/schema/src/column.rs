//! Column kinds: the few physical types a hopscope column can have, each tied
//! to its Rust value, its Arrow builder and its Arrow data type.

use std::sync::Arc;

use arrow_array::types::{UInt8Type, UInt16Type, UInt32Type, UInt64Type};
use arrow_array::{ArrayRef, FixedSizeBinaryArray, PrimitiveArray, TimestampNanosecondArray};
use arrow_buffer::{Buffer, NullBuffer, ScalarBuffer};
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
    /// UTF-8 text: names the collector adds (exporter, interface, network,
    /// country). Never filled by decoders, so it has no row builder.
    Text,
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
            Kind::Text => DataType::Utf8,
        }
    }
}

/// Ties a column kind to its Rust value type and its builder.
pub trait ColumnKind {
    type Value: Copy + Default + std::fmt::Debug + PartialEq;
    const KIND: Kind;
    /// The column's array; a column with no value at all borrows its
    /// values and its bitmap from `zeros`.
    fn finish(builder: &mut ColumnBuilder<Self::Value>, zeros: &Zeros) -> ArrayRef;
}

/// One zeroed buffer that every all-null column of a batch shares.
///
/// Most columns of the flow schema are empty in any one batch (a template
/// fills 20 of 70): giving each its own zeroed values and bitmap was a
/// third of the decoders' time, in `memset` and page faults.
#[derive(Debug)]
pub struct Zeros {
    buffer: Buffer,
    rows: usize,
}

impl Zeros {
    /// Zeros for batches of `rows` rows: room for the widest value (16 octets).
    pub fn for_rows(rows: usize) -> Self {
        // u128 for the alignment that every primitive column asks of its values
        Self {
            buffer: Buffer::from_vec(vec![0u128; rows]),
            rows,
        }
    }

    fn values<T: arrow_buffer::ArrowNativeType>(&self) -> ScalarBuffer<T> {
        ScalarBuffer::new(self.buffer.clone(), 0, self.rows)
    }

    fn bytes(&self, width: usize) -> Buffer {
        self.buffer.slice_with_length(0, self.rows * width)
    }

    fn all_null(&self) -> NullBuffer {
        NullBuffer::new(arrow_buffer::BooleanBuffer::new(
            self.buffer.clone(),
            0,
            self.rows,
        ))
    }
}

/// Values and validity of one column, appended row by row.
///
/// Simpler than Arrow's builders on purpose: appending a present value is
/// one push, and validity is only tracked from the first null on, which is
/// what the decoders' per-record loops need. Validity is packed into Arrow's
/// bitmap once, at `finish`.
#[derive(Debug, Default)]
pub struct ColumnBuilder<T> {
    values: Vec<T>,
    /// `None` while every value so far is present.
    valid: Option<Vec<bool>>,
    /// Nulls appended before the first value: a column a template never
    /// fills costs nothing until a value arrives, or until `finish`.
    null_prefix: usize,
}

impl<T: Copy + Default> ColumnBuilder<T> {
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            values: Vec::with_capacity(capacity),
            valid: None,
            null_prefix: 0,
        }
    }

    /// Turns the counted leading nulls into real entries.
    #[cold]
    fn materialize_prefix(&mut self) {
        let n = std::mem::take(&mut self.null_prefix);
        self.values.resize(n, T::default());
        let mut valid = Vec::with_capacity(self.values.capacity().max(n));
        valid.resize(n, false);
        self.valid = Some(valid);
    }

    /// Appends a present value.
    #[inline(always)]
    pub fn push(&mut self, value: T) {
        if self.null_prefix > 0 {
            self.materialize_prefix();
        }
        self.values.push(value);
        if let Some(valid) = &mut self.valid {
            valid.push(true);
        }
    }

    #[inline(always)]
    pub fn append(&mut self, value: Option<T>) {
        match value {
            Some(v) => self.push(v),
            None => self.push_nulls(1),
        }
    }

    /// Makes room for `n` more values.
    pub fn reserve(&mut self, n: usize) {
        self.values.reserve(n);
        if let Some(valid) = &mut self.valid {
            valid.reserve(n);
        }
    }

    /// Appends present values (one tight loop for a whole set of records).
    pub fn extend_values(&mut self, values: impl ExactSizeIterator<Item = T>) {
        if self.null_prefix > 0 {
            self.materialize_prefix();
        }
        let n = values.len();
        self.values.extend(values);
        if let Some(valid) = &mut self.valid {
            valid.resize(valid.len() + n, true);
        }
    }

    /// Appends the same present value `n` times.
    pub fn push_repeat(&mut self, value: T, n: usize) {
        if self.null_prefix > 0 {
            self.materialize_prefix();
        }
        self.values.resize(self.values.len() + n, value);
        if let Some(valid) = &mut self.valid {
            valid.resize(valid.len() + n, true);
        }
    }

    /// Appends `n` nulls.
    pub fn push_nulls(&mut self, n: usize) {
        if self.values.is_empty() {
            self.null_prefix += n;
            return;
        }
        let before = self.values.len();
        let valid = self.valid.get_or_insert_with(|| {
            let mut v = Vec::with_capacity(before.max(64) * 2);
            v.resize(before, true);
            v
        });
        valid.resize(before + n, false);
        self.values.resize(before + n, T::default());
    }

    pub fn len(&self) -> usize {
        self.values.len() + self.null_prefix
    }

    /// The value at `row`; `None` where it is null or past the end (a
    /// column no record of the batch filled holds nothing).
    pub fn get(&self, row: usize) -> Option<T> {
        // while there is a null prefix, no value has come yet
        let value = *self.values.get(row)?;
        match &self.valid {
            Some(valid) if !valid[row] => None,
            _ => Some(value),
        }
    }

    /// Makes the value at `row`, which must exist, `value`: how a rate
    /// that the configuration gives replaces the one decoded.
    pub fn set(&mut self, row: usize, value: T) {
        if self.null_prefix > 0 {
            self.materialize_prefix();
        }
        debug_assert!(row < self.values.len(), "set past the column's end");
        let Some(slot) = self.values.get_mut(row) else {
            return;
        };
        *slot = value;
        if let Some(valid) = &mut self.valid {
            valid[row] = true;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes the values and the validity bitmap (None when nothing is null),
    /// keeping the capacity for the next batch; `None` for a column without
    /// any value (all null, or no rows).
    fn take(&mut self) -> Option<(Vec<T>, Option<NullBuffer>)> {
        if self.values.is_empty() {
            self.null_prefix = 0;
            return None;
        }
        let capacity = self.values.capacity();
        let values = std::mem::replace(&mut self.values, Vec::with_capacity(capacity));
        let nulls = self.valid.take().map(|v| NullBuffer::from(v.as_slice()));
        Some((values, nulls))
    }
}

macro_rules! primitive_kind {
    ($(#[$doc:meta])* $name:ident, $value:ty, $arrow:ty, $kind:expr) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name;
        impl ColumnKind for $name {
            type Value = $value;
            const KIND: Kind = $kind;
            fn finish(builder: &mut ColumnBuilder<$value>, zeros: &Zeros) -> ArrayRef {
                let array = match builder.take() {
                    Some((values, nulls)) => PrimitiveArray::<$arrow>::new(ScalarBuffer::from(values), nulls),
                    None => PrimitiveArray::<$arrow>::new(zeros.values(), Some(zeros.all_null())),
                };
                Arc::new(array)
            }
        }
    };
}

primitive_kind!(/// Unsigned 8-bit column.
    U8, u8, UInt8Type, Kind::U8);
primitive_kind!(/// Unsigned 16-bit column.
    U16, u16, UInt16Type, Kind::U16);
primitive_kind!(/// Unsigned 32-bit column.
    U32, u32, UInt32Type, Kind::U32);
primitive_kind!(/// Unsigned 64-bit column.
    U64, u64, UInt64Type, Kind::U64);

/// Timestamp column: nanoseconds since the Unix epoch, UTC.
#[derive(Debug)]
pub struct Ts;
impl ColumnKind for Ts {
    type Value = i64;
    const KIND: Kind = Kind::Timestamp;
    fn finish(builder: &mut ColumnBuilder<i64>, zeros: &Zeros) -> ArrayRef {
        let array = match builder.take() {
            Some((values, nulls)) => {
                TimestampNanosecondArray::new(ScalarBuffer::from(values), nulls)
            }
            None => TimestampNanosecondArray::new(zeros.values(), Some(zeros.all_null())),
        };
        Arc::new(array.with_timezone("UTC"))
    }
}

/// Address column: 16 bytes, IPv4 mapped into IPv6.
#[derive(Debug)]
pub struct Addr;
impl ColumnKind for Addr {
    type Value = [u8; 16];
    const KIND: Kind = Kind::Address;
    fn finish(builder: &mut ColumnBuilder<[u8; 16]>, zeros: &Zeros) -> ArrayRef {
        let (values, nulls) = match builder.take() {
            // the values' memory becomes the array's, without a copy
            Some((values, nulls)) => (Buffer::from_vec(values.into_flattened()), nulls),
            None => (zeros.bytes(16), Some(zeros.all_null())),
        };
        Arc::new(FixedSizeBinaryArray::new(16, values, nulls))
    }
}
