//! The process's account of itself for the API: the collector's registry
//! (every crate's counters) and the bus's subscribers, in `/api/status`
//! under `bus` and in `/metrics` as `hopscope_bus_*{subscriber="..."}`.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use hopscope_analyze::Snapshot;
use hopscope_analyze::detect::DetectSnapshot;
use hopscope_collector::Metrics;
use serde_json::{Value, json};

use crate::snmp::{AgentStats, SnmpSnapshot};
use crate::{Batch, Bus, SubscriberStats};

/// What `serve` gives the server to show.
#[derive(Debug)]
pub struct ProcessTelemetry {
    pub metrics: Arc<Metrics>,
    pub bus: Arc<Bus<Arc<Batch>>>,
    /// The SLO evaluation's account, when SLOs are configured.
    pub analysis: Option<Arc<Mutex<Snapshot>>>,
    /// The detections' account, when they run.
    pub detection: Option<Arc<Mutex<DetectSnapshot>>>,
    /// The SNMP poller's account of each agent, when there are agents.
    pub snmp: Option<Arc<Mutex<SnmpSnapshot>>>,
    /// The ClickHouse mirror's account, when there is one.
    #[cfg(feature = "clickhouse")]
    pub clickhouse: Option<Arc<Mutex<crate::mirror::MirrorSnapshot>>>,
}

impl ProcessTelemetry {
    fn analysis(&self) -> Option<Snapshot> {
        self.analysis
            .as_ref()
            .map(|s| s.lock().expect("no panics hold it").clone())
    }

    fn snmp(&self) -> Option<SnmpSnapshot> {
        self.snmp
            .as_ref()
            .map(|s| s.lock().expect("no panics hold it").clone())
    }

    fn detection(&self) -> Option<DetectSnapshot> {
        self.detection
            .as_ref()
            .map(|s| s.lock().expect("no panics hold it").clone())
    }
}

impl hopscope_server::Telemetry for ProcessTelemetry {
    fn status(&self, now_ns: i64) -> Value {
        let mut status = serde_json::to_value(self.metrics.status(now_ns)).unwrap_or_default();
        status["bus"] = json!(self.bus.stats());
        if let Some(a) = self.analysis() {
            status["analysis"] = json!(a);
        }
        if let Some(d) = self.detection() {
            status["detection"] = json!(d);
        }
        if let Some(s) = self.snmp() {
            status["snmp"] = json!(s);
        }
        #[cfg(feature = "clickhouse")]
        if let Some(m) = &self.clickhouse {
            status["clickhouse"] = json!(*m.lock().expect("no panics hold it"));
        }
        status
    }

    fn prometheus(&self, now_ns: i64) -> String {
        let mut text = self.metrics.status(now_ns).prometheus();
        text.push_str(&bus_metrics(&self.bus.stats()));
        if let Some(a) = self.analysis() {
            text.push_str(&hopscope_analyze::live::prometheus(&a));
        }
        if let Some(d) = self.detection() {
            text.push_str(&d.prometheus());
        }
        if let Some(s) = self.snmp() {
            text.push_str(&snmp_metrics(&s));
        }
        #[cfg(feature = "clickhouse")]
        if let Some(m) = &self.clickhouse {
            text.push_str(&crate::mirror::prometheus(
                &m.lock().expect("no panics hold it"),
            ));
        }
        text
    }
}

/// The SNMP poller's counters per agent in the text exposition format.
pub fn snmp_metrics(agents: &[AgentStats]) -> String {
    let mut out = String::new();
    let label = |a: &AgentStats| format!("{{exporter=\"{}\",agent=\"{}\"}}", a.exporter, a.agent);
    type Value = fn(&AgentStats) -> Option<f64>;
    let families: [(&str, &str, &str, Value); 5] = [
        (
            "snmp_polls_total",
            "counter",
            "IF-MIB polls of the agent.",
            |a| Some(a.polls as f64),
        ),
        (
            "snmp_poll_timeouts_total",
            "counter",
            "Polls the agent did not answer within the timeout and retries.",
            |a| Some(a.timeouts as f64),
        ),
        (
            "snmp_poll_failures_total",
            "counter",
            "Polls that failed otherwise: authentication, refused, malformed answers.",
            |a| Some(a.failures as f64),
        ),
        (
            "snmp_interfaces",
            "gauge",
            "Interfaces the agent reported at its last poll.",
            |a| Some(a.interfaces as f64),
        ),
        (
            "snmp_last_success_timestamp_seconds",
            "gauge",
            "When the agent last answered a whole poll.",
            |a| a.last_success_ns.map(|t| t as f64 / 1e9),
        ),
    ];
    for (name, kind, help, value) in families {
        let samples = agents
            .iter()
            .filter_map(|a| value(a).map(|v| (label(a), v)))
            .collect();
        hopscope_analyze::live::write_family(&mut out, name, kind, help, samples);
    }
    out
}

/// The subscribers' counters in the text exposition format.
pub fn bus_metrics(subscribers: &[SubscriberStats]) -> String {
    type Value = fn(&SubscriberStats) -> f64;
    let families: [(&str, &str, &str, Value); 6] = [
        (
            "bus_offered_total",
            "counter",
            "Batches published that the subscriber wanted.",
            |s| s.offered as f64,
        ),
        (
            "bus_dropped_total",
            "counter",
            "Batches dropped for the subscriber because its queue was full.",
            |s| s.dropped as f64,
        ),
        (
            "bus_queued",
            "gauge",
            "Batches waiting in the subscriber's queue.",
            |s| s.queued as f64,
        ),
        (
            "bus_peak_queued",
            "gauge",
            "The most batches that ever waited in the subscriber's queue.",
            |s| s.peak_queued as f64,
        ),
        (
            "bus_capacity",
            "gauge",
            "Batches the subscriber's queue holds.",
            |s| s.capacity as f64,
        ),
        (
            "bus_publisher_wait_seconds_total",
            "counter",
            "Time publishers waited for room in the subscriber's queue.",
            |s| s.publisher_wait_ns as f64 / 1e9,
        ),
    ];
    let mut out = String::new();
    for (name, kind, help, value) in families {
        let _ = writeln!(out, "# HELP hopscope_{name} {help}");
        let _ = writeln!(out, "# TYPE hopscope_{name} {kind}");
        for s in subscribers {
            let _ = writeln!(
                out,
                "hopscope_{name}{{subscriber=\"{}\"}} {}",
                s.name,
                value(s)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Overflow;

    #[test]
    fn every_subscriber_reaches_status_and_metrics() {
        let bus = Arc::new(Bus::default());
        let _kept = bus.subscribe("correlator", 1, Overflow::Drop, |_| true);
        bus.publish(Arc::new(Batch::default()));
        bus.publish(Arc::new(Batch::default()));
        let telemetry = ProcessTelemetry {
            metrics: Arc::new(Metrics::new(0)),
            bus,
            analysis: None,
            detection: None,
            snmp: None,
            #[cfg(feature = "clickhouse")]
            clickhouse: Some(Arc::new(Mutex::new(crate::mirror::MirrorSnapshot {
                rows: 7,
                ..Default::default()
            }))),
        };
        use hopscope_server::Telemetry;
        let status = telemetry.status(0);
        assert_eq!(status["bus"][0]["name"], "correlator");
        assert_eq!(status["bus"][0]["dropped"], 1);
        assert!(
            status["exporters"].is_array(),
            "the collector's status is kept"
        );
        let text = telemetry.prometheus(0);
        assert!(
            text.contains("hopscope_bus_dropped_total{subscriber=\"correlator\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("hopscope_bus_queued{subscriber=\"correlator\"} 1\n"));
        assert!(
            text.contains("\nhopscope_datagrams_received_total 0\n"),
            "the collector's metrics are kept"
        );
        #[cfg(feature = "clickhouse")]
        {
            assert_eq!(status["clickhouse"]["rows"], 7);
            assert!(
                text.contains("\nhopscope_clickhouse_rows_total 7\n"),
                "{text}"
            );
        }
    }
}
