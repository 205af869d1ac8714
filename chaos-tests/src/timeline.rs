//! The timeline of a chaos run as one self-contained SVG, to sit next to the Markdown report:
//! [`render_svg`] draws, over the run's time axis, what every replica's polls got and the
//! revision it served, which replica the cluster named as leader, the faults, the workload's
//! changes, the restarts, and the violations the checker found, with a legend and a title
//! line carrying the seed and the verdict.
//!
//! The picture is for a person looking for where a run went wrong, so it favours one readable
//! page over fidelity: time is cut into one column per pixel and each lane keeps, per column,
//! the worst outcome seen (an outage of one poll stays visible) and the last revision served.
//! A lane is then a handful of paths whatever the number of polls, and markers that would pile
//! up (violations, faults, restarts) are merged or capped, so a 30-minute run stays a small
//! file. The output uses no script, no external font and no stylesheet, so it renders the same
//! in a browser and in GitHub Markdown through an `<img>`, and it is a pure function of its
//! inputs: the same history and report give the same bytes.

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::fmt;
use std::fmt::Write;
use std::time::Duration;

use crate::history::EventKind;
use crate::history::History;
use crate::history::Poll;
use crate::history::PollOutcome;
use crate::report::Report;
use crate::report::Violation;
use crate::report::ViolationKind;
use crate::seconds::text as seconds;

/// Time columns, one per pixel of the plot: finer would only add elements nobody can see.
const COLUMNS: usize = 1200;
const PLOT_LEFT: f64 = 130.0;
const PLOT_WIDTH: f64 = COLUMNS as f64;
const PLOT_RIGHT: f64 = PLOT_LEFT + PLOT_WIDTH;
/// Room right of the plot for the revision scale of each lane.
const WIDTH: f64 = PLOT_RIGHT + 60.0;

const TITLE_BASELINE: f64 = 24.0;
const SUBTITLE_BASELINE: f64 = 42.0;
const FAULT_ROWS_TOP: f64 = 54.0;
/// Rows for fault labels, so overlapping or close faults can all be named.
const FAULT_ROWS: usize = 3;
const FAULT_ROW_HEIGHT: f64 = 15.0;
const NARROW_LANE_HEIGHT: f64 = 18.0;
const REPLICA_LANE_HEIGHT: f64 = 36.0;
const WORKLOAD_LANE_HEIGHT: f64 = 24.0;
const LANE_GAP: f64 = 4.0;
/// Keeps the revision line off the lane's edges, where it would hide in the gap.
const REVISION_PADDING: f64 = 6.0;
const AXIS_HEIGHT: f64 = 34.0;
const LEGEND_ROW_HEIGHT: f64 = 20.0;
const MARGIN: f64 = 10.0;

/// Caps on what is drawn one by one, each with its tooltip: beyond them a long or broken run
/// would make a file too large to open. Violations are merged per column and kind first;
/// faults and restarts past their cap are still shaded, without label or tooltip.
const VIOLATION_MARKERS: usize = 800;
const FAULTS_DETAILED: usize = 250;
const RESTART_MARKERS: usize = 200;
/// Violation details can list many targets; a tooltip longer than this is cut.
const TOOLTIP_CHARACTERS: usize = 400;
const DETAILS_PER_TOOLTIP: usize = 3;
const LANE_NAME_CHARACTERS: usize = 16;

/// Average advance of an 11 px sans-serif character, to place labels without measuring text.
const CHARACTER_WIDTH: f64 = 6.2;

const BACKGROUND: &str = "#ffffff";
const TEXT: &str = "#1a1a1a";
const MUTED_TEXT: &str = "#666666";
const LANE_BACKGROUND: &str = "#f1f1f1";
const SERVED: &str = "#a8d5a2";
const UNAVAILABLE: &str = "#f3b04f";
const UNREACHABLE: &str = "#8c8c8c";
const REVISION_LINE: &str = "#1b3a6b";
const GRID: &str = "#000000";
const ISOLATING_FAULT: &str = "#7b52c7";
const OTHER_FAULT: &str = "#37474f";
const VIOLATION: &str = "#d62728";
const PASSED: &str = "#2e7d32";
const RESTART: &str = "#111111";
const TARGETS_CHANGED: &str = "#00796b";
const COLLECTORS_CHANGED: &str = "#a0522d";
/// Leader colours, one per replica in name order. Tableau's categorical palette without its
/// red and green, which already mean "violation" and "served".
const REPLICA_COLOURS: [&str; 8] = [
    "#4e79a7", "#f28e2b", "#76b7b2", "#b07aa1", "#edc948", "#9c755f", "#ff9da7", "#bab0ac",
];

/// Draws the run as an SVG document. `report` should be the checker's verdict on `history`;
/// faults, failovers and violations are taken from it, polls and workload changes from the
/// history.
pub fn render_svg(history: &History, report: &Report) -> String {
    Chart::new(history, report).render()
}

/// What a poll got, ordered so that the worst of several polls in one column wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Answer {
    Served,
    Unavailable,
    Unreachable,
}

impl Answer {
    const ALL: [Answer; 3] = [Answer::Served, Answer::Unavailable, Answer::Unreachable];

    fn of(outcome: &PollOutcome) -> Answer {
        match outcome {
            PollOutcome::Served(_) => Answer::Served,
            PollOutcome::Unavailable { .. } => Answer::Unavailable,
            PollOutcome::Unreachable => Answer::Unreachable,
        }
    }

    fn colour(self) -> &'static str {
        match self {
            Answer::Served => SERVED,
            Answer::Unavailable => UNAVAILABLE,
            Answer::Unreachable => UNREACHABLE,
        }
    }
}

/// One replica's polls reduced to columns.
struct Lane<'h> {
    replica: &'h str,
    answers: Vec<Option<Answer>>,
    revisions: Vec<Option<u64>>,
    polls: BTreeMap<Answer, usize>,
    statuses: BTreeSet<u16>,
}

/// Vertical positions, worked out before drawing because the document's height comes first.
struct Layout {
    lanes_top: f64,
    violations_top: f64,
    replica_tops: Vec<f64>,
    leader_top: f64,
    workload_top: f64,
    lanes_bottom: f64,
    legend_top: f64,
    height: f64,
}

impl Layout {
    fn new(lanes: usize, legend: &[(Swatch, String)]) -> Self {
        let lanes_top = FAULT_ROWS_TOP + FAULT_ROWS as f64 * FAULT_ROW_HEIGHT;
        let violations_top = lanes_top;
        let mut top = violations_top + NARROW_LANE_HEIGHT + LANE_GAP;
        let mut replica_tops = Vec::new();
        for _ in 0..lanes {
            replica_tops.push(top);
            top += REPLICA_LANE_HEIGHT + LANE_GAP;
        }
        let leader_top = top;
        let workload_top = leader_top + NARROW_LANE_HEIGHT + LANE_GAP;
        let lanes_bottom = workload_top + WORKLOAD_LANE_HEIGHT;
        let legend_top = lanes_bottom + AXIS_HEIGHT;
        let legend_rows = legend_positions(legend).last().map_or(0, |(_, row)| row + 1);
        Layout {
            lanes_top,
            violations_top,
            replica_tops,
            leader_top,
            workload_top,
            lanes_bottom,
            legend_top,
            height: legend_top + legend_rows as f64 * LEGEND_ROW_HEIGHT + MARGIN,
        }
    }
}

struct Chart<'h> {
    history: &'h History,
    report: &'h Report,
    end: f64,
    lanes: Vec<Lane<'h>>,
    /// Per column, the leader most served polls named.
    leaders: Vec<Option<&'h str>>,
    colours: BTreeMap<&'h str, &'static str>,
    revisions: Option<(u64, u64)>,
    legend: Vec<(Swatch, String)>,
    layout: Layout,
}

impl<'h> Chart<'h> {
    fn new(history: &'h History, report: &'h Report) -> Self {
        // A run of zero length still gets an axis; a second is as good as any.
        let end = history.end.max(report.duration).as_secs_f64();
        let end = if end > 0.0 { end } else { 1.0 };
        let poll_interval = history.parameters.poll_interval.max(Duration::from_millis(1));

        let mut polls_by_replica: BTreeMap<&str, Vec<&Poll>> = history
            .replicas
            .iter()
            .map(|replica| (replica.as_str(), Vec::new()))
            .collect();
        for poll in &history.polls {
            polls_by_replica.entry(poll.replica.as_str()).or_default().push(poll);
        }
        let mut leader_counts: Vec<BTreeMap<&str, usize>> = vec![BTreeMap::new(); COLUMNS];
        let mut lanes = Vec::new();
        for (replica, mut polls) in polls_by_replica {
            polls.sort_by_key(|poll| poll.at);
            let mut lane = Lane {
                replica,
                answers: vec![None; COLUMNS],
                revisions: vec![None; COLUMNS],
                polls: BTreeMap::new(),
                statuses: BTreeSet::new(),
            };
            for (index, poll) in polls.iter().enumerate() {
                // A poll stands for the time until the next one; a late next poll means the
                // poller itself stalled, which is shown as a gap rather than guessed at.
                let until = match polls.get(index + 1) {
                    Some(next) if next.at - poll.at <= poll_interval * 3 => next.at,
                    _ => poll.at + poll_interval,
                };
                let answer = Answer::of(&poll.outcome);
                *lane.polls.entry(answer).or_default() += 1;
                let columns = column_range(poll.at.as_secs_f64(), until.as_secs_f64(), end);
                for column in columns.clone() {
                    let current = &mut lane.answers[column];
                    *current = Some(current.map_or(answer, |current| current.max(answer)));
                }
                match &poll.outcome {
                    PollOutcome::Served(view) => {
                        for column in columns {
                            lane.revisions[column] = Some(view.revision);
                            if let Some(leader) = &view.leader {
                                *leader_counts[column].entry(leader.as_str()).or_default() += 1;
                            }
                        }
                    }
                    PollOutcome::Unavailable { status } => {
                        lane.statuses.insert(*status);
                    }
                    PollOutcome::Unreachable => {}
                }
            }
            lanes.push(lane);
        }
        let leaders: Vec<Option<&str>> = leader_counts
            .iter()
            .map(|counts| {
                counts
                    .iter()
                    .max_by(|first, second| first.1.cmp(second.1).then(second.0.cmp(first.0)))
                    .map(|(leader, _)| *leader)
            })
            .collect();

        let mut named: BTreeSet<&str> = lanes.iter().map(|lane| lane.replica).collect();
        named.extend(leaders.iter().flatten().copied());
        let colours = named
            .into_iter()
            .enumerate()
            .map(|(index, name)| (name, REPLICA_COLOURS[index % REPLICA_COLOURS.len()]))
            .collect();

        let served_revisions = history.polls.iter().filter_map(|poll| match &poll.outcome {
            PollOutcome::Served(view) => Some(view.revision),
            _ => None,
        });
        let revisions = served_revisions.fold(None, |range: Option<(u64, u64)>, revision| match range {
            None => Some((revision, revision)),
            Some((low, high)) => Some((low.min(revision), high.max(revision))),
        });

        let legend = legend_items(revisions, &colours);
        let layout = Layout::new(lanes.len(), &legend);
        Chart {
            history,
            report,
            end,
            lanes,
            leaders,
            colours,
            revisions,
            legend,
            layout,
        }
    }

    fn x(&self, at: Duration) -> f64 {
        PLOT_LEFT + (at.as_secs_f64() / self.end).clamp(0.0, 1.0) * PLOT_WIDTH
    }

    fn column(&self, at: Duration) -> usize {
        ((at.as_secs_f64() / self.end * COLUMNS as f64) as usize).min(COLUMNS - 1)
    }

    fn render(&self) -> String {
        let mut svg = String::new();
        let layout = &self.layout;
        // Writing to a String cannot fail; results are ignored for that reason only.
        let _ = write!(
            svg,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" \
             width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" \
             font-family=\"sans-serif\" font-size=\"11\" fill=\"{TEXT}\">\n",
            width = Number(WIDTH),
            height = Number(layout.height),
        );
        let _ = writeln!(
            svg,
            "<title>{}</title>",
            escape(&format!("Chaos run timeline, seed {}", self.report.seed))
        );
        // Opaque, so the picture stays readable on a dark page.
        let _ = writeln!(svg, "<rect width=\"100%\" height=\"100%\" fill=\"{BACKGROUND}\"/>");
        self.title(&mut svg);
        self.lane_backgrounds(&mut svg);
        self.replica_bands(&mut svg);
        self.leader_lane(&mut svg);
        self.workload_lane(&mut svg);
        self.axis(&mut svg);
        self.faults(&mut svg);
        self.revision_lines(&mut svg);
        self.restarts(&mut svg);
        self.violations(&mut svg);
        self.legend(&mut svg);
        svg.push_str("</svg>\n");
        svg
    }

    fn title(&self, svg: &mut String) {
        let report = self.report;
        let (verdict, colour) = if report.passed() {
            ("passed".to_string(), PASSED)
        } else {
            (counted(report.violations.len(), "violation"), VIOLATION)
        };
        let _ = writeln!(
            svg,
            "<text x=\"{x}\" y=\"{TITLE_BASELINE}\" font-size=\"16\" font-weight=\"bold\">Chaos run, seed {seed}: \
             <tspan fill=\"{colour}\">{verdict}</tspan></text>",
            x = Number(PLOT_LEFT),
            seed = report.seed,
            verdict = escape(&verdict),
        );
        let mut facts = vec![
            format!("{} observed", seconds(report.duration)),
            counted(self.lanes.len(), "replica"),
            counted(report.polls, "poll"),
            counted(report.revisions_seen, "revision"),
            counted(report.faults.len(), "fault"),
        ];
        if let (Some(p50), Some(max)) = (report.failover.p50, report.failover.max) {
            facts.push(format!("failover p50 {}, max {}", seconds(p50), seconds(max)));
        }
        let _ = writeln!(
            svg,
            "<text x=\"{x}\" y=\"{SUBTITLE_BASELINE}\" fill=\"{MUTED_TEXT}\">{facts}</text>",
            x = Number(PLOT_LEFT),
            facts = escape(&facts.join(" · ")),
        );
    }

    fn lane_backgrounds(&self, svg: &mut String) {
        let layout = &self.layout;
        let mut backgrounds = String::new();
        let mut lane = |top: f64, height: f64| {
            let _ = write!(
                backgrounds,
                "M{} {}h{}v{}h-{}z",
                Number(PLOT_LEFT),
                Number(top),
                Number(PLOT_WIDTH),
                Number(height),
                Number(PLOT_WIDTH)
            );
        };
        lane(layout.violations_top, NARROW_LANE_HEIGHT);
        for top in &layout.replica_tops {
            lane(*top, REPLICA_LANE_HEIGHT);
        }
        lane(layout.leader_top, NARROW_LANE_HEIGHT);
        lane(layout.workload_top, WORKLOAD_LANE_HEIGHT);
        let _ = writeln!(svg, "<path d=\"{backgrounds}\" fill=\"{LANE_BACKGROUND}\"/>");

        let mut name = |top: f64, height: f64, text: &str| {
            lane_name(svg, top + height / 2.0 + 4.0, text, "");
        };
        name(layout.violations_top, NARROW_LANE_HEIGHT, "violations");
        name(layout.leader_top, NARROW_LANE_HEIGHT, "leader");
        name(layout.workload_top, WORKLOAD_LANE_HEIGHT, "workload");
    }

    fn replica_bands(&self, svg: &mut String) {
        for (lane, top) in self.lanes.iter().zip(&self.layout.replica_tops) {
            let _ = writeln!(
                svg,
                "<g class=\"replica-lane\" data-replica=\"{}\">",
                escape(lane.replica)
            );
            let polls: usize = lane.polls.values().sum();
            let served = lane.polls.get(&Answer::Served).copied().unwrap_or(0);
            lane_name(
                svg,
                top + 15.0,
                &shortened(lane.replica, LANE_NAME_CHARACTERS),
                "font-weight=\"bold\"",
            );
            let share = if polls == 0 {
                "never polled".to_string()
            } else {
                format!("{:.1}% served", served as f64 * 100.0 / polls as f64)
            };
            let _ = writeln!(
                svg,
                "<text x=\"{x}\" y=\"{y}\" text-anchor=\"end\" font-size=\"10\" fill=\"{MUTED_TEXT}\">{share}</text>",
                x = Number(PLOT_LEFT - 8.0),
                y = Number(top + 28.0),
                share = escape(&share),
            );
            for answer in Answer::ALL {
                let path = runs_path(&lane.answers, |value| *value == answer, *top, REPLICA_LANE_HEIGHT);
                if path.is_empty() {
                    continue;
                }
                let count = lane.polls.get(&answer).copied().unwrap_or(0);
                let tooltip = match answer {
                    Answer::Served => format!("{}: served {count} of {polls} polls", lane.replica),
                    Answer::Unavailable => format!(
                        "{}: unavailable (status {}) at {}",
                        lane.replica,
                        lane.statuses.iter().map(u16::to_string).collect::<Vec<_>>().join(", "),
                        counted(count, "poll"),
                    ),
                    Answer::Unreachable => format!("{}: unreachable at {}", lane.replica, counted(count, "poll")),
                };
                let _ = writeln!(
                    svg,
                    "<path d=\"{path}\" fill=\"{}\"><title>{}</title></path>",
                    answer.colour(),
                    escape(&tooltip)
                );
            }
            if let Some((low, high)) = self.revisions {
                let x = Number(PLOT_RIGHT + 4.0);
                let _ = writeln!(
                    svg,
                    "<text x=\"{x}\" y=\"{}\" font-size=\"9\" fill=\"{REVISION_LINE}\">r{high}</text>\
                     <text x=\"{x}\" y=\"{}\" font-size=\"9\" fill=\"{REVISION_LINE}\">r{low}</text>",
                    Number(top + REVISION_PADDING + 3.0),
                    Number(top + REPLICA_LANE_HEIGHT - REVISION_PADDING + 3.0),
                );
            }
            svg.push_str("</g>\n");
        }
    }

    /// Drawn after the fault shading, so a revision step inside a fault stays crisp.
    fn revision_lines(&self, svg: &mut String) {
        let Some((low, high)) = self.revisions else {
            return;
        };
        for (lane, top) in self.lanes.iter().zip(&self.layout.replica_tops) {
            let span = (REPLICA_LANE_HEIGHT - 2.0 * REVISION_PADDING).max(1.0);
            let y = |revision: u64| {
                if high == low {
                    top + REPLICA_LANE_HEIGHT / 2.0
                } else {
                    top + REVISION_PADDING + span * (high - revision) as f64 / (high - low) as f64
                }
            };
            let mut path = String::new();
            let mut previous_end = None;
            for (start, end, revision) in runs(&lane.revisions) {
                let (x_start, x_end) = (PLOT_LEFT + start as f64, PLOT_LEFT + end as f64);
                if previous_end == Some(start) {
                    let _ = write!(path, "V{}H{}", Number(y(revision)), Number(x_end));
                } else {
                    let _ = write!(path, "M{} {}H{}", Number(x_start), Number(y(revision)), Number(x_end));
                }
                previous_end = Some(end);
            }
            if !path.is_empty() {
                let _ = writeln!(
                    svg,
                    "<path d=\"{path}\" fill=\"none\" stroke=\"{REVISION_LINE}\" stroke-width=\"1.5\"><title>{}</title></path>",
                    escape(&format!(
                        "{}: revision served (lane scale r{low} to r{high})",
                        lane.replica
                    )),
                );
            }
        }
    }

    fn leader_lane(&self, svg: &mut String) {
        for (name, colour) in &self.colours {
            let path = runs_path(
                &self.leaders,
                |leader| leader == name,
                self.layout.leader_top + 3.0,
                NARROW_LANE_HEIGHT - 6.0,
            );
            if !path.is_empty() {
                let _ = writeln!(
                    svg,
                    "<path d=\"{path}\" fill=\"{colour}\"><title>{}</title></path>",
                    escape(&format!("leader {name}"))
                );
            }
        }
    }

    fn workload_lane(&self, svg: &mut String) {
        let top = self.layout.workload_top;
        let half = WORKLOAD_LANE_HEIGHT / 2.0;
        let mut targets = BTreeSet::new();
        let mut collectors = BTreeSet::new();
        let (mut target_changes, mut added, mut removed, mut relabeled) = (0, 0, 0, 0);
        let (mut collector_changes, mut joined, mut left) = (0, 0, 0);
        for event in &self.history.events {
            match &event.kind {
                EventKind::TargetsChanged {
                    added: added_now,
                    removed: removed_now,
                    relabeled: relabeled_now,
                } => {
                    targets.insert(self.column(event.at));
                    target_changes += 1;
                    added += added_now.len();
                    removed += removed_now.len();
                    relabeled += relabeled_now.len();
                }
                EventKind::CollectorsChanged {
                    joined: joined_now,
                    left: left_now,
                } => {
                    collectors.insert(self.column(event.at));
                    collector_changes += 1;
                    joined += joined_now.len();
                    left += left_now.len();
                }
                _ => {}
            }
        }
        let ticks = |columns: &BTreeSet<usize>, y: f64| {
            let mut path = String::new();
            for column in columns {
                let _ = write!(
                    path,
                    "M{} {}v{}",
                    Number(PLOT_LEFT + *column as f64 + 0.5),
                    Number(y),
                    Number(half - 3.0)
                );
            }
            path
        };
        if !targets.is_empty() {
            let tooltip = format!(
                "targets changed {}: {added} added, {removed} removed, {relabeled} relabeled",
                counted(target_changes, "time")
            );
            let _ = writeln!(
                svg,
                "<path d=\"{}\" stroke=\"{TARGETS_CHANGED}\" stroke-width=\"1.5\"><title>{}</title></path>",
                ticks(&targets, top + 2.0),
                escape(&tooltip)
            );
        }
        if !collectors.is_empty() {
            let tooltip = format!(
                "collectors changed {}: {joined} joined, {left} left",
                counted(collector_changes, "time")
            );
            let _ = writeln!(
                svg,
                "<path d=\"{}\" stroke=\"{COLLECTORS_CHANGED}\" stroke-width=\"1.5\"><title>{}</title></path>",
                ticks(&collectors, top + half + 1.0),
                escape(&tooltip)
            );
        }
    }

    fn axis(&self, svg: &mut String) {
        let layout = &self.layout;
        let step = tick_step(self.end);
        let mut grid = String::new();
        let mut labels = String::new();
        let mut tick = 0.0;
        while tick <= self.end + step * 1e-9 {
            let x = PLOT_LEFT + tick / self.end * PLOT_WIDTH;
            let _ = write!(
                grid,
                "M{} {}V{}",
                Number(x),
                Number(layout.lanes_top),
                Number(layout.lanes_bottom + 4.0)
            );
            let label = if step < 1.0 {
                format!("{tick:.1}")
            } else {
                format!("{tick:.0}")
            };
            let _ = writeln!(
                labels,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{label}</text>",
                Number(x),
                Number(layout.lanes_bottom + 16.0)
            );
            tick += step;
        }
        let _ = writeln!(svg, "<path d=\"{grid}\" stroke=\"{GRID}\" stroke-opacity=\"0.12\"/>");
        svg.push_str(&labels);
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"{MUTED_TEXT}\">seconds</text>",
            Number(PLOT_LEFT - 8.0),
            Number(layout.lanes_bottom + 16.0)
        );
    }

    /// Shaded spans with their names in label rows above the lanes, and the failover each
    /// caused as a diamond on the leader lane.
    fn faults(&self, svg: &mut String) {
        let layout = &self.layout;
        let mut row_ends = [f64::NEG_INFINITY; FAULT_ROWS];
        let mut labels = String::new();
        let mut unlabelled = String::new();
        for (index, fault) in self.report.faults.iter().enumerate() {
            let start = self.x(fault.started);
            let end = fault
                .healed
                .map_or(PLOT_RIGHT, |healed| self.x(healed))
                .max(start + 1.5);
            let colour = if fault.isolating { ISOLATING_FAULT } else { OTHER_FAULT };
            if index >= FAULTS_DETAILED {
                let _ = write!(
                    unlabelled,
                    "M{} {}H{}V{}H{}z",
                    Number(start),
                    Number(layout.lanes_top),
                    Number(end),
                    Number(layout.lanes_bottom),
                    Number(start)
                );
                continue;
            }
            let label = match fault.healed {
                Some(_) => fault.name.clone(),
                None => format!("{} (not healed)", fault.name),
            };
            let label_width = label.chars().count() as f64 * CHARACTER_WIDTH + 4.0;
            let label_x = (start + 3.0).min(WIDTH - MARGIN - label_width);
            let row = row_ends.iter().position(|row_end| *row_end + 2.0 <= start.min(label_x));
            let top = match row {
                Some(row) => {
                    row_ends[row] = end.max(label_x + label_width);
                    let top = FAULT_ROWS_TOP + row as f64 * FAULT_ROW_HEIGHT;
                    let _ = writeln!(
                        labels,
                        "<text x=\"{}\" y=\"{}\" font-size=\"10.5\">{}</text>",
                        Number(label_x),
                        Number(top + 11.0),
                        escape(&label)
                    );
                    top
                }
                None => layout.lanes_top,
            };
            let mut tooltip = format!(
                "{}: {} – {}, affects {}",
                fault.name,
                seconds(fault.started),
                fault.healed.map_or("not healed".to_string(), seconds),
                list(fault.affected.iter())
            );
            tooltip.push_str(if fault.isolating {
                ", isolating"
            } else {
                ", kill or pause"
            });
            if let Some(leader) = &fault.hit_leader {
                let _ = write!(tooltip, ", hit leader {leader}");
            }
            let _ = writeln!(
                svg,
                "<rect class=\"fault\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{colour}\" fill-opacity=\"0.14\"><title>{}</title></rect>",
                Number(start),
                Number(top),
                Number(end - start),
                Number(layout.lanes_bottom - top),
                escape(&tooltip)
            );
            if let Some(failover) = fault.failover {
                let x = self.x(fault.started + failover);
                let middle = layout.leader_top + NARROW_LANE_HEIGHT / 2.0;
                let _ = writeln!(
                    svg,
                    "<path d=\"M{} {}l5 5-5 5-5-5z\" fill=\"{TEXT}\" stroke=\"{BACKGROUND}\" stroke-width=\"0.8\"><title>{}</title></path>",
                    Number(x),
                    Number(middle - 5.0),
                    escape(&format!(
                        "failover {} after \"{}\" hit leader {}",
                        seconds(failover),
                        fault.name,
                        fault.hit_leader.as_deref().unwrap_or("?")
                    ))
                );
            }
        }
        if !unlabelled.is_empty() {
            let more = self.report.faults.len() - FAULTS_DETAILED;
            let _ = writeln!(
                svg,
                "<path d=\"{unlabelled}\" fill=\"{OTHER_FAULT}\" fill-opacity=\"0.14\"><title>{}</title></path>",
                escape(&format!("{} not labelled", counted(more, "more fault")))
            );
        }
        svg.push_str(&labels);
    }

    fn restarts(&self, svg: &mut String) {
        let layout = &self.layout;
        let mut events: Vec<_> = self.history.events.iter().collect();
        events.sort_by_key(|event| event.at);
        let lane_tops: BTreeMap<&str, f64> = self
            .lanes
            .iter()
            .zip(&layout.replica_tops)
            .map(|(lane, top)| (lane.replica, *top))
            .collect();
        let first_lane = layout.replica_tops.first().copied().unwrap_or(layout.leader_top);
        let mut drawn = 0;
        let mut remaining = String::new();
        for event in events {
            let x = Number(self.x(event.at));
            let (path, tooltip, fill) = match &event.kind {
                EventKind::ReplicaRestarted { replica, wiped } => {
                    let Some(top) = lane_tops.get(replica.as_str()) else {
                        continue;
                    };
                    let path = format!("M{x} {}l4.5 8h-9z", Number(top + REPLICA_LANE_HEIGHT - 9.0));
                    let volume = if *wiped { "an empty volume" } else { "its own volume" };
                    let tooltip = format!("{replica} restarted at {} on {volume}", seconds(event.at));
                    (path, tooltip, if *wiped { BACKGROUND } else { RESTART })
                }
                EventKind::FullRestart => {
                    let path = format!("M{x} {}V{}", Number(first_lane), Number(layout.leader_top - LANE_GAP));
                    (path, format!("full restart at {}", seconds(event.at)), "none")
                }
                _ => continue,
            };
            if drawn >= RESTART_MARKERS {
                remaining.push_str(&path);
                continue;
            }
            drawn += 1;
            let dashes = if fill == "none" {
                " stroke-width=\"2\" stroke-dasharray=\"5 3\""
            } else {
                ""
            };
            let _ = writeln!(
                svg,
                "<path class=\"restart\" d=\"{path}\" fill=\"{fill}\" stroke=\"{RESTART}\"{dashes}><title>{}</title></path>",
                escape(&tooltip)
            );
        }
        if !remaining.is_empty() {
            let _ = writeln!(svg, "<path d=\"{remaining}\" fill=\"{RESTART}\" stroke=\"{RESTART}\"/>");
        }
    }

    /// One marker per column and kind, with a line through the lanes of the replicas named;
    /// columns widen until the markers fit their cap, so a run broken everywhere stays drawable.
    fn violations(&self, svg: &mut String) {
        let layout = &self.layout;
        let mut width = 1;
        let groups = loop {
            let mut groups: BTreeMap<(usize, ViolationKind), Vec<&Violation>> = BTreeMap::new();
            for violation in &self.report.violations {
                groups
                    .entry((self.column(violation.at) / width, violation.kind))
                    .or_default()
                    .push(violation);
            }
            if groups.len() <= VIOLATION_MARKERS {
                break groups;
            }
            width *= 2;
        };
        let lane_tops: BTreeMap<&str, f64> = self
            .lanes
            .iter()
            .zip(&layout.replica_tops)
            .map(|(lane, top)| (lane.replica, *top))
            .collect();
        for violations in groups.values() {
            let first = violations[0];
            let x = self.x(first.at);
            let mut path = format!("M{} {}h10l-5 9z", Number(x - 5.0), Number(layout.violations_top + 4.0));
            let named: BTreeSet<&str> = violations
                .iter()
                .flat_map(|violation| violation.replicas.iter().map(String::as_str))
                .filter(|replica| lane_tops.contains_key(replica))
                .collect();
            let tops: Vec<f64> = if named.is_empty() {
                layout.replica_tops.clone()
            } else {
                named.iter().map(|replica| lane_tops[replica]).collect()
            };
            for top in tops {
                let _ = write!(path, "M{} {}v{}", Number(x), Number(top), Number(REPLICA_LANE_HEIGHT));
            }
            let _ = writeln!(
                svg,
                "<path class=\"violation\" d=\"{path}\" fill=\"{VIOLATION}\" stroke=\"{VIOLATION}\" stroke-opacity=\"0.55\"><title>{}</title></path>",
                escape(&shortened(&violation_tooltip(violations), TOOLTIP_CHARACTERS))
            );
        }
    }

    fn legend(&self, svg: &mut String) {
        for ((swatch, label), (x, row)) in self.legend.iter().zip(legend_positions(&self.legend)) {
            let top = self.layout.legend_top + row as f64 * LEGEND_ROW_HEIGHT;
            let (left, x, y) = (x, Number(x), Number(top + 3.0));
            let shape = match swatch {
                Swatch::Block(colour) => {
                    format!(
                        "<rect x=\"{x}\" y=\"{y}\" width=\"14\" height=\"10\" fill=\"{colour}\" stroke=\"#bbbbbb\" stroke-width=\"0.5\"/>"
                    )
                }
                Swatch::Shade(colour) => {
                    format!(
                        "<rect x=\"{x}\" y=\"{y}\" width=\"14\" height=\"10\" fill=\"{colour}\" fill-opacity=\"0.3\"/>"
                    )
                }
                Swatch::Line(colour) => {
                    format!(
                        "<path d=\"M{x} {}h5v-6h9\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\"/>",
                        Number(top + 11.0)
                    )
                }
                Swatch::Dashed => format!(
                    "<path d=\"M{} {y}v10\" stroke=\"{RESTART}\" stroke-width=\"2\" stroke-dasharray=\"5 3\"/>",
                    Number(left + 7.0)
                ),
                Swatch::Tick(colour) => format!(
                    "<path d=\"M{} {y}v10\" stroke=\"{colour}\" stroke-width=\"1.5\"/>",
                    Number(left + 7.0)
                ),
                Swatch::Restart(fill) => format!(
                    "<path d=\"M{} {}l4.5 8h-9z\" fill=\"{fill}\" stroke=\"{RESTART}\"/>",
                    Number(left + 7.0),
                    Number(top + 4.0)
                ),
                Swatch::Failover => format!("<path d=\"M{} {y}l5 5-5 5-5-5z\" fill=\"{TEXT}\"/>", Number(left + 7.0)),
                Swatch::Violation => format!(
                    "<path d=\"M{} {}h10l-5 9z\" fill=\"{VIOLATION}\"/>",
                    Number(left + 2.0),
                    Number(top + 4.0)
                ),
            };
            let _ = writeln!(
                svg,
                "{shape}<text x=\"{}\" y=\"{}\">{}</text>",
                Number(left + 19.0),
                Number(top + 12.0),
                escape(label)
            );
        }
    }
}

/// The legend's entries: everything the chart can draw, the leader colours of this run.
fn legend_items(revisions: Option<(u64, u64)>, colours: &BTreeMap<&str, &'static str>) -> Vec<(Swatch, String)> {
    let mut items = vec![
        (Swatch::Block(SERVED), "served".to_string()),
        (Swatch::Block(UNAVAILABLE), "unavailable (503)".to_string()),
        (Swatch::Block(UNREACHABLE), "unreachable".to_string()),
        (Swatch::Block(LANE_BACKGROUND), "not polled".to_string()),
    ];
    if let Some((low, high)) = revisions {
        items.push((
            Swatch::Line(REVISION_LINE),
            format!("revision served, r{low} (bottom) to r{high} (top)"),
        ));
    }
    for (name, colour) in colours {
        items.push((
            Swatch::Block(colour),
            format!("leader {}", shortened(name, LANE_NAME_CHARACTERS)),
        ));
    }
    items.extend([
        (Swatch::Shade(ISOLATING_FAULT), "isolating fault".to_string()),
        (Swatch::Shade(OTHER_FAULT), "kill or pause".to_string()),
        (Swatch::Failover, "failover".to_string()),
        (Swatch::Restart(RESTART), "restart".to_string()),
        (Swatch::Restart(BACKGROUND), "restart, wiped".to_string()),
        (Swatch::Dashed, "full restart".to_string()),
        (Swatch::Tick(TARGETS_CHANGED), "targets changed".to_string()),
        (Swatch::Tick(COLLECTORS_CHANGED), "collectors changed".to_string()),
        (Swatch::Violation, "violation (hover for details)".to_string()),
    ]);
    items
}

/// How a legend entry is drawn.
#[derive(Debug, Clone, Copy)]
enum Swatch {
    Block(&'static str),
    Shade(&'static str),
    Line(&'static str),
    Dashed,
    Tick(&'static str),
    Restart(&'static str),
    Failover,
    Violation,
}

/// Each legend entry's left edge and row, wrapping at the document's width.
fn legend_positions(items: &[(Swatch, String)]) -> Vec<(f64, usize)> {
    let mut positions = Vec::new();
    let (mut x, mut row) = (PLOT_LEFT, 0);
    for (_, label) in items {
        let width = 19.0 + label.chars().count() as f64 * CHARACTER_WIDTH + 16.0;
        if x + width > WIDTH - MARGIN && x > PLOT_LEFT {
            x = PLOT_LEFT;
            row += 1;
        }
        positions.push((x, row));
        x += width;
    }
    positions
}

fn lane_name(svg: &mut String, baseline: f64, name: &str, attributes: &str) {
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" {attributes}>{}</text>",
        Number(PLOT_LEFT - 8.0),
        Number(baseline),
        escape(name)
    );
}

fn violation_tooltip(violations: &[&Violation]) -> String {
    let first = violations[0];
    let mut tooltip = if violations.len() == 1 {
        format!("{} ({}) at {}", first.kind, first.invariant, seconds(first.at))
    } else {
        let last = violations[violations.len() - 1];
        format!(
            "{} × {} ({}) from {} to {}",
            violations.len(),
            first.kind,
            first.invariant,
            seconds(first.at),
            seconds(last.at)
        )
    };
    for violation in violations.iter().take(DETAILS_PER_TOOLTIP) {
        tooltip.push('\n');
        if violations.len() > 1 {
            let _ = write!(tooltip, "{}: ", seconds(violation.at));
        }
        if !violation.replicas.is_empty() {
            let _ = write!(tooltip, "{}, ", list(violation.replicas.iter()));
        }
        if let Some(revision) = violation.revision {
            let _ = write!(tooltip, "revision {revision}, ");
        }
        tooltip.push_str(&violation.details);
    }
    if violations.len() > DETAILS_PER_TOOLTIP {
        let _ = write!(tooltip, "\nand {} more", violations.len() - DETAILS_PER_TOOLTIP);
    }
    tooltip
}

/// The columns a stretch of time covers: at least one, and never the neighbour's, so adjacent
/// polls do not overlap.
fn column_range(from: f64, until: f64, end: f64) -> std::ops::Range<usize> {
    let column = |at: f64| ((at / end * COLUMNS as f64).round().max(0.0) as usize).min(COLUMNS);
    let start = column(from).min(COLUMNS - 1);
    start..column(until).max(start + 1)
}

/// Runs of equal values as `(first column, column after the last, value)`, skipping gaps.
fn runs<T: PartialEq + Copy>(columns: &[Option<T>]) -> Vec<(usize, usize, T)> {
    let mut runs: Vec<(usize, usize, T)> = Vec::new();
    for (column, value) in columns.iter().enumerate() {
        let Some(value) = *value else {
            continue;
        };
        match runs.last_mut() {
            Some(run) if run.1 == column && run.2 == value => run.1 = column + 1,
            _ => runs.push((column, column + 1, value)),
        }
    }
    runs
}

/// The runs whose value matches as rectangles of one path, so a lane costs one element per
/// colour however often its polls changed.
fn runs_path<T: PartialEq + Copy>(
    columns: &[Option<T>],
    matches: impl Fn(&T) -> bool,
    top: f64,
    height: f64,
) -> String {
    let mut path = String::new();
    for (start, end, _) in runs(columns).into_iter().filter(|run| matches(&run.2)) {
        let _ = write!(
            path,
            "M{} {}h{}v{}h-{}z",
            Number(PLOT_LEFT + start as f64),
            Number(top),
            end - start,
            Number(height),
            end - start
        );
    }
    path
}

/// The smallest round step giving at most a dozen ticks.
fn tick_step(end: f64) -> f64 {
    const STEPS: [f64; 17] = [
        0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0,
        43200.0,
    ];
    STEPS
        .into_iter()
        .find(|step| end / step <= 12.0)
        .unwrap_or_else(|| (end / 12.0 / 86400.0).ceil() * 86400.0)
}

/// "1 violation", "3 violations".
fn counted(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

fn list<'a>(items: impl Iterator<Item = &'a String>) -> String {
    items.map(String::as_str).collect::<Vec<_>>().join(", ")
}

/// `text` cut to `limit` characters, marked with an ellipsis when cut.
fn shortened(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(limit.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Text made safe for XML content and attribute values. Characters XML 1.0 forbids (control
/// characters, U+FFFE, U+FFFF) would make the whole document unreadable, so they become U+FFFD.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            '\t' | '\n' | '\r' => escaped.push(character),
            character if (character as u32) < 0x20 || character == '\u{FFFE}' || character == '\u{FFFF}' => {
                escaped.push('\u{FFFD}')
            }
            character => escaped.push(character),
        }
    }
    escaped
}

/// A coordinate to a tenth of a pixel, without a trailing `.0`: enough precision for any
/// screen and a third fewer bytes than Rust's shortest float form on long paths.
#[derive(Debug, Clone, Copy)]
struct Number(f64);

impl fmt::Display for Number {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Integer tenths: no "-0", and the same text on every platform.
        let tenths = (self.0 * 10.0).round() as i64;
        if tenths % 10 == 0 {
            write!(formatter, "{}", tenths / 10)
        } else {
            let sign = if tenths < 0 { "-" } else { "" };
            write!(formatter, "{sign}{}.{}", tenths.abs() / 10, tenths.abs() % 10)
        }
    }
}
