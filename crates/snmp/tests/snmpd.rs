//! Against net-snmp's `snmpd` (Debian's package), started on loopback by
//! the test: the interfaces it reports over SNMPv2c and over SNMPv3 with
//! each authentication and privacy protocol, its counters held against the
//! kernel's, and the errors a wrong password or an absent agent give.
//!
//! Run by `scripts/integration` (`cargo test -p hopscope-snmp -- --ignored`).

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hopscope_snmp::ifmib::{self, Interface};
use hopscope_snmp::{AuthProtocol, Oid, PrivProtocol, Security, Session, SnmpError, Target, User};

struct Agent {
    child: Child,
    address: SocketAddr,
    _dir: TempDir,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_snmpd() -> Agent {
    let port = free_udp_port();
    let dir = std::env::temp_dir().join(format!("hopscope-snmpd-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("snmpd.conf");
    std::fs::write(
        &conf,
        format!(
            "agentAddress udp:127.0.0.1:{port}\n\
             rocommunity public 127.0.0.1\n\
             createUser shauser SHA \"authpassword1\" AES \"privpassword1\"\n\
             createUser sha256user SHA-256 \"authpassword2\" AES \"privpassword2\"\n\
             createUser md5user MD5 \"authpassword3\"\n\
             rouser shauser priv\n\
             rouser sha256user priv\n\
             rouser md5user auth\n"
        ),
    )
    .unwrap();
    let snmpd = ["/usr/sbin/snmpd", "snmpd"]
        .into_iter()
        .find(|p| Path::new(p).exists() || which(p))
        .expect("snmpd (Debian package snmpd) is installed");
    let child = Command::new(snmpd)
        .args(["-f", "-C", "-Lf"])
        .arg(dir.join("log"))
        .arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(dir.join("pid"))
        .env("SNMP_PERSISTENT_DIR", dir.join("persist"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("snmpd starts");
    let address: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let agent = Agent {
        child,
        address,
        _dir: TempDir(dir),
    };
    // ready once it answers sysUpTime.0
    let deadline = Instant::now() + Duration::from_secs(15);
    let uptime = Oid::parse("1.3.6.1.2.1.1.3.0").unwrap();
    loop {
        let mut s = Session::new(target(address, community("public"))).unwrap();
        if s.get(std::slice::from_ref(&uptime)).is_ok() {
            return agent;
        }
        assert!(
            Instant::now() < deadline,
            "snmpd did not answer within 15 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn which(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn community(c: &str) -> Security {
    Security::Community(c.to_string())
}

fn user(name: &str, auth: Option<(AuthProtocol, &str)>, privacy: Option<&str>) -> Security {
    Security::Usm(User {
        name: name.to_string(),
        auth: auth.map(|(p, pw)| (p, pw.to_string())),
        privacy: privacy.map(|pw| (PrivProtocol::Aes128, pw.to_string())),
    })
}

fn target(address: SocketAddr, security: Security) -> Target {
    Target {
        address,
        security,
        timeout: Duration::from_millis(800),
        retries: 1,
    }
}

fn poll(address: SocketAddr, security: Security) -> Result<Vec<Interface>, SnmpError> {
    Ok(ifmib::interfaces(&mut Session::new(target(address, security))?)?.interfaces)
}

fn kernel_rx_bytes(interface: &str) -> u64 {
    std::fs::read_to_string(format!("/sys/class/net/{interface}/statistics/rx_bytes"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
#[ignore = "needs net-snmp's snmpd; run by scripts/integration"]
fn snmpd_interfaces_over_v2c_agree_with_the_kernel() {
    // before the agent starts: it may read the kernel's counters at once
    // and answer from that cache for a few seconds
    let before = kernel_rx_bytes("lo");
    let agent = start_snmpd();
    let interfaces = poll(agent.address, community("public")).unwrap();
    let after = kernel_rx_bytes("lo");
    let lo = interfaces
        .iter()
        .find(|i| i.name.as_deref() == Some("lo"))
        .expect("snmpd reports lo");
    assert!(lo.counters_64, "net-snmp has ifXTable's 64-bit counters");
    // Linux's loopback: ifHighSpeed 10 (Mb/s), software loopback type 24
    assert_eq!(lo.speed_bps, Some(10_000_000));
    assert_eq!(lo.if_type, Some(24));
    assert_eq!(lo.oper_up, Some(true));
    let octets = lo.in_octets.unwrap();
    assert!(
        (before..=after).contains(&octets),
        "lo ifHCInOctets {octets} outside the kernel's {before}..={after}"
    );
    // every interface the kernel has, by name
    let mut kernel: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut named: Vec<String> = interfaces.iter().filter_map(|i| i.name.clone()).collect();
    kernel.sort();
    named.sort();
    assert_eq!(named, kernel);
}

#[test]
#[ignore = "needs net-snmp's snmpd; run by scripts/integration"]
fn snmpv3_gives_the_same_interfaces_with_every_protocol() {
    let agent = start_snmpd();
    let names = |interfaces: Vec<Interface>| -> Vec<(u32, Option<String>)> {
        interfaces.into_iter().map(|i| (i.index, i.name)).collect()
    };
    let expected = names(poll(agent.address, community("public")).unwrap());
    for security in [
        user(
            "shauser",
            Some((AuthProtocol::Sha1, "authpassword1")),
            Some("privpassword1"),
        ),
        user(
            "sha256user",
            Some((AuthProtocol::Sha256, "authpassword2")),
            Some("privpassword2"),
        ),
        user("md5user", Some((AuthProtocol::Md5, "authpassword3")), None),
    ] {
        let got =
            poll(agent.address, security.clone()).unwrap_or_else(|e| panic!("{security:?}: {e}"));
        assert_eq!(names(got), expected, "{security:?}");
    }
}

#[test]
#[ignore = "needs net-snmp's snmpd; run by scripts/integration"]
fn wrong_credentials_and_absent_agents_say_what_is_wrong() {
    let agent = start_snmpd();
    let error = |security| poll(agent.address, security).unwrap_err().to_string();
    let wrong_auth = error(user(
        "shauser",
        Some((AuthProtocol::Sha1, "not-the-password")),
        Some("privpassword1"),
    ));
    assert!(wrong_auth.contains("wrong digest"), "{wrong_auth}");
    let unknown = error(user(
        "nobody",
        Some((AuthProtocol::Sha1, "authpassword1")),
        None,
    ));
    assert!(unknown.contains("unknown user name"), "{unknown}");
    // net-snmp counts a wrong privacy password (usmStatsDecryptionErrors)
    // and does not answer
    let wrong_priv = poll(
        agent.address,
        user(
            "shauser",
            Some((AuthProtocol::Sha1, "authpassword1")),
            Some("not-the-password"),
        ),
    )
    .unwrap_err();
    assert!(wrong_priv.is_timeout(), "{wrong_priv}");
    // a wrong community gets no answer at all from net-snmp
    let started = Instant::now();
    let silent = poll(agent.address, community("private")).unwrap_err();
    assert!(silent.is_timeout(), "{silent}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "two tries of 0.8 s"
    );
    // nothing listens: loopback answers with port unreachable
    let closed: SocketAddr = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    let absent = poll(closed, community("public")).unwrap_err();
    assert!(
        matches!(absent, SnmpError::Refused | SnmpError::Timeout),
        "{absent}"
    );
}
