//! Interface names polled by SNMP fill the flows of an exporter that sends
//! no interface options, by exporter and ifIndex, and follow the poller
//! when the device renames an interface.

use std::net::IpAddr;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};
use hopscope_collector::enrich::EnrichCache;
use hopscope_collector::{Enricher, PolledInterfaces};
use hopscope_schema::{FlowBatchBuilder, FlowRecord, ipv4_mapped};
use hopscope_wire::Decoder;

fn flows() -> RecordBatch {
    let mut b = FlowBatchBuilder::default();
    for (exporter, in_if, out_if) in [
        ([192, 0, 2, 1], 3, 4),
        ([192, 0, 2, 1], 4, 9),
        ([192, 0, 2, 2], 3, 4),
    ] {
        b.append(&FlowRecord {
            time_received_ns: Some(1),
            sampler_address: Some(ipv4_mapped(exporter)),
            in_if: Some(in_if),
            out_if: Some(out_if),
            ..FlowRecord::default()
        });
    }
    b.finish().unwrap()
}

fn texts(batch: &RecordBatch, name: &str) -> Vec<Option<String>> {
    let c = batch.column_by_name(name).unwrap().as_string::<i32>();
    (0..c.len())
        .map(|i| c.is_valid(i).then(|| c.value(i).to_string()))
        .collect()
}

#[test]
fn polled_names_fill_flows_of_exporters_without_options() {
    let polled = Arc::new(PolledInterfaces::default());
    let router: IpAddr = "192.0.2.1".parse().unwrap();
    polled.replace(
        router,
        [
            (
                3,
                Some("ge-0/0/3".to_string()),
                Some("uplink to the ISP".to_string()),
            ),
            (4, Some("ge-0/0/4".to_string()), None),
        ],
    );
    let enricher = Enricher::new(&[], &[], &[] as &[&str])
        .unwrap()
        .with_polled_interfaces(Some(polled.clone()));
    let enrich = || {
        enricher
            .enrich(&flows(), &Decoder::new(), &mut EnrichCache::default())
            .unwrap()
    };
    let out = enrich();
    let name = |s: &str| Some(s.to_string());
    assert_eq!(
        texts(&out, "in_if_name"),
        [name("ge-0/0/3"), name("ge-0/0/4"), None]
    );
    // ifIndex 9 was not polled; the other exporter's interfaces are its own
    assert_eq!(texts(&out, "out_if_name"), [name("ge-0/0/4"), None, None]);
    assert_eq!(
        texts(&out, "in_if_description"),
        [name("uplink to the ISP"), None, None]
    );
    // the device renamed an interface: the next poll replaces what it said
    polled.replace(router, [(3, Some("xe-0/0/3".to_string()), None)]);
    let out = enrich();
    assert_eq!(texts(&out, "in_if_name"), [name("xe-0/0/3"), None, None]);
    assert_eq!(texts(&out, "in_if_description"), [None, None, None]);
}
