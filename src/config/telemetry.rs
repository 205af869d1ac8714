//! `telemetry:`, the push of the allocator's own metrics over OTLP, with upstream's structure
//! (otelconf's MeterProvider readers) and upstream's validation. Intervals are milliseconds.
//! `${env:VAR}` in endpoints and header values is left for the exporter to expand.

use super::decode::Fields;
use super::problem::KeyPath;
use super::problem::Report;
use super::yaml::Node;

/// `telemetry:`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// `telemetry.metrics.readers`.
    pub metric_readers: Vec<MetricReader>,
}

/// One reader; a reader without `periodic` does nothing (as upstream).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricReader {
    pub periodic: Option<PeriodicReader>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeriodicReader {
    /// Milliseconds between exports (otelconf default 60000).
    pub interval_ms: u64,
    /// Milliseconds an export may take (otelconf default 30000).
    pub timeout_ms: u64,
    pub otlp_grpc: Option<OtlpExporter>,
    pub otlp_http: Option<OtlpExporter>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OtlpExporter {
    pub endpoint: String,
    /// `(name, value)`; a header without a value is kept with `None`.
    pub headers: Vec<(String, Option<String>)>,
    /// `""`, `cumulative`, `delta` or `low_memory`.
    pub temporality_preference: String,
    /// `tls.insecure` (gRPC only).
    pub insecure: bool,
}

const TEMPORALITIES: [&str; 4] = ["", "cumulative", "delta", "low_memory"];

pub fn decode(node: &Node, path: &KeyPath, report: &mut Report) -> TelemetryConfig {
    let mut config = TelemetryConfig::default();
    let Some(mut fields) = Fields::of(node, path, report) else {
        return config;
    };
    if let Some(metrics) = fields.take("metrics") {
        let metrics_path = path.key("metrics");
        if let Some(mut metrics_fields) = Fields::of(metrics, &metrics_path, report) {
            if let Some(readers) = metrics_fields.take("readers") {
                let readers_path = metrics_path.key("readers");
                for (index, reader) in super::decode::items(readers, &readers_path, report)
                    .unwrap_or_default()
                    .iter()
                    .enumerate()
                {
                    config
                        .metric_readers
                        .push(decode_reader(reader, &readers_path.index(index), report));
                }
            }
            metrics_fields.finish(report);
        }
    }
    fields.finish(report);
    config
}

fn decode_reader(node: &Node, path: &KeyPath, report: &mut Report) -> MetricReader {
    let Some(mut fields) = Fields::of(node, path, report) else {
        return MetricReader::default();
    };
    let periodic = fields.take("periodic").and_then(|periodic| {
        let periodic_path = path.key("periodic");
        let mut periodic_fields = Fields::of(periodic, &periodic_path, report)?;
        let interval_ms = periodic_fields.unsigned("interval", report).unwrap_or(60_000);
        let timeout_ms = periodic_fields.unsigned("timeout", report).unwrap_or(30_000);
        let mut otlp_grpc = None;
        let mut otlp_http = None;
        if let Some(exporter) = periodic_fields.take("exporter") {
            let exporter_path = periodic_path.key("exporter");
            if let Some(mut exporter_fields) = Fields::of(exporter, &exporter_path, report) {
                otlp_grpc = exporter_fields
                    .take("otlp_grpc")
                    .and_then(|n| decode_exporter(n, &exporter_path.key("otlp_grpc"), true, report));
                otlp_http = exporter_fields
                    .take("otlp_http")
                    .and_then(|n| decode_exporter(n, &exporter_path.key("otlp_http"), false, report));
                exporter_fields.finish(report);
            }
        }
        if otlp_grpc.is_none() && otlp_http.is_none() {
            report.error(
                &periodic_path,
                Some(periodic.line),
                "must configure otlp_grpc or otlp_http exporter",
            );
        }
        periodic_fields.finish(report);
        Some(PeriodicReader {
            interval_ms,
            timeout_ms,
            otlp_grpc,
            otlp_http,
        })
    });
    fields.finish(report);
    MetricReader { periodic }
}

fn decode_exporter(node: &Node, path: &KeyPath, grpc: bool, report: &mut Report) -> Option<OtlpExporter> {
    let mut fields = Fields::of(node, path, report)?;
    let mut exporter = OtlpExporter {
        endpoint: fields.string("endpoint", report).unwrap_or_default(),
        temporality_preference: fields.string("temporality_preference", report).unwrap_or_default(),
        ..OtlpExporter::default()
    };
    if exporter.endpoint.is_empty() {
        report.error(&path.key("endpoint"), Some(node.line), "endpoint must be set");
    }
    if !TEMPORALITIES.contains(&exporter.temporality_preference.as_str()) {
        report.error(
            &path.key("temporality_preference"),
            Some(fields.line_of("temporality_preference")),
            format!(
                "temporality_preference must be 'cumulative', 'delta', or 'low_memory', got {:?}",
                exporter.temporality_preference
            ),
        );
    }
    if let Some(headers) = fields.take("headers") {
        let headers_path = path.key("headers");
        for (index, header) in super::decode::items(headers, &headers_path, report)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let header_path = headers_path.index(index);
            if let Some(mut header_fields) = Fields::of(header, &header_path, report) {
                let name = header_fields.string("name", report).unwrap_or_default();
                let value = header_fields.string("value", report);
                if name.is_empty() {
                    report.error(&header_path.key("name"), Some(header.line), "a header needs a name");
                }
                header_fields.finish(report);
                exporter.headers.push((name, value));
            }
        }
    }
    if grpc && let Some(tls) = fields.take("tls") {
        let tls_path = path.key("tls");
        if let Some(mut tls_fields) = Fields::of(tls, &tls_path, report) {
            exporter.insecure = tls_fields.bool("insecure", report).unwrap_or(false);
            tls_fields.finish(report);
        }
    }
    fields.finish(report);
    Some(exporter)
}
