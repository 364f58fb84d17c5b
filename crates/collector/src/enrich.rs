//! What the collector adds to each flow: the exporter's name, interface
//! names from the exporter's options records (or, where it sends none, from
//! its IF-MIB polled by SNMP), the configured network (name, role, site) of
//! each address, and country and AS from MMDB files.
//!
//! Lookups are cached per receiver by address: flows repeat addresses far
//! more than they introduce new ones.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};

use arrow_array::builder::StringBuilder;
use arrow_array::cast::AsArray;
use arrow_array::types::{UInt32Type, UInt64Type};
use arrow_array::{Array, ArrayRef, ArrowPrimitiveType, PrimitiveArray, RecordBatch, UInt32Array};
use foldhash::fast::RandomState;
pub use hopscope_schema::{Cidr, canonical};
use hopscope_schema::{
    ENRICHMENT_FIELDS, PrefixTable, ip_to_mapped, mapped_to_ip, stored_flow_schema,
};
use hopscope_wire::{Decoder, DomainState};

use crate::boundary::{Boundaries, BoundaryRule, Observed, Place};
use crate::config::NetworkTag;

/// Why an MMDB file cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct MmdbError {
    pub path: String,
    pub source: maxminddb::MaxMindDbError,
}

/// The shared, read-only part of enrichment.
#[derive(Debug)]
pub struct Enricher {
    exporter_names: HashMap<[u8; 16], Arc<str>, RandomState>,
    /// Configured networks: the index of each in `tags`.
    networks: PrefixTable<usize>,
    tags: Vec<NetworkTag>,
    mmdb: Vec<maxminddb::Reader<Vec<u8>>>,
    boundaries: Boundaries,
    polled: Option<Arc<PolledInterfaces>>,
}

/// Interface names (ifName) and descriptions (ifAlias) by exporter and
/// ifIndex, kept current by an SNMP poller: what enrichment falls back on
/// where the exporter's options records name no interface, as many
/// devices send none.
#[derive(Debug, Default)]
pub struct PolledInterfaces {
    by_interface: RwLock<HashMap<([u8; 16], u32), PolledNames, RandomState>>,
}

#[derive(Debug, Clone)]
struct PolledNames {
    name: Option<Arc<str>>,
    alias: Option<Arc<str>>,
}

impl PolledInterfaces {
    /// Replaces what is known of `exporter`'s interfaces: (ifIndex,
    /// ifName, ifAlias) each.
    pub fn replace(
        &self,
        exporter: IpAddr,
        interfaces: impl IntoIterator<Item = (u32, Option<String>, Option<String>)>,
    ) {
        let exporter = ip_to_mapped(canonical(exporter));
        let mut map = self.by_interface.write().expect("no panics hold it");
        map.retain(|(e, _), _| *e != exporter);
        for (index, name, alias) in interfaces {
            let names = PolledNames {
                name: name.map(Arc::from),
                alias: alias.map(Arc::from),
            };
            map.insert((exporter, index), names);
        }
    }
}

/// What is known about one address.
#[derive(Debug, Clone, Default)]
struct AddrInfo {
    network: Option<usize>,
    country: Option<Arc<str>>,
    asn: Option<u32>,
}

/// A receiver's cache of address lookups, cleared when it grows too big.
#[derive(Debug, Default)]
pub struct EnrichCache {
    addrs: HashMap<[u8; 16], AddrInfo, RandomState>,
}

const CACHE_LIMIT: usize = 1 << 18;

impl Enricher {
    pub fn new(
        exporter_names: &[(IpAddr, String)],
        networks: &[NetworkTag],
        mmdb: &[impl AsRef<Path>],
    ) -> Result<Enricher, MmdbError> {
        let readers = mmdb
            .iter()
            .map(|p| {
                maxminddb::Reader::open_readfile(p.as_ref()).map_err(|source| MmdbError {
                    path: p.as_ref().display().to_string(),
                    source,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Enricher {
            exporter_names: exporter_names
                .iter()
                .map(|(ip, name)| (ip_to_mapped(canonical(*ip)), Arc::from(name.as_str())))
                .collect(),
            networks: {
                let mut table = PrefixTable::default();
                for (i, t) in networks.iter().enumerate() {
                    table.insert(t.cidr, i);
                }
                table
            },
            tags: networks.to_vec(),
            mmdb: readers,
            boundaries: Boundaries::default(),
            polled: None,
        })
    }

    /// Falls back on these polled names where options records name no
    /// interface.
    pub fn with_polled_interfaces(mut self, polled: Option<Arc<PolledInterfaces>>) -> Self {
        self.polled = polled;
        self
    }

    /// Classifies each flow's point and interfaces by these rules, and
    /// traffic leaving the network by whether it started `inside`.
    pub fn with_boundaries(mut self, rules: &[BoundaryRule], inside: &[Cidr]) -> Self {
        self.boundaries = Boundaries::new(rules, inside);
        self
    }

    fn lookup(&self, addr: [u8; 16]) -> AddrInfo {
        let mut info = AddrInfo {
            network: self.networks.lookup(addr).copied(),
            ..AddrInfo::default()
        };
        let ip = mapped_to_ip(addr);
        for reader in &self.mmdb {
            let Ok(found) = reader.lookup(ip) else {
                continue;
            };
            if info.country.is_none()
                && let Ok(Some(code)) =
                    found.decode_path::<String>(&maxminddb::path!["country", "iso_code"])
            {
                info.country = Some(Arc::from(code));
            }
            if info.asn.is_none()
                && let Ok(Some(asn)) =
                    found.decode_path::<u32>(&maxminddb::path!["autonomous_system_number"])
            {
                info.asn = Some(asn);
            }
        }
        info
    }

    /// The flows of `batch` (decoded schema) in the stored schema, with the
    /// enrichment columns filled and missing AS numbers taken from MMDB.
    pub fn enrich(
        &self,
        batch: &RecordBatch,
        decoder: &Decoder,
        cache: &mut EnrichCache,
    ) -> Result<RecordBatch, arrow_schema::ArrowError> {
        if cache.addrs.len() > CACHE_LIMIT {
            cache.addrs.clear();
        }
        let rows = batch.num_rows();
        let exporters = batch
            .column_by_name("sampler_address")
            .map(|c| c.as_fixed_size_binary());
        let domains = batch
            .column_by_name("observation_domain_id")
            .map(|c| c.as_primitive::<UInt32Type>());
        let mut builders: Vec<StringBuilder> = (0..ENRICHMENT_FIELDS.len())
            .map(|_| StringBuilder::with_capacity(rows, 0))
            .collect();
        let [
            exporter_name,
            observation_point_name,
            in_if_name,
            out_if_name,
            in_if_description,
            out_if_description,
            sampler_name,
            ingress_vrf_name,
            egress_vrf_name,
            boundary,
            src_net_name,
            dst_net_name,
            src_net_role,
            dst_net_role,
            src_net_site,
            dst_net_site,
            src_country,
            dst_country,
        ] = builders.as_mut_slice()
        else {
            unreachable!("ENRICHMENT_FIELDS has eighteen columns")
        };
        // the exporter and domain of a row: what options-record names are scoped by
        let scope = |row: usize| -> Option<([u8; 16], u32)> {
            let exporter: [u8; 16] = exporters?.value(row).try_into().ok()?;
            let domain = domains
                .filter(|d| d.is_valid(row))
                .map_or(0, |d| d.value(row));
            Some((exporter, domain))
        };
        // exporter, interface and VRF names; each part is skipped when there
        // is nothing to add, which is the common case at high rates
        let interfaces = scoped_names(decoder, DomainState::interface_names);
        let descriptions = scoped_names(decoder, DomainState::interface_descriptions);
        let vrfs = scoped_names(decoder, DomainState::vrf_names);
        let polled = self
            .polled
            .as_ref()
            .map(|p| p.by_interface.read().expect("no panics hold it"))
            .filter(|p| !p.is_empty());
        let polled_name = polled.as_ref().map(|p| {
            move |exporter, index| p.get(&(exporter, index)).and_then(|n| n.name.as_deref())
        });
        let polled_alias = polled.as_ref().map(|p| {
            move |exporter, index| p.get(&(exporter, index)).and_then(|n| n.alias.as_deref())
        });
        let (by_name, by_alias): (Fallback<u32>, Fallback<u32>) = (
            polled_name.as_ref().map(|f| f as _),
            polled_alias.as_ref().map(|f| f as _),
        );
        for (column, builder, names, fallback) in [
            ("in_if", &mut *in_if_name, &interfaces, by_name),
            ("out_if", &mut *out_if_name, &interfaces, by_name),
            ("in_if", &mut *in_if_description, &descriptions, by_alias),
            ("out_if", &mut *out_if_description, &descriptions, by_alias),
            ("ingress_vrf_id", &mut *ingress_vrf_name, &vrfs, None),
            ("egress_vrf_id", &mut *egress_vrf_name, &vrfs, None),
        ] {
            let ids = batch
                .column_by_name(column)
                .map(|c| c.as_primitive::<UInt32Type>());
            append_names(builder, rows, ids, names, &scope, fallback);
        }
        // the sampler's name, by the sampler id the decoder kept with each
        // flow, and the observation point's
        let samplers = scoped_names(decoder, DomainState::sampler_names);
        let sampler_ids = batch
            .column_by_name("sampler_id")
            .map(|c| c.as_primitive::<UInt64Type>());
        append_names(sampler_name, rows, sampler_ids, &samplers, &scope, None);
        let points = scoped_names(decoder, DomainState::point_names);
        let point_ids = batch
            .column_by_name("observation_point_id")
            .map(|c| c.as_primitive::<UInt64Type>());
        append_names(
            observation_point_name,
            rows,
            point_ids,
            &points,
            &scope,
            None,
        );
        if self.boundaries.is_empty() {
            boundary.append_nulls(rows);
        } else {
            let index = |name| {
                batch
                    .column_by_name(name)
                    .map(|c| c.as_primitive::<UInt32Type>())
            };
            let (in_ifs, out_ifs) = (index("in_if"), index("out_if"));
            let sources = batch
                .column_by_name("src_addr")
                .map(|c| c.as_fixed_size_binary());
            for row in 0..rows {
                let at = scope(row);
                let value =
                    |c: Option<&UInt32Array>| c.filter(|c| c.is_valid(row)).map(|c| c.value(row));
                let interface = |c| {
                    let i = value(c);
                    let name = at
                        .zip(i)
                        .and_then(|((e, d), i)| interfaces.get(&(e, d, i)).copied());
                    (i, name)
                };
                let point = at
                    .zip(point_ids.filter(|p| p.is_valid(row)))
                    .and_then(|((e, d), p)| points.get(&(e, d, p.value(row))).copied());
                let seen = Observed {
                    exporter: at.map(|(e, _)| e),
                    point,
                    interfaces: [interface(in_ifs), interface(out_ifs)],
                    source: sources
                        .filter(|s| s.is_valid(row))
                        .and_then(|s| s.value(row).try_into().ok()),
                };
                boundary.append_option(self.boundaries.classify(&seen).map(Place::name));
            }
        }
        if self.exporter_names.is_empty() {
            exporter_name.append_nulls(rows);
        } else {
            // rows come in runs from one exporter
            let mut last: Option<(&[u8], Option<&Arc<str>>)> = None;
            for row in 0..rows {
                let addr = exporters.filter(|e| e.is_valid(row)).map(|e| e.value(row));
                let name = match (addr, last) {
                    (Some(a), Some((l, name))) if a == l => name,
                    (Some(a), _) => {
                        let name = <[u8; 16]>::try_from(a)
                            .ok()
                            .and_then(|k| self.exporter_names.get(&k));
                        last = Some((a, name));
                        name
                    }
                    (None, _) => None,
                };
                exporter_name.append_option(name.map(|n| &**n));
            }
        }
        let addresses_known = !self.tags.is_empty() || !self.mmdb.is_empty();
        // networks, countries, AS numbers
        let mut asn_columns: Vec<ArrayRef> = Vec::new();
        for (side, net_name, role, site, country) in [
            (
                "src",
                &mut *src_net_name,
                &mut *src_net_role,
                &mut *src_net_site,
                &mut *src_country,
            ),
            (
                "dst",
                &mut *dst_net_name,
                &mut *dst_net_role,
                &mut *dst_net_site,
                &mut *dst_country,
            ),
        ] {
            let addrs = batch
                .column_by_name(&format!("{side}_addr"))
                .map(|c| c.as_fixed_size_binary());
            let as_column = batch.column_by_name(&format!("{side}_as")).cloned();
            if !addresses_known {
                for b in [net_name, role, site, country] {
                    b.append_nulls(rows);
                }
                asn_columns.push(
                    as_column.unwrap_or_else(|| std::sync::Arc::new(UInt32Array::new_null(rows))),
                );
                continue;
            }
            let mut asn: Vec<Option<u32>> = match &as_column {
                Some(c) => c.as_primitive::<UInt32Type>().iter().collect(),
                None => vec![None; rows],
            };
            for (row, asn) in asn.iter_mut().enumerate() {
                let info = addrs.filter(|a| a.is_valid(row)).and_then(|a| {
                    let addr: [u8; 16] = a.value(row).try_into().ok()?;
                    Some(
                        cache
                            .addrs
                            .entry(addr)
                            .or_insert_with(|| self.lookup(addr))
                            .clone(),
                    )
                });
                let tag = info.as_ref().and_then(|i| i.network).map(|n| &self.tags[n]);
                net_name.append_option(tag.map(|t| t.name.as_str()));
                role.append_option(tag.and_then(|t| t.role.as_deref()));
                site.append_option(tag.and_then(|t| t.site.as_deref()));
                country.append_option(info.as_ref().and_then(|i| i.country.as_deref()));
                if asn.is_none_or(|a| a == 0)
                    && let Some(found) = info.as_ref().and_then(|i| i.asn)
                {
                    *asn = Some(found);
                }
            }
            asn_columns.push(std::sync::Arc::new(UInt32Array::from(asn)));
        }
        let schema = stored_flow_schema();
        let mut enriched = builders
            .into_iter()
            .map(|mut b| std::sync::Arc::new(b.finish()) as ArrayRef);
        let decoded = batch.num_columns() - 1; // all but other_fields
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
        for (i, field) in batch.schema().fields().iter().enumerate().take(decoded) {
            columns.push(match field.name().as_str() {
                "src_as" => asn_columns[0].clone(),
                "dst_as" => asn_columns[1].clone(),
                _ => batch.column(i).clone(),
            });
        }
        columns.extend(enriched.by_ref());
        columns.push(batch.column(decoded).clone());
        RecordBatch::try_new(schema, columns)
    }
}

/// Where names come from when options records have none: by exporter
/// and id.
type Fallback<'f, 'n, K> = Option<&'f dyn Fn([u8; 16], K) -> Option<&'n str>>;

/// Appends the name each row's id has among its exporter's and domain's
/// `names`, or else the `fallback`'s for its exporter, null where neither
/// has one; nulls alone when there is no name to find (the common case at
/// high rates).
fn append_names<'n, T>(
    builder: &mut StringBuilder,
    rows: usize,
    ids: Option<&PrimitiveArray<T>>,
    names: &HashMap<([u8; 16], u32, T::Native), &'n str, RandomState>,
    scope: &impl Fn(usize) -> Option<([u8; 16], u32)>,
    fallback: Fallback<'_, 'n, T::Native>,
) where
    T: ArrowPrimitiveType,
    T::Native: std::hash::Hash + Eq,
{
    let Some(ids) = ids.filter(|_| !names.is_empty() || fallback.is_some()) else {
        builder.append_nulls(rows);
        return;
    };
    for row in 0..rows {
        let name = scope(row)
            .filter(|_| ids.is_valid(row))
            .and_then(|(exporter, domain)| {
                let id = ids.value(row);
                names
                    .get(&(exporter, domain, id))
                    .copied()
                    .or_else(|| fallback.and_then(|f| f(exporter, id)))
            });
        builder.append_option(name);
    }
}

/// Names an exporter's options records gave, by exporter, domain and key.
fn scoped_names<'d, K, I>(
    decoder: &'d Decoder,
    names_of: impl Fn(&'d DomainState) -> I,
) -> HashMap<([u8; 16], u32, K), &'d str, RandomState>
where
    K: std::hash::Hash + Eq,
    I: Iterator<Item = (K, &'d str)>,
{
    let mut names = HashMap::default();
    for session in decoder.sessions() {
        let exporter = ip_to_mapped(canonical(session.exporter.ip()));
        for (domain, state) in session.domains() {
            for (key, name) in names_of(state) {
                names.insert((exporter, domain, key), name);
            }
        }
    }
    names
}
