//! hopscope's tables in a ClickHouse server: a [`Backend`] of the store
//! for when one machine is not enough, beside the embedded Parquet store.
//!
//! Each table is made from the first batch written to it, in the
//! dialect of the server it finds: Debian's ClickHouse 18.16 has no
//! DateTime64 and no IPv6 type, so there times are Int64 nanoseconds and
//! addresses FixedString(16); from 20.1 on they are DateTime64(9, 'UTC')
//! and IPv6, which a user's own SQL reads as times and addresses. Rows go
//! both ways in RowBinary (the same in both dialects) over the HTTP
//! interface, one INSERT per write so that the server sees few large
//! inserts. Flow queries read the range's rows and run hopscope's own
//! executor over them, so that both backends give the same answers; what
//! is pushed down to the server so far is the time range.

#![forbid(unsafe_code)]

mod columns;
mod http;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_schema::Schema;
use hopscope_store::query::{Query, QueryError, QueryOutput, ScanStats, execute_rows};
use hopscope_store::{Backend, StoreError, TIME_COLUMN, Table};

use columns::OTHER_FIELDS;
pub use columns::{Column, ColumnType, Dialect, decode as decode_row_binary};
use http::Endpoint;
pub use http::parse_response as parse_http_response;

/// What can go wrong between hopscope and ClickHouse.
#[derive(Debug, thiserror::Error)]
pub enum ClickHouseError {
    #[error("{address}: {source}")]
    Io {
        address: String,
        source: std::io::Error,
    },
    #[error("the server answered {status}: {message}")]
    Server { status: u16, message: String },
    #[error("an answer hopscope cannot read: {0}")]
    Protocol(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("ClickHouse URL {0}: expected clickhouse://[user[:password]@]host[:port][/database]")]
    Url(String),
}

impl From<ClickHouseError> for StoreError {
    fn from(e: ClickHouseError) -> Self {
        StoreError::Backend {
            backend: "clickhouse",
            source: Box::new(e),
        }
    }
}

/// Rows per batch handed on by a scan.
const ROWS_PER_BATCH: usize = 65_536;

/// A ClickHouse server holding hopscope's tables in one database.
#[derive(Debug)]
pub struct ClickHouse {
    endpoint: Endpoint,
    database: String,
    version: String,
    dialect: Dialect,
    /// The columns of the tables known to exist.
    tables: Mutex<HashMap<Table, Vec<Column>>>,
}

impl ClickHouse {
    /// Connects to `clickhouse://[user[:password]@]host[:port][/database]`
    /// (port 8123, the HTTP interface, and database `hopscope` by
    /// default), learns the server's version and makes the database.
    pub fn connect(url: &str) -> Result<Self, ClickHouseError> {
        let bad = || ClickHouseError::Url(url.to_string());
        let rest = url.strip_prefix("clickhouse://").ok_or_else(bad)?;
        let (authority, database) = rest.split_once('/').unwrap_or((rest, ""));
        let (credentials, host) = match authority.rsplit_once('@') {
            Some((c, h)) => (Some(c), h),
            None => (None, authority),
        };
        let (user, password) = match credentials {
            Some(c) => c.split_once(':').unwrap_or((c, "")),
            None => ("default", ""),
        };
        if host.is_empty() {
            return Err(bad());
        }
        let address = if host
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            host.to_string()
        } else {
            format!("{host}:8123")
        };
        let database = if database.is_empty() {
            "hopscope"
        } else {
            database
        };
        if !database
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(bad());
        }
        let endpoint = Endpoint {
            address,
            user: user.to_string(),
            password: password.to_string(),
            timeout: Duration::from_secs(30),
        };
        let version = String::from_utf8_lossy(&endpoint.post(&[], b"SELECT version()")?)
            .trim()
            .to_string();
        endpoint.post(
            &[],
            format!("CREATE DATABASE IF NOT EXISTS {database}").as_bytes(),
        )?;
        Ok(Self {
            endpoint,
            database: database.to_string(),
            dialect: Dialect::of_version(&version),
            version,
            tables: Mutex::new(HashMap::new()),
        })
    }

    /// The server's `version()`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The dialect its tables are made in.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    fn run(&self, sql: &str) -> Result<Vec<u8>, ClickHouseError> {
        self.endpoint
            .post(&[("database", &self.database)], sql.as_bytes())
    }

    /// The `CREATE TABLE` of `table` for rows of `schema`: a MergeTree
    /// partitioned by day (what retention drops) and ordered by time.
    pub fn ddl(&self, table: Table, schema: &Schema) -> Result<String, ClickHouseError> {
        let mut columns = Vec::new();
        for f in schema.fields() {
            let column = Column {
                name: f.name().to_string(),
                kind: ColumnType::of_arrow(f.name(), f.data_type())?,
                nullable: f.name() != TIME_COLUMN,
            };
            columns.push(format!("  {}", column.definition(self.dialect)));
        }
        if schema.field_with_name(TIME_COLUMN).is_err() {
            return Err(ClickHouseError::Unsupported(format!(
                "rows for {} have no {TIME_COLUMN}",
                table.dir_name()
            )));
        }
        Ok(format!(
            "CREATE TABLE IF NOT EXISTS {}.{} (\n{}\n) ENGINE = MergeTree\nPARTITION BY {}\nORDER BY `{TIME_COLUMN}`",
            self.database,
            table.dir_name(),
            columns.join(",\n"),
            self.dialect.day_of(TIME_COLUMN)
        ))
    }

    /// The columns of `table` as the server has them; `None` when it has
    /// no such table.
    fn describe(&self, table: Table) -> Result<Option<Vec<Column>>, ClickHouseError> {
        let exists = self.run(&format!(
            "EXISTS TABLE {}.{} FORMAT TabSeparated",
            self.database,
            table.dir_name()
        ))?;
        if exists.trim_ascii() != b"1" {
            return Ok(None);
        }
        let answer = self.run(&format!(
            "DESCRIBE TABLE {}.{} FORMAT TabSeparated",
            self.database,
            table.dir_name()
        ))?;
        let text = String::from_utf8_lossy(&answer);
        let mut columns = Vec::new();
        for line in text.lines().filter(|l| !l.is_empty()) {
            let mut fields = line.split('\t');
            let (Some(name), Some(ty)) = (fields.next(), fields.next()) else {
                return Err(ClickHouseError::Protocol(format!("DESCRIBE said {line:?}")));
            };
            // other_fields' three arrays are one column of hopscope's
            if let Some(at) = OTHER_FIELDS.iter().position(|(n, _)| *n == name) {
                if at == 0 {
                    columns.push(Column {
                        name: "other_fields".to_string(),
                        kind: ColumnType::OtherFields,
                        nullable: true,
                    });
                }
                continue;
            }
            let (kind, nullable) = ColumnType::of_clickhouse(name, ty)?;
            columns.push(Column {
                name: name.to_string(),
                kind,
                nullable,
            });
        }
        Ok(Some(columns))
    }

    /// The columns of `table`, made from `schema` if it does not exist
    /// yet, with the columns `schema` adds to it (a newer hopscope's).
    fn table_for(&self, table: Table, schema: &Schema) -> Result<Vec<Column>, ClickHouseError> {
        let mut tables = self.tables.lock().expect("no panic holds the table list");
        let known = match tables.get(&table) {
            Some(c) => Some(c.clone()),
            None => self.describe(table)?,
        };
        let columns = match known {
            None => {
                self.run(&self.ddl(table, schema)?)?;
                self.describe(table)?.ok_or_else(|| {
                    ClickHouseError::Protocol(format!("{} not made", table.dir_name()))
                })?
            }
            Some(columns) => {
                let missing: Vec<_> = schema
                    .fields()
                    .iter()
                    .filter(|f| !columns.iter().any(|c| c.name == *f.name()))
                    .collect();
                if missing.is_empty() {
                    columns
                } else {
                    for f in missing {
                        let column = Column {
                            name: f.name().to_string(),
                            kind: ColumnType::of_arrow(f.name(), f.data_type())?,
                            nullable: true,
                        };
                        self.run(&format!(
                            "ALTER TABLE {}.{} ADD COLUMN {}",
                            self.database,
                            table.dir_name(),
                            column.definition(self.dialect)
                        ))?;
                    }
                    self.describe(table)?.unwrap_or_default()
                }
            }
        };
        tables.insert(table, columns.clone());
        Ok(columns)
    }

    /// The columns of an existing table, `None` when there is none.
    fn known(&self, table: Table) -> Result<Option<Vec<Column>>, ClickHouseError> {
        let mut tables = self.tables.lock().expect("no panic holds the table list");
        if let Some(c) = tables.get(&table) {
            return Ok(Some(c.clone()));
        }
        let described = self.describe(table)?;
        if let Some(c) = &described {
            tables.insert(table, c.clone());
        }
        Ok(described)
    }
}

impl Backend for ClickHouse {
    fn write(&self, table: Table, batches: &[RecordBatch]) -> Result<(), StoreError> {
        // one INSERT per column set: batches of one write share theirs
        let mut bodies: Vec<(Vec<Column>, Vec<u8>)> = Vec::new();
        for batch in batches.iter().filter(|b| b.num_rows() > 0) {
            let table_columns = self.table_for(table, &batch.schema())?;
            let columns: Vec<Column> = batch
                .schema()
                .fields()
                .iter()
                .filter_map(|f| table_columns.iter().find(|c| c.name == *f.name()).cloned())
                .collect();
            let at = match bodies.iter().position(|(c, _)| *c == columns) {
                Some(i) => i,
                None => {
                    bodies.push((columns, Vec::new()));
                    bodies.len() - 1
                }
            };
            let (columns, body) = &mut bodies[at];
            columns::encode(batch, columns, body)?;
        }
        for (columns, body) in bodies {
            let names: Vec<String> = columns.iter().map(Column::sql).collect();
            let insert = format!(
                "INSERT INTO {}.{} ({}) FORMAT RowBinary",
                self.database,
                table.dir_name(),
                names.join(", ")
            );
            self.endpoint.post(&[("query", &insert)], &body)?;
        }
        Ok(())
    }

    fn scan(
        &self,
        table: Table,
        columns: &[&str],
        from_ns: i64,
        to_ns: i64,
        each: &mut dyn FnMut(RecordBatch) -> Result<(), StoreError>,
    ) -> Result<ScanStats, StoreError> {
        let mut stats = ScanStats::default();
        let Some(table_columns) = self.known(table)? else {
            return Ok(stats);
        };
        // the named columns the table has (an older table lacks newer
        // ones, as older segments do), and the time
        let wanted: Vec<Column> = table_columns
            .into_iter()
            .filter(|c| c.name == TIME_COLUMN || columns.contains(&c.name.as_str()))
            .collect();
        let names: Vec<String> = wanted.iter().map(Column::sql).collect();
        let select = format!(
            "SELECT {} FROM {}.{} WHERE `{TIME_COLUMN}` >= {} AND `{TIME_COLUMN}` < {} ORDER BY `{TIME_COLUMN}` FORMAT RowBinary",
            names.join(", "),
            self.database,
            table.dir_name(),
            self.dialect.time_literal(from_ns),
            self.dialect.time_literal(to_ns)
        );
        let answer = self.run(&select)?;
        let mut failed = None;
        let rows = columns::decode(&answer, &wanted, ROWS_PER_BATCH, &mut |batch| {
            each(batch).map_err(|e| {
                let message = e.to_string();
                failed = Some(e);
                ClickHouseError::Unsupported(message)
            })
        });
        if let Some(e) = failed {
            return Err(e);
        }
        stats.rows_read = rows?;
        Ok(stats)
    }

    fn query(&self, q: &Query) -> Result<QueryOutput, QueryError> {
        let all: Vec<String> = match self.known(Table::Flows).map_err(StoreError::from)? {
            Some(columns) => columns.into_iter().map(|c| c.name).collect(),
            None => Vec::new(),
        };
        let names: Vec<&str> = all.iter().map(String::as_str).collect();
        let mut rows = Vec::new();
        let stats = self.scan(Table::Flows, &names, q.from_ns, q.to_ns, &mut |b| {
            rows.push(b);
            Ok(())
        })?;
        let mut output = execute_rows(q, &rows)?;
        output.scan.rows_read = stats.rows_read;
        Ok(output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_read_or_refused_with_the_expected_form() {
        // nothing listens on port 9 of loopback: the URL is read, the
        // connection refused
        for url in [
            "clickhouse://127.0.0.1:9",
            "clickhouse://u:p@127.0.0.1:9/flows_db",
        ] {
            match ClickHouse::connect(url) {
                Err(ClickHouseError::Io { address, .. }) => assert_eq!(address, "127.0.0.1:9"),
                other => panic!("{url}: {other:?}"),
            }
        }
        for url in [
            "http://127.0.0.1:8123",
            "clickhouse://",
            "clickhouse://h:1/db;drop",
        ] {
            assert!(
                matches!(ClickHouse::connect(url), Err(ClickHouseError::Url(_))),
                "{url}"
            );
        }
    }
}
