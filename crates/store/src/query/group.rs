//! Hash group-by on fixed-size keys.
//!
//! Each row's group key is packed into a fixed-width byte array (null flag
//! bytes, then each field at its width: addresses 16 bytes, ports 2,
//! text as a 64-bit hash, time buckets 8), so the hash table compares
//! plain arrays and never allocates per row. The width picks one of a few
//! monomorphised tables; keys wider than the largest are refused with a
//! message rather than slowed down.

use std::collections::HashMap;
use std::hash::BuildHasher;

use arrow_array::cast::AsArray;
use arrow_array::types::{TimestampNanosecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;
use foldhash::fast::FixedState;
use hopscope_schema::Kind;

use super::QueryError;

/// What one key field is and where it sits in the packed key.
#[derive(Debug, Clone)]
pub(crate) struct KeyField {
    /// Column name, or `None` for the time bucket.
    pub name: Option<&'static str>,
    pub kind: Kind,
    pub offset: usize,
    pub width: usize,
    /// The null flag bytes' byte and bit that say this field is null.
    pub null_byte: usize,
    pub null_mask: u8,
}

impl KeyField {
    /// Whether the field is null in `key` (one packed key).
    pub fn is_null(&self, key: &[u8]) -> bool {
        key[self.null_byte] & self.null_mask != 0
    }

    fn set_null(&self, key: &mut [u8]) {
        key[self.null_byte] |= self.null_mask;
    }
}

/// The layout of packed keys.
#[derive(Debug, Clone)]
pub(crate) struct KeyLayout {
    pub fields: Vec<KeyField>,
    pub bucket_ns: Option<i64>,
    /// Bytes of null flags at the start of each key, a bit per field.
    pub flag_bytes: usize,
    pub width: usize,
    /// The width padded to a table's: keys are packed this far apart.
    pub stride: usize,
}

/// Null flags take the first two bytes, or four past 16 fields (the
/// 1-minute rollups' key); at most 32 key fields.
const MAX_KEY_FIELDS: usize = 32;
/// The widest key supported.
pub(crate) const MAX_KEY_WIDTH: usize = 128;

impl KeyLayout {
    pub fn new(
        fields: &[(&'static str, Kind)],
        bucket_ns: Option<i64>,
    ) -> Result<KeyLayout, QueryError> {
        Self::with_address_width(fields, bucket_ns, 16)
    }

    fn with_address_width(
        fields: &[(&'static str, Kind)],
        bucket_ns: Option<i64>,
        address_width: usize,
    ) -> Result<KeyLayout, QueryError> {
        if fields.len() + usize::from(bucket_ns.is_some()) > MAX_KEY_FIELDS {
            return Err(QueryError::Plan(format!(
                "at most {MAX_KEY_FIELDS} group-by fields (a time bucket counts as one)"
            )));
        }
        let count = fields.len() + usize::from(bucket_ns.is_some());
        let flag_bytes = if count <= 16 { 2 } else { 4 };
        let mut offset = flag_bytes;
        let mut out = Vec::new();
        let mut add = |name, kind| {
            let width = match kind {
                Kind::Address => address_width,
                other => key_width(other),
            };
            out.push(KeyField {
                name,
                kind,
                offset,
                width,
                null_byte: out.len() / 8,
                null_mask: 1 << (out.len() % 8),
            });
            offset += width;
        };
        if bucket_ns.is_some() {
            add(None, Kind::Timestamp);
        }
        for &(name, kind) in fields {
            add(Some(name), kind);
        }
        if offset > MAX_KEY_WIDTH {
            return Err(QueryError::Plan(format!(
                "the group-by key is {offset} bytes wide; at most {MAX_KEY_WIDTH} (addresses take 16)"
            )));
        }
        Ok(KeyLayout {
            fields: out,
            bucket_ns,
            flag_bytes,
            width: offset,
            stride: key_stride(offset),
        })
    }

    /// The same key with IPv4 addresses in 4 octets instead of 16, for the
    /// rows whose addresses are all IPv4 (or null): a 5-tuple key shrinks
    /// from 40 octets to 16, which is most of a wide aggregation's memory.
    /// Rows with an IPv6 address keep the full layout, in a table of their
    /// own (the two never hold the same group). `None` without addresses,
    /// and for time series, whose ranking wants all groups in one table.
    pub fn narrow(&self) -> Option<KeyLayout> {
        if self.bucket_ns.is_some() || !self.fields.iter().any(|f| f.kind == Kind::Address) {
            return None;
        }
        let fields: Vec<(&'static str, Kind)> = self
            .fields
            .iter()
            .map(|f| (f.name.expect("no bucket field"), f.kind))
            .collect();
        Self::with_address_width(&fields, None, 4).ok()
    }
}

/// Whether each row's address key fields are all IPv4 (mapped) or null: the
/// rows a [`KeyLayout::narrow`] layout can hold.
pub(crate) fn ipv4_rows(layout: &KeyLayout, batch: &RecordBatch) -> Vec<bool> {
    let mut rows = vec![true; batch.num_rows()];
    for f in layout.fields.iter().filter(|f| f.kind == Kind::Address) {
        let Some(column) = f.name.and_then(|n| batch.column_by_name(n)) else {
            continue;
        };
        let Some(addresses) = column.as_fixed_size_binary_opt() else {
            continue;
        };
        if addresses.value_length() != 16 {
            continue;
        }
        // value_data starts at the array's first value (slices cut it)
        let values = addresses.value_data().chunks_exact(16);
        for (row, (v4, value)) in rows.iter_mut().zip(values).enumerate() {
            if !hopscope_schema::is_ipv4_mapped(value) && addresses.is_valid(row) {
                *v4 = false;
            }
        }
    }
    rows
}

fn key_width(kind: Kind) -> usize {
    match kind {
        Kind::U8 => 1,
        Kind::U16 => 2,
        Kind::U32 => 4,
        Kind::U64 | Kind::Timestamp | Kind::Text => 8,
        Kind::Address => 16,
    }
}

/// Fixed seed: text hashes must agree between workers.
pub(crate) fn text_hash(s: &str) -> u64 {
    FixedState::with_seed(0x686f7073636f7065).hash_one(s)
}

/// Writes each row's key into `keys` (`stride` bytes per row) and notes the
/// text behind each text hash.
pub(crate) fn pack_keys(
    layout: &KeyLayout,
    batch: &RecordBatch,
    keys: &mut [u8],
    stride: usize,
    texts: &mut HashMap<u64, String, FixedState>,
) -> Result<(), QueryError> {
    let rows = batch.num_rows();
    for field in &layout.fields {
        let column = match field.name {
            None => batch.column_by_name(crate::TIME_COLUMN),
            Some(name) => batch.column_by_name(name),
        };
        let Some(column) = column else {
            // the segment predates this column: null for every row
            for row in 0..rows {
                field.set_null(&mut keys[row * stride..]);
            }
            continue;
        };
        if column.null_count() > 0 {
            for row in 0..rows {
                if column.is_null(row) {
                    field.set_null(&mut keys[row * stride..]);
                }
            }
        }
        let at = |row: usize| row * stride + field.offset;
        match (field.name, column.data_type()) {
            (None, _) => {
                let bucket = layout.bucket_ns.expect("bucket field only with a width");
                let times = column.as_primitive::<TimestampNanosecondType>().values();
                for (row, t) in times.iter().enumerate() {
                    let b = t.div_euclid(bucket) * bucket;
                    keys[at(row)..at(row) + 8].copy_from_slice(&b.to_le_bytes());
                }
            }
            (_, DataType::UInt8) => {
                for (row, v) in column
                    .as_primitive::<UInt8Type>()
                    .values()
                    .iter()
                    .enumerate()
                {
                    keys[at(row)] = *v;
                }
            }
            (_, DataType::UInt16) => {
                for (row, v) in column
                    .as_primitive::<UInt16Type>()
                    .values()
                    .iter()
                    .enumerate()
                {
                    keys[at(row)..at(row) + 2].copy_from_slice(&v.to_le_bytes());
                }
            }
            (_, DataType::UInt32) => {
                for (row, v) in column
                    .as_primitive::<UInt32Type>()
                    .values()
                    .iter()
                    .enumerate()
                {
                    keys[at(row)..at(row) + 4].copy_from_slice(&v.to_le_bytes());
                }
            }
            (_, DataType::UInt64) => {
                for (row, v) in column
                    .as_primitive::<UInt64Type>()
                    .values()
                    .iter()
                    .enumerate()
                {
                    keys[at(row)..at(row) + 8].copy_from_slice(&v.to_le_bytes());
                }
            }
            (_, DataType::Timestamp(..)) => {
                let values = column.as_primitive::<TimestampNanosecondType>().values();
                for (row, v) in values.iter().enumerate() {
                    keys[at(row)..at(row) + 8].copy_from_slice(&v.to_le_bytes());
                }
            }
            (_, DataType::FixedSizeBinary(16)) => {
                // the whole address, or its last 4 octets in a narrow layout
                // (each width spelled out: a copy of a width known only at
                // run time is a call to memcpy per row)
                let values = column
                    .as_fixed_size_binary()
                    .value_data()
                    .as_chunks::<16>()
                    .0;
                match field.width {
                    4 => values.iter().enumerate().for_each(|(row, v)| {
                        keys[at(row)..at(row) + 4].copy_from_slice(&v[12..]);
                    }),
                    _ => values.iter().enumerate().for_each(|(row, v)| {
                        keys[at(row)..at(row) + 16].copy_from_slice(v);
                    }),
                }
            }
            (_, DataType::Utf8) => {
                let strings = column.as_string::<i32>();
                for row in 0..rows {
                    if strings.is_valid(row) {
                        let s = strings.value(row);
                        let h = text_hash(s);
                        texts.entry(h).or_insert_with(|| s.to_string());
                        keys[at(row)..at(row) + 8].copy_from_slice(&h.to_le_bytes());
                    }
                }
            }
            (name, ty) => {
                return Err(QueryError::Plan(format!(
                    "cannot group by {} of type {ty}",
                    name.unwrap_or("time")
                )));
            }
        }
    }
    Ok(())
}

/// Maps packed keys to dense group numbers.
pub(crate) trait GroupIndex: Send {
    /// Group numbers of `rows` keys packed at `stride`; new keys get the
    /// next numbers. `scanned` is the share of the query's input read so
    /// far (0 to 1), from which a table sizes itself for the rest.
    fn assign(
        &mut self,
        keys: &[u8],
        stride: usize,
        rows: usize,
        scanned: f64,
        groups: &mut Vec<u32>,
    );
    fn len(&self) -> usize;
    /// How many groups fit before the table grows again: what the groups'
    /// aggregates reserve, so that they grow when the table does (once
    /// when it sizes itself for the query) and are not copied at every
    /// doubling.
    fn capacity(&self) -> usize;
    /// The key of group `g` (`stride` bytes).
    fn key(&self, g: usize) -> &[u8];
}

/// Keys in an arena, found through an open-addressing table of 8-octet
/// slots: the key's 32-bit hash and its group number.
///
/// Why not a general map: with millions of groups (a 5-tuple aggregation)
/// every row's lookup misses the caches. The hashes of a whole batch are
/// computed first, so the slot of the row [`LOOKAHEAD`] rows on is
/// prefetched while this one is looked up, and the misses overlap instead
/// of queueing (a general map does not tell where a key's slot is). The
/// hash in the slot settles nearly every comparison without reading the
/// key, and growing reads the slots in order instead of every key.
struct Table<const N: usize> {
    /// `hash << 32 | group + 1`, 0 for an empty slot; linear probing.
    slots: Vec<u64>,
    keys: Chunked<[u8; N]>,
    /// The batch's key hashes, computed before any lookup.
    hashes: Vec<u32>,
    seed: u64,
}

/// How many rows ahead of its lookup a row's slot is prefetched: enough to
/// cover a memory access, few enough that the line is still cached.
const LOOKAHEAD: usize = 16;
/// The most a table holds before it grows, as a fraction of its slots:
/// linear probing stays short below three quarters full.
const MAX_LOAD: (usize, usize) = (3, 4);
/// A table sizes itself for the whole query once this share of the input
/// is read; guesses from fewer rows are too rough.
const PROJECT_AFTER: f64 = 0.1;

/// A vector in fixed chunks of 65,536 values: growing it never moves what
/// is there, so a table of millions of groups holds one copy of its keys
/// (a doubling vector holds up to twice their size, and copies them all at
/// every doubling).
struct Chunked<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T: Copy> Chunked<T> {
    const SHIFT: u32 = 16;

    fn new() -> Self {
        Self {
            chunks: Vec::new(),
            len: 0,
        }
    }

    fn push(&mut self, value: T) {
        if self.len >> Self::SHIFT == self.chunks.len() {
            self.chunks.push(Vec::with_capacity(1 << Self::SHIFT));
        }
        self.chunks[self.len >> Self::SHIFT].push(value);
        self.len += 1;
    }

    fn get(&self, i: usize) -> &T {
        &self.chunks[i >> Self::SHIFT][i & ((1 << Self::SHIFT) - 1)]
    }
}

/// Hashes a packed key eight octets at a time (folded multiplications):
/// keys have a fixed width, and a streaming hasher's path for byte slices
/// was a tenth of a top-N query. Seeded per process, as keys come from the
/// network.
pub(crate) fn key_hash(seed: u64, key: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let fold = |x: u64| {
        let p = u128::from(x) * u128::from(K);
        (p as u64) ^ ((p >> 64) as u64)
    };
    let (words, tail) = key.as_chunks::<8>();
    let mut h = seed;
    for w in words {
        h = fold(h ^ u64::from_le_bytes(*w));
    }
    if !tail.is_empty() {
        let mut last = [0u8; 8];
        last[..tail.len()].copy_from_slice(tail);
        h = fold(h ^ u64::from_le_bytes(last));
    }
    fold(h ^ key.len() as u64)
}

/// The seed of [`key_hash`], one per process.
pub(crate) fn key_seed() -> u64 {
    static SEED: std::sync::LazyLock<u64> =
        std::sync::LazyLock::new(|| std::hash::RandomState::new().hash_one(0x686f7073u64));
    *SEED
}

impl<const N: usize> Table<N> {
    fn new() -> Self {
        Self {
            slots: vec![0; 1024],
            keys: Chunked::new(),
            hashes: Vec::new(),
            seed: key_seed(),
        }
    }

    /// Makes room for `rows` more groups. Past [`PROJECT_AFTER`] of the
    /// input, it sizes the table for the groups the whole query will have
    /// at the rate they have come so far (at most 8 times the room needed
    /// now, as groups may stop coming): a table grown by doubling alone
    /// rehashes twice its final size on the way.
    fn make_room(&mut self, rows: usize, scanned: f64) {
        let needed = self.keys.len + rows;
        if needed * MAX_LOAD.1 <= self.slots.len() * MAX_LOAD.0 {
            return;
        }
        let projected = if scanned >= PROJECT_AFTER {
            ((self.keys.len as f64 / scanned) as usize).min(needed * 8)
        } else {
            0
        };
        let slots = (needed.max(projected) * MAX_LOAD.1 / MAX_LOAD.0)
            .next_power_of_two()
            .max(self.slots.len() * 2);
        // zeroed by the kernel as pages are first touched
        let old = std::mem::replace(&mut self.slots, vec![0; slots]);
        hopscope_memory::advise_huge_pages(&self.slots);
        let mask = slots - 1;
        for slot in old.into_iter().filter(|&s| s != 0) {
            let mut i = (slot >> 32) as usize & mask;
            while self.slots[i] != 0 {
                i = (i + 1) & mask;
            }
            self.slots[i] = slot;
        }
    }
}

impl<const N: usize> GroupIndex for Table<N> {
    fn assign(
        &mut self,
        keys: &[u8],
        stride: usize,
        rows: usize,
        scanned: f64,
        groups: &mut Vec<u32>,
    ) {
        self.make_room(rows, scanned);
        let key_at = |row: usize| -> [u8; N] {
            keys[row * stride..row * stride + N]
                .try_into()
                .expect("stride is N")
        };
        let seed = self.seed;
        self.hashes.clear();
        self.hashes
            .extend((0..rows).map(|row| key_hash(seed, &key_at(row)) as u32));
        let Table {
            slots,
            keys: arena,
            hashes,
            ..
        } = self;
        let mask = slots.len() - 1;
        groups.clear();
        groups.reserve(rows);
        for (row, &hash) in hashes.iter().enumerate() {
            if let Some(&ahead) = hashes.get(row + LOOKAHEAD) {
                hopscope_memory::prefetch(&slots[ahead as usize & mask]);
            }
            let key = key_at(row);
            let mut i = hash as usize & mask;
            let group = loop {
                let slot = slots[i];
                if slot == 0 {
                    let g = arena.len as u32;
                    arena.push(key);
                    slots[i] = u64::from(hash) << 32 | u64::from(g + 1);
                    break g;
                }
                let g = (slot as u32).wrapping_sub(1);
                if (slot >> 32) as u32 == hash && *arena.get(g as usize) == key {
                    break g;
                }
                i = (i + 1) & mask;
            };
            groups.push(group);
        }
    }

    fn len(&self) -> usize {
        self.keys.len
    }

    fn capacity(&self) -> usize {
        self.slots.len() / MAX_LOAD.1 * MAX_LOAD.0
    }

    fn key(&self, g: usize) -> &[u8] {
        self.keys.get(g)
    }
}

/// The key widths tables are built for: a key is padded to the first that
/// holds it, its stride.
macro_rules! tables {
    ($($n:literal)*) => {
        /// The stride of keys `width` octets wide.
        fn key_stride(width: usize) -> usize {
            [$($n),*]
                .into_iter()
                .find(|&n| width <= n)
                .expect("KeyLayout refuses keys wider than MAX_KEY_WIDTH")
        }

        /// A table for keys packed `stride` octets apart (a [`key_stride`]).
        pub(crate) fn group_index(stride: usize) -> Box<dyn GroupIndex> {
            match stride {
                $($n => Box::new(Table::<$n>::new()),)*
                other => unreachable!("no table for keys {other} octets apart"),
            }
        }
    };
}
tables!(4 8 12 16 20 24 28 32 36 40 44 48 56 64 80 96 112 128);

/// Reads a column's value at `row` as u64 (unsigned and time columns).
pub(crate) fn for_each_u64(
    column: &ArrayRef,
    mut each: impl FnMut(usize, u64),
) -> Result<(), QueryError> {
    macro_rules! walk {
        ($t:ty) => {{
            let array = column.as_primitive::<$t>();
            let values = array.values();
            match array.nulls() {
                None => values
                    .iter()
                    .enumerate()
                    .for_each(|(i, v)| each(i, *v as u64)),
                Some(nulls) => nulls
                    .valid_indices()
                    .for_each(|i| each(i, values[i] as u64)),
            }
        }};
    }
    match column.data_type() {
        DataType::UInt8 => walk!(UInt8Type),
        DataType::UInt16 => walk!(UInt16Type),
        DataType::UInt32 => walk!(UInt32Type),
        DataType::UInt64 => walk!(UInt64Type),
        DataType::Timestamp(..) => walk!(TimestampNanosecondType),
        ty => {
            return Err(QueryError::Plan(format!(
                "cannot aggregate a column of type {ty}"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys drawn with repeats, in batches of uneven sizes, while the share
    /// scanned rises: the table must number groups as a map numbering keys
    /// in the order first seen would, through every growth and the jump to
    /// its projected size.
    #[test]
    fn numbers_groups_as_a_map_would_through_growth() {
        const N: usize = 16;
        let mut table = Table::<N>::new();
        let mut map: HashMap<[u8; N], u32> = HashMap::new();
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let batches = 60;
        let mut groups = Vec::new();
        for batch in 0..batches {
            let rows = 1 + (next() % 9000) as usize;
            let mut keys = vec![0u8; rows * N];
            for key in keys.chunks_exact_mut(N) {
                // about half the keys repeat earlier ones
                let k = next() % 200_000;
                key[..8].copy_from_slice(&k.to_le_bytes());
                key[8..].copy_from_slice(&(k * 31).to_le_bytes());
            }
            let scanned = batch as f64 / batches as f64;
            table.assign(&keys, N, rows, scanned, &mut groups);
            assert_eq!(groups.len(), rows);
            for (key, &g) in keys.chunks_exact(N).zip(&groups) {
                let key: [u8; N] = key.try_into().unwrap();
                let fresh = map.len() as u32;
                assert_eq!(*map.entry(key).or_insert(fresh), g);
                assert_eq!(table.key(g as usize), key);
            }
            assert_eq!(table.len(), map.len());
            assert!(table.capacity() >= table.len());
        }
        assert!(map.len() > 100_000, "the table grew many times");
    }

    #[test]
    fn narrower_keys_than_the_stride_are_read_at_the_stride() {
        let mut table = Table::<4>::new();
        let keys = [1, 0, 0, 0, 9, 9, 2, 0, 0, 0, 8, 8, 1, 0, 0, 0, 7, 7];
        let mut groups = Vec::new();
        table.assign(&keys, 6, 3, 0.0, &mut groups);
        assert_eq!(groups, [0, 1, 0]);
        assert_eq!(table.key(1), [2, 0, 0, 0]);
    }
}
