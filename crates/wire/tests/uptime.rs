//! Flow times relative to the exporter's uptime (flowStartSysUpTime 22,
//! flowEndSysUpTime 21): placed in time once the boot time is known
//! (systemInitTimeMilliseconds, 160, in options), kept as uptimes before.

use arrow_array::cast::AsArray;
use arrow_array::types::{TimestampNanosecondType, UInt64Type};
use hopscope_wire::encoder::{MessageBuilder, TemplateSet};
use hopscope_wire::template::FieldSpec;
use hopscope_wire::{DecodeOutput, Decoder, Transport};

#[test]
fn uptime_times_without_a_boot_time_are_kept_as_uptimes() {
    let mut templates = TemplateSet::new(None);
    let mut builder = MessageBuilder::new(1, 1400);
    builder.set_export_time(1_764_000_000);
    let flow = templates.id_for(
        0,
        vec![
            FieldSpec::iana(8, 4),  // sourceIPv4Address
            FieldSpec::iana(1, 8),  // octetDeltaCount
            FieldSpec::iana(22, 4), // flowStartSysUpTime
            FieldSpec::iana(21, 4), // flowEndSysUpTime
        ],
    );
    let record = |start: u32, end: u32| {
        let mut r = vec![10, 0, 0, 1];
        r.extend_from_slice(&100u64.to_be_bytes());
        r.extend_from_slice(&start.to_be_bytes());
        r.extend_from_slice(&end.to_be_bytes());
        r
    };
    templates.add_record(&mut builder, flow, &record(5_000, 9_000));
    let before = builder.finish();
    // then the boot time, and a record after it
    let boot = templates.id_for(
        1,
        vec![
            FieldSpec::iana(143, 4), // meteringProcessId (scope)
            FieldSpec::iana(160, 8), // systemInitTimeMilliseconds
        ],
    );
    let mut r = 1u32.to_be_bytes().to_vec();
    r.extend_from_slice(&1_763_999_000_000u64.to_be_bytes());
    templates.add_record(&mut builder, boot, &r);
    templates.add_record(&mut builder, flow, &record(5_000, 9_000));
    let after = builder.finish();

    let mut decoder = Decoder::new();
    let mut out = DecodeOutput::default();
    let exporter = "192.0.2.1:4739".parse().unwrap();
    for m in before.iter().chain(&after) {
        decoder
            .decode(exporter, Transport::Udp, 0, m, &mut out)
            .unwrap();
    }
    let flows = out.flows.finish().unwrap();
    assert_eq!(flows.num_rows(), 2);
    let times = |name| -> Vec<Option<i64>> {
        flows
            .column_by_name(name)
            .unwrap()
            .as_primitive::<TimestampNanosecondType>()
            .iter()
            .collect()
    };
    let uptimes = |name| -> Vec<Option<u64>> {
        flows
            .column_by_name(name)
            .unwrap()
            .as_primitive::<UInt64Type>()
            .iter()
            .collect()
    };
    let boot_ns = 1_763_999_000_000 * 1_000_000;
    assert_eq!(
        times("time_flow_start_ns"),
        [None, Some(boot_ns + 5_000_000_000)]
    );
    assert_eq!(
        times("time_flow_end_ns"),
        [None, Some(boot_ns + 9_000_000_000)]
    );
    assert_eq!(uptimes("flow_start_uptime_ms"), [Some(5_000), None]);
    assert_eq!(uptimes("flow_end_uptime_ms"), [Some(9_000), None]);
}
