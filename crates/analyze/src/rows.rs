//! Judged buckets and alert events as rows of the `slo_buckets` and
//! `alerts` tables, and back: what the store keeps so that budgets and
//! the alert history outlive the process.

use std::sync::Arc;

use arrow_array::builder::{
    StringBuilder, TimestampNanosecondBuilder, UInt8Builder, UInt32Builder, UInt64Builder,
};
use arrow_array::types::{TimestampNanosecondType, UInt8Type, UInt32Type, UInt64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use hopscope_store::{Backend, Table};

use crate::AnalyzeError;
use crate::alert::{Alert, AlertState};
use crate::bucket::BucketFigure;
use crate::columns::{primitive, text, times};

fn time_builder() -> TimestampNanosecondBuilder {
    TimestampNanosecondBuilder::new().with_timezone("UTC")
}

/// Buckets as one batch of the `slo_buckets` table.
pub fn buckets_to_batch(figures: &[BucketFigure]) -> Result<RecordBatch, AnalyzeError> {
    let mut start = time_builder();
    let (mut slo, mut indicator, mut scope) = (
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    let mut width = UInt64Builder::new();
    let mut good = UInt8Builder::new();
    let (mut events, mut lost, mut delay, mut threshold) = (
        UInt64Builder::new(),
        UInt64Builder::new(),
        UInt64Builder::new(),
        UInt64Builder::new(),
    );
    let mut ppm = UInt32Builder::new();
    for f in figures {
        start.append_value(f.start_ns);
        slo.append_value(&f.slo);
        indicator.append_value(f.indicator);
        scope.append_value(&f.scope);
        width.append_value(crate::slo::BUCKET_NS as u64);
        good.append_value(u8::from(f.good));
        events.append_value(f.events);
        lost.append_value(f.lost);
        ppm.append_option(f.loss_ppm);
        delay.append_option(f.delay_ns);
        threshold.append_value(f.threshold);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(start.finish()),
        Arc::new(slo.finish()),
        Arc::new(indicator.finish()),
        Arc::new(scope.finish()),
        Arc::new(width.finish()),
        Arc::new(good.finish()),
        Arc::new(events.finish()),
        Arc::new(lost.finish()),
        Arc::new(ppm.finish()),
        Arc::new(delay.finish()),
        Arc::new(threshold.finish()),
    ];
    Ok(RecordBatch::try_new(
        hopscope_schema::slo_bucket_schema(),
        columns,
    )?)
}

/// The buckets of a batch read from the `slo_buckets` table.
pub fn buckets_from_batch(batch: &RecordBatch) -> Result<Vec<BucketFigure>, AnalyzeError> {
    let start = times(batch)?;
    let slo = text(batch, "slo")?;
    let indicator = text(batch, "indicator")?;
    let scope = text(batch, "scope")?;
    let good = primitive::<UInt8Type>(batch, "good")?;
    let events = primitive::<UInt64Type>(batch, "events")?;
    let lost = primitive::<UInt64Type>(batch, "lost")?;
    let ppm = primitive::<UInt32Type>(batch, "loss_ppm")?;
    let delay = primitive::<UInt64Type>(batch, "delay_ns")?;
    let threshold = primitive::<UInt64Type>(batch, "threshold")?;
    Ok((0..batch.num_rows())
        .map(|i| BucketFigure {
            slo: slo.value(i).to_string(),
            start_ns: start.value(i),
            indicator: if indicator.value(i) == "delay" {
                "delay"
            } else {
                "loss"
            },
            scope: scope.value(i).to_string(),
            good: good.value(i) != 0,
            events: events.value(i),
            lost: lost.value(i),
            loss_ppm: ppm.is_valid(i).then(|| ppm.value(i)),
            delay_ns: delay.is_valid(i).then(|| delay.value(i)),
            threshold: threshold.value(i),
        })
        .collect())
}

/// Alert events as one batch of the `alerts` table.
pub fn alerts_to_batch(alerts: &[Alert]) -> Result<RecordBatch, AnalyzeError> {
    let mut at = time_builder();
    let mut starts = time_builder();
    let mut ends = time_builder();
    let mut s: [StringBuilder; 8] = std::array::from_fn(|_| StringBuilder::new());
    for a in alerts {
        at.append_value(a.at_ns);
        starts.append_value(a.starts_ns);
        ends.append_option(a.ends_ns);
        let [id, rule, name, severity, state, labels, summary, evidence] = &mut s;
        id.append_value(&a.id);
        rule.append_value(&a.rule);
        name.append_value(&a.name);
        severity.append_value(&a.severity);
        state.append_value(a.state.name());
        labels.append_value(serde_json::to_string(&a.labels)?);
        summary.append_value(&a.summary);
        evidence.append_value(a.evidence.to_string());
    }
    let [id, rule, name, severity, state, labels, summary, evidence] = &mut s;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(at.finish()),
        Arc::new(id.finish()),
        Arc::new(rule.finish()),
        Arc::new(name.finish()),
        Arc::new(severity.finish()),
        Arc::new(state.finish()),
        Arc::new(starts.finish()),
        Arc::new(ends.finish()),
        Arc::new(labels.finish()),
        Arc::new(summary.finish()),
        Arc::new(evidence.finish()),
    ];
    Ok(RecordBatch::try_new(
        hopscope_schema::alert_schema(),
        columns,
    )?)
}

/// The events of a batch read from the `alerts` table.
pub fn alerts_from_batch(batch: &RecordBatch) -> Result<Vec<Alert>, AnalyzeError> {
    let at = times(batch)?;
    let starts = primitive::<TimestampNanosecondType>(batch, "starts_ns")?;
    let ends = primitive::<TimestampNanosecondType>(batch, "ends_ns")?;
    let id = text(batch, "alert_id")?;
    let rule = text(batch, "rule")?;
    let name = text(batch, "name")?;
    let severity = text(batch, "severity")?;
    let state = text(batch, "state")?;
    let labels = text(batch, "labels")?;
    let summary = text(batch, "summary")?;
    let evidence = text(batch, "evidence")?;
    (0..batch.num_rows())
        .map(|i| {
            Ok(Alert {
                id: id.value(i).to_string(),
                rule: rule.value(i).to_string(),
                name: name.value(i).to_string(),
                severity: severity.value(i).to_string(),
                state: AlertState::parse(state.value(i)).ok_or_else(|| {
                    AnalyzeError::Rows(format!("alert state '{}'", state.value(i)))
                })?,
                at_ns: at.value(i),
                starts_ns: starts.value(i),
                ends_ns: ends.is_valid(i).then(|| ends.value(i)),
                labels: serde_json::from_str(labels.value(i))?,
                summary: summary.value(i).to_string(),
                evidence: serde_json::from_str(evidence.value(i))?,
            })
        })
        .collect()
}

/// Every stored bucket of `[from_ns, to_ns)`, oldest first.
pub fn read_buckets(
    store: &dyn Backend,
    from_ns: i64,
    to_ns: i64,
) -> Result<Vec<BucketFigure>, AnalyzeError> {
    let columns: Vec<&str> = hopscope_schema::SLO_BUCKET_FIELDS
        .iter()
        .map(|f| f.name)
        .collect();
    let mut out = Vec::new();
    let mut failed = None;
    store.scan(Table::SloBuckets, &columns, from_ns, to_ns, &mut |b| {
        match buckets_from_batch(&b) {
            Ok(f) => out.extend(f),
            Err(e) => failed = Some(e),
        }
        Ok(())
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    out.sort_by(|a, b| (a.start_ns, &a.slo).cmp(&(b.start_ns, &b.slo)));
    Ok(out)
}

/// Every stored alert event of `[from_ns, to_ns)`, oldest first.
pub fn read_alerts(
    store: &dyn Backend,
    from_ns: i64,
    to_ns: i64,
) -> Result<Vec<Alert>, AnalyzeError> {
    let columns: Vec<&str> = hopscope_schema::ALERT_FIELDS
        .iter()
        .map(|f| f.name)
        .collect();
    let mut out = Vec::new();
    let mut failed = None;
    store.scan(Table::Alerts, &columns, from_ns, to_ns, &mut |b| {
        match alerts_from_batch(&b) {
            Ok(a) => out.extend(a),
            Err(e) => failed = Some(e),
        }
        Ok(())
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    out.sort_by_key(|a| a.at_ns);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn buckets_and_alerts_come_back_as_written() {
        let figures = vec![BucketFigure {
            slo: "web".into(),
            start_ns: 1_800_000_000_000_000_000,
            indicator: "delay",
            scope: "core-a > dc-gw".into(),
            good: false,
            events: 420,
            lost: 0,
            loss_ppm: None,
            delay_ns: Some(31_000_000),
            threshold: 20_000_000,
        }];
        let batch = buckets_to_batch(&figures).unwrap();
        assert_eq!(buckets_from_batch(&batch).unwrap(), figures);
        let alerts = vec![Alert {
            id: "slo-web-page-1800000000".into(),
            rule: "slo-burn".into(),
            name: "HopscopeSLOBurn".into(),
            severity: "page".into(),
            state: AlertState::Resolved,
            at_ns: 1_800_000_600_000_000_000,
            starts_ns: 1_800_000_000_000_000_000,
            ends_ns: Some(1_800_000_600_000_000_000),
            labels: [("slo".to_string(), "web".to_string())].into(),
            summary: "SLO web burns".into(),
            evidence: json!({"burn": {"1h": 20.0}}),
        }];
        let batch = alerts_to_batch(&alerts).unwrap();
        assert_eq!(alerts_from_batch(&batch).unwrap(), alerts);
    }
}
