//! The history being recorded: pollers, the workload and the fault schedule all append to
//! one [`Recorder`], which stamps each entry with the time since the run started.
//!
//! A plain mutex: entries are appended in microseconds and the lock is never held across an
//! `.await`.

use std::sync::Mutex;
use std::sync::MutexGuard;
use std::time::Duration;
use std::time::Instant;

use crate::history::EventKind;
use crate::history::History;
use crate::history::Poll;
use crate::history::PollOutcome;

pub struct Recorder {
    started: Instant,
    history: Mutex<History>,
    /// What the harness noticed about itself (a poll dropped for mixed revisions, a file it
    /// could not write); carried into the report's notes.
    notes: Mutex<Vec<String>>,
}

impl Recorder {
    /// Time zero is now.
    pub fn start(history: History) -> Self {
        Recorder {
            started: Instant::now(),
            history: Mutex::new(history),
            notes: Mutex::new(Vec::new()),
        }
    }

    /// Time since the run started.
    pub fn now(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn poll(&self, replica: &str, at: Duration, outcome: PollOutcome) {
        lock(&self.history).record_poll(Poll {
            replica: replica.to_string(),
            at,
            outcome,
        });
    }

    pub fn event(&self, kind: EventKind) {
        let at = self.now();
        lock(&self.history).record_event(at, kind);
    }

    pub fn note(&self, note: String) {
        lock(&self.notes).push(note);
    }

    /// The history so far (polls sorted by time), ended now, and the harness's notes.
    pub fn finish(&self) -> (History, Vec<String>) {
        let now = self.now();
        let mut history = lock(&self.history).clone();
        history.finish(now);
        history.polls.sort_by_key(|poll| poll.at);
        (history, lock(&self.notes).clone())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
