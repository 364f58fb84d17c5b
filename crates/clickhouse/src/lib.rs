//! hopscope's tables in a ClickHouse server: a [`Backend`] of the store
//! for when one machine is not enough, beside the embedded Parquet store.
//!
//! Each table is made from the first batch written to it, in the
//! dialect of the server it finds: Debian's ClickHouse 18.16 has no
//! DateTime64 and no IPv6 type, so there times are Int64 nanoseconds and
//! addresses FixedString(16); from 21 on they are DateTime64(9, 'UTC')
//! and IPv6, which a user's own SQL reads as times and addresses (a table
//! keeps the dialect it was made in). Rows go both ways in RowBinary (the
//! same in both dialects) over the HTTP interface; a write sends one
//! INSERT per set of columns (all of a write's batches share one, as a
//! rule), so that the server sees few large inserts. Flow queries read the
//! range's rows and run hopscope's own executor over them, so that both
//! backends give the same answers; what is pushed down to the server so
//! far is the time range.

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
    /// Not a `source`: the message says it, and a chain of causes
    /// would say it twice.
    #[error("{address}: {cause}")]
    Io {
        address: String,
        cause: std::io::Error,
    },
    #[error("the server answered {status}: {message}")]
    Server { status: u16, message: String },
    #[error("an answer hopscope cannot read: {0}")]
    Protocol(String),
    #[error("{0}")]
    Unsupported(String),
    #[error(
        "ClickHouse URL {0}: expected clickhouse://[user[:password]@]host[:port][/database], the database named with letters, digits and _"
    )]
    Url(String),
}

impl ClickHouseError {
    /// Whether trying again may succeed: the server was unreachable,
    /// refused who we are (a setup mistake, fixed on the server), or
    /// failed in itself (5xx), rather than refusing the statement or the
    /// rows for what they are.
    pub fn may_pass_later(&self) -> bool {
        match self {
            ClickHouseError::Io { .. } => true,
            ClickHouseError::Server { status, message } => {
                matches!(status, 401 | 403) || (*status >= 500 && !message.contains("Syntax error"))
            }
            _ => false,
        }
    }

    /// A failure of the server's own (5xx): tried a few times only.
    pub fn is_server_failure(&self) -> bool {
        matches!(self, ClickHouseError::Server { status, .. } if *status >= 500)
    }
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

/// A server and database, read from a URL: what [`Target::connect`]
/// connects to.
#[derive(Debug, Clone)]
pub struct Target {
    endpoint: Endpoint,
    database: String,
}

impl Target {
    /// Reads `clickhouse://[user[:password]@]host[:port][/database]`
    /// (port 8123, the HTTP interface, user `default` and database
    /// `hopscope` by default). A refused URL is said without its password.
    pub fn parse(url: &str) -> Result<Target, ClickHouseError> {
        let bad = || ClickHouseError::Url(without_password(url));
        let rest = url.strip_prefix("clickhouse://").ok_or_else(bad)?;
        // the last '@' ends the credentials, which may hold '/' and '@'
        let (credentials, rest) = match rest.rfind('@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        let (host, database) = rest.split_once('/').unwrap_or((rest, ""));
        let (user, password) = match credentials {
            Some(c) => c.split_once(':').unwrap_or((c, "")),
            None => ("default", ""),
        };
        if host.is_empty() || user.is_empty() {
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
        Ok(Target {
            endpoint: Endpoint {
                address,
                user: user.to_string(),
                password: password.to_string(),
                timeout: Duration::from_secs(30),
            },
            database: database.to_string(),
        })
    }

    /// Learns the server's version and makes the database (to write).
    pub fn connect(&self) -> Result<ClickHouse, ClickHouseError> {
        let server = self.attach()?;
        server.endpoint.post(
            &[],
            format!("CREATE DATABASE IF NOT EXISTS {}", self.database).as_bytes(),
        )?;
        Ok(server)
    }

    /// Learns the server's version, to read: a database that is not there
    /// is an error (a misspelt name), not made.
    pub fn open(&self) -> Result<ClickHouse, ClickHouseError> {
        let server = self.attach()?;
        let found = server.endpoint.post(
            &[],
            format!(
                "SELECT count() FROM system.databases WHERE name = '{}'",
                self.database
            )
            .as_bytes(),
        )?;
        if found.trim_ascii() != b"1" {
            return Err(ClickHouseError::Unsupported(format!(
                "the ClickHouse server at {} has no database {}",
                self.endpoint.address, self.database
            )));
        }
        Ok(server)
    }

    fn attach(&self) -> Result<ClickHouse, ClickHouseError> {
        let endpoint = self.endpoint.clone();
        let version = String::from_utf8_lossy(&endpoint.post(&[], b"SELECT version()")?)
            .trim()
            .to_string();
        Ok(ClickHouse {
            endpoint,
            database: self.database.clone(),
            dialect: Dialect::of_version(&version),
            version,
            tables: Mutex::new(HashMap::new()),
            ddl: Mutex::new(()),
        })
    }
}

/// The ClickHouse column for an Arrow field of hopscope's: nullable but
/// the time (which every table has from its making, so a column added
/// later is nullable too).
fn column_of(f: &arrow_schema::Field) -> Result<Column, ClickHouseError> {
    Ok(Column {
        name: f.name().to_string(),
        kind: ColumnType::of_arrow(f.name(), f.data_type())?,
        nullable: f.name() != TIME_COLUMN,
    })
}

/// `url` with `***` for its password.
fn without_password(url: &str) -> String {
    let Some(rest) = url.strip_prefix("clickhouse://") else {
        return url.to_string();
    };
    match rest.rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or("");
            format!("clickhouse://{user}:***@{}", &rest[at + 1..])
        }
        None => url.to_string(),
    }
}

/// A table as the server has it.
#[derive(Debug, Clone)]
struct Known {
    columns: Vec<Column>,
    /// What it was made in: its time column says.
    dialect: Dialect,
}

/// A ClickHouse server holding hopscope's tables in one database.
#[derive(Debug)]
pub struct ClickHouse {
    endpoint: Endpoint,
    database: String,
    version: String,
    dialect: Dialect,
    /// The tables known to exist. Never held across a request.
    tables: Mutex<HashMap<Table, Known>>,
    /// Held while a table is made or altered, so that two writers do not
    /// both add a column.
    ddl: Mutex<()>,
}

impl ClickHouse {
    /// Connects to a URL (see [`Target::parse`]).
    pub fn connect(url: &str) -> Result<Self, ClickHouseError> {
        Target::parse(url)?.connect()
    }

    /// The server's `version()`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The dialect it makes new tables in.
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
        if schema.field_with_name(TIME_COLUMN).is_err() {
            return Err(ClickHouseError::Unsupported(format!(
                "rows for {} have no {TIME_COLUMN}",
                table.dir_name()
            )));
        }
        let mut columns = Vec::new();
        for f in schema.fields() {
            let column = column_of(f)?;
            columns.extend(
                column
                    .definitions(self.dialect)
                    .into_iter()
                    .map(|d| format!("  {d}")),
            );
        }
        Ok(format!(
            "CREATE TABLE IF NOT EXISTS {}.{} (\n{}\n) ENGINE = MergeTree\nPARTITION BY {}\nORDER BY `{TIME_COLUMN}`",
            self.database,
            table.dir_name(),
            columns.join(",\n"),
            self.dialect.day_of(TIME_COLUMN)
        ))
    }

    /// The table as the server has it; `None` when it has no such table.
    fn describe(&self, table: Table) -> Result<Option<Known>, ClickHouseError> {
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
        let mut dialect = Dialect::Portable;
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
            if name == TIME_COLUMN && ty.starts_with("DateTime64") {
                dialect = Dialect::Modern;
            }
            let (kind, nullable) = ColumnType::of_clickhouse(name, ty)?;
            columns.push(Column {
                name: name.to_string(),
                kind,
                nullable,
            });
        }
        Ok(Some(Known { columns, dialect }))
    }

    fn cached(&self, table: Table) -> Option<Known> {
        self.tables
            .lock()
            .expect("no panic holds the table list")
            .get(&table)
            .cloned()
    }

    fn remember(&self, table: Table, known: &Known) {
        self.tables
            .lock()
            .expect("no panic holds the table list")
            .insert(table, known.clone());
    }

    /// The table, made from `schema` if it does not exist yet, with the
    /// columns `schema` adds to it (a newer hopscope's).
    fn table_for(&self, table: Table, schema: &Schema) -> Result<Known, ClickHouseError> {
        let has_all = |k: &Known| {
            schema
                .fields()
                .iter()
                .all(|f| k.columns.iter().any(|c| c.name == *f.name()))
        };
        if let Some(k) = self.cached(table).filter(has_all) {
            return Ok(k);
        }
        let _making = self.ddl.lock().expect("no panic holds the DDL lock");
        let mut known = match self.describe(table)? {
            Some(k) => k,
            None => {
                self.run(&self.ddl(table, schema)?)?;
                self.describe(table)?.ok_or_else(|| {
                    ClickHouseError::Protocol(format!("{} not made", table.dir_name()))
                })?
            }
        };
        let mut adds = Vec::new();
        for f in schema.fields() {
            if !known.columns.iter().any(|c| c.name == *f.name()) {
                let column = column_of(f)?;
                adds.extend(
                    column
                        .definitions(known.dialect)
                        .into_iter()
                        .map(|d| format!("ADD COLUMN {d}")),
                );
            }
        }
        if !adds.is_empty() {
            self.run(&format!(
                "ALTER TABLE {}.{} {}",
                self.database,
                table.dir_name(),
                adds.join(", ")
            ))?;
            known = self.describe(table)?.unwrap_or(known);
        }
        self.remember(table, &known);
        Ok(known)
    }

    /// The table if it exists.
    fn known(&self, table: Table) -> Result<Option<Known>, ClickHouseError> {
        if let Some(k) = self.cached(table) {
            return Ok(Some(k));
        }
        let described = self.describe(table)?;
        if let Some(k) = &described {
            self.remember(table, k);
        }
        Ok(described)
    }

    /// Writes the rows of `table`: one INSERT per set of columns (the
    /// batches of one write share theirs, as a rule). A write whose
    /// answer was lost may have been taken: writing again is at least
    /// once, not exactly once.
    pub fn insert(&self, table: Table, batches: &[RecordBatch]) -> Result<(), ClickHouseError> {
        let mut bodies: Vec<(Vec<Column>, Vec<u8>)> = Vec::new();
        for batch in batches.iter().filter(|b| b.num_rows() > 0) {
            let schema = batch.schema();
            let known = self.table_for(table, &schema)?;
            let mut columns = Vec::new();
            for f in schema.fields() {
                let Some(c) = known.columns.iter().find(|c| c.name == *f.name()) else {
                    continue;
                };
                let kind = ColumnType::of_arrow(f.name(), f.data_type())?;
                if kind != c.kind {
                    return Err(ClickHouseError::Unsupported(format!(
                        "column {} of {} is {kind:?} in the rows but {:?} in ClickHouse",
                        f.name(),
                        table.dir_name(),
                        c.kind
                    )));
                }
                columns.push(c.clone());
            }
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
}

impl Backend for ClickHouse {
    fn write(&self, table: Table, batches: &[RecordBatch]) -> Result<(), StoreError> {
        Ok(self.insert(table, batches)?)
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
        let Some(known) = self.known(table)? else {
            return Ok(stats);
        };
        // the named columns the table has (an older table lacks newer
        // ones, as older segments do), and the time
        let wanted: Vec<Column> = known
            .columns
            .into_iter()
            .filter(|c| c.name == TIME_COLUMN || columns.contains(&c.name.as_str()))
            .collect();
        let names: Vec<String> = wanted.iter().map(Column::sql).collect();
        let select = format!(
            "SELECT {} FROM {}.{} WHERE `{TIME_COLUMN}` >= {} AND `{TIME_COLUMN}` < {} ORDER BY `{TIME_COLUMN}` FORMAT RowBinary",
            names.join(", "),
            self.database,
            table.dir_name(),
            known.dialect.time_literal(from_ns),
            known.dialect.time_literal(to_ns)
        );
        // the whole answer before the status: an error midway is then an
        // error, not rows followed by a message
        let answer = self.endpoint.post(
            &[("database", &self.database), ("wait_end_of_query", "1")],
            select.as_bytes(),
        )?;
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
            Some(known) => known.columns.into_iter().map(|c| c.name).collect(),
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
            "clickhouse://u:p/w@d@127.0.0.1:9/flows_db",
        ] {
            match ClickHouse::connect(url) {
                Err(ClickHouseError::Io { address, .. }) => assert_eq!(address, "127.0.0.1:9"),
                other => panic!("{url}: {other:?}"),
            }
        }
        let t = Target::parse("clickhouse://u:p/w@d@h/x").unwrap();
        assert_eq!(
            (
                t.endpoint.address.as_str(),
                t.endpoint.password.as_str(),
                t.database.as_str()
            ),
            ("h:8123", "p/w@d", "x")
        );
        for url in [
            "http://127.0.0.1:8123",
            "clickhouse://",
            "clickhouse://h:1/db;drop",
            "clickhouse://:secret@h",
        ] {
            assert!(
                matches!(Target::parse(url), Err(ClickHouseError::Url(_))),
                "{url}"
            );
        }
        // the password stays out of what is said
        let refused = Target::parse("clickhouse://u:secret@h/bad-name").unwrap_err();
        assert!(!refused.to_string().contains("secret"), "{refused}");
        assert!(!format!("{t:?}").contains("p/w@d"));
    }

    #[test]
    fn which_failures_are_worth_another_try() {
        let server = |status, message: &str| ClickHouseError::Server {
            status,
            message: message.into(),
        };
        assert!(server(503, "Code: 241, Memory limit").may_pass_later());
        assert!(!server(500, "Code: 62, Syntax error: failed at position 1").may_pass_later());
        assert!(server(401, "Code: 192, Unknown user").may_pass_later());
        assert!(!server(401, "Code: 192, Unknown user").is_server_failure());
        assert!(!server(404, "Code: 60, Table doesn't exist").may_pass_later());
        assert!(!ClickHouseError::Unsupported("x".into()).may_pass_later());
    }
}
