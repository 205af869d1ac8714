//! The Markdown form of a [`Report`], for docs/chaos.md and CI logs: verdict and seed first,
//! then violations, faults, timings and availability. JSON keeps every violation; Markdown
//! shows the first few of each kind so a run with thousands stays readable.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use super::Report;
use super::Share;
use super::TimingSummary;
use super::Violation;
use super::ViolationKind;
use crate::seconds::text as seconds;

/// Violations listed per kind before the rest are only counted.
const VIOLATIONS_SHOWN_PER_KIND: usize = 20;

pub fn render_markdown(report: &Report) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail; the results are ignored for that reason only.
    let _ = writeln!(out, "# Chaos report\n");
    let verdict = if report.passed() {
        "**passed**".to_string()
    } else {
        let count = report.violations.len();
        format!("**failed** with {count} violation{}", if count == 1 { "" } else { "s" })
    };
    let _ = writeln!(
        out,
        "Seed `{}`, {} observed, replicas {}, {} polls, {} revisions seen: {verdict}.\n",
        report.seed,
        seconds(report.duration),
        report.replicas.iter().cloned().collect::<Vec<_>>().join(", "),
        report.polls,
        report.revisions_seen,
    );
    violations(&mut out, &report.violations);
    faults(&mut out, report);
    timings(&mut out, report);
    availability(&mut out, report);
    if !report.notes.is_empty() {
        let _ = writeln!(out, "## Notes\n");
        for note in &report.notes {
            let _ = writeln!(out, "- {}", cell(note));
        }
        let _ = writeln!(out);
    }
    out
}

fn violations(out: &mut String, violations: &[Violation]) {
    let _ = writeln!(out, "## Violations\n");
    if violations.is_empty() {
        let _ = writeln!(out, "None.\n");
        return;
    }
    let mut by_kind: BTreeMap<ViolationKind, Vec<&Violation>> = BTreeMap::new();
    for violation in violations {
        by_kind.entry(violation.kind).or_default().push(violation);
    }
    let _ = writeln!(out, "| invariant | kind | at | replicas | revision | details |");
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    let mut hidden = Vec::new();
    for (kind, list) in &by_kind {
        for violation in list.iter().take(VIOLATIONS_SHOWN_PER_KIND) {
            let _ = writeln!(
                out,
                "| {} | {kind} | {} | {} | {} | {} |",
                violation.invariant,
                seconds(violation.at),
                violation.replicas.join(", "),
                violation.revision.map(|r| r.to_string()).unwrap_or_default(),
                cell(&violation.details),
            );
        }
        if list.len() > VIOLATIONS_SHOWN_PER_KIND {
            hidden.push(format!(
                "{} more of kind {kind}",
                list.len() - VIOLATIONS_SHOWN_PER_KIND
            ));
        }
    }
    let _ = writeln!(out);
    if !hidden.is_empty() {
        let _ = writeln!(out, "Not shown (see the JSON report): {}.\n", hidden.join(", "));
    }
}

fn faults(out: &mut String, report: &Report) {
    let _ = writeln!(out, "## Faults\n");
    if report.faults.is_empty() {
        let _ = writeln!(out, "None injected.\n");
        return;
    }
    let _ = writeln!(out, "| fault | affected | started | healed | hit leader | failover |");
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for fault in &report.faults {
        let _ = writeln!(
            out,
            "| {} | {}{} | {} | {} | {} | {} |",
            cell(&fault.name),
            fault.affected.iter().cloned().collect::<Vec<_>>().join(", "),
            if fault.isolating { " (isolated)" } else { "" },
            seconds(fault.started),
            fault.healed.map(seconds).unwrap_or_else(|| "never".into()),
            fault.hit_leader.as_deref().unwrap_or(""),
            fault.failover.map(seconds).unwrap_or_default(),
        );
    }
    let _ = writeln!(out);
}

fn timings(out: &mut String, report: &Report) {
    let _ = writeln!(out, "## Failover and convergence\n");
    let _ = writeln!(out, "| measure | samples | p50 | p99 | max |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    timing_row(
        out,
        "failover (fault on the leader to another leader serving)",
        &report.failover,
    );
    timing_row(
        out,
        "convergence (heal to every replica caught up)",
        &report.convergence_summary,
    );
    let unresolved = report
        .convergence
        .iter()
        .filter(|sample| sample.converged_after.is_none())
        .count();
    let _ = writeln!(out);
    if unresolved > 0 {
        let _ = writeln!(
            out,
            "{unresolved} heals were followed by another fault or the end of the run before convergence.\n"
        );
    }
}

fn timing_row(out: &mut String, name: &str, summary: &TimingSummary) {
    let show = |value: Option<Duration>| value.map(seconds).unwrap_or_default();
    let _ = writeln!(
        out,
        "| {name} | {} | {} | {} | {} |",
        summary.samples,
        show(summary.p50),
        show(summary.p99),
        show(summary.max)
    );
}

fn availability(out: &mut String, report: &Report) {
    let _ = writeln!(out, "## Availability (polls answered with an assignment)\n");
    let _ = writeln!(out, "| replicas | served | polls | share |");
    let _ = writeln!(out, "|---|---|---|---|");
    for (replica, share) in &report.availability.per_replica {
        share_row(out, replica, share);
    }
    share_row(out, "all", &report.availability.overall);
    share_row(
        out,
        "majority side during faults",
        &report.availability.majority_side_during_faults,
    );
    let _ = writeln!(out);
}

fn share_row(out: &mut String, name: &str, share: &Share) {
    let ratio = share
        .ratio
        .map(|ratio| format!("{:.2} %", ratio * 100.0))
        .unwrap_or_default();
    let _ = writeln!(out, "| {} | {} | {} | {ratio} |", cell(name), share.served, share.polls);
}

/// Text safe inside a table cell: no pipes, no line breaks.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}
