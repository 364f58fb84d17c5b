//! The `table!` macro: one list of columns in, a row struct, an Arrow
//! builder, an Arrow schema and a field list out.

use crate::column::Kind;

/// What the rest of hopscope knows about a column without touching Arrow.
#[derive(Debug, Clone, Copy)]
pub struct FieldInfo {
    pub name: &'static str,
    pub kind: Kind,
    /// Unit of the value, empty when it has none.
    pub unit: &'static str,
    pub doc: &'static str,
}

/// A column of a table declared by hand (not by `table!`).
pub(crate) const fn field(
    name: &'static str,
    kind: Kind,
    unit: &'static str,
    doc: &'static str,
) -> FieldInfo {
    FieldInfo {
        name,
        kind,
        unit,
        doc,
    }
}

/// Declares a table: a row struct with one `Option` per column, a builder
/// that appends rows to Arrow builders, the schema and the field list.
///
/// Rows are plain values so that a decoder can reuse one row for every
/// record: reset it, fill what the record carries, append.
macro_rules! table {
    (
        $(#[$row_meta:meta])*
        row $Row:ident;
        $(#[$builder_meta:meta])*
        builder $Builder:ident;
        fields $FIELDS:ident;
        columns {
            $( $(#[doc = $doc:literal])* $name:ident : $kind:ident [$unit:literal], )*
        }
    ) => {
        $(#[$row_meta])*
        #[derive(Debug, Clone, Copy, Default, PartialEq)]
        pub struct $Row {
            $( $(#[doc = $doc])* pub $name: Option<<$crate::$kind as $crate::ColumnKind>::Value>, )*
        }

        /// The columns of this table, in schema order.
        pub static $FIELDS: &[$crate::FieldInfo] = &[
            $( $crate::FieldInfo {
                name: stringify!($name),
                kind: <$crate::$kind as $crate::ColumnKind>::KIND,
                unit: $unit,
                doc: concat!($($doc),*),
            }, )*
        ];

        $(#[$builder_meta])*
        ///
        /// Columns are public so that a decoder that knows a template's
        /// layout can push straight into them; every column must end each
        /// record with the same length.
        #[derive(Debug)]
        pub struct $Builder {
            $( pub $name: $crate::ColumnBuilder<<$crate::$kind as $crate::ColumnKind>::Value>, )*
        }

        impl $Builder {
            /// A builder with room for `capacity` rows before it grows.
            pub fn with_capacity(capacity: usize) -> Self {
                Self {
                    $( $name: $crate::ColumnBuilder::with_capacity(capacity), )*
                }
            }

            /// Per column, in schema order: append that column of a row.
            pub const APPEND_COLUMN: &'static [fn(&mut Self, &$Row)] = &[
                $( |b, r| b.$name.append(r.$name), )*
            ];

            /// Per column, in schema order: append n nulls.
            pub const PUSH_NULLS: &'static [fn(&mut Self, usize)] = &[
                $( |b, n| b.$name.push_nulls(n), )*
            ];

            /// Per column, in schema order: its length.
            pub const COLUMN_LEN: &'static [fn(&Self) -> usize] = &[
                $( |b| b.$name.len(), )*
            ];

            /// How many columns the table has.
            pub const COLUMN_COUNT: usize = [$( stringify!($name), )*].len();

            /// Whether every column has the same length (a record was
            /// completed in each).
            pub fn is_aligned(&self) -> bool {
                let len = self.len();
                true $( && self.$name.len() == len )*
            }

            /// Appends one row.
            #[inline]
            pub fn append(&mut self, row: &$Row) {
                $( self.$name.append(row.$name); )*
            }

            /// Rows appended since the last `finish` (the first column's length).
            pub fn len(&self) -> usize {
                [$( self.$name.len(), )*][0]
            }

            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }

            /// The appended rows as arrays in schema order; the builder is
            /// empty afterwards and can be reused.
            pub fn finish_columns(&mut self) -> Vec<arrow_array::ArrayRef> {
                debug_assert!(self.is_aligned(), "columns of unequal length");
                self.finish_columns_of(self.len())
            }

            /// As [`finish_columns`](Self::finish_columns), for `rows` rows: a
            /// column without any entry becomes `rows` nulls, every other
            /// column must have `rows` entries.
            pub fn finish_columns_of(&mut self, rows: usize) -> Vec<arrow_array::ArrayRef> {
                let zeros = $crate::Zeros::for_rows(rows);
                vec![ $( <$crate::$kind as $crate::ColumnKind>::finish(&mut self.$name, &zeros), )* ]
            }
        }

        impl Default for $Builder {
            fn default() -> Self {
                Self::with_capacity(1024)
            }
        }
    };
}

/// Arrow fields for a field list, every column nullable.
/// Schema metadata carrying [`SCHEMA_VERSION`](crate::SCHEMA_VERSION), so
/// that a reader of any table's Parquet files knows which layout wrote them.
pub(crate) fn version_metadata() -> std::collections::HashMap<String, String> {
    std::collections::HashMap::from([(
        "hopscope.schema_version".to_string(),
        crate::SCHEMA_VERSION.to_string(),
    )])
}

pub(crate) fn arrow_fields(fields: &[FieldInfo]) -> Vec<arrow_schema::Field> {
    fields
        .iter()
        .map(|f| {
            let mut meta = std::collections::HashMap::new();
            if !f.unit.is_empty() {
                meta.insert("unit".to_string(), f.unit.to_string());
            }
            meta.insert("doc".to_string(), f.doc.trim().to_string());
            arrow_schema::Field::new(f.name, f.kind.data_type(), true).with_metadata(meta)
        })
        .collect()
}
