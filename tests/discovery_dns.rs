//! `dns_sd_configs` against a small DNS server on 127.0.0.1 (UDP) answering from a table:
//! SRV, A and AAAA targets and their meta labels, a name without records, and a server
//! failure keeping the last good targets.

mod discovery_support;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::net::Ipv6Addr;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use discovery_support::Running;
use discovery_support::addresses;
use hickory_resolver::proto::op::Message;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::Name;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::proto::rr::Record;
use hickory_resolver::proto::rr::RecordType;
use hickory_resolver::proto::rr::rdata::A;
use hickory_resolver::proto::rr::rdata::AAAA;
use hickory_resolver::proto::rr::rdata::SRV;
use target_allocator::discovery::DnsRecordType;
use target_allocator::discovery::DnsSdConfig;
use target_allocator::discovery::dns_sd::DnsProvider;
use target_allocator::discovery::dns_sd::Nameservers;

/// What the fake server answers for a (name, type).
#[derive(Clone)]
enum Answer {
    Records(Vec<RData>),
    ServerFailure,
}

#[derive(Clone, Default)]
struct FakeDns {
    table: Arc<Mutex<HashMap<(String, RecordType), Answer>>>,
}

impl FakeDns {
    fn set(&self, name: &str, record_type: RecordType, answer: Answer) {
        let mut table = self.table.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        table.insert((name.to_ascii_lowercase(), record_type), answer);
    }

    /// Serve on 127.0.0.1; unknown names get NXDOMAIN.
    async fn start(&self) -> SocketAddr {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let address = socket.local_addr().expect("local address");
        let server = self.clone();
        tokio::spawn(async move {
            let mut buffer = vec![0u8; 4096];
            loop {
                let Ok((length, peer)) = socket.recv_from(&mut buffer).await else {
                    return;
                };
                if let Some(reply) = server.reply(&buffer[..length]) {
                    let _ = socket.send_to(&reply, peer).await;
                }
            }
        });
        address
    }

    fn reply(&self, request: &[u8]) -> Option<Vec<u8>> {
        let request = Message::from_vec(request).ok()?;
        let query = request.queries.first()?.clone();
        let mut response = Message::response(request.metadata.id, request.metadata.op_code);
        response.metadata.recursion_desired = request.metadata.recursion_desired;
        response.metadata.recursion_available = true;
        response.add_query(query.clone());
        let key = (query.name().to_ascii().to_ascii_lowercase(), query.query_type());
        let answer = self
            .table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&key)
            .cloned();
        match answer {
            Some(Answer::Records(records)) => {
                for data in records {
                    response.add_answer(Record::from_rdata(query.name().clone(), 0, data));
                }
            }
            Some(Answer::ServerFailure) => response.metadata.response_code = ResponseCode::ServFail,
            None => response.metadata.response_code = ResponseCode::NXDomain,
        }
        response.to_vec().ok()
    }
}

fn name(text: &str) -> Name {
    Name::from_str(text).unwrap_or_else(|e| panic!("test name {text:?}: {e}"))
}

fn provider(server: SocketAddr, names: &[&str], record_type: DnsRecordType, port: Option<u16>) -> Box<DnsProvider> {
    let config = DnsSdConfig {
        names: names.iter().map(|n| n.to_string()).collect(),
        record_type,
        port,
        refresh_interval: Duration::from_millis(100),
    };
    Box::new(DnsProvider::new(config, Nameservers::Explicit(server)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_records_become_targets_and_a_server_failure_keeps_the_last_good_ones() {
    let dns = FakeDns::default();
    let service = "_node._tcp.test.";
    dns.set(
        service,
        RecordType::SRV,
        Answer::Records(vec![
            RData::SRV(SRV::new(0, 0, 9100, name("node-a.test."))),
            RData::SRV(SRV::new(0, 0, 9101, name("node-b.test."))),
        ]),
    );
    let server = dns.start().await;
    let mut running = Running::start(provider(server, &[service, "absent.test."], DnsRecordType::Srv, None));

    let first = running.wait_for("the first round", |s| s.synced).await;
    assert_eq!(first.last_error, None);
    assert_eq!(addresses(&first.groups), ["node-a.test:9100", "node-b.test:9101"]);
    assert_eq!(first.groups[0].source, service);
    let target = &first.groups[0].targets[0];
    assert_eq!(target.get("__meta_dns_name"), Some(service));
    assert_eq!(target.get("__meta_dns_srv_record_target"), Some("node-a.test."));
    assert_eq!(target.get("__meta_dns_srv_record_port"), Some("9100"));
    assert_eq!(target.get("__meta_dns_mx_record_target"), None);
    // A name that does not exist is an answer: an empty group, no error.
    assert_eq!(first.groups[1].source, "absent.test.");
    assert!(first.groups[1].targets.is_empty());

    dns.set(service, RecordType::SRV, Answer::ServerFailure);
    let failed = running
        .wait_for("the failure reported", |s| {
            s.last_error.as_deref().is_some_and(|e| e.contains(service))
        })
        .await;
    assert_eq!(addresses(&failed.groups), ["node-a.test:9100", "node-b.test:9101"]);

    dns.set(
        service,
        RecordType::SRV,
        Answer::Records(vec![RData::SRV(SRV::new(0, 0, 9100, name("node-c.test.")))]),
    );
    running
        .wait_for("recovery", |s| {
            s.last_error.is_none() && addresses(&s.groups) == ["node-c.test:9100"]
        })
        .await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn address_records_use_the_configured_port() {
    let dns = FakeDns::default();
    dns.set(
        "web.test.",
        RecordType::A,
        Answer::Records(vec![
            RData::A(A(Ipv4Addr::new(10, 0, 0, 1))),
            RData::A(A(Ipv4Addr::new(10, 0, 0, 2))),
        ]),
    );
    dns.set(
        "web.test.",
        RecordType::AAAA,
        Answer::Records(vec![RData::AAAA(AAAA(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1)))]),
    );
    let server = dns.start().await;

    let mut v4 = Running::start(provider(server, &["web.test."], DnsRecordType::A, Some(8080)));
    let first = v4.wait_for("the A round", |s| s.synced).await;
    assert_eq!(first.last_error, None);
    assert_eq!(addresses(&first.groups), ["10.0.0.1:8080", "10.0.0.2:8080"]);
    assert_eq!(first.groups[0].targets[0].get("__meta_dns_name"), Some("web.test."));
    assert_eq!(first.groups[0].targets[0].get("__meta_dns_srv_record_target"), None);
    v4.stop().await;

    let mut v6 = Running::start(provider(server, &["web.test."], DnsRecordType::Aaaa, Some(8080)));
    let first = v6.wait_for("the AAAA round", |s| s.synced).await;
    assert_eq!(first.last_error, None);
    assert_eq!(addresses(&first.groups), ["[fd00::1]:8080"]);
    v6.stop().await;
}
