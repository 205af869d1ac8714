//! `dns_sd_configs`: targets from DNS SRV, A or AAAA records, as Prometheus's
//! `discovery/dns`. Every name is looked up at start and every `refresh_interval`; each name
//! is its own group (source = the name, no group labels) whose targets carry
//! `__address__` and the meta labels `__meta_dns_name` and, for SRV,
//! `__meta_dns_srv_record_target` (as received, trailing dot included) and
//! `__meta_dns_srv_record_port`. Prometheus sets the MX/NS and unused SRV labels to `""`;
//! an empty label is an absent label, so ours are simply absent.
//!
//! As in Prometheus: a name that does not exist, or has no records of the type, gives an
//! empty group (that is an answer, not a failure); a failed lookup (server failure,
//! timeout) keeps the name's last good group and is reported in `last_error`. The provider
//! is synced after its first round, failed lookups included. Lookups bypass the resolver's
//! cache and the hosts file: Prometheus asks the servers every time.

use std::future::Future;
use std::net::IpAddr;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::ConnectionConfig;
use hickory_resolver::config::NameServerConfig;
use hickory_resolver::config::ResolveHosts;
use hickory_resolver::config::ResolverConfig;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::proto::rr::Record;
use hickory_resolver::proto::rr::RecordType;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::ADDRESS_LABEL;
use super::DnsRecordType;
use super::DnsSdConfig;
use super::Interner;
use super::Labels;
use super::Provider;
use super::ProviderSnapshot;
use super::TargetGroup;
use super::error_chain;
use super::publish_round;
use super::refresh_ticker;
use super::share_unchanged;

pub const DNS_NAME_LABEL: &str = "__meta_dns_name";
pub const SRV_RECORD_TARGET_LABEL: &str = "__meta_dns_srv_record_target";
pub const SRV_RECORD_PORT_LABEL: &str = "__meta_dns_srv_record_port";
pub const MX_RECORD_TARGET_LABEL: &str = "__meta_dns_mx_record_target";
pub const NS_RECORD_TARGET_LABEL: &str = "__meta_dns_ns_record_target";

/// Which DNS servers to ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Nameservers {
    /// The system configuration (`/etc/resolv.conf`), search domains included.
    #[default]
    System,
    /// One server, over UDP with TCP fallback for truncated answers.
    Explicit(SocketAddr),
}

/// Why a round could not look names up.
#[derive(Debug, thiserror::Error)]
pub enum DnsSdError {
    #[error("cannot set up the DNS resolver: {0}")]
    Resolver(String),
    #[error("{record_type:?} records need a port in the configuration")]
    MissingPort { record_type: DnsRecordType },
    #[error("looking up {name}: {message}")]
    Lookup { name: String, message: String },
}

/// Provider for one `dns_sd_configs` entry.
pub struct DnsProvider {
    config: DnsSdConfig,
    nameservers: Nameservers,
}

impl DnsProvider {
    pub fn new(config: DnsSdConfig, nameservers: Nameservers) -> Self {
        Self { config, nameservers }
    }
}

impl Provider for DnsProvider {
    fn run(
        self: Box<Self>,
        publish: watch::Sender<ProviderSnapshot>,
        shutdown: CancellationToken,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(run(*self, publish, shutdown))
    }
}

async fn run(provider: DnsProvider, publish: watch::Sender<ProviderSnapshot>, shutdown: CancellationToken) {
    let mut discovery = DnsDiscovery::new(provider.config.clone(), provider.nameservers);
    let mut ticker = refresh_ticker(provider.config.refresh_interval);
    loop {
        let (groups, last_error) = tokio::select! {
            () = shutdown.cancelled() => return,
            round = discovery.refresh() => round,
        };
        publish_round(&publish, groups, last_error);
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
    }
}

/// The state of one `dns_sd_configs` entry between rounds.
struct DnsDiscovery {
    config: DnsSdConfig,
    nameservers: Nameservers,
    /// Built on first use and kept; a failure to build is retried next round.
    resolver: Option<TokioResolver>,
    interner: Interner,
    groups: Vec<Arc<TargetGroup>>,
}

impl DnsDiscovery {
    fn new(config: DnsSdConfig, nameservers: Nameservers) -> Self {
        Self {
            config,
            nameservers,
            resolver: None,
            interner: Interner::default(),
            groups: Vec::new(),
        }
    }

    async fn refresh(&mut self) -> (Vec<Arc<TargetGroup>>, Option<String>) {
        match self.lookup_all().await {
            Ok((fresh, problems)) => {
                self.groups = share_unchanged(&self.groups, fresh);
                self.interner.collect_garbage();
                for problem in &problems {
                    tracing::warn!(error = %problem, "dns_sd: keeping the name's last good targets");
                }
                let last_error = (!problems.is_empty())
                    .then(|| problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "));
                (self.groups.clone(), last_error)
            }
            Err(error) => {
                tracing::warn!(%error, "dns_sd: keeping the last good targets");
                (self.groups.clone(), Some(error.to_string()))
            }
        }
    }

    /// Look every name up; a failed name keeps its previous group.
    async fn lookup_all(&mut self) -> Result<(Vec<TargetGroup>, Vec<DnsSdError>), DnsSdError> {
        let (record_type, port) = match self.config.record_type {
            DnsRecordType::Srv => (RecordType::SRV, 0),
            DnsRecordType::A | DnsRecordType::Aaaa => {
                let Some(port) = self.config.port else {
                    return Err(DnsSdError::MissingPort {
                        record_type: self.config.record_type,
                    });
                };
                let record_type = if self.config.record_type == DnsRecordType::A {
                    RecordType::A
                } else {
                    RecordType::AAAA
                };
                (record_type, port)
            }
        };
        let resolver = match &self.resolver {
            Some(resolver) => resolver.clone(),
            None => {
                let resolver = build_resolver(self.nameservers)?;
                self.resolver = Some(resolver.clone());
                resolver
            }
        };
        resolver.clear_cache();
        let mut names: Vec<&String> = Vec::new();
        for name in &self.config.names {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        // Concurrently, as Prometheus does: one slow name must not delay the others.
        let mut lookups = tokio::task::JoinSet::new();
        for (position, name) in names.iter().enumerate() {
            let (resolver, name) = (resolver.clone(), (*name).clone());
            lookups.spawn(async move { (position, resolver.lookup(name.as_str(), record_type).await) });
        }
        let mut answers: Vec<Option<Result<Vec<Record>, String>>> = vec![None; names.len()];
        while let Some(joined) = lookups.join_next().await {
            let Ok((position, answer)) = joined else {
                continue;
            };
            let answer = match answer {
                Ok(lookup) => Ok(lookup.answers().to_vec()),
                // NXDOMAIN, or no records of the type: the name has no targets.
                Err(e) if e.is_no_records_found() => Ok(Vec::new()),
                Err(e) => Err(error_chain(&e)),
            };
            if let Some(slot) = answers.get_mut(position) {
                *slot = Some(answer);
            }
        }
        let mut groups = Vec::with_capacity(names.len());
        let mut problems = Vec::new();
        for (name, answer) in names.iter().zip(answers) {
            match answer {
                Some(Ok(records)) => groups.push(group_from_records(name, &records, port, &mut self.interner)),
                failure => {
                    let message = match failure {
                        Some(Err(message)) => message,
                        _ => "the lookup task ended abnormally".to_string(),
                    };
                    problems.push(DnsSdError::Lookup {
                        name: (*name).clone(),
                        message,
                    });
                    if let Some(previous) = self.groups.iter().find(|group| group.source == **name) {
                        groups.push((**previous).clone());
                    }
                }
            }
        }
        Ok((groups, problems))
    }
}

fn build_resolver(nameservers: Nameservers) -> Result<TokioResolver, DnsSdError> {
    let mut builder = match nameservers {
        Nameservers::System => TokioResolver::builder_tokio().map_err(|e| DnsSdError::Resolver(error_chain(&e)))?,
        Nameservers::Explicit(address) => {
            let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
                .into_iter()
                .map(|mut connection| {
                    connection.port = address.port();
                    connection
                })
                .collect();
            let server = NameServerConfig::new(address.ip(), true, connections);
            TokioResolver::builder_with_config(
                ResolverConfig::from_parts(None, Vec::new(), vec![server]),
                TokioRuntimeProvider::default(),
            )
        }
    };
    builder.options_mut().use_hosts_file = ResolveHosts::Never;
    builder.build().map_err(|e| DnsSdError::Resolver(error_chain(&e)))
}

/// The group of one name from its answer records, as Prometheus's `refreshOne`.
pub fn group_from_records(name: &str, records: &[Record], port: u16, interner: &mut Interner) -> TargetGroup {
    let mut targets = Vec::with_capacity(records.len());
    for record in records {
        let mut labels = vec![(interner.intern(DNS_NAME_LABEL), interner.intern(name))];
        let address = match &record.data {
            RData::SRV(srv) => {
                let target = srv.target.to_string();
                labels.push((interner.intern(SRV_RECORD_TARGET_LABEL), interner.intern(&target)));
                labels.push((
                    interner.intern(SRV_RECORD_PORT_LABEL),
                    interner.intern(&srv.port.to_string()),
                ));
                join_host_port(target.trim_end_matches('.'), srv.port)
            }
            RData::MX(mx) => {
                let target = mx.exchange.to_string();
                labels.push((interner.intern(MX_RECORD_TARGET_LABEL), interner.intern(&target)));
                join_host_port(target.trim_end_matches('.'), port)
            }
            RData::NS(ns) => {
                let target = ns.0.to_string();
                labels.push((interner.intern(NS_RECORD_TARGET_LABEL), interner.intern(&target)));
                join_host_port(target.trim_end_matches('.'), port)
            }
            RData::A(a) => SocketAddr::new(IpAddr::V4(a.0), port).to_string(),
            RData::AAAA(aaaa) => SocketAddr::new(IpAddr::V6(aaaa.0), port).to_string(),
            // CNAMEs come with A/AAAA answers; anything else is not a target either.
            _ => continue,
        };
        labels.push((interner.intern(ADDRESS_LABEL), interner.intern(&address)));
        targets.push(Labels::new(labels));
    }
    TargetGroup {
        source: name.to_string().into(),
        targets,
        labels: Labels::default(),
    }
}

/// Go's `net.JoinHostPort`: brackets around a host containing a colon.
fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::net::Ipv6Addr;
    use std::str::FromStr;

    use hickory_resolver::proto::rr::Name;
    use hickory_resolver::proto::rr::rdata::A;
    use hickory_resolver::proto::rr::rdata::AAAA;
    use hickory_resolver::proto::rr::rdata::CNAME;
    use hickory_resolver::proto::rr::rdata::MX;
    use hickory_resolver::proto::rr::rdata::SRV;

    use super::*;

    fn name(text: &str) -> Name {
        Name::from_str(text).unwrap_or_else(|e| panic!("test name {text:?}: {e}"))
    }

    fn record(data: RData) -> Record {
        Record::from_rdata(name("svc.example."), 30, data)
    }

    #[test]
    fn srv_records_give_host_port_targets_with_the_record_as_received() {
        let mut interner = Interner::default();
        let records = [record(RData::SRV(SRV::new(0, 0, 9100, name("node-1.example."))))];
        let group = group_from_records("_x._tcp.example.", &records, 0, &mut interner);
        assert_eq!(group.source, "_x._tcp.example.");
        let target = &group.targets[0];
        assert_eq!(target.get("__address__"), Some("node-1.example:9100"));
        assert_eq!(target.get(SRV_RECORD_TARGET_LABEL), Some("node-1.example."));
        assert_eq!(target.get(SRV_RECORD_PORT_LABEL), Some("9100"));
        assert_eq!(target.get(DNS_NAME_LABEL), Some("_x._tcp.example."));
        assert_eq!(target.get(MX_RECORD_TARGET_LABEL), None);
    }

    #[test]
    fn address_records_use_the_configured_port_and_skip_cnames() {
        let mut interner = Interner::default();
        let records = [
            record(RData::CNAME(CNAME(name("real.example.")))),
            record(RData::A(A(Ipv4Addr::new(10, 0, 0, 1)))),
            record(RData::AAAA(AAAA(Ipv6Addr::LOCALHOST))),
            record(RData::MX(MX::new(10, name("mail.example.")))),
        ];
        let group = group_from_records("svc.example.", &records, 8080, &mut interner);
        let addresses: Vec<_> = group.targets.iter().filter_map(|t| t.get("__address__")).collect();
        assert_eq!(addresses, ["10.0.0.1:8080", "[::1]:8080", "mail.example:8080"]);
        assert_eq!(group.targets[2].get(MX_RECORD_TARGET_LABEL), Some("mail.example."));
    }
}
