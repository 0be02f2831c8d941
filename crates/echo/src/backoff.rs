//! [`Backoff`]: how long a role waits before trying again what keeps failing.

use crate::time::Duration;

/// Waits that double after each failure, from `initial` up to `max`: the server's re-listen
/// and the client's reconnection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct Backoff {
    /// The wait after the first failure.
    pub initial: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Backoff {
    /// 500 ms after the first failure, doubling up to 30 s.
    pub const DEFAULT: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));

    /// Waits from `initial`, doubling up to `max`.
    pub const fn new(initial: Duration, max: Duration) -> Self {
        Backoff { initial, max }
    }

    /// The wait after `failures` failures in a row (from 1).
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.initial
            .checked_mul(1 << doublings)
            .map_or(self.max, |wait| wait.min(self.max))
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_its_maximum() {
        let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
        let waits: [u64; 5] = core::array::from_fn(|n| backoff.delay(n as u32 + 1).as_secs());
        assert_eq!(waits, [1, 2, 4, 5, 5]);
        assert_eq!(backoff.delay(200), Duration::from_secs(5));
        assert_eq!(backoff.delay(0), Duration::from_secs(1));
    }
}
