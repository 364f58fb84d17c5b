//! `hopscope sql` in builds with the `sql` feature: DataFusion reads what
//! `hopscope serve` stored and agrees with `hopscope query`.
#![cfg(feature = "sql")]

use std::path::Path;
use std::process::Command;

fn hopscope() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hopscope"))
}

#[test]
fn sql_and_query_agree_on_stored_flows() {
    let data = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sql-store");
    let _ = std::fs::remove_dir_all(&data);
    let capture = Path::new(env!("CARGO_MANIFEST_DIR")).join(
        "../../tests/data/real/NetGauze/assets/pcaps/pmacct-tests/100-IPFIXv10-CISCO/traffic-00.pcap",
    );
    let status = hopscope()
        .args([
            "serve",
            "--udp",
            "none",
            "--tcp",
            "none",
            "--http",
            "none",
            "--exit-after-replay",
        ])
        .arg("--data-dir")
        .arg(&data)
        .arg("--replay")
        .arg(capture)
        .status()
        .unwrap();
    assert!(status.success());
    let out = hopscope()
        .args([
            "sql",
            "--csv",
            "SELECT count(*) AS flows, sum(bytes) AS bytes FROM flows",
        ])
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "flows,bytes\n12,34172\n"
    );
    let refused = hopscope()
        .args(["sql", "DROP TABLE flows"])
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(!refused.status.success());
}
