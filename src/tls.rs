//! The mTLS listener (upstream's `https:` section; docs/compatibility.md, "The mTLS listener"): the same routes
//! as the plain listener, over TLS ≥ 1.2, with a client certificate required and verified
//! against `ca_file_path`. Requests that arrive here are served real secret values in
//! `/scrape_configs`, as upstream does for any request with a TLS connection.
//!
//! A client certificate whose extended key usage is present must include clientAuth
//! (webpki's rule). Upstream also refuses a certificate without the extension; we accept it.
//! Certificates are read at startup; upstream's hot reload is not implemented.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioExecutor;
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rustls::RootCertStore;
use rustls::ServerConfig;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::config::HttpsConfig;

/// A handshake that takes longer than this is abandoned.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);
/// Open connections get this long to finish their requests at shutdown.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// Marks a request that arrived over the mTLS listener.
#[derive(Debug, Clone, Copy)]
pub struct OverTls;

/// Why the TLS listener cannot be configured.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("https: cannot read {what} from {path}: {detail}")]
    Read {
        what: &'static str,
        path: String,
        detail: String,
    },
    #[error("https: {0}")]
    Invalid(String),
}

fn read_certificates(what: &'static str, path: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let failure = |detail: String| TlsError::Read {
        what,
        path: path.to_string(),
        detail,
    };
    let certificates = CertificateDer::pem_file_iter(Path::new(path))
        .map_err(|e| failure(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| failure(e.to_string()))?;
    if certificates.is_empty() {
        return Err(failure("no PEM certificate in the file".into()));
    }
    Ok(certificates)
}

/// The server configuration: our certificate and key, client certificates required and
/// verified against the CA file.
pub fn server_config(https: &HttpsConfig) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for certificate in read_certificates("the client CA", &https.ca_file_path)? {
        roots
            .add(certificate)
            .map_err(|e| TlsError::Invalid(format!("the client CA in {}: {e}", https.ca_file_path)))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
        .build()
        .map_err(|e| TlsError::Invalid(format!("client verification: {e}")))?;
    let chain = read_certificates("the server certificate", &https.tls_cert_file_path)?;
    let key = PrivateKeyDer::from_pem_file(Path::new(&https.tls_key_file_path)).map_err(|e| TlsError::Read {
        what: "the server key",
        path: https.tls_key_file_path.clone(),
        detail: e.to_string(),
    })?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Invalid(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Invalid(format!("the server certificate and key: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serve `router` over TLS on `listener` until `stop`, then drain open connections.
pub async fn serve(listener: TcpListener, config: Arc<ServerConfig>, router: Router, stop: CancellationToken) {
    let acceptor = TlsAcceptor::from(config);
    let router = router.layer(axum::Extension(OverTls));
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(%e, "https accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(router.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_LIMIT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, %e, "TLS handshake refused");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let builder = Builder::new(TokioExecutor::new());
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(connection.into_owned()).await {
                tracing::debug!(%peer, %e, "https connection ended with an error");
            }
        });
    }
    if tokio::time::timeout(DRAIN_LIMIT, graceful.shutdown()).await.is_err() {
        tracing::warn!("https connections still open after the drain limit");
    }
}
