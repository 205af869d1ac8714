//! deploy/kubernetes against the service it deploys: the example `targetallocator.yaml` loads
//! as each replica reads it (its name taken from the pod's host name), and the StatefulSet
//! and Services agree with that file and with the service's own constants: replica count,
//! pod and Service names, ports, mount paths, probes and the termination grace period.
//! `deploy/validate.sh` checks the same manifests against the Kubernetes schemas.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use target_allocator::config;
use target_allocator::config::Config;
use target_allocator::config::LoadError;
use target_allocator::config::UpstreamFlags;
use target_allocator::service::SHUTDOWN_DEADLINE;
use yaml_rust2::Yaml;
use yaml_rust2::YamlLoader;

fn deploy_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/kubernetes")
        .join(name)
}

fn documents(name: &str) -> Vec<Yaml> {
    let path = deploy_file(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The one document of `kind` named `name` in `file`.
fn object(file: &str, kind: &str, name: &str) -> Yaml {
    let mut found = documents(file)
        .into_iter()
        .filter(|doc| doc["kind"].as_str() == Some(kind) && doc["metadata"]["name"].as_str() == Some(name));
    let object = found.next().unwrap_or_else(|| panic!("{file} has no {kind} {name}"));
    assert!(found.next().is_none(), "{file} has two {kind}s named {name}");
    object
}

fn text<'a>(node: &'a Yaml, what: &str) -> &'a str {
    node.as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {node:?}"))
}

fn list<'a>(node: &'a Yaml, what: &str) -> &'a [Yaml] {
    node.as_vec()
        .unwrap_or_else(|| panic!("{what} is not a list: {node:?}"))
}

/// The item of a list of mappings whose `name` is `name` (containers, ports, volumes, env).
fn named<'a>(items: &'a Yaml, name: &str, what: &str) -> &'a Yaml {
    list(items, what)
        .iter()
        .find(|item| item["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("{what} has no {name:?}"))
}

/// What the allocator's manifests say, read from the files kustomize renders.
struct Manifests {
    namespace: String,
    statefulset: Yaml,
    peers_service: Yaml,
    client_service: Yaml,
    /// The name of the configMapGenerator entry that holds targetallocator.yaml.
    config_map: String,
}

impl Manifests {
    fn read() -> Self {
        let kustomization = &documents("kustomization.yaml")[0];
        let config_map = list(&kustomization["configMapGenerator"], "configMapGenerator")
            .iter()
            .find(|generator| {
                list(&generator["files"], "configMapGenerator files")
                    .iter()
                    .any(|file| file.as_str() == Some("targetallocator.yaml"))
            })
            .map(|generator| text(&generator["name"], "configMapGenerator name").to_string())
            .expect("a configMapGenerator holds targetallocator.yaml");
        let statefulset = object("statefulset.yaml", "StatefulSet", "otel-targetallocator");
        let peers_name = text(&statefulset["spec"]["serviceName"], "serviceName").to_string();
        Manifests {
            namespace: text(&kustomization["namespace"], "namespace").to_string(),
            peers_service: object("services.yaml", "Service", &peers_name),
            client_service: object("services.yaml", "Service", "otel-targetallocator"),
            statefulset,
            config_map,
        }
    }

    fn name(&self) -> &str {
        text(&self.statefulset["metadata"]["name"], "StatefulSet name")
    }

    fn replicas(&self) -> usize {
        let replicas = self.statefulset["spec"]["replicas"].as_i64().expect("replicas");
        usize::try_from(replicas).expect("a positive replica count")
    }

    fn pod_names(&self) -> Vec<String> {
        (0..self.replicas()).map(|i| format!("{}-{i}", self.name())).collect()
    }

    fn pod_spec(&self) -> &Yaml {
        &self.statefulset["spec"]["template"]["spec"]
    }

    fn container(&self) -> &Yaml {
        named(&self.pod_spec()["containers"], "target-allocator", "containers")
    }

    fn container_port(&self, name: &str) -> u16 {
        let port = named(&self.container()["ports"], name, "container ports")["containerPort"]
            .as_i64()
            .expect("containerPort");
        u16::try_from(port).expect("a port number")
    }

    fn mount_path(&self, volume: &str) -> &str {
        text(
            &named(&self.container()["volumeMounts"], volume, "volumeMounts")["mountPath"],
            "mountPath",
        )
    }

    /// The `--config-file` the container is started with.
    fn config_file(&self) -> PathBuf {
        list(&self.container()["args"], "args")
            .iter()
            .find_map(|arg| arg.as_str()?.strip_prefix("--config-file="))
            .map(PathBuf::from)
            .expect("the container passes --config-file=")
    }

    /// Load the example configuration as the replica `pod` reads it: the host name is the pod
    /// name and OTELCOL_NAMESPACE the pod's namespace, as the StatefulSet sets them.
    fn load_as(&self, pod: &str) -> Result<config::Loaded, LoadError> {
        let environment: HashMap<&str, String> = HashMap::from([
            ("HOSTNAME", pod.to_string()),
            ("OTELCOL_NAMESPACE", self.namespace.clone()),
            ("HOME", "/nonexistent".to_string()),
        ]);
        let flags = UpstreamFlags {
            config_file: deploy_file("targetallocator.yaml"),
            ..UpstreamFlags::default()
        };
        config::load(&flags, &|name: &str| environment.get(name).cloned())
    }

    fn config_of(&self, pod: &str) -> Config {
        match self.load_as(pod) {
            Ok(loaded) => {
                assert!(
                    loaded.warnings.is_empty(),
                    "targetallocator.yaml warns as {pod}: {:?}",
                    loaded.warnings
                );
                loaded.config
            }
            Err(e) => panic!("targetallocator.yaml is invalid as {pod}: {e}"),
        }
    }
}

fn port_of(address: &str) -> u16 {
    address
        .parse::<SocketAddr>()
        .unwrap_or_else(|e| panic!("{address:?}: {e}"))
        .port()
}

#[test]
fn every_replica_loads_the_example_configuration_under_its_own_pod_name() {
    let manifests = Manifests::read();
    for pod in manifests.pod_names() {
        let config = manifests.config_of(&pod);
        let cluster = config.cluster.expect("a cluster section");
        assert_eq!(cluster.name, pod, "the replica name is the host name");
        assert!(config.collectors.uses_kubernetes(), "collectors are pods");
        assert_eq!(config.collector_namespace, manifests.namespace);
    }
}

#[test]
fn a_host_name_that_is_not_a_peer_is_refused() {
    let problems = match Manifests::read().load_as("laptop") {
        Err(LoadError::Invalid { problems, .. }) => problems,
        Ok(_) => panic!("a replica named after a host outside cluster.peers must not start"),
        Err(other) => panic!("unexpected {other}"),
    };
    assert!(
        problems.iter().any(|p| p.key_path == "cluster.name"),
        "expected a cluster.name problem, got {problems:?}"
    );
}

#[test]
fn the_replica_name_comes_from_the_pod_name() {
    let manifests = Manifests::read();
    let hostname = named(&manifests.container()["env"], "HOSTNAME", "env");
    assert_eq!(
        hostname["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
        Some("metadata.name")
    );
    let namespace = named(&manifests.container()["env"], "OTELCOL_NAMESPACE", "env");
    assert_eq!(
        namespace["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
        Some("metadata.namespace")
    );
}

#[test]
fn the_peers_are_the_statefulset_pods_under_the_headless_service() {
    let manifests = Manifests::read();
    let config = manifests.config_of(&manifests.pod_names()[0]);
    let cluster = config.cluster.expect("a cluster section");
    let service = text(&manifests.peers_service["metadata"]["name"], "Service name");
    let peer_port = manifests.container_port("peer");
    let expected: BTreeMap<String, String> = manifests
        .pod_names()
        .into_iter()
        .map(|pod| {
            let url = format!("http://{pod}.{service}:{peer_port}");
            (pod, url)
        })
        .collect();
    assert_eq!(cluster.peers, expected);
    assert_eq!(cluster.peer_listen_addr.port(), peer_port);

    let spec = &manifests.peers_service["spec"];
    assert_eq!(
        spec["clusterIP"].as_str(),
        Some("None"),
        "the peers' Service is headless"
    );
    assert_eq!(
        spec["publishNotReadyAddresses"].as_bool(),
        Some(true),
        "peers must resolve each other before they are ready"
    );
    assert_eq!(
        named(&spec["ports"], "peer", "peer Service ports")["targetPort"].as_str(),
        Some("peer")
    );
}

#[test]
fn the_client_service_and_probes_use_the_http_port_like_upstream() {
    let manifests = Manifests::read();
    let config = manifests.config_of(&manifests.pod_names()[0]);
    assert_eq!(port_of(&config.listen_addr), manifests.container_port("http"));
    assert_eq!(manifests.container_port("http"), 8080, "upstream's port");

    let port = &list(&manifests.client_service["spec"]["ports"], "client Service ports")[0];
    assert_eq!(port["port"].as_i64(), Some(80), "the operator's Service port");
    assert_eq!(port["targetPort"].as_str(), Some("http"));

    for (probe, path) in [
        ("readinessProbe", "/readyz"),
        ("livenessProbe", "/livez"),
        ("startupProbe", "/livez"),
    ] {
        let get = &manifests.container()[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some(path), "{probe}");
        assert_eq!(get["port"].as_str(), Some("http"), "{probe}");
    }
}

#[test]
fn the_configuration_and_data_are_where_the_service_looks() {
    let manifests = Manifests::read();
    let config = manifests.config_of(&manifests.pod_names()[0]);
    let cluster = config.cluster.expect("a cluster section");
    assert_eq!(
        cluster.data_dir,
        PathBuf::from(manifests.mount_path("data")),
        "data_dir is the volume claim's mount"
    );
    let claims = list(
        &manifests.statefulset["spec"]["volumeClaimTemplates"],
        "volumeClaimTemplates",
    );
    assert!(
        claims
            .iter()
            .any(|claim| claim["metadata"]["name"].as_str() == Some("data"))
    );

    assert_eq!(
        manifests.config_file(),
        PathBuf::from(manifests.mount_path("config")).join("targetallocator.yaml")
    );
    let volume = named(&manifests.pod_spec()["volumes"], "config", "volumes");
    assert_eq!(
        volume["configMap"]["name"].as_str(),
        Some(manifests.config_map.as_str())
    );
}

#[test]
fn the_pod_outlives_the_services_shutdown_deadline() {
    let manifests = Manifests::read();
    let grace = manifests.pod_spec()["terminationGracePeriodSeconds"]
        .as_i64()
        .expect("terminationGracePeriodSeconds");
    assert!(
        u64::try_from(grace).expect("a positive grace period") > SHUTDOWN_DEADLINE.as_secs(),
        "terminationGracePeriodSeconds {grace} must exceed the shutdown deadline {SHUTDOWN_DEADLINE:?}"
    );
}
