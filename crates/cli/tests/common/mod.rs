//! Helpers shared by the tests that run `hopscope` as a process.

// each test binary uses its share of them
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

/// A TCP port on 127.0.0.1 free right now.
pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The body of `GET path` from the API on `port`, when it answers 200.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    if !head.contains(" 200 ") {
        return None;
    }
    let chunked = head
        .lines()
        .any(|l| l.eq_ignore_ascii_case("transfer-encoding: chunked"));
    Some(if chunked {
        dechunk(body)?
    } else {
        body.to_string()
    })
}

/// A chunked body (as Go servers such as Alertmanager and Prometheus send
/// longer answers) put back together.
fn dechunk(mut body: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n")?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(rest.get(..size)?);
        body = rest.get(size..)?.strip_prefix("\r\n")?;
    }
}

/// Runs `hopscope` in `dir`; its standard output, when it succeeds.
pub fn hopscope(args: &[&str], dir: &std::path::Path) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hopscope"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run hopscope");
    assert!(
        out.status.success(),
        "hopscope {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// The observation points of the simulated chain.
pub const CHAIN_POINTS: [&str; 6] = [
    "r1:r1-a", "r1:r1-r2", "r2:r2-r1", "r2:r2-r3", "r3:r3-r2", "r3:r3-b",
];

/// The simulated chain (seed 7, `loss` on the link inside R2, starting
/// at `start`: a time or `now`) metered by `hopscope probe` at each point
/// into `dir`: the `--replay` arguments for `serve`, one file per point.
pub fn simulated_exports(dir: &std::path::Path, loss: &str, start: Option<&str>) -> Vec<String> {
    let mut simulate = vec![
        "simulate",
        "--scenario",
        "chain",
        "--seed",
        "7",
        "--loss",
        loss,
        "--loss-link",
        "2",
        "--out",
        "caps",
    ];
    if let Some(start) = start {
        simulate.extend(["--start", start]);
    }
    hopscope(&simulate, dir);
    let mut replay = Vec::new();
    for p in CHAIN_POINTS {
        let file = p.replace(':', "_");
        hopscope(
            &[
                "probe",
                "--pcap",
                &format!("caps/{file}.pcap"),
                "--observation-point",
                p,
                "--select",
                "1/2",
                "--export",
                &format!("file:{file}.ipfix"),
            ],
            dir,
        );
        replay.push("--replay".into());
        replay.push(format!("{file}.ipfix"));
    }
    replay
}
