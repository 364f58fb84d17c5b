//! Evaluating a filter on a record batch with Arrow's kernels.
//!
//! Every condition yields a mask without nulls (an empty column matches no
//! comparison), so `and`, `or` and `not` combine plain bitmaps.

use arrow_array::cast::AsArray;
use arrow_array::types::{TimestampNanosecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type};
use arrow_array::{
    Array, ArrayRef, ArrowPrimitiveType, BooleanArray, PrimitiveArray, RecordBatch, Scalar,
    StringArray,
};
use arrow_buffer::BooleanBuffer;
use arrow_schema::{ArrowError, DataType};

use super::filter::{CmpOp, Expr, Value};

/// Rows of `batch` that `expr` keeps.
pub fn evaluate(expr: &Expr, batch: &RecordBatch) -> Result<BooleanArray, ArrowError> {
    let rows = batch.num_rows();
    Ok(match expr {
        Expr::And(a, b) => {
            let a = evaluate(a, batch)?;
            if a.true_count() == 0 {
                return Ok(a);
            }
            arrow_arith::boolean::and(&a, &evaluate(b, batch)?)?
        }
        Expr::Or(a, b) => arrow_arith::boolean::or(&evaluate(a, batch)?, &evaluate(b, batch)?)?,
        Expr::Not(a) => arrow_arith::boolean::not(&evaluate(a, batch)?)?,
        Expr::Compare { field, op, value } => match batch.column_by_name(field) {
            None => all(rows, false),
            Some(column) => without_nulls(compare(column, *op, value)?),
        },
        Expr::InNet { field, net, prefix } => match batch.column_by_name(field) {
            None => all(rows, false),
            Some(column) => in_net(column, *net, *prefix)?,
        },
        Expr::Through { field, hop } => match batch.column_by_name(field) {
            None => all(rows, false),
            Some(column) => {
                let paths = column
                    .as_string_opt::<i32>()
                    .ok_or_else(|| ArrowError::SchemaError(format!("{field} is not text")))?;
                let crosses = |path: &str| {
                    path.split([' ', '>', '|'])
                        .filter(|p| !p.is_empty())
                        .any(|point| {
                            point == hop
                                || point
                                    .strip_prefix(hop.as_str())
                                    .is_some_and(|rest| rest.starts_with(':'))
                        })
                };
                let bits = BooleanBuffer::collect_bool(paths.len(), |i| {
                    paths.is_valid(i) && crosses(paths.value(i))
                });
                BooleanArray::new(bits, None)
            }
        },
        Expr::FlagsAll { mask } => match batch.column_by_name("tcp_flags") {
            None => all(rows, false),
            Some(column) => {
                let flags = column.as_primitive_opt::<UInt16Type>().ok_or_else(|| {
                    ArrowError::SchemaError("tcp_flags is not UInt16".to_string())
                })?;
                let bits = BooleanBuffer::collect_bool(flags.len(), |i| {
                    flags.is_valid(i) && flags.value(i) & mask == *mask
                });
                BooleanArray::new(bits, None)
            }
        },
    })
}

fn all(rows: usize, value: bool) -> BooleanArray {
    BooleanArray::new(
        if value {
            BooleanBuffer::new_set(rows)
        } else {
            BooleanBuffer::new_unset(rows)
        },
        None,
    )
}

/// Null (unknown) becomes "does not match".
fn without_nulls(mask: BooleanArray) -> BooleanArray {
    match mask.nulls() {
        None => mask,
        Some(nulls) => BooleanArray::new(mask.values() & nulls.inner(), None),
    }
}

fn compare(column: &ArrayRef, op: CmpOp, value: &Value) -> Result<BooleanArray, ArrowError> {
    match (column.data_type(), value) {
        (DataType::UInt8, Value::Uint(v)) => compare_primitive::<UInt8Type>(column, op, *v),
        (DataType::UInt16, Value::Uint(v)) => compare_primitive::<UInt16Type>(column, op, *v),
        (DataType::UInt32, Value::Uint(v)) => compare_primitive::<UInt32Type>(column, op, *v),
        (DataType::UInt64, Value::Uint(v)) => compare_primitive::<UInt64Type>(column, op, *v),
        (DataType::Timestamp(..), Value::Time(t)) => {
            let scalar = PrimitiveArray::<TimestampNanosecondType>::from(vec![*t])
                .with_data_type(column.data_type().clone());
            cmp_kernel(column, &Scalar::new(scalar), op)
        }
        (DataType::Timestamp(..), Value::Uint(t)) => compare(
            column,
            op,
            &Value::Time(i64::try_from(*t).unwrap_or(i64::MAX)),
        ),
        (DataType::FixedSizeBinary(16), Value::Addr(a)) => {
            let want = u128::from_be_bytes(*a);
            let mask = address_mask(column, |v| v == want)?;
            Ok(match op {
                CmpOp::Ne => BooleanArray::new(!mask.values(), mask.nulls().cloned()),
                _ => mask,
            })
        }
        (DataType::Utf8, Value::Text(s)) => cmp_kernel(
            column,
            &Scalar::new(StringArray::from(vec![s.as_str()])),
            op,
        ),
        (ty, v) => Err(ArrowError::InvalidArgumentError(format!(
            "cannot compare a {ty} column with {v:?}"
        ))),
    }
}

/// Compares with a value that the parser checked fits the field's width.
fn compare_primitive<T>(
    column: &ArrayRef,
    op: CmpOp,
    value: u64,
) -> Result<BooleanArray, ArrowError>
where
    T: ArrowPrimitiveType,
    T::Native: TryFrom<u64>,
{
    let native = T::Native::try_from(value).map_err(|_| {
        ArrowError::InvalidArgumentError(format!("{value} does not fit a {} column", T::DATA_TYPE))
    })?;
    let scalar = PrimitiveArray::<T>::from_iter_values([native]);
    cmp_kernel(column, &Scalar::new(scalar), op)
}

fn cmp_kernel(
    column: &ArrayRef,
    scalar: &dyn arrow_array::Datum,
    op: CmpOp,
) -> Result<BooleanArray, ArrowError> {
    use arrow_ord::cmp;
    match op {
        CmpOp::Eq => cmp::eq(column, scalar),
        CmpOp::Ne => cmp::neq(column, scalar),
        CmpOp::Lt => cmp::lt(column, scalar),
        CmpOp::Le => cmp::lt_eq(column, scalar),
        CmpOp::Gt => cmp::gt(column, scalar),
        CmpOp::Ge => cmp::gt_eq(column, scalar),
    }
}

/// Applies `test` to each 16-byte address as a big-endian integer.
fn address_mask(
    column: &ArrayRef,
    test: impl Fn(u128) -> bool,
) -> Result<BooleanArray, ArrowError> {
    let addrs = column.as_fixed_size_binary_opt().ok_or_else(|| {
        ArrowError::SchemaError("an address column is not FixedSizeBinary(16)".to_string())
    })?;
    let values = addrs.value_data();
    let bits = BooleanBuffer::collect_bool(addrs.len(), |i| {
        let bytes: [u8; 16] = values[i * 16..i * 16 + 16].try_into().expect("16 bytes");
        test(u128::from_be_bytes(bytes))
    });
    Ok(BooleanArray::new(bits, addrs.nulls().cloned()))
}

fn in_net(column: &ArrayRef, net: u128, prefix: u8) -> Result<BooleanArray, ArrowError> {
    let mask = super::filter::prefix_mask(prefix);
    address_mask(column, |a| a & mask == net).map(without_nulls)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::filter::parse_filter;
    use hopscope_schema::{FlowBatchBuilder, FlowRecord, ipv4_mapped};

    fn batch() -> RecordBatch {
        let mut b = FlowBatchBuilder::default();
        let rows = [
            ([10, 0, 0, 1], [192, 168, 1, 1], Some(443), 6, 2_000_000),
            ([10, 9, 0, 1], [8, 8, 8, 8], Some(53), 17, 100),
            ([172, 16, 0, 1], [10, 0, 0, 1], None, 1, 64),
        ];
        for (src, dst, port, proto, bytes) in rows {
            b.append(&FlowRecord {
                time_received_ns: Some(1),
                src_addr: Some(ipv4_mapped(src)),
                dst_addr: Some(ipv4_mapped(dst)),
                dst_port: port,
                proto: Some(proto),
                bytes: Some(bytes),
                tcp_flags: (proto == 6).then_some(0x12),
                ..FlowRecord::default()
            });
        }
        b.finish().unwrap()
    }

    fn matches(filter: &str) -> Vec<bool> {
        let expr = parse_filter(filter).unwrap().unwrap();
        let mask = evaluate(&expr, &batch()).unwrap();
        assert_eq!(mask.null_count(), 0);
        mask.iter().map(Option::unwrap).collect()
    }

    #[test]
    fn conditions_select_the_rows_they_name() {
        assert_eq!(matches("src net 10.0.0.0/8"), [true, true, false]);
        assert_eq!(matches("net 10.0.0.0/16"), [true, false, true]);
        assert_eq!(
            matches("src net 10.0.0.0/8 and dst port 443"),
            [true, false, false]
        );
        assert_eq!(matches("not proto udp"), [true, false, true]);
        assert_eq!(matches("bytes > 1M"), [true, false, false]);
        assert_eq!(matches("bytes <= 100"), [false, true, true]);
        // the ICMP flow has no port: no comparison matches it, its negation does
        assert_eq!(matches("dst port != 443"), [false, true, false]);
        assert_eq!(matches("not dst port 443"), [false, true, true]);
        assert_eq!(matches("host 10.0.0.1"), [true, false, true]);
        assert_eq!(matches("dst_addr = 8.8.8.8 or icmp"), [false, true, true]);
        assert_eq!(matches("flags S"), [true, false, false]);
        assert_eq!(matches("src_addr != 10.0.0.1"), [false, true, true]);
        // a column the data does not have matches nothing
        assert_eq!(matches("src_country = FR"), [false, false, false]);
        assert_eq!(matches("ipv6"), [false, false, false]);
    }

    /// The journeys page's own example: lossy journeys through a node,
    /// whichever of its interfaces, never a node whose name only starts
    /// the same, and through an ECMP member.
    #[test]
    fn journeys_through_a_hop() {
        use crate::query::filter::parse_journey_filter;
        use arrow_array::UInt64Array;
        use std::sync::Arc;
        let paths = StringArray::from(vec![
            Some("branch-fw:lan > branch-fw:wan > isp-pe:ge-0/0/1 > core-a:et-1|core-b:et-1"),
            Some("branch-fw:lan > isp-pe2:xe-0 > dc-gw:eth0"),
            Some("r1 > isp-pe > r3"),
            Some("branch-fw:lan > isp-pe:ge-0/0/1"),
            None,
        ]);
        let lost = UInt64Array::from(vec![Some(3), Some(5), Some(1), Some(0), Some(9)]);
        let schema = arrow_schema::Schema::new(vec![
            arrow_schema::Field::new("path", DataType::Utf8, true),
            arrow_schema::Field::new("lost", DataType::UInt64, true),
        ]);
        let batch =
            RecordBatch::try_new(Arc::new(schema), vec![Arc::new(paths), Arc::new(lost)]).unwrap();
        let rows = |text: &str| {
            let expr = parse_journey_filter(text).unwrap().unwrap();
            let mask = evaluate(&expr, &batch).unwrap();
            (0..mask.len())
                .filter(|&i| mask.value(i))
                .collect::<Vec<_>>()
        };
        assert_eq!(rows(r#"lost > 0 and path "isp-pe""#), [0, 2]);
        assert_eq!(rows("path isp-pe:ge-0/0/1"), [0, 3]);
        assert_eq!(rows("path core-b"), [0]);
        assert_eq!(rows(r#"path = "r1 > isp-pe > r3""#), [2]);
        assert_eq!(rows("not path isp-pe"), [1, 4]);
    }
}
