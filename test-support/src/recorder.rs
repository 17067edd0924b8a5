//! A tiny `metrics` recorder for tests: counter values (gauges' last whole values,
//! and histogram sample counts) by name and labels, read back as `name{key=value,...}`.
//!
//! ```
//! use notmeta_test_support::recorder::Counters;
//!
//! let recorder = Counters::default();
//! metrics::with_local_recorder(&recorder, || {
//!     metrics::counter!("requests_total", "outcome" => "ok").increment(2);
//! });
//! assert_eq!(recorder.get("requests_total{outcome=ok}"), 2);
//! assert_eq!(recorder.get("requests_total{outcome=other}"), 0);
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

/// The recorder: install it with `metrics::set_default_local_recorder` or
/// `metrics::with_local_recorder`.
#[derive(Debug, Default)]
pub struct Counters(Mutex<HashMap<String, Arc<Value>>>);

/// One counter's value (for a histogram, how many samples it got).
#[derive(Debug, Default)]
pub struct Value(AtomicU64);

impl metrics::CounterFn for Value {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
    }

    fn absolute(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }
}

/// A gauge keeps its last value, whole (the fraction dropped; negative as 0).
impl metrics::GaugeFn for Value {
    fn increment(&self, value: f64) {
        self.0.fetch_add(value as u64, Ordering::Relaxed);
    }

    fn decrement(&self, value: f64) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(value as u64))
            });
    }

    fn set(&self, value: f64) {
        self.0.store(value as u64, Ordering::Relaxed);
    }
}

impl metrics::HistogramFn for Value {
    fn record(&self, _: f64) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

impl Counters {
    fn value(&self, key: &Key) -> Arc<Value> {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        let name = if labels.is_empty() {
            key.name().to_owned()
        } else {
            format!("{}{{{}}}", key.name(), labels.join(","))
        };
        Arc::clone(self.0.lock().unwrap().entry(name).or_default())
    }

    /// The value of `name{key=value,...}` (labels in the order they were given), 0
    /// if it was never touched.
    pub fn get(&self, name: &str) -> u64 {
        self.0
            .lock()
            .unwrap()
            .get(name)
            .map_or(0, |v| v.0.load(Ordering::Relaxed))
    }
}

impl Recorder for Counters {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.value(key))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.value(key))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.value(key))
    }
}
