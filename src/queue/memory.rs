//! The queue in the process's memory (`Queue::in_memory`): one mutex-protected
//! state, the storage calls of the endpoint, the worker and the operations, and a
//! notification on every change. Not durable: it lives as long as the process.
//!
//! The model is the PostgreSQL queue's: every entry has a state (waiting, running,
//! waiting for a retry, dead) and, unless dead, a time at which it is due (waiting:
//! when queued; retrying: when its retry is due; running: when its lease ends, so
//! an entry whose worker stopped renewing it is taken again). Each run gets a token
//! of its own, and a settle applies only with the token of the run that holds the
//! entry, except "done", which wins whoever ran it. Event ids are remembered (queued,
//! running, done or given up on) for the dedup window, and at most one entry exists
//! per event id.
//!
//! Times are Tokio's (`tokio::time::Instant`), so a test on a paused runtime clock
//! (`#[tokio::test(start_paused = true)]`) sees backoffs, leases and the dedup
//! window pass as the clock advances.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, UNIX_EPOCH};

use tokio::sync::Notify;
use tokio::time::Instant;

use super::protocol::{Entry, Settled};
use super::{DeadLetter, QueueCounts};
use crate::clock::MAX_DURATION;

/// How often the enqueue forgets the event ids whose dedup window ended.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// A queue in memory: the state, and the notification of its changes. Clones of the
/// `Queue` share it through an `Arc`.
pub(crate) struct MemQueue {
    state: Mutex<State>,
    /// Notified (every waiter) when an entry is queued, replayed or settled.
    changed: Notify,
}

impl fmt::Debug for MemQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemQueue")
            .field("counts", &self.counts())
            .finish_non_exhaustive()
    }
}

/// Everything the queue holds, behind one lock.
#[derive(Default)]
struct State {
    /// The id of the next entry (entry ids only grow: oldest first is by id).
    next_id: u64,
    /// The number in the next run's token.
    next_token: u64,
    /// Every entry (waiting, running, retrying or dead), by entry id.
    entries: BTreeMap<u64, Slot>,
    /// The entry of each event id that has one.
    by_event: HashMap<String, u64>,
    /// The entries that are not dead, by when they are due, then by id.
    due: BTreeSet<(Instant, u64)>,
    /// The event ids remembered: until when, and whether handled.
    marks: HashMap<String, Mark>,
    /// How many entries are in each state.
    counts: QueueCounts,
    /// When the marks were last swept.
    last_sweep: Option<Instant>,
    /// Paused (`Queue::pause`): nothing is taken.
    paused: bool,
    /// Key limits (`Queue::with_key_limit`): the cap per key, and whether a dead
    /// letter holds its slot.
    key_limit: Option<(u32, bool)>,
    /// The entries of each key, by id (some may be gone: pruned when met).
    by_key: HashMap<String, BTreeSet<u64>>,
}

/// One entry: its fields (the body and what came with it) and where it stands.
struct Slot {
    entry: Entry,
    /// Runs started so far (reset by a replay).
    runs: u64,
    /// When it is due (not dead), or when it was given up on (dead).
    at: Instant,
    stage: Stage,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Stage {
    Waiting,
    /// Held by the run with this token until `at`.
    Running(String),
    Retrying,
    /// Given up on, with the error text.
    Dead(String),
}

/// An event id remembered.
#[derive(Debug, Clone, Copy)]
struct Mark {
    done: bool,
    until: Instant,
}

/// An entry a worker took: run it (`run`), or its event is done already.
#[derive(Debug)]
pub(crate) struct Taken {
    pub(crate) id: u64,
    pub(crate) event_id: String,
    pub(crate) body: Vec<u8>,
    /// Runs started so far, this one included.
    pub(crate) runs: u64,
    /// This run's token.
    pub(crate) token: String,
    /// `false`: the event is done already (the entry is only deleted).
    pub(crate) run: bool,
    /// The trace context stored with the entry.
    pub(crate) trace: Option<super::TraceContext>,
}

/// What an enqueue did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Enqueued {
    Queued,
    Duplicate,
    Full,
}

/// `now + d`, or the farthest instant the crate's durations reach.
fn after(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(MAX_DURATION))
        .unwrap_or(now)
}

impl MemQueue {
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::new(State::default()),
            changed: Notify::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while the lock is held; recover the state regardless.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A future that completes at the next change after it was enabled (call
    /// `enable` on it, pinned, before looking at the state, so no change is missed).
    pub(crate) fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    /// Queues the entry unless its event id is known or has an entry, or the queue
    /// holds `max_len` entries waiting or running (0: no bound).
    pub(crate) fn enqueue(&self, entry: Entry, window: Duration, max_len: u64) -> Enqueued {
        let now = Instant::now();
        let mut state = self.state();
        state.sweep(now);
        let known = state
            .marks
            .get(&entry.event_id)
            .is_some_and(|m| m.until > now);
        if known || state.by_event.contains_key(&entry.event_id) {
            return Enqueued::Duplicate;
        }
        if max_len > 0 && state.counts.pending + state.counts.in_progress >= max_len {
            return Enqueued::Full;
        }
        let mark = Mark {
            done: false,
            until: after(now, window),
        };
        state.marks.insert(entry.event_id.clone(), mark);
        let id = state.next_id;
        state.next_id += 1;
        state.by_event.insert(entry.event_id.clone(), id);
        if let Some(key) = &entry.key {
            state.by_key.entry(key.clone()).or_default().insert(id);
        }
        let slot = Slot {
            entry,
            runs: 0,
            at: now,
            stage: Stage::Waiting,
        };
        state.insert(id, slot);
        drop(state);
        self.changed.notify_waiters();
        Enqueued::Queued
    }

    /// Takes up to `max` due entries (waiting, retrying, or running under a lapsed
    /// lease), oldest due first, but none of `running` (this worker's own: one whose
    /// lease lapsed while its run goes on is left to the others). Each gets a token
    /// of its own run and a lease of `visibility`.
    pub(crate) fn take(
        &self,
        max: usize,
        visibility: Duration,
        running: &HashSet<u64>,
    ) -> Vec<Taken> {
        let now = Instant::now();
        let mut state = self.state();
        if state.paused {
            return Vec::new();
        }
        let limit = state.key_limit;
        let ids: Vec<u64> = state
            .due
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, id)| *id)
            .filter(|id| !running.contains(id))
            .take(if limit.is_some() { usize::MAX } else { max })
            .collect();
        let lease = after(now, visibility);
        let mut taken = Vec::with_capacity(ids.len().min(max));
        // Per key, the first entry refused: the key's later entries are refused too.
        let mut blocked = HashMap::new();
        for id in ids {
            if taken.len() == max {
                break;
            }
            if let Some((cap, hold)) = limit
                && !state.may_start(id, cap, hold, &mut blocked)
            {
                continue;
            }
            state.next_token += 1;
            let token = state.next_token.to_string();
            let Some(mut slot) = state.remove(id) else {
                continue;
            };
            slot.runs += 1;
            slot.at = lease;
            slot.stage = Stage::Running(token.clone());
            let mark = state
                .marks
                .entry(slot.entry.event_id.clone())
                .or_insert(Mark {
                    done: false,
                    until: lease,
                });
            mark.until = mark.until.max(lease);
            taken.push(Taken {
                id,
                event_id: slot.entry.event_id.clone(),
                body: slot.entry.body.clone(),
                runs: slot.runs,
                token,
                run: !mark.done,
                trace: slot.entry.trace.clone(),
            });
            state.insert(id, slot);
        }
        taken
    }

    /// When the next entry is due (an entry running here included: its lease).
    /// With key limits, the entries due already are left out: a take just found
    /// them waiting for their key, and a settle that frees it is a change.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        let state = self.state();
        if state.key_limit.is_some() {
            let now = Instant::now();
            return state.due.iter().map(|(at, _)| *at).find(|at| *at > now);
        }
        state.due.first().map(|(at, _)| *at)
    }

    /// Renews the running entries `(id, token)` for `visibility`; returns the ids
    /// still held by those runs.
    pub(crate) fn renew(&self, entries: &[(u64, String)], visibility: Duration) -> HashSet<u64> {
        let lease = after(Instant::now(), visibility);
        let mut state = self.state();
        let mut held = HashSet::new();
        for (id, token) in entries {
            if !state.holds(*id, token) {
                continue;
            }
            if let Some(mut slot) = state.remove(*id) {
                slot.at = lease;
                if let Some(mark) = state.marks.get_mut(&slot.entry.event_id) {
                    mark.until = mark.until.max(lease);
                }
                state.insert(*id, slot);
                held.insert(*id);
            }
        }
        held
    }

    /// Deletes the entry and marks its event done for `window`, whoever holds the
    /// entry ("done" wins).
    pub(crate) fn done(&self, id: u64, token: &str, event_id: &str, window: Duration) -> Settled {
        let now = Instant::now();
        let mut state = self.state();
        let mine = state.holds(id, token);
        let existed = state.remove(id).is_some();
        if existed {
            state.by_event.remove(event_id);
        }
        let until = after(now, window);
        let mark = state
            .marks
            .entry(event_id.to_owned())
            .or_insert(Mark { done: true, until });
        mark.done = true;
        mark.until = mark.until.max(until);
        drop(state);
        self.changed.notify_waiters();
        match (existed, mine) {
            (true, true) => Settled::Applied,
            (true, false) => Settled::DoneNotOwner,
            (false, _) => Settled::NotOwner,
        }
    }

    /// Schedules the entry's next attempt after `pause`, if the run `token` holds it.
    pub(crate) fn retry(&self, id: u64, token: &str, pause: Duration) -> Settled {
        self.settle(id, token, |_, slot, now| {
            slot.at = after(now, pause);
            slot.stage = Stage::Retrying;
        })
    }

    /// Makes the entry a dead letter with `error`, if the run `token` holds it; its
    /// event id stays remembered for `window`.
    pub(crate) fn dead(&self, id: u64, token: &str, error: &str, window: Duration) -> Settled {
        self.settle(id, token, |state, slot, now| {
            slot.at = now;
            slot.stage = Stage::Dead(error.to_owned());
            if let Some(mark) = state.marks.get_mut(&slot.entry.event_id)
                && !mark.done
            {
                mark.until = mark.until.max(after(now, window));
            }
        })
    }

    /// Deletes an entry whose event turned out done, if the run `token` holds it.
    pub(crate) fn skip(&self, id: u64, token: &str) {
        let mut state = self.state();
        if state.holds(id, token)
            && let Some(slot) = state.remove(id)
        {
            state.by_event.remove(&slot.entry.event_id);
        }
        drop(state);
        self.changed.notify_waiters();
    }

    /// Applies `change` to the entry if the run `token` holds it.
    fn settle(
        &self,
        id: u64,
        token: &str,
        change: impl FnOnce(&mut State, &mut Slot, Instant),
    ) -> Settled {
        let now = Instant::now();
        let mut state = self.state();
        if !state.holds(id, token) {
            return Settled::NotOwner;
        }
        let Some(mut slot) = state.remove(id) else {
            return Settled::NotOwner;
        };
        change(&mut state, &mut slot, now);
        state.insert(id, slot);
        drop(state);
        self.changed.notify_waiters();
        Settled::Applied
    }

    /// The counts, whether paused, and how long the oldest due entry not running
    /// has waited.
    pub(crate) fn counts(&self) -> QueueCounts {
        let now = Instant::now();
        let state = self.state();
        let oldest = state
            .due
            .iter()
            .take_while(|(at, _)| *at <= now)
            .find(|(_, id)| {
                state
                    .entries
                    .get(id)
                    .is_some_and(|slot| matches!(slot.stage, Stage::Waiting | Stage::Retrying))
            })
            .map(|(at, _)| now.saturating_duration_since(*at));
        QueueCounts {
            paused: state.paused,
            oldest_pending: oldest,
            ..state.counts
        }
    }

    /// Turns key limits on: at most `cap` entries of a key run at once, started in
    /// enqueue order; `hold`: a dead letter keeps its slot.
    pub(crate) fn set_key_limit(&self, cap: u32, hold: bool) {
        self.state().key_limit = Some((cap, hold));
    }

    /// Pauses or resumes the takes; a resume wakes the idle workers.
    pub(crate) fn set_paused(&self, paused: bool) {
        self.state().paused = paused;
        if !paused {
            self.changed.notify_waiters();
        }
    }

    pub(crate) fn is_paused(&self) -> bool {
        self.state().paused
    }

    /// Up to `limit` dead letters, oldest first.
    pub(crate) fn dead_letters(&self, limit: usize) -> Vec<DeadLetter> {
        let state = self.state();
        state
            .dead()
            .map(|(id, slot, error)| DeadLetter {
                entry_id: id.to_string(),
                event_id: slot.entry.event_id.clone(),
                event_type: slot.entry.event_type.clone(),
                error: error.to_owned(),
                attempts: u32::try_from(slot.runs).unwrap_or(u32::MAX),
                received_at: UNIX_EPOCH + Duration::from_millis(slot.entry.received),
                body: slot.entry.body.clone(),
            })
            .take(limit)
            .collect()
    }

    /// Queues up to `limit` dead letters again, oldest first, with their runs reset;
    /// one whose event is done meanwhile is deleted instead, and not counted.
    pub(crate) fn replay(&self, limit: usize) -> usize {
        let now = Instant::now();
        let mut state = self.state();
        let dead: Vec<u64> = state.dead().map(|(id, _, _)| id).take(limit).collect();
        let mut moved = 0;
        for id in dead {
            let Some(mut slot) = state.remove(id) else {
                continue;
            };
            let done = state
                .marks
                .get(&slot.entry.event_id)
                .is_some_and(|m| m.done);
            if done {
                state.by_event.remove(&slot.entry.event_id);
                continue;
            }
            slot.runs = 0;
            slot.at = now;
            slot.stage = Stage::Waiting;
            state.insert(id, slot);
            moved += 1;
        }
        drop(state);
        self.changed.notify_waiters();
        moved
    }

    /// Deletes the dead letters given up on at least `older_than` ago (a change).
    pub(crate) fn purge(&self, older_than: Duration) -> u64 {
        let now = Instant::now();
        let mut state = self.state();
        let old: Vec<u64> = state
            .dead()
            .filter(|(_, slot, _)| now.saturating_duration_since(slot.at) >= older_than)
            .map(|(id, _, _)| id)
            .collect();
        for id in &old {
            if let Some(slot) = state.remove(*id) {
                state.by_event.remove(&slot.entry.event_id);
            }
        }
        drop(state);
        // A purged dead letter may have held its key (key limits): wake the workers.
        self.changed.notify_waiters();
        u64::try_from(old.len()).unwrap_or(u64::MAX)
    }
}

impl State {
    /// Whether entry `id` may start under key limits (the PostgreSQL take's rule):
    /// it is running (a reclaim), has no key, or fewer than `cap` of its key's
    /// entries are earlier and unsettled (dead ones too with `hold`) or later and
    /// running (only after a replay). A refused entry goes into `blocked` (the
    /// lowest id refused per key): each later entry of the key has it ahead too.
    fn may_start(
        &mut self,
        id: u64,
        cap: u32,
        hold: bool,
        blocked: &mut HashMap<String, u64>,
    ) -> bool {
        let Some(slot) = self.entries.get(&id) else {
            return false;
        };
        let Some(key) = slot.entry.key.as_ref() else {
            return true;
        };
        if matches!(slot.stage, Stage::Running(_)) {
            return true;
        }
        if blocked.get(key).is_some_and(|refused| *refused < id) {
            return false;
        }
        let Some(ids) = self.by_key.get_mut(key) else {
            return true;
        };
        let entries = &self.entries;
        ids.retain(|other| entries.contains_key(other));
        let ahead = ids
            .iter()
            .filter(|other| **other != id)
            .filter(|other| {
                let stage = &entries[*other].stage;
                if **other < id {
                    !matches!(stage, Stage::Dead(_)) || hold
                } else {
                    matches!(stage, Stage::Running(_))
                }
            })
            .take(usize::try_from(cap).unwrap_or(usize::MAX))
            .count();
        if u32::try_from(ahead).unwrap_or(u32::MAX) < cap {
            return true;
        }
        let refused = blocked.entry(key.clone()).or_insert(id);
        *refused = (*refused).min(id);
        false
    }

    /// The dead letters, oldest first, with their error text.
    fn dead(&self) -> impl Iterator<Item = (u64, &Slot, &str)> {
        self.entries
            .iter()
            .filter_map(|(id, slot)| match &slot.stage {
                Stage::Dead(error) => Some((*id, slot, error.as_str())),
                _ => None,
            })
    }

    /// Whether the entry `id` is running under `token`.
    fn holds(&self, id: u64, token: &str) -> bool {
        self.entries
            .get(&id)
            .is_some_and(|slot| matches!(&slot.stage, Stage::Running(t) if t == token))
    }

    /// Adds the entry, with its place in the due order and the counts.
    fn insert(&mut self, id: u64, slot: Slot) {
        if !matches!(slot.stage, Stage::Dead(_)) {
            self.due.insert((slot.at, id));
        }
        *self.count(&slot.stage) += 1;
        self.entries.insert(id, slot);
    }

    /// Takes the entry out, with its place in the due order and the counts (the
    /// event's link to it stays: the caller puts the entry back, or unlinks it).
    fn remove(&mut self, id: u64) -> Option<Slot> {
        let slot = self.entries.remove(&id)?;
        self.due.remove(&(slot.at, id));
        let count = self.count(&slot.stage);
        *count = count.saturating_sub(1);
        Some(slot)
    }

    fn count(&mut self, stage: &Stage) -> &mut u64 {
        match stage {
            Stage::Waiting => &mut self.counts.pending,
            Stage::Running(_) => &mut self.counts.in_progress,
            Stage::Retrying => &mut self.counts.retrying,
            Stage::Dead(_) => &mut self.counts.dead_letters,
        }
    }

    /// Forgets the event ids whose window ended and that have no entry, and the
    /// keys that have none, at most once per [`SWEEP_EVERY`].
    fn sweep(&mut self, now: Instant) {
        if self
            .last_sweep
            .is_some_and(|t| now.saturating_duration_since(t) < SWEEP_EVERY)
        {
            return;
        }
        self.last_sweep = Some(now);
        let by_event = &self.by_event;
        self.marks
            .retain(|id, mark| mark.until > now || by_event.contains_key(id));
        let entries = &self.entries;
        self.by_key.retain(|_, ids| {
            ids.retain(|id| entries.contains_key(id));
            !ids.is_empty()
        });
    }
}
