//! `hopscope query`: the store's query executor from the command line.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use hopscope_store::query::{QueryError, QueryRequest, execute};
use hopscope_store::render::{Columns, Format, write};

use crate::{QueryArgs, now_ns};

pub fn run(args: &QueryArgs) -> Result<ExitCode> {
    let request = QueryRequest {
        filter: Some(args.filter.join(" ")),
        group_by: args.group_by.clone(),
        aggregates: args.aggregates.clone(),
        since: args.range.since.clone(),
        from: args.range.from.clone(),
        to: args.range.to.clone(),
        bucket: args.bucket.clone(),
        limit: args.limit.or_else(|| {
            // a flow listing without a limit could print millions of lines
            (args.group_by.is_none() && args.aggregates.is_none()).then_some(20)
        }),
        order: args.order.clone(),
        columns: args.columns.clone(),
        source: args.source.clone(),
        unscaled: Some(args.unscaled),
        every_point: Some(args.every_point),
    };
    let mut query = match request.plan(now_ns()) {
        Ok(q) => q,
        Err(QueryError::Filter(e)) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(2));
        }
        Err(e) => return Err(e.into()),
    };
    query.threads = args.threads;
    let started = std::time::Instant::now();
    let out = match &args.clickhouse {
        #[cfg(feature = "clickhouse")]
        Some(url) => {
            use hopscope_store::Backend;
            hopscope_clickhouse::Target::parse(url)?
                .open()?
                .query(&query)?
        }
        #[cfg(not(feature = "clickhouse"))]
        Some(_) => anyhow::bail!("this hopscope was built without the clickhouse feature"),
        None => execute(&crate::open_store(&args.data_dir)?, &query)?,
    };
    let elapsed = started.elapsed();
    let format = args.output.format();
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    let columns = if query.aggregates.is_empty() {
        Columns::Filled
    } else {
        Columns::All
    };
    write(&mut lock, &out.rows, format, columns)?;
    if format == Format::Table
        && let Some(totals) = &out.totals
    {
        let groups = if out.groups == 1 { "group" } else { "groups" };
        writeln!(lock, "\ntotal ({} {groups}):", out.groups)?;
        write(&mut lock, totals, format, Columns::All)?;
    }
    // which volumes these are, where a reader of the table sees it; on
    // stderr beside machine formats, so that their output stays parseable
    let note = volumes_note(&out);
    if format == Format::Table {
        writeln!(lock, "\n{note}")?;
    } else {
        eprintln!("{note}");
    }
    if args.explain {
        let s = &out.scan;
        eprintln!(
            "scanned {} segments ({} from rollups), pruned {}; {} of {} row groups pruned; {} rows read in {:.3} s",
            s.segments,
            out.rollup_segments,
            s.segments_pruned,
            s.row_groups_pruned,
            s.row_groups,
            s.rows_read,
            elapsed.as_secs_f64()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `volumes: scaled ...; 12 of 400 flows (3.0 %) of unknown rate, counted once`.
fn volumes_note(out: &hopscope_store::query::QueryOutput) -> String {
    let c = &out.coverage;
    let unknown = match c.unknown_rate_flows {
        0 => "every flow of known sampling rate".to_string(),
        n => format!(
            "{n} of {} flows ({:.1} %) of unknown sampling rate, counted once",
            c.flows,
            100.0 * c.unknown_share()
        ),
    };
    format!(
        "volumes: {}; {unknown}; {}",
        out.volumes.describe(),
        out.left_out.describe()
    )
}
