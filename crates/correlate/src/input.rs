//! Reading the store's tables: the columns each reader needs, with an error
//! that names the table, and stored addresses.

use arrow_array::{Array, ArrayRef, FixedSizeBinaryArray, RecordBatch};

use crate::CorrelateError;

/// The column `name` of `batch`, a batch of `rows` (as said in the error).
pub(crate) fn column<'a>(
    batch: &'a RecordBatch,
    rows: &str,
    name: &str,
) -> Result<&'a ArrayRef, CorrelateError> {
    batch
        .column_by_name(name)
        .ok_or_else(|| CorrelateError::Input(format!("{rows} lack column {name}")))
}

/// The address in row `i`, if not null (and 16 octets, as stored).
pub(crate) fn address(a: &FixedSizeBinaryArray, i: usize) -> Option<[u8; 16]> {
    if a.is_null(i) {
        None
    } else {
        a.value(i).try_into().ok()
    }
}
