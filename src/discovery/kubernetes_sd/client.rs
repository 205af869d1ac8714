//! Building a Kubernetes API client from the settings a configuration can give: an explicit
//! API server URL, a kubeconfig file, or neither (then the in-cluster service account, as
//! Prometheus does, falling back to the local kubeconfig so a developer's machine works).
//! Kept apart from discovery so collector discovery and the Prometheus CR watcher can share
//! it.

use kube::Client;
use kube::Config;
use kube::config::KubeConfigOptions;
use kube::config::Kubeconfig;

/// Where the client's configuration comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ClientSource {
    /// In-cluster service account, else `$KUBECONFIG` or `~/.kube/config`.
    #[default]
    Default,
    /// This API server, unauthenticated (e.g. `kubectl proxy`).
    ApiServer(String),
    /// This kubeconfig file, its current context.
    KubeconfigFile(String),
}

impl ClientSource {
    /// The source named by a `kubernetes_sd_configs` entry's `api_server` and
    /// `kubeconfig_file` (the configuration loader refuses both at once).
    pub fn from_settings(api_server: Option<&str>, kubeconfig_file: Option<&str>) -> Self {
        match (api_server, kubeconfig_file) {
            (Some(url), _) => ClientSource::ApiServer(url.to_string()),
            (None, Some(path)) => ClientSource::KubeconfigFile(path.to_string()),
            (None, None) => ClientSource::Default,
        }
    }
}

/// Why no client could be built.
#[derive(Debug, thiserror::Error)]
pub enum KubeClientError {
    #[error("invalid API server URL {url:?}: {message}")]
    ApiServerUrl { url: String, message: String },
    #[error("reading kubeconfig {path:?}: {source}")]
    Kubeconfig {
        path: String,
        source: kube::config::KubeconfigError,
    },
    #[error("no Kubernetes configuration: not in a cluster ({in_cluster}) and no usable kubeconfig ({kubeconfig})")]
    NoDefault {
        in_cluster: kube::config::InClusterError,
        kubeconfig: kube::config::KubeconfigError,
    },
    #[error("building the Kubernetes client: {0}")]
    Build(#[source] kube::Error),
}

/// The client configuration for `source`.
pub async fn client_config(source: &ClientSource) -> Result<Config, KubeClientError> {
    match source {
        ClientSource::ApiServer(url) => {
            // axum re-exports the `http` crate kube's `Config` takes its URI from.
            let uri = url
                .parse()
                .map_err(|e: axum::http::uri::InvalidUri| KubeClientError::ApiServerUrl {
                    url: url.clone(),
                    message: e.to_string(),
                })?;
            Ok(Config::new(uri))
        }
        ClientSource::KubeconfigFile(path) => {
            let kubeconfig = Kubeconfig::read_from(path).map_err(|source| KubeClientError::Kubeconfig {
                path: path.clone(),
                source,
            })?;
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|source| KubeClientError::Kubeconfig {
                    path: path.clone(),
                    source,
                })
        }
        ClientSource::Default => match Config::incluster() {
            Ok(config) => Ok(config),
            Err(in_cluster) => Config::from_kubeconfig(&KubeConfigOptions::default())
                .await
                .map_err(|kubeconfig| KubeClientError::NoDefault { in_cluster, kubeconfig }),
        },
    }
}

/// A client for `source`. Needs a Tokio runtime (the client spawns its connection tasks).
pub async fn client(source: &ClientSource) -> Result<Client, KubeClientError> {
    let config = client_config(source).await?;
    Client::try_from(config).map_err(KubeClientError::Build)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_choose_the_source() {
        assert_eq!(ClientSource::from_settings(None, None), ClientSource::Default);
        assert_eq!(
            ClientSource::from_settings(Some("http://127.0.0.1:8001"), None),
            ClientSource::ApiServer("http://127.0.0.1:8001".into())
        );
        assert_eq!(
            ClientSource::from_settings(None, Some("/k")),
            ClientSource::KubeconfigFile("/k".into())
        );
    }

    #[tokio::test]
    async fn an_api_server_url_gives_a_client_for_it_and_a_missing_kubeconfig_is_an_error() {
        let config = client_config(&ClientSource::ApiServer("http://127.0.0.1:8001".into())).await;
        let Ok(config) = config else {
            panic!("a valid URL gives a config")
        };
        assert_eq!(config.cluster_url.to_string(), "http://127.0.0.1:8001/");
        assert!(
            client(&ClientSource::ApiServer("http://127.0.0.1:8001".into()))
                .await
                .is_ok()
        );

        let missing = client_config(&ClientSource::KubeconfigFile("/nonexistent/kubeconfig".into())).await;
        assert!(matches!(missing, Err(KubeClientError::Kubeconfig { .. })));
    }

    #[tokio::test]
    async fn a_kubeconfig_file_names_its_server() {
        let directory = tempfile::tempdir().map_err(|e| e.to_string());
        let Ok(directory) = directory else {
            panic!("temporary directory")
        };
        let path = directory.path().join("kubeconfig");
        let written = std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\ncurrent-context: c\n\
             clusters: [{name: k, cluster: {server: 'http://127.0.0.1:6443'}}]\n\
             users: [{name: u, user: {}}]\n\
             contexts: [{name: c, context: {cluster: k, user: u, namespace: team}}]\n",
        );
        assert!(written.is_ok());
        let source = ClientSource::KubeconfigFile(path.display().to_string());
        let Ok(config) = client_config(&source).await else {
            panic!("the kubeconfig is read")
        };
        assert_eq!(config.cluster_url.to_string(), "http://127.0.0.1:6443/");
        assert_eq!(config.default_namespace, "team");
    }
}
