//! The `hopscope decode` command as a user runs it.

use assert_cmd::Command;

fn fixture(path: &str) -> String {
    format!(
        "{}/../../tests/data/real/{path}",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn decodes_a_capture_to_json_lines() {
    let out = Command::cargo_bin("hopscope")
        .unwrap()
        .args(["decode", "--json"])
        .arg(fixture(
            "NetGauze/assets/pcaps/pmacct-tests/100-IPFIXv10-CISCO/traffic-00.pcap",
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 12);
    assert_eq!(lines[0]["src_addr"], "10.231.65.56");
    assert_eq!(lines[0]["bytes"], 220);
    assert_eq!(
        lines[0]["time_flow_start_ns"],
        "2023-02-28T09:46:01.088000000Z"
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("12 flow records"), "{stderr}");
}

#[test]
fn templates_then_data_across_files_and_csv() {
    let dir = "logstash-codec-netflow/spec/codecs/";
    let out = Command::cargo_bin("hopscope")
        .unwrap()
        .args(["decode", "--csv"])
        .arg(fixture(&format!("{dir}netflow9_test_cisco_asa_1_tpl.dat")))
        .arg(fixture(&format!("{dir}netflow9_test_cisco_asa_1_data.dat")))
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.lines().next().unwrap().contains("src_addr"));
    assert_eq!(text.lines().count(), 1 + 14);
}

#[test]
fn malformed_input_is_reported_with_context_and_exit_code_2() {
    let out = Command::cargo_bin("hopscope")
        .unwrap()
        .arg("decode")
        .arg(fixture(
            "logstash-codec-netflow/spec/codecs/netflow5_test_invalid01.dat",
        ))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("bad_message_length"), "{stderr}");
    assert!(
        stderr.contains("NetFlow v5 message from 0.0.0.0:0"),
        "{stderr}"
    );
}

#[test]
fn a_missing_file_is_an_error_not_a_panic() {
    let out = Command::cargo_bin("hopscope")
        .unwrap()
        .args(["decode", "/nonexistent/file.pcap"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("/nonexistent/file.pcap")
    );
}
