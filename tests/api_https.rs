//! The mTLS listener (upstream's `https:`): the same routes as plain HTTP, real secret values
//! in `/scrape_configs`, and no answer at all without a client certificate from the
//! configured CA that may be used for client authentication.

mod api_support;

use std::sync::Arc;

use api_support::Cluster;
use api_support::free_ports;
use rcgen::BasicConstraints;
use rcgen::CertificateParams;
use rcgen::ExtendedKeyUsagePurpose;
use rcgen::IsCa;
use rcgen::KeyPair;
use rustls::ClientConfig;
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;

/// A certificate authority that signs server and client certificates.
struct Authority {
    certificate: rcgen::Certificate,
    key: KeyPair,
}

/// A signed certificate and its key, as PEM.
struct Issued {
    certificate: String,
    key: String,
}

impl Authority {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("CA key");
        let certificate = params.self_signed(&key).expect("CA certificate");
        Self { certificate, key }
    }

    fn issue(&self, names: &[&str], usages: Vec<ExtendedKeyUsagePurpose>) -> Issued {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("parameters");
        params.extended_key_usages = usages;
        let key = KeyPair::generate().expect("key");
        let certificate = params
            .signed_by(&key, &self.certificate, &self.key)
            .expect("signed certificate");
        Issued {
            certificate: certificate.pem(),
            key: key.serialize_pem(),
        }
    }
}

/// GET `path` over TLS, presenting `client` (or no certificate); the raw response, or why
/// the connection failed.
async fn get_over_tls(port: u16, ca_pem: &str, client: Option<&Issued>, path: &str) -> Result<String, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).expect("CA PEM"))
        .expect("CA root");
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots);
    let config = match client {
        Some(issued) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(issued.certificate.as_bytes()).expect("client PEM")],
                PrivateKeyDer::from_pem_slice(issued.key.as_bytes()).expect("client key PEM"),
            )
            .expect("client certificate"),
        None => builder.with_no_client_auth(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let mut tls = connector
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut response = Vec::new();
    tls.read_to_end(&mut response).await.map_err(|e| format!("read: {e}"))?;
    if response.is_empty() {
        return Err("the server closed the connection without answering".into());
    }
    Ok(String::from_utf8_lossy(&response).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mtls_listener_serves_secrets_only_to_authenticated_clients() {
    let files = tempfile::tempdir().expect("temporary directory");
    let authority = Authority::new();
    let server = authority.issue(&["localhost", "127.0.0.1"], vec![ExtendedKeyUsagePurpose::ServerAuth]);
    let client = authority.issue(&["collector-0"], vec![ExtendedKeyUsagePurpose::ClientAuth]);
    let server_only = authority.issue(&["collector-1"], vec![ExtendedKeyUsagePurpose::ServerAuth]);
    let stranger = Authority::new().issue(&["collector-2"], vec![ExtendedKeyUsagePurpose::ClientAuth]);
    let write = |name: &str, text: &str| {
        let path = files.path().join(name);
        std::fs::write(&path, text).expect("write a PEM file");
        path.display().to_string()
    };
    let ca_pem = authority.certificate.pem();
    let ca_file = write("ca.crt", &ca_pem);
    let cert_file = write("tls.crt", &server.certificate);
    let key_file = write("tls.key", &server.key);
    let https_port = free_ports(1)[0];
    let document = format!(
        "https:\n  enabled: true\n  listen_addr: 127.0.0.1:{https_port}\n  ca_file_path: {ca_file}\n  \
         tls_cert_file_path: {cert_file}\n  tls_key_file_path: {key_file}\n\
         collectors:\n  static: [collector-0]\n\
         config:\n  scrape_configs:\n  - job_name: secured\n    basic_auth: {{username: scraper, password: hunter2}}\n    \
         static_configs:\n    - targets: [10.0.0.1:9100]\n"
    );
    let mut cluster = Cluster::new(1, &document);
    cluster.start(0);
    cluster.wait_ready(0).await;
    cluster.wait_allocated(0, "secured", 1).await;

    let plain = cluster.get(0, "/scrape_configs").await;
    assert!(plain.text().contains("<secret>"), "plain HTTP masks: {}", plain.text());
    assert!(!plain.text().contains("hunter2"), "plain HTTP masks: {}", plain.text());

    let over_tls = get_over_tls(https_port, &ca_pem, Some(&client), "/scrape_configs")
        .await
        .expect("an authenticated client is answered");
    assert!(over_tls.starts_with("HTTP/1.1 200"), "{over_tls}");
    assert!(
        over_tls.contains("\"password\":\"hunter2\""),
        "mTLS serves the real secret: {over_tls}"
    );

    let targets = get_over_tls(
        https_port,
        &ca_pem,
        Some(&client),
        "/jobs/secured/targets?collector_id=collector-0",
    )
    .await
    .expect("http_sd over mTLS");
    assert!(targets.starts_with("HTTP/1.1 200"), "{targets}");
    assert!(
        targets.contains("10.0.0.1:9100"),
        "the same routes over mTLS: {targets}"
    );

    for (what, certificate) in [
        ("no client certificate", None),
        ("a certificate without clientAuth", Some(&server_only)),
        ("a certificate from another CA", Some(&stranger)),
    ] {
        let refused = get_over_tls(https_port, &ca_pem, certificate, "/livez").await;
        assert!(refused.is_err(), "{what} must not be answered, got {refused:?}");
    }
    cluster.stop_all().await;
}
