//! The timeline on synthetic histories: the document is well-formed XML, carries one lane per
//! replica, every fault's label and every violation's marker, and a 30-minute run of 10,800
//! polls (or one broken at every poll) stays under the element and size caps.

use std::time::Duration;

use super::render_svg;
use crate::check;
use crate::checker::tests::scenario::ALL;
use crate::checker::tests::scenario::Evolve;
use crate::checker::tests::scenario::Scenario;
use crate::checker::tests::scenario::seconds;
use crate::checker::tests::scenario::target;
use crate::checker::tests::scenario::view;
use crate::history::EventKind;
use crate::history::History;
use crate::history::Poll;
use crate::history::PollOutcome;
use crate::history::RunParameters;
use crate::report::Report;
use crate::report::Violation;
use crate::report::ViolationKind;

const ELEMENT_CAP: usize = 5_000;
const SIZE_CAP: usize = 1_000_000;

/// Leader a isolated then healed, a follower killed and restarted, workload churn, and a fault
/// still active at the end: something in every lane.
fn eventful_run() -> History {
    let (scenario, settled) = Scenario::settled_until(5.0);
    let elected_b = settled.at_revision(11).led_by("b");
    let with_t7 = elected_b.at_revision(12).assigning("t7", "c1");
    let c3_took_t2 = with_t7.at_revision(13).assigning("t2", "c3");
    scenario
        .fault(5.0, "isolate leader a", &["a"], true)
        .serve(&["a"], 5.0, 8.0, &settled)
        .unavailable(&["a"], 8.0, 15.0)
        .serve(&["b", "c"], 5.0, 7.0, &settled)
        .serve(&["b", "c"], 7.0, 10.5, &elected_b)
        .targets_added(10.0, &["t7"])
        .serve(&["b", "c"], 10.5, 15.0, &with_t7)
        .heal(15.0, "isolate leader a")
        .serve(ALL, 15.0, 21.5, &with_t7)
        .collectors_left(16.0, &["c2"])
        .collectors_joined(20.0, &["c2"])
        .collectors_joined(21.0, &["c3"])
        .serve(ALL, 21.5, 24.0, &c3_took_t2)
        .fault(24.0, "kill follower c", &["c"], false)
        .serve(&["a", "b"], 24.0, 40.0, &c3_took_t2)
        .unreachable(&["c"], 24.0, 26.0)
        .restarted(26.0, "c", true)
        .heal(26.0, "kill follower c")
        .serve(&["c"], 26.0, 32.0, &c3_took_t2)
        .fault(32.0, "pause <c> & \"friends\"", &["c"], false)
        .unreachable(&["c"], 32.0, 40.0)
        .ends(40.0)
}

/// The checker's report on `history`, plus one violation whose text needs escaping.
fn report_with_violation(history: &History) -> Report {
    let mut report = check(history);
    report.violations.push(Violation::new(
        ViolationKind::StaleServing,
        ["a"],
        seconds(12.0),
        Some(10),
        "served <revision 10> past its lease & 'then' some",
    ));
    report
}

#[test]
fn renders_well_formed_svg_with_a_lane_per_replica_faults_and_violations() {
    let history = eventful_run();
    let report = report_with_violation(&history);

    let svg = render_svg(&history, &report);

    let elements = assert_well_formed(&svg);
    assert!(elements <= ELEMENT_CAP, "{elements} elements");
    for replica in ALL {
        assert_eq!(
            svg.matches(&format!("data-replica=\"{replica}\"")).count(),
            1,
            "lane of {replica}"
        );
    }
    assert_eq!(svg.matches("class=\"replica-lane\"").count(), ALL.len());
    assert!(svg.contains(">isolate leader a</text>"));
    assert!(svg.contains(">kill follower c</text>"));
    assert!(svg.contains(">pause &lt;c&gt; &amp; &quot;friends&quot; (not healed)</text>"));
    assert_eq!(svg.matches("class=\"fault\"").count(), 3);
    let violations = report.violations.len();
    assert!(violations >= 2, "the unhealed fault leaves liveness unjudged");
    assert_eq!(svg.matches("class=\"violation\"").count(), violations);
    assert!(svg.contains("stale serving (I6) at 12.00 s"));
    assert!(svg.contains("served &lt;revision 10&gt; past its lease &amp; &apos;then&apos; some"));
    assert!(svg.contains(&format!(
        "seed 7: <tspan fill=\"#d62728\">{violations} violations</tspan>"
    )));
    assert!(
        svg.contains(">r10</text>") && svg.contains(">r13</text>"),
        "revision scale"
    );
    assert!(svg.contains("c restarted at 26.00 s on an empty volume"));
    assert!(svg.contains("leader b"));
}

#[test]
fn a_clean_run_says_passed() {
    let (scenario, settled) = Scenario::settled_until(20.0);
    let history = scenario
        .fault(5.0, "pause follower b", &["b"], false)
        .heal(8.0, "pause follower b")
        .serve(ALL, 20.0, 30.0, &settled.at_revision(11))
        .ends(30.0);
    let report = check(&history);
    assert!(report.passed(), "{}", report.to_markdown());

    let svg = render_svg(&history, &report);

    assert_well_formed(&svg);
    assert!(svg.contains("seed 7: <tspan fill=\"#2e7d32\">passed</tspan>"));
    assert_eq!(svg.matches("class=\"violation\"").count(), 0);
}

#[test]
fn the_same_run_renders_the_same_bytes() {
    let history = eventful_run();
    let report = report_with_violation(&history);

    assert_eq!(render_svg(&history, &report), render_svg(&history, &report));
}

#[test]
fn an_empty_history_still_renders() {
    let history = History::new(1, ["only"], RunParameters::default());
    let report = check(&history);

    let svg = render_svg(&history, &report);

    assert_well_formed(&svg);
    assert!(svg.contains("data-replica=\"only\""));
}

#[test]
fn a_thirty_minute_run_of_ten_thousand_polls_stays_small() {
    let history = thirty_minute_run(false);
    assert!(history.polls.len() >= 10_000);
    let mut report = check(&history);
    // Far more violations than markers allowed, to exercise the merging.
    for index in 0..5_000u64 {
        report.violations.push(Violation::new(
            ViolationKind::Disagreement,
            ["a", "b"],
            Duration::from_millis(index * 360),
            Some(index),
            format!("app/t{index}: c1 vs c2, and a long explanation {}", "x".repeat(200)),
        ));
    }

    let svg = render_svg(&history, &report);

    let elements = assert_well_formed(&svg);
    eprintln!(
        "{} polls, {} faults, {} violations: {} bytes, {elements} elements",
        history.polls.len(),
        report.faults.len(),
        report.violations.len(),
        svg.len()
    );
    assert!(elements <= ELEMENT_CAP, "{elements} elements");
    assert!(svg.len() < SIZE_CAP, "{} bytes", svg.len());
    assert!(svg.contains("isolate a #0"));
}

#[test]
fn a_run_changing_at_every_poll_stays_under_the_caps() {
    let history = thirty_minute_run(true);
    let report = check(&history);

    let svg = render_svg(&history, &report);

    let elements = assert_well_formed(&svg);
    assert!(elements <= ELEMENT_CAP, "{elements} elements");
    assert!(svg.len() < SIZE_CAP, "{} bytes", svg.len());
}

/// Writes the eventful run to the temporary directory, to look at:
/// `cargo test -p chaos-tests timeline -- --ignored`, then open `timeline-example.svg`.
#[test]
#[ignore = "writes a file for a person to look at"]
fn writes_an_example() {
    let history = eventful_run();
    let report = report_with_violation(&history);
    let path = std::env::temp_dir().join("timeline-example.svg");
    std::fs::write(&path, render_svg(&history, &report)).unwrap();
    let long = thirty_minute_run(false);
    let long_path = std::env::temp_dir().join("timeline-long.svg");
    std::fs::write(&long_path, render_svg(&long, &check(&long))).unwrap();
    eprintln!("wrote {} and {}", path.display(), long_path.display());
}

/// Three replicas polled every 0.5 s for 30 minutes. Every 40 s a fault hits one replica for
/// 10 s (isolated: 503 after its lease; killed: unreachable), the workload changes every 5 s
/// and the revision moves every 7 s. With `every_poll`, outcome and revision change at every
/// poll instead: nothing can merge, so only the column budget holds the size.
fn thirty_minute_run(every_poll: bool) -> History {
    let replicas = ["a", "b", "c"];
    let mut history = History::new(42, replicas, RunParameters::default());
    let end_milliseconds = 30 * 60 * 1000u64;
    let faults = end_milliseconds / 40_000;
    for fault in 0..faults {
        let start = Duration::from_millis(fault * 40_000 + 20_000);
        let victim = replicas[fault as usize % 3];
        let isolating = fault % 2 == 0;
        let name = format!("{} {victim} #{fault}", if isolating { "isolate" } else { "kill" });
        history.record_event(
            start,
            EventKind::FaultStarted {
                name: name.clone(),
                affected: [victim.to_string()].into(),
                isolating,
            },
        );
        history.record_event(start + Duration::from_secs(10), EventKind::FaultHealed { name });
        if !isolating {
            history.record_event(
                start + Duration::from_secs(10),
                EventKind::ReplicaRestarted {
                    replica: victim.to_string(),
                    wiped: false,
                },
            );
        }
    }
    for change in 0..end_milliseconds / 5_000 {
        let at = Duration::from_millis(change * 5_000);
        let kind = if change % 3 == 0 {
            EventKind::CollectorsChanged {
                joined: [format!("c{change}")].into(),
                left: Default::default(),
            }
        } else {
            EventKind::TargetsChanged {
                added: [target(&format!("t{change}"))].into(),
                removed: Default::default(),
                relabeled: Default::default(),
            }
        };
        history.record_event(at, kind);
    }
    let base = view(1, "a", &[("c1", &["t1"]), ("c2", &["t2"])]);
    let mut tick = 0u64;
    for milliseconds in (0..end_milliseconds).step_by(500) {
        let at = Duration::from_millis(milliseconds);
        let fault = milliseconds.saturating_sub(20_000) / 40_000;
        let in_fault = milliseconds >= 20_000 && (milliseconds - 20_000) % 40_000 < 10_000;
        let leader = replicas[(milliseconds / 120_000) as usize % 3];
        for (index, replica) in replicas.iter().enumerate() {
            tick += 1;
            let outcome = if every_poll {
                match tick % 3 {
                    0 => PollOutcome::Served(base.at_revision(tick).led_by(replicas[(tick / 3) as usize % 3])),
                    1 => PollOutcome::Unavailable { status: 503 },
                    _ => PollOutcome::Unreachable,
                }
            } else if in_fault && fault as usize % 3 == index {
                if fault % 2 == 0 {
                    PollOutcome::Unavailable { status: 503 }
                } else {
                    PollOutcome::Unreachable
                }
            } else {
                PollOutcome::Served(base.at_revision(1 + milliseconds / 7_000).led_by(leader))
            };
            history.record_poll(Poll {
                replica: replica.to_string(),
                at,
                outcome,
            });
        }
    }
    history.finish(Duration::from_millis(end_milliseconds));
    history
}

/// Checks what an XML parser would reject (unbalanced or crossed tags, unquoted or repeated
/// attributes, a bare `<` or `&`, unknown entities, more than one root) and counts elements.
/// Enough for the documents this module writes: no CDATA, no doctype.
fn assert_well_formed(document: &str) -> usize {
    let mut rest = document;
    if rest.starts_with("<?xml") {
        let end = rest.find("?>").expect("unterminated XML declaration");
        rest = &rest[end + 2..];
    }
    let mut open: Vec<&str> = Vec::new();
    let (mut elements, mut roots) = (0, 0);
    loop {
        let next = rest.find('<').unwrap_or(rest.len());
        let text = &rest[..next];
        assert!(!text.contains('>'), "bare '>' in text {text:?}");
        assert_entities(text);
        if open.is_empty() {
            assert!(text.trim().is_empty(), "text outside the root: {text:?}");
        }
        rest = &rest[next..];
        if rest.is_empty() {
            break;
        }
        if let Some(comment) = rest.strip_prefix("<!--") {
            let end = comment.find("-->").expect("unterminated comment");
            rest = &comment[end + 3..];
        } else if let Some(closing) = rest.strip_prefix("</") {
            let end = closing.find('>').expect("unterminated end tag");
            let name = closing[..end].trim_end();
            assert_eq!(open.pop(), Some(name), "end tag </{name}> does not match");
            rest = &closing[end + 1..];
        } else {
            let tag = &rest[1..];
            let name_end = tag
                .find(|character: char| character.is_whitespace() || character == '/' || character == '>')
                .expect("unterminated start tag");
            let name = &tag[..name_end];
            assert_name(name);
            let mut attributes = &tag[name_end..];
            let mut seen = Vec::new();
            let self_closing = loop {
                attributes = attributes.trim_start();
                if let Some(after) = attributes.strip_prefix("/>") {
                    rest = after;
                    break true;
                }
                if let Some(after) = attributes.strip_prefix('>') {
                    rest = after;
                    break false;
                }
                let equals = attributes.find('=').expect("attribute without a value");
                let attribute = &attributes[..equals];
                assert_name(attribute);
                assert!(!seen.contains(&attribute), "attribute {attribute} repeated on <{name}>");
                seen.push(attribute);
                let value = attributes[equals + 1..]
                    .strip_prefix('"')
                    .expect("attribute value not in double quotes");
                let close = value.find('"').expect("unterminated attribute value");
                assert!(!value[..close].contains('<'), "'<' in attribute {attribute}");
                assert_entities(&value[..close]);
                attributes = &value[close + 1..];
                assert!(
                    attributes.starts_with(|character: char| character.is_whitespace()
                        || character == '/'
                        || character == '>'),
                    "no space after attribute {attribute}"
                );
            };
            elements += 1;
            if open.is_empty() {
                roots += 1;
            }
            if !self_closing {
                open.push(name);
            }
        }
    }
    assert!(open.is_empty(), "unclosed elements {open:?}");
    assert_eq!(roots, 1, "one root element");
    elements
}

fn assert_name(name: &str) {
    assert!(
        !name.is_empty()
            && name.starts_with(|character: char| character.is_ascii_alphabetic() || character == '_')
            && name
                .chars()
                .all(|character| character.is_ascii_alphanumeric() || "-_.:".contains(character)),
        "bad name {name:?}"
    );
}

fn assert_entities(text: &str) {
    for (index, _) in text.match_indices('&') {
        let entity = &text[index..];
        let end = entity.find(';').expect("unterminated entity");
        let body = &entity[1..end];
        let known = ["amp", "lt", "gt", "quot", "apos"].contains(&body)
            || body
                .strip_prefix("#x")
                .is_some_and(|hex| !hex.is_empty() && hex.chars().all(|digit| digit.is_ascii_hexdigit()))
            || body
                .strip_prefix('#')
                .is_some_and(|digits| !digits.is_empty() && digits.chars().all(|digit| digit.is_ascii_digit()));
        assert!(known, "unknown entity &{body};");
    }
    assert!(
        !text
            .chars()
            .any(|character| (character as u32) < 0x20 && !matches!(character, '\t' | '\n' | '\r')),
        "control character in text"
    );
}
