//! The part of a session's state that must survive a collector restart.
//!
//! A UDP exporter resends its templates only every few minutes; a collector
//! that restarts without them drops every data set until then. The snapshot
//! keeps what the exporter told us (templates, sampling rates, interface
//! names, the next expected sequence number) so that a restarted collector
//! decodes the first datagram it receives, and the sequence gap across the
//! restart is counted as telemetry loss rather than forgotten.
//!
//! Stream sessions (TCP, SCTP, files) are not snapshot: their templates die
//! with the connection (RFC 7011 §8) and the exporter resends them.

use std::net::SocketAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::session::{
    DomainState, FastMap, PointClock, SequenceTracker, Session, StoredTemplate, Transport,
};
use crate::template::{FieldSpec, RecordKind, Template};

/// The restart-surviving state of one UDP session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSnapshot {
    pub exporter: SocketAddr,
    pub domains: Vec<DomainSnapshot>,
}

/// The restart-surviving state of one observation domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainSnapshot {
    pub domain: u32,
    pub templates: Vec<TemplateSnapshot>,
    /// Where the domain's sequence numbers stood.
    pub sequence: SequenceTracker,
    /// Sampling rates by sampler id (`None`: domain-wide).
    pub sampling: Vec<(Option<u64>, u64)>,
    pub interface_names: Vec<(u32, String)>,
    /// Observation point names by id (absent in snapshots of older versions).
    #[serde(default)]
    pub point_names: Vec<(u64, String)>,
    /// VRF names by id (absent in snapshots of older versions).
    #[serde(default)]
    pub vrf_names: Vec<(u32, String)>,
    /// Interface descriptions by ifIndex (absent in snapshots of older versions).
    #[serde(default)]
    pub interface_descriptions: Vec<(u32, String)>,
    /// Sampler and selector names by id (absent in snapshots of older versions).
    #[serde(default)]
    pub sampler_names: Vec<(u64, String)>,
    /// Clocks points announced (absent in snapshots of older versions).
    #[serde(default)]
    pub point_clocks: Vec<(u64, PointClock)>,
    pub system_init_ms: Option<i64>,
}

/// A template as the exporter defined it; compiled again on restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateSnapshot {
    pub id: u16,
    pub scope_count: u16,
    pub options: bool,
    pub fields: Vec<FieldSpec>,
}

impl Session {
    /// The session's restart-surviving state; `None` for stream sessions.
    pub fn snapshot(&self) -> Option<SessionSnapshot> {
        if self.transport != Transport::Udp {
            return None;
        }
        let mut domains: Vec<DomainSnapshot> = self
            .domains
            .iter()
            .map(|(&domain, state)| state.snapshot(domain))
            .collect();
        domains.sort_by_key(|d| d.domain);
        Some(SessionSnapshot {
            exporter: self.exporter,
            domains,
        })
    }

    /// A UDP session with the state of a snapshot; templates count as
    /// refreshed at `now_ns`, so their lifetime starts again.
    pub fn restore(snapshot: &SessionSnapshot, now_ns: i64) -> Session {
        let mut session = Session::new(snapshot.exporter, Transport::Udp);
        for d in &snapshot.domains {
            session
                .domains
                .insert(d.domain, DomainState::restore(d, now_ns));
        }
        session
    }
}

impl DomainState {
    fn snapshot(&self, domain: u32) -> DomainSnapshot {
        let mut templates: Vec<TemplateSnapshot> = self
            .templates
            .values()
            .map(|t| TemplateSnapshot {
                id: t.template.id,
                scope_count: t.template.scope_count,
                options: t.template.kind == RecordKind::Options,
                fields: t.template.fields.clone(),
            })
            .collect();
        templates.sort_by_key(|t| t.id);
        let mut sampling: Vec<_> = self.sampling.iter().map(|(&k, &v)| (k, v)).collect();
        sampling.sort_unstable();
        // names in key order, so that equal states give equal snapshots
        fn sorted<K: Ord + Copy>(names: &FastMap<K, String>) -> Vec<(K, String)> {
            let mut names: Vec<_> = names.iter().map(|(&k, v)| (k, v.clone())).collect();
            names.sort_unstable();
            names
        }
        DomainSnapshot {
            domain,
            templates,
            sequence: self.sequence,
            sampling,
            interface_names: sorted(&self.interface_names),
            point_names: sorted(&self.point_names),
            vrf_names: sorted(&self.vrf_names),
            interface_descriptions: sorted(&self.interface_descriptions),
            sampler_names: sorted(&self.sampler_names),
            point_clocks: {
                let mut clocks: Vec<_> = self.point_clocks.iter().map(|(&k, &c)| (k, c)).collect();
                clocks.sort_unstable_by_key(|&(k, _)| k);
                clocks
            },
            system_init_ms: self.system_init_ms,
        }
    }

    fn restore(snapshot: &DomainSnapshot, now_ns: i64) -> DomainState {
        let mut state = DomainState::default();
        for t in &snapshot.templates {
            let template = if t.options {
                Template::options(t.id, t.scope_count, t.fields.clone())
            } else {
                Template::new(t.id, t.scope_count, t.fields.clone())
            };
            state.templates.insert(
                t.id,
                StoredTemplate {
                    template: Arc::new(template),
                    refreshed_ns: now_ns,
                },
            );
        }
        state.sequence = snapshot.sequence;
        state.sampling.extend(snapshot.sampling.iter().copied());
        state
            .interface_names
            .extend(snapshot.interface_names.iter().cloned());
        state
            .point_names
            .extend(snapshot.point_names.iter().cloned());
        state.vrf_names.extend(snapshot.vrf_names.iter().cloned());
        state
            .interface_descriptions
            .extend(snapshot.interface_descriptions.iter().cloned());
        state
            .sampler_names
            .extend(snapshot.sampler_names.iter().cloned());
        state
            .point_clocks
            .extend(snapshot.point_clocks.iter().copied());
        state.system_init_ms = snapshot.system_init_ms;
        state
    }
}

#[cfg(test)]
mod tests {
    use crate::{DecodeOutput, Decoder, Transport};

    fn ipfix(seq: u32, sets: &[Vec<u8>]) -> Vec<u8> {
        let len = 16 + sets.iter().map(Vec::len).sum::<usize>();
        let mut m = vec![0, 10];
        m.extend((len as u16).to_be_bytes());
        m.extend(1_700_000_000u32.to_be_bytes());
        m.extend(seq.to_be_bytes());
        m.extend(7u32.to_be_bytes());
        for s in sets {
            m.extend(s);
        }
        m
    }

    fn set(id: u16, body: &[u8]) -> Vec<u8> {
        let mut s = id.to_be_bytes().to_vec();
        s.extend(((body.len() + 4) as u16).to_be_bytes());
        s.extend(body);
        s
    }

    #[test]
    fn a_restored_decoder_decodes_without_templates_and_counts_the_gap() {
        let exporter = "127.0.0.1:9999".parse().unwrap();
        // template 256: sourceIPv4Address, octetDeltaCount(4)
        let template = set(2, &[1, 0, 0, 2, 0, 8, 0, 4, 0, 1, 0, 4]);
        let data = |n: u8| set(256, &[10, 0, 0, n, 0, 0, 0, 100]);
        let mut first = Decoder::new();
        let mut out = DecodeOutput::default();
        first
            .decode(
                exporter,
                Transport::Udp,
                1,
                &ipfix(0, &[template, data(1)]),
                &mut out,
            )
            .unwrap();
        let snapshots = first.snapshot();
        assert_eq!(snapshots.len(), 1);
        let json = serde_json::to_string(&snapshots).unwrap();

        let mut second = Decoder::new();
        second.restore(&serde_json::from_str::<Vec<_>>(&json).unwrap(), 2);
        let mut out = DecodeOutput::default();
        // three records were sent while the collector was down
        let summary = second
            .decode(exporter, Transport::Udp, 3, &ipfix(4, &[data(5)]), &mut out)
            .unwrap();
        assert_eq!(summary.flows, 1);
        let stats = second.totals();
        assert_eq!(stats.lost_records, 3);
        let session = second.session(exporter, Transport::Udp).unwrap();
        assert_eq!(session.domain(7).unwrap().lost_records(), 3);
    }
}
