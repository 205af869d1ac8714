//! Connecting to the Kubernetes API server, for every Kubernetes watcher (collector discovery
//! and `kubernetes_sd_configs`): which configuration to use, by each caller's rule (upstream's
//! for `kube_config_file_path`, Prometheus's for `api_server` / `kubeconfig_file`), and
//! building one `kube::Client` from it. Nothing here talks to the API server yet: a client
//! that cannot reach it is only noticed by the watches using it.

use std::path::Path;
use std::path::PathBuf;

use kube::Client;
use kube::config::KubeConfigOptions;
use kube::config::Kubeconfig;

/// Where the client's configuration comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientSource {
    /// The pod's service account (`KUBERNETES_SERVICE_HOST`, the mounted token and CA).
    InCluster,
    /// A kubeconfig file, its current context.
    Kubeconfig(PathBuf),
    /// An API server URL with no credentials (tests, `kubectl proxy`).
    ApiServer(String),
    /// The in-cluster service account, else the local kubeconfig (`$KUBECONFIG` or
    /// `~/.kube/config`), so a `kubernetes_sd_configs` entry naming neither works both in a
    /// pod and on a developer's machine.
    InClusterOrDefaultKubeconfig,
}

impl ClientSource {
    /// Upstream's rule: the kubeconfig at `kube_config_file_path` when that file exists,
    /// else the in-cluster configuration. (Upstream's docs mention `KUBECONFIG`, but its code
    /// never reads it, and neither does this.)
    pub fn from_kube_config_file_path(path: &str) -> Self {
        if !path.is_empty() && Path::new(path).is_file() {
            ClientSource::Kubeconfig(PathBuf::from(path))
        } else {
            ClientSource::InCluster
        }
    }

    /// The source named by a `kubernetes_sd_configs` entry's `api_server` and
    /// `kubeconfig_file` (the configuration loader refuses both at once); neither means the
    /// in-cluster configuration, as Prometheus, else the default kubeconfig.
    pub fn from_sd_settings(api_server: Option<&str>, kubeconfig_file: Option<&str>) -> Self {
        match (api_server, kubeconfig_file) {
            (Some(url), _) => ClientSource::ApiServer(url.to_string()),
            (None, Some(path)) => ClientSource::Kubeconfig(PathBuf::from(path)),
            (None, None) => ClientSource::InClusterOrDefaultKubeconfig,
        }
    }
}

impl std::fmt::Display for ClientSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientSource::InCluster => f.write_str("the in-cluster service account"),
            ClientSource::Kubeconfig(path) => write!(f, "kubeconfig {}", path.display()),
            ClientSource::ApiServer(url) => write!(f, "API server {url}"),
            ClientSource::InClusterOrDefaultKubeconfig => {
                f.write_str("the in-cluster service account, else the default kubeconfig")
            }
        }
    }
}

/// Why no client could be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot use kubeconfig {path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error(
        "no kubeconfig file at kube_config_file_path and no in-cluster configuration \
         (is this running in a pod with a service account?): {source}"
    )]
    InCluster {
        #[source]
        source: kube::config::InClusterError,
    },
    #[error(
        "no Kubernetes configuration: not in a cluster ({in_cluster}) and no usable default \
         kubeconfig ({kubeconfig})"
    )]
    NoDefault {
        in_cluster: kube::config::InClusterError,
        kubeconfig: kube::config::KubeconfigError,
    },
    #[error("{url:?} is not an API server URL: {reason}")]
    ApiServerUrl { url: String, reason: String },
    #[error("cannot build a Kubernetes client from {from}: {source}")]
    Build {
        from: String,
        #[source]
        source: kube::Error,
    },
}

/// The client configuration of `source`.
pub async fn config(source: &ClientSource) -> Result<kube::Config, ClientError> {
    match source {
        ClientSource::InCluster => kube::Config::incluster().map_err(|source| ClientError::InCluster { source }),
        ClientSource::Kubeconfig(path) => {
            let kubeconfig = Kubeconfig::read_from(path).map_err(|source| ClientError::Kubeconfig {
                path: path.clone(),
                source,
            })?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|source| ClientError::Kubeconfig {
                    path: path.clone(),
                    source,
                })
        }
        ClientSource::ApiServer(url) => {
            let uri: http::Uri = url
                .parse()
                .map_err(|e: http::uri::InvalidUri| ClientError::ApiServerUrl {
                    url: url.clone(),
                    reason: e.to_string(),
                })?;
            if uri.scheme().is_none() || uri.authority().is_none() {
                return Err(ClientError::ApiServerUrl {
                    url: url.clone(),
                    reason: "expected scheme://host:port".into(),
                });
            }
            Ok(kube::Config::new(uri))
        }
        ClientSource::InClusterOrDefaultKubeconfig => match kube::Config::incluster() {
            Ok(config) => Ok(config),
            Err(in_cluster) => kube::Config::from_kubeconfig(&KubeConfigOptions::default())
                .await
                .map_err(|kubeconfig| ClientError::NoDefault { in_cluster, kubeconfig }),
        },
    }
}

/// A client for `source`. Must be called within a Tokio runtime (the client spawns its
/// request buffer).
pub async fn build(source: &ClientSource) -> Result<Client, ClientError> {
    let config = config(source).await?;
    Client::try_from(config).map_err(|source_error| ClientError::Build {
        from: source.to_string(),
        source: source_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_kubeconfig_file_means_the_in_cluster_configuration_as_upstream() {
        assert_eq!(
            ClientSource::from_kube_config_file_path("/nonexistent/kubeconfig"),
            ClientSource::InCluster
        );
        assert_eq!(ClientSource::from_kube_config_file_path(""), ClientSource::InCluster);
        let file = tempfile::NamedTempFile::new().expect("temporary file");
        let path = file.path().display().to_string();
        assert_eq!(
            ClientSource::from_kube_config_file_path(&path),
            ClientSource::Kubeconfig(file.path().to_path_buf())
        );
    }

    #[test]
    fn kubernetes_sd_settings_choose_the_source() {
        assert_eq!(
            ClientSource::from_sd_settings(None, None),
            ClientSource::InClusterOrDefaultKubeconfig
        );
        assert_eq!(
            ClientSource::from_sd_settings(Some("http://127.0.0.1:8001"), None),
            ClientSource::ApiServer("http://127.0.0.1:8001".into())
        );
        assert_eq!(
            ClientSource::from_sd_settings(None, Some("/k")),
            ClientSource::Kubeconfig(PathBuf::from("/k"))
        );
    }

    #[tokio::test]
    async fn an_api_server_url_gives_a_client_for_it_and_a_missing_kubeconfig_is_an_error() {
        let source = ClientSource::ApiServer("http://127.0.0.1:8001".into());
        let config = config(&source).await.expect("a valid URL gives a config");
        assert_eq!(config.cluster_url.to_string(), "http://127.0.0.1:8001/");
        assert!(build(&source).await.is_ok());

        let missing = super::config(&ClientSource::Kubeconfig("/nonexistent/kubeconfig".into())).await;
        assert!(matches!(missing, Err(ClientError::Kubeconfig { .. })), "{missing:?}");
    }

    #[tokio::test]
    async fn a_kubeconfig_naming_a_plain_http_server_without_credentials_is_usable() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("kubeconfig");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\ncurrent-context: test\n\
             clusters: [{name: fake, cluster: {server: 'http://127.0.0.1:6443'}}]\n\
             users: [{name: nobody, user: {}}]\n\
             contexts: [{name: test, context: {cluster: fake, user: nobody, namespace: observability}}]\n",
        )
        .expect("write the kubeconfig");
        let config = config(&ClientSource::Kubeconfig(path))
            .await
            .expect("a usable kubeconfig");
        assert_eq!(config.cluster_url.to_string(), "http://127.0.0.1:6443/");
        assert_eq!(config.default_namespace, "observability");
    }

    #[tokio::test]
    async fn bad_sources_are_reported_with_what_was_wrong() {
        let error = config(&ClientSource::ApiServer("127.0.0.1:6443".into()))
            .await
            .expect_err("no scheme");
        assert!(error.to_string().contains("not an API server URL"), "{error}");
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("kubeconfig");
        std::fs::write(&path, "clusters: [").expect("write");
        let error = config(&ClientSource::Kubeconfig(path.clone()))
            .await
            .expect_err("bad YAML");
        assert!(error.to_string().contains(&path.display().to_string()), "{error}");
    }
}
