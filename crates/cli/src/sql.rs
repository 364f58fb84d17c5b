//! `hopscope sql`: DataFusion over the store's files, read-only and
//! bounded; in builds without the `sql` feature, a clear refusal.

use std::process::ExitCode;

use anyhow::Result;

use crate::SqlArgs;

#[cfg(feature = "sql")]
pub fn run(args: &SqlArgs) -> Result<ExitCode> {
    use hopscope_store::sql::{SqlLimits, run_sql};

    let limits = SqlLimits {
        memory_bytes: crate::serve::parse_size(&args.memory)? as usize,
        timeout: std::time::Duration::from_nanos(
            crate::probe::parse_duration(&args.timeout)? as u64
        ),
        max_rows: args.max_rows,
    };
    let store = crate::open_store(&args.data_dir)?;
    let out = run_sql(&store, &args.query, limits)?;
    print!("{}", out.render(args.output.format())?);
    if out.truncated {
        eprintln!("(cut at {} rows: --max-rows)", args.max_rows);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(not(feature = "sql"))]
pub fn run(_args: &SqlArgs) -> Result<ExitCode> {
    anyhow::bail!(
        "this hopscope was built without SQL; build it with `cargo build --release --features sql` \
         (DataFusion takes a while to compile), or use `hopscope query`"
    )
}
