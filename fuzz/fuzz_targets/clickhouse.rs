#![no_main]

use hopscope_clickhouse::{Column, ColumnType, decode_row_binary, parse_http_response};

// Whatever a ClickHouse server (or anything listening in its place)
// answers: an HTTP response, then RowBinary rows of every column type
// hopscope reads, nullable or not: batches or an error, never a panic.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = parse_http_response(data);
    let column = |name: &str, kind, nullable| Column {
        name: name.to_string(),
        kind,
        nullable,
    };
    let columns = [
        column("time_received_ns", ColumnType::Time, false),
        column("proto", ColumnType::UInt8, true),
        column("src_port", ColumnType::UInt16, false),
        column("in_if", ColumnType::UInt32, true),
        column("bytes", ColumnType::UInt64, true),
        column("src_addr", ColumnType::Address, true),
        column("exporter_name", ColumnType::Text, true),
        column("other_fields", ColumnType::OtherFields, true),
    ];
    let _ = decode_row_binary(data, &columns, 7, &mut |batch| {
        let _ = batch.num_rows();
        Ok(())
    });
});
