//! Random YAML documents fed to the loader: nested mappings, lists and scalars, keys drawn
//! mostly from the real configuration's vocabulary so that every decoder is reached, and
//! relabel rules with random fields. Whatever the input, the loader must not panic, and
//! must either load or return problems. Deterministic: the seed is fixed and printed on
//! failure.

use std::panic::AssertUnwindSafe;

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use proptest::test_runner::RngSeed;
use target_allocator::config;
use target_allocator::config::LoadError;
use target_allocator::config::UpstreamFlags;

const SEED: u64 = 0x7a_c0f1_6000;

/// Keys below the top level (the top-level ones come from `config::TOP_LEVEL_KEYS`).
const NESTED_KEYS: &[&str] = &[
    "global",
    "scrape_configs",
    "job_name",
    "scrape_interval",
    "scrape_timeout",
    "metrics_path",
    "scheme",
    "params",
    "honor_labels",
    "relabel_configs",
    "metric_relabel_configs",
    "static_configs",
    "targets",
    "labels",
    "file_sd_configs",
    "files",
    "refresh_interval",
    "http_sd_configs",
    "url",
    "dns_sd_configs",
    "names",
    "type",
    "port",
    "kubernetes_sd_configs",
    "role",
    "selectors",
    "label",
    "field",
    "namespaces",
    "own_namespace",
    "api_server",
    "kubeconfig_file",
    "attach_metadata",
    "scrape_protocols",
    "external_labels",
    "matchlabels",
    "matchLabels",
    "matchExpressions",
    "key",
    "operator",
    "values",
    "enabled",
    "service_monitor_selector",
    "allow_namespaces",
    "deny_namespaces",
    "scrape_classes",
    "metrics",
    "readers",
    "periodic",
    "exporter",
    "otlp_grpc",
    "otlp_http",
    "endpoint",
    "headers",
    "name",
    "value",
    "temporality_preference",
    "peers",
    "raft",
    "heartbeat_interval",
    "election_timeout_min",
    "lease",
    "snapshot_after_entries",
    "data_dir",
    "peer_listen_addr",
    "static",
    "register_on_poll",
    "ttl",
    "max_moves_per_minute",
    "max_targets_per_collector",
    "ring_layout",
    "<<",
    "source_labels",
    "regex",
    "action",
    "modulus",
    "target_label",
    "replacement",
    "separator",
];

fn vocabulary() -> Vec<&'static str> {
    config::TOP_LEVEL_KEYS.iter().chain(NESTED_KEYS).copied().collect()
}

const SCALARS: &[&str] = &[
    "",
    "~",
    "null",
    "true",
    "no",
    "0",
    "-1",
    "7",
    "99999999999999999999",
    "1d",
    "30s",
    "1m30s",
    "0s",
    "-5s",
    "(",
    ".*",
    "(.*)",
    "keep",
    "drop",
    "hashmod",
    "replace",
    "labelmap",
    "keepequal",
    "lowercase",
    "http://x:1/sd",
    "ftp://x",
    "a:1",
    "http://a/b",
    "*.json",
    "/etc/*/x.json",
    "SRV",
    "A",
    "MX",
    "v0.10.0",
    "v1.0.0",
    "balanced",
    "per-node",
    "consistent-hashing",
    "relabel-config",
    "0x1F",
    "1.5",
    ".inf",
    "$1",
    "${1}",
    "In",
    "Exists",
    "0.0.0.0:7400",
    "ta-0",
    "http://ta-0:7400",
    "[",
    "{",
    "- x",
    "a: b",
    "#",
    "&anchor",
    "*anchor",
    "!!str",
    "\u{0}",
    "日本",
    "\"",
    "'",
];

/// A document tree, emitted as block YAML.
#[derive(Debug, Clone)]
enum Tree {
    Scalar { text: String, quoted: bool },
    List(Vec<Tree>),
    Map(Vec<(String, Tree)>),
}

fn scalar() -> impl Strategy<Value = Tree> {
    (
        prop_oneof![
            4 => proptest::sample::select(SCALARS).prop_map(str::to_string),
            1 => "[ -~]{0,12}",
        ],
        any::<bool>(),
    )
        .prop_map(|(text, quoted)| Tree::Scalar { text, quoted })
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        9 => proptest::sample::select(vocabulary()).prop_map(str::to_string),
        1 => "[a-z_]{1,8}",
    ]
}

fn random_tree() -> impl Strategy<Value = Tree> {
    scalar().prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Tree::List),
            proptest::collection::vec((key(), inner), 0..6).prop_map(Tree::Map),
        ]
    })
}

fn relabel_rule() -> impl Strategy<Value = Tree> {
    let field = prop_oneof![
        Just("source_labels"),
        Just("separator"),
        Just("regex"),
        Just("modulus"),
        Just("target_label"),
        Just("replacement"),
        Just("action"),
    ];
    proptest::collection::vec((field, prop_oneof![3 => scalar(), 1 => random_tree()]), 0..7)
        .prop_map(|fields| Tree::Map(fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
}

fn scrape_config() -> impl Strategy<Value = Tree> {
    (
        scalar(),
        proptest::collection::vec(relabel_rule(), 0..4),
        proptest::collection::vec((key(), random_tree()), 0..5),
    )
        .prop_map(|(name, rules, extra)| {
            let mut entries = vec![
                ("job_name".to_string(), name),
                ("relabel_configs".to_string(), Tree::List(rules)),
            ];
            entries.extend(extra);
            Tree::Map(entries)
        })
}

fn structured_document() -> impl Strategy<Value = Tree> {
    (
        proptest::collection::vec(scrape_config(), 0..4),
        proptest::collection::vec((key(), random_tree()), 0..8),
    )
        .prop_map(|(jobs, extra)| {
            let mut entries = vec![
                (
                    "collector_namespace".to_string(),
                    Tree::Scalar {
                        text: "ns".into(),
                        quoted: false,
                    },
                ),
                (
                    "config".to_string(),
                    Tree::Map(vec![("scrape_configs".to_string(), Tree::List(jobs))]),
                ),
            ];
            entries.extend(extra);
            Tree::Map(entries)
        })
}

fn emit_scalar(text: &str, quoted: bool) -> String {
    if quoted {
        serde_json::to_string(text).unwrap_or_default()
    } else {
        text.to_string()
    }
}

fn emit_value(tree: &Tree, indent: usize, out: &mut String) {
    match tree {
        Tree::Scalar { text, quoted } => {
            out.push(' ');
            out.push_str(&emit_scalar(text, *quoted));
            out.push('\n');
        }
        Tree::List(items) if items.is_empty() => out.push_str(" []\n"),
        Tree::Map(entries) if entries.is_empty() => out.push_str(" {}\n"),
        Tree::List(items) => {
            out.push('\n');
            for item in items {
                out.push_str(&" ".repeat(indent));
                out.push('-');
                emit_value(item, indent + 2, out);
            }
        }
        Tree::Map(entries) => {
            out.push('\n');
            emit_entries(entries, indent, out);
        }
    }
}

fn emit_entries(entries: &[(String, Tree)], indent: usize, out: &mut String) {
    for (key, value) in entries {
        out.push_str(&" ".repeat(indent));
        out.push_str(key);
        out.push(':');
        emit_value(value, indent + 2, out);
    }
}

fn emit(tree: &Tree) -> String {
    let mut out = String::new();
    match tree {
        Tree::Map(entries) => emit_entries(entries, 0, &mut out),
        other => emit_value(other, 0, &mut out),
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        rng_seed: RngSeed::Fixed(SEED),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_loader_never_panics_on_random_documents(tree in prop_oneof![structured_document(), random_tree()]) {
        let document = emit(&tree);
        let environment = |name: &str| (name == "HOSTNAME").then(|| "fuzz-host".to_string());
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            config::parse("random.yaml", &document, &UpstreamFlags::default(), &environment)
        }));
        match outcome {
            Err(_) => prop_assert!(false, "seed {SEED:#x}: the loader panicked on:\n{document}"),
            Ok(Ok(_)) => {}
            Ok(Err(LoadError::Invalid { problems, .. })) => {
                prop_assert!(!problems.is_empty(), "seed {SEED:#x}: refused without a problem:\n{document}");
                for problem in &problems {
                    prop_assert!(!problem.message.is_empty(), "seed {SEED:#x}: {problem}");
                }
            }
            Ok(Err(other)) => prop_assert!(false, "seed {SEED:#x}: parsing text cannot be unreadable: {other}"),
        }
    }

    #[test]
    fn the_loader_never_panics_on_random_text(text in "[ -~\n\t]{0,300}") {
        let environment = |_: &str| None;
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            config::parse("random.yaml", &text, &UpstreamFlags::default(), &environment)
        }));
        prop_assert!(outcome.is_ok(), "seed {SEED:#x}: the loader panicked on:\n{text:?}");
    }
}
