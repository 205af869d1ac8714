//! The HTML UI pages (`target_allocator::html::render`): every route, every error case,
//! escaping of user-controlled text and the query escaping of links.

use std::collections::BTreeMap;

use serde_json::Value;
use serde_json::json;
use ta_raft::CollectorState;
use ta_raft::Table;
use ta_raft::TargetId;
use ta_raft::intern::Symbol;
use ta_raft::model::Collector;
use ta_raft::model::Labels;
use ta_raft::model::Target;
use target_allocator::html::HtmlResponse;
use target_allocator::html::render;

const NAVIGATION: &str = "<nav>\n    <ul>\n        <li><a href=\"/\">Home</a></li>\n        \
     <li><a href=\"/debug/scrape_configs\">Scrape Configs</a></li>\n        \
     <li><a href=\"/debug/jobs\">Jobs</a></li>\n        \
     <li><a href=\"/debug/targets\">Targets</a></li>\n    </ul>\n</nav>\n";

fn header(title: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head>\n    <meta charset=\"utf-8\">\n    <title>{title}</title>\n    \
         <link rel=\"shortcut icon\" href=\"https://opentelemetry.io/favicons/favicon.ico\"/>\n</head>\n<body>\n\
         <h1>{title}</h1>\n{NAVIGATION}"
    )
}

const FOOTER: &str = "</body>\n</html>";

/// A table as upstream's `properties_table.html` writes it; cells are given as markup.
fn table(headers: &[&str], rows: &[&[&str]]) -> String {
    let mut out = String::from("<table>\n    <thead>");
    for header in headers {
        out.push_str(&format!("\n    <td>\n        {header}\n    </td>"));
    }
    out.push_str("\n    </thead>");
    for (index, row) in rows.iter().enumerate() {
        out.push_str(if index % 2 == 0 {
            "\n    <tr style=\"background: #eee\">"
        } else {
            "\n    <tr >"
        });
        for cell in row.iter() {
            out.push_str(&format!(
                "\n        <td style=\"vertical-align: top;\">\n            {cell}\n        </td>"
            ));
        }
        out.push_str("\n    </tr>");
    }
    out.push_str("\n</table>\n");
    out
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::new(
        pairs
            .iter()
            .map(|(name, value)| (Symbol::from(*name), Symbol::from(*value)))
            .collect(),
    )
}

fn add_target(table: &mut Table, id: u64, job: &str, collector: Option<&str>, pairs: &[(&str, &str)]) {
    table.insert_target(
        TargetId(id),
        Target {
            job: Symbol::from(job),
            labels: labels(pairs),
            collector: collector.map(Symbol::from),
        },
    );
}

fn add_collector(table: &mut Table, name: &str) {
    table.collectors.insert(
        Symbol::from(name),
        Collector {
            node: None,
            state: CollectorState::Ready,
        },
    );
}

/// Two collectors; `job-a` has targets 10 (collector-1) and 30 (unassigned), `job-b` has
/// target 20 (collector-1) with Kubernetes metadata; collector-2 has nothing.
fn sample_table() -> Table {
    let mut table = Table::new();
    add_collector(&mut table, "collector-2");
    add_collector(&mut table, "collector-1");
    add_target(&mut table, 30, "job-a", None, &[("__address__", "10.0.0.3:80")]);
    add_target(
        &mut table,
        10,
        "job-a",
        Some("collector-1"),
        &[("__address__", "10.0.0.1:80")],
    );
    add_target(
        &mut table,
        20,
        "job-b",
        Some("collector-1"),
        &[
            ("__address__", "10.0.0.2:8080"),
            ("__meta_kubernetes_endpointslice_name", "svc-abc"),
            ("__meta_kubernetes_namespace", "ns"),
            ("__meta_kubernetes_pod_container_name", "app"),
            ("__meta_kubernetes_pod_container_port_name", "http"),
            ("__meta_kubernetes_pod_name", "pod-1"),
            ("__meta_kubernetes_pod_node_name", "node-a"),
            ("__meta_kubernetes_service_name", "svc"),
            ("__meta_kubernetes_service_port", "8080"),
        ],
    );
    table
}

fn no_configs() -> BTreeMap<String, Value> {
    BTreeMap::new()
}

fn get(table: &Table, path: &str, query: Option<&str>) -> HtmlResponse {
    render(table, &no_configs(), path, query).expect("an HTML route")
}

fn assert_page(response: &HtmlResponse, status: u16, body: &str) {
    assert_eq!(response.status, status);
    assert_eq!(response.content_type, "text/html; charset=utf-8");
    assert!(response.nosniff);
    assert_eq!(response.body, body);
}

fn job_link(job: &str) -> String {
    format!("<a href=\"/debug/job?job_id={job}\">{job}</a>")
}

fn collector_link(collector: &str) -> String {
    format!("<a href=\"/debug/collector?collector_id={collector}\">{collector}</a>")
}

#[test]
fn other_paths_are_not_html_routes() {
    let table = Table::new();
    for path in [
        "/livez",
        "/jobs/x/targets",
        "/debug/",
        "/debug/pprof/",
        "",
        "/index.html",
        "/jobs/",
    ] {
        assert!(render(&table, &no_configs(), path, None).is_none(), "{path}");
    }
}

#[test]
fn index_counts_scrape_configs_jobs_targets_and_lists_collectors_by_name() {
    let configs = BTreeMap::from([
        ("job-a".to_owned(), json!({})),
        ("job-b".to_owned(), json!({})),
        ("job-idle".to_owned(), json!({})),
    ]);
    let response = render(&sample_table(), &configs, "/", None).unwrap();
    let expected = header("OpenTelemetry Target Allocator")
        + &table(
            &["Category", "Count"],
            &[
                &["<a href=\"/scrape_configs\">Scrape Configs</a>", "3"],
                &["<a href=\"/debug/jobs\">Jobs</a>", "2"],
                &["<a href=\"/debug/targets\">Targets</a>", "3"],
            ],
        )
        + &table(
            &["Collector", "Job Count", "Target Count"],
            &[
                &[&collector_link("collector-1"), "2", "2"],
                &[&collector_link("collector-2"), "0", "0"],
            ],
        )
        + FOOTER;
    assert_eq!(response.status, 200);
    assert_eq!(response.content_type, "text/html");
    assert!(!response.nosniff);
    assert_eq!(response.body, expected);
}

#[test]
fn index_of_an_empty_table() {
    let response = get(&Table::new(), "/", None);
    let expected = header("OpenTelemetry Target Allocator")
        + &table(
            &["Category", "Count"],
            &[
                &["<a href=\"/scrape_configs\">Scrape Configs</a>", "0"],
                &["<a href=\"/debug/jobs\">Jobs</a>", "0"],
                &["<a href=\"/debug/targets\">Targets</a>", "0"],
            ],
        )
        + &table(&["Collector", "Job Count", "Target Count"], &[])
        + FOOTER;
    assert_eq!(response.body, expected);
}

#[test]
fn scrape_configs_page_shows_pretty_json_sorted_by_job_on_both_paths() {
    let configs = BTreeMap::from([
        (
            "zeta".to_owned(),
            json!({"job_name": "zeta", "scrape_interval": "30s", "relabel_configs": [{"regex": "a<b"}]}),
        ),
        (
            "alpha".to_owned(),
            json!({"job_name": "alpha", "basic_auth": {"password": "<secret>"}}),
        ),
    ]);
    let alpha = "{\n  &#34;basic_auth&#34;: {\n    &#34;password&#34;: &#34;\\u003csecret\\u003e&#34;\n  },\n  \
                 &#34;job_name&#34;: &#34;alpha&#34;\n}";
    let zeta = "{\n  &#34;job_name&#34;: &#34;zeta&#34;,\n  &#34;relabel_configs&#34;: [\n    {\n      \
                &#34;regex&#34;: &#34;a\\u003cb&#34;\n    }\n  ],\n  &#34;scrape_interval&#34;: &#34;30s&#34;\n}";
    let expected = header("OpenTelemetry Target Allocator - Scrape Configs")
        + &table(
            &["Job", "Scrape Config"],
            &[
                &[&job_link("alpha"), &format!("<pre>{alpha}</pre>")],
                &[&job_link("zeta"), &format!("<pre>{zeta}</pre>")],
            ],
        )
        + FOOTER;
    for path in ["/debug/scrape_configs", "/scrape_configs"] {
        let response = render(&Table::new(), &configs, path, None).unwrap();
        assert_page(&response, 200, &expected);
    }
}

#[test]
fn jobs_page_counts_targets_per_job_on_both_paths() {
    let expected = header("OpenTelemetry Target Allocator - Jobs")
        + &table(
            &["Job", "Target Count"],
            &[&[&job_link("job-a"), "2"], &[&job_link("job-b"), "1"]],
        )
        + FOOTER;
    for path in ["/debug/jobs", "/jobs"] {
        assert_page(&get(&sample_table(), path, None), 200, &expected);
    }
    let empty = header("OpenTelemetry Target Allocator - Jobs") + &table(&["Job", "Target Count"], &[]) + FOOTER;
    assert_page(&get(&Table::new(), "/jobs", None), 200, &empty);
}

#[test]
fn job_page_counts_the_job_per_collector() {
    let expected = header("Job: job-a")
        + &table(
            &["Collector", "Target Count"],
            &[
                &[&collector_link("collector-1"), "1"],
                &[&collector_link("collector-2"), "0"],
            ],
        )
        + FOOTER;
    assert_page(
        &get(&sample_table(), "/debug/job", Some("job_id=job-a")),
        200,
        &expected,
    );

    // An unknown job still lists every collector.
    let unknown = get(&sample_table(), "/debug/job", Some("job_id=nope"));
    assert_eq!(unknown.status, 200);
    assert!(unknown.body.contains("<title>Job: nope</title>"));
    assert_eq!(unknown.body.matches("            0\n").count(), 2);
}

#[test]
fn job_page_without_exactly_one_job_id_is_a_bare_400() {
    for query in [
        None,
        Some(""),
        Some("job=x"),
        Some("job_id=a&job_id=b"),
        Some("job_id=%zz"),
    ] {
        assert_page(&get(&sample_table(), "/debug/job", query), 400, "");
    }
    // An empty value is still one value.
    assert_eq!(get(&sample_table(), "/debug/job", Some("job_id=")).status, 200);
}

#[test]
fn targets_page_lists_targets_by_hash() {
    let expected = header("OpenTelemetry Target Allocator - Targets")
        + &table(
            &["Job", "Target", "Collector", "Endpoint Slice"],
            &[
                &[
                    &job_link("job-a"),
                    "<a href=\"/debug/target?target_hash=10\">10.0.0.1:80</a>",
                    &collector_link("collector-1"),
                    "",
                ],
                &[
                    &job_link("job-b"),
                    "<a href=\"/debug/target?target_hash=20\">10.0.0.2:8080</a>",
                    &collector_link("collector-1"),
                    "svc-abc",
                ],
                &[
                    &job_link("job-a"),
                    "<a href=\"/debug/target?target_hash=30\">10.0.0.3:80</a>",
                    &collector_link(""),
                    "",
                ],
            ],
        )
        + FOOTER;
    assert_page(&get(&sample_table(), "/debug/targets", None), 200, &expected);
}

#[test]
fn target_page_shows_kubernetes_details_and_every_label() {
    let expected = header("Target: 10.0.0.2:8080")
        + &table(
            &["", ""],
            &[
                &["Collector", &collector_link("collector-1")],
                &["Job", &job_link("job-b")],
                &["Namespace", "ns"],
                &["Service Name", "svc"],
                &["Service Port", "8080"],
                &["Pod Name", "pod-1"],
                &["Container Name", "app"],
                &["Container Port Name", "http"],
                &["Node Name", "node-a"],
                &["Endpoint Slice Name", "svc-abc"],
            ],
        )
        + &table(
            &["Label", "Value"],
            &[
                &["__address__", "10.0.0.2:8080"],
                &["__meta_kubernetes_endpointslice_name", "svc-abc"],
                &["__meta_kubernetes_namespace", "ns"],
                &["__meta_kubernetes_pod_container_name", "app"],
                &["__meta_kubernetes_pod_container_port_name", "http"],
                &["__meta_kubernetes_pod_name", "pod-1"],
                &["__meta_kubernetes_pod_node_name", "node-a"],
                &["__meta_kubernetes_service_name", "svc"],
                &["__meta_kubernetes_service_port", "8080"],
            ],
        )
        + FOOTER;
    assert_page(
        &get(&sample_table(), "/debug/target", Some("target_hash=20")),
        200,
        &expected,
    );
}

#[test]
fn target_page_node_name_falls_back_to_an_endpoint_slice_node_target() {
    let mut table = Table::new();
    add_target(
        &mut table,
        7,
        "j",
        None,
        &[
            ("__meta_kubernetes_endpointslice_address_target_kind", "Node"),
            ("__meta_kubernetes_endpointslice_address_target_name", "node-b"),
        ],
    );
    let body = get(&table, "/debug/target", Some("target_hash=7")).body;
    assert!(body.contains(
        "            Node Name\n        </td>\n        <td style=\"vertical-align: top;\">\n            node-b\n"
    ));
    assert!(body.contains("<title>Target: </title>"));
}

const TARGET_HASH_MISSING: &str = "<html>\n<body>\n<h1>Bad Request</h1>\n<p>Expected target_hash in the query string</p>\n\
     <p>Example: /debug/target?target_hash=my-target-42</p>\n</body>\n</html>";
const TARGET_HASH_NOT_A_NUMBER: &str = "<html>\n<body>\n<h1>Bad Request</h1>\n<p>Expected target_hash to be a number</p>\n\
     <p>Example: /debug/target?target_hash=42</p>\n</body>\n</html>";

fn target_not_found(hash: &str) -> String {
    format!("<html>\n<body>\n<h1>Unknown Target: {hash}</h1>\n</body>\n</html>")
}

#[test]
fn target_page_without_a_hash_or_with_zero_is_a_bad_request() {
    for query in [
        None,
        Some(""),
        Some("target_hash="),
        Some("target_hash=0"),
        Some("target_hash=%zz"),
    ] {
        assert_page(&get(&sample_table(), "/debug/target", query), 400, TARGET_HASH_MISSING);
    }
}

#[test]
fn target_page_with_a_non_numeric_hash_writes_both_error_pages_like_upstream() {
    // `+` decodes to a space; the not-found page echoes the decoded text.
    for (hash, echoed) in [
        ("abc", "abc"),
        ("-1", "-1"),
        ("+20", " 20"),
        ("1_0", "1_0"),
        ("1e3", "1e3"),
    ] {
        let response = get(&sample_table(), "/debug/target", Some(&format!("target_hash={hash}")));
        assert_eq!(response.status, 400, "{hash}");
        assert_eq!(
            response.body,
            format!("{TARGET_HASH_NOT_A_NUMBER}{}", target_not_found(echoed)),
            "{hash}"
        );
    }
    let escaped = get(&sample_table(), "/debug/target", Some("target_hash=%3Cb%3E"));
    assert_eq!(
        escaped.body,
        format!("{TARGET_HASH_NOT_A_NUMBER}{}", target_not_found("&lt;b&gt;"))
    );
}

#[test]
fn target_page_with_an_overflowing_hash_looks_up_the_maximum_like_go() {
    let mut table = sample_table();
    add_target(&mut table, u64::MAX, "max", None, &[("__address__", "m:1")]);
    let response = get(&table, "/debug/target", Some("target_hash=99999999999999999999"));
    assert_eq!(response.status, 400);
    assert!(response.body.starts_with(TARGET_HASH_NOT_A_NUMBER));
    assert!(response.body.contains("<title>Target: m:1</title>"));
}

#[test]
fn target_page_for_an_unknown_hash_is_404() {
    assert_page(
        &get(&sample_table(), "/debug/target", Some("target_hash=42")),
        404,
        &target_not_found("42"),
    );
    // The raw text is echoed, not the parsed number.
    assert_page(
        &get(&sample_table(), "/debug/target", Some("target_hash=0042")),
        404,
        &target_not_found("0042"),
    );
    assert_eq!(
        get(&sample_table(), "/debug/target", Some("target_hash=010")).status,
        200,
        "leading zeros parse"
    );
}

#[test]
fn collector_page_lists_its_targets_by_hash() {
    let expected = header("Collector: collector-1")
        + &table(
            &["Job", "Target", "Endpoint Slice"],
            &[
                &[
                    &job_link("job-a"),
                    "<a href=\"/debug/target?target_hash=10\">10.0.0.1:80</a>",
                    "",
                ],
                &[
                    &job_link("job-b"),
                    "<a href=\"/debug/target?target_hash=20\">10.0.0.2:8080</a>",
                    "svc-abc",
                ],
            ],
        )
        + FOOTER;
    assert_page(
        &get(&sample_table(), "/debug/collector", Some("collector_id=collector-1")),
        200,
        &expected,
    );
    let idle = header("Collector: collector-2") + &table(&["Job", "Target", "Endpoint Slice"], &[]) + FOOTER;
    assert_page(
        &get(&sample_table(), "/debug/collector", Some("collector_id=collector-2")),
        200,
        &idle,
    );
}

#[test]
fn collector_page_errors() {
    let bad_request = "<html>\n<body>\n<h1>Bad Request</h1>\n<p>Expected collector_id in the query string</p>\n\
                       <p>Example: /debug/collector?collector_id=my-collector-42</p>\n</body>\n</html>";
    for query in [
        None,
        Some("collector_id="),
        Some("collector_id=collector-1&collector_id=collector-2"),
    ] {
        assert_page(&get(&sample_table(), "/debug/collector", query), 400, bad_request);
    }
    assert_page(
        &get(
            &sample_table(),
            "/debug/collector",
            Some("collector_id=unknown-collector-1"),
        ),
        404,
        "<html>\n<body>\n<h1>Unknown Collector: unknown-collector-1</h1>\n</body>\n</html>",
    );
    assert_page(
        &get(
            &sample_table(),
            "/debug/collector",
            Some("collector_id=%3Cscript%3E+%26"),
        ),
        404,
        "<html>\n<body>\n<h1>Unknown Collector: &lt;script&gt; &amp;</h1>\n</body>\n</html>",
    );
}

#[test]
fn user_controlled_text_is_escaped() {
    let mut table = Table::new();
    add_collector(&mut table, "a&b");
    add_target(
        &mut table,
        1,
        "<script>",
        Some("a&b"),
        &[("__address__", "\"x\":1"), ("label", "it's <b>+1</b>")],
    );
    let configs = BTreeMap::from([("<script>".to_owned(), json!({"job_name": "<script>"}))]);

    let job_link = "<a href=\"/debug/job?job_id=%3Cscript%3E\">&lt;script&gt;</a>";
    let collector_link = "<a href=\"/debug/collector?collector_id=a%26b\">a&amp;b</a>";
    let pages = [
        ("/", None),
        ("/debug/scrape_configs", None),
        ("/debug/jobs", None),
        ("/debug/job", Some("job_id=%3Cscript%3E")),
        ("/debug/targets", None),
        ("/debug/target", Some("target_hash=1")),
        ("/debug/collector", Some("collector_id=a%26b")),
    ];
    for (path, query) in pages {
        let body = render(&table, &configs, path, query).unwrap().body;
        assert!(!body.contains("<script>"), "{path}: {body}");
        assert!(!body.contains("a&b"), "{path}: {body}");
        match path {
            "/" => assert!(body.contains(collector_link)),
            "/debug/scrape_configs" | "/debug/jobs" => assert!(body.contains(job_link)),
            "/debug/job" => {
                assert!(body.contains("<title>Job: &lt;script&gt;</title>"));
                assert!(body.contains("<h1>Job: &lt;script&gt;</h1>"));
                assert!(body.contains(collector_link));
            }
            "/debug/targets" => {
                assert!(body.contains(job_link) && body.contains(collector_link));
                assert!(body.contains(">&#34;x&#34;:1</a>"));
            }
            "/debug/target" => {
                assert!(body.contains("<title>Target: &#34;x&#34;:1</title>"));
                assert!(body.contains("it&#39;s &lt;b&gt;&#43;1&lt;/b&gt;"));
            }
            _ => assert!(body.contains("<title>Collector: a&amp;b</title>")),
        }
    }
}

#[test]
fn links_query_escape_their_parameters() {
    let mut table = Table::new();
    add_collector(&mut table, "collector 0");
    add_target(
        &mut table,
        5,
        "serviceMonitor/ns/app/0",
        Some("collector 0"),
        &[("__address__", "a:1")],
    );
    let body = get(&table, "/debug/targets", None).body;
    assert!(body.contains("<a href=\"/debug/job?job_id=serviceMonitor%2Fns%2Fapp%2F0\">serviceMonitor/ns/app/0</a>"));
    // `QueryEscape` writes a space as `+`, which html/template then writes as `&#43;`.
    assert!(body.contains("<a href=\"/debug/collector?collector_id=collector&#43;0\">collector 0</a>"));

    // And the job page decodes it back.
    let job = get(&table, "/debug/job", Some("job_id=serviceMonitor%2Fns%2Fapp%2F0"));
    assert!(job.body.contains("<h1>Job: serviceMonitor/ns/app/0</h1>"));
    assert!(job.body.contains("            1\n"));
    let collector = get(&table, "/debug/collector", Some("collector_id=collector+0"));
    assert_eq!(collector.status, 200);
}
