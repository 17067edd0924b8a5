//! A criterion measurement of the bench thread's CPU time.
//!
//! The benches run on shared machines (CI, a laptop busy with other work). Wall-clock
//! time counts every moment the bench thread waits for a core, which varies from row
//! to row and makes ratios of rows meaningless; the thread's CPU time
//! (`CLOCK_THREAD_CPUTIME_ID`) does not. Reported values are nanoseconds, as with
//! criterion's `WallTime`. Where that clock is missing (not Unix), wall-clock time is
//! used instead.

#[cfg(unix)]
pub use thread::ThreadCpuTime as Clock;

#[cfg(not(unix))]
pub use criterion::measurement::WallTime as Clock;

/// The clock every bench group uses.
pub const CLOCK: Clock = {
    #[cfg(unix)]
    {
        thread::ThreadCpuTime
    }
    #[cfg(not(unix))]
    {
        criterion::measurement::WallTime
    }
};

#[cfg(unix)]
mod thread {
    use criterion::measurement::{Measurement, ValueFormatter, WallTime};

    /// CPU time of the calling thread, in nanoseconds.
    #[derive(Debug, Clone, Copy)]
    pub struct ThreadCpuTime;

    /// Nanoseconds of CPU time this thread has used, from `cpu-time`'s safe
    /// wrapper of `clock_gettime(CLOCK_THREAD_CPUTIME_ID)`.
    fn now() -> u64 {
        let used = ::cpu_time::ThreadTime::now().as_duration();
        u64::try_from(used.as_nanos()).unwrap_or(u64::MAX)
    }

    impl Measurement for ThreadCpuTime {
        type Intermediate = u64;
        type Value = u64;

        fn start(&self) -> u64 {
            now()
        }
        fn end(&self, start: u64) -> u64 {
            now() - start
        }
        fn add(&self, a: &u64, b: &u64) -> u64 {
            a + b
        }
        fn zero(&self) -> u64 {
            0
        }
        fn to_f64(&self, value: &u64) -> f64 {
            *value as f64
        }
        fn formatter(&self) -> &dyn ValueFormatter {
            // Nanoseconds, shown as times and throughputs like wall-clock ones.
            WallTime.formatter()
        }
    }
}

/// The criterion configuration every bench uses: this clock, 1 s of warm-up and 3 s
/// of measurement per row (the whole suite runs in a few minutes on 2 cores).
pub fn criterion() -> criterion::Criterion<Clock> {
    criterion::Criterion::default()
        .with_measurement(CLOCK)
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3))
}
