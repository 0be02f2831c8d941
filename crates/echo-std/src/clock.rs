//! [`StdClock`]: the board's clock for both engines: the time the non-blocking roles are
//! polled with, and the async roles' [`Clock`](echo::asynch::Clock) on async-io's timers.

use std::time::{Duration, Instant};

use async_io::Timer;

/// The host board's monotonic clock: [`echo::Instant`]s count from the clock's creation.
#[derive(Clone, Copy, Debug)]
pub struct StdClock {
    origin: Instant,
}

impl StdClock {
    /// A clock that reads zero now.
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }

    /// Now, on this clock.
    pub fn now(&self) -> echo::Instant {
        let micros = self.origin.elapsed().as_micros();
        echo::Instant::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
    }

    /// The std time of `instant` on this clock; `None` past what std time can hold.
    pub fn to_std(&self, instant: echo::Instant) -> Option<Instant> {
        self.origin
            .checked_add(Duration::from_micros(instant.as_micros()))
    }
}

impl Default for StdClock {
    fn default() -> Self {
        Self::new()
    }
}

impl echo::asynch::Clock for StdClock {
    fn now(&self) -> echo::Instant {
        StdClock::now(self)
    }

    /// An async-io [`Timer`]; a deadline past what std time can hold never comes.
    async fn sleep_until(&self, deadline: echo::Instant) {
        match self.to_std(deadline) {
            Some(at) => {
                Timer::at(at).await;
            }
            None => core::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use echo::asynch::Clock;

    #[test]
    fn reads_zero_at_creation_and_converts_both_ways() {
        let clock = StdClock::new();
        let now = clock.now();
        assert!(now.as_millis() < 1000);
        let later = now + echo::Duration::from_millis(1500);
        let (now, later) = (clock.to_std(now).unwrap(), clock.to_std(later).unwrap());
        assert_eq!(later - now, Duration::from_millis(1500));
    }

    #[test]
    fn sleeps_until_the_deadline_and_not_for_one_that_passed() {
        let clock = StdClock::new();
        let deadline = clock.now() + echo::Duration::from_millis(100);
        async_io::block_on(clock.sleep_until(deadline));
        assert!(clock.now() >= deadline);
        let started = Instant::now();
        async_io::block_on(clock.sleep_until(echo::Instant::from_millis(0)));
        assert!(started.elapsed() < Duration::from_millis(50));
    }

    #[test]
    fn the_farthest_deadline_neither_comes_nor_panics() {
        let clock = StdClock::new();
        let never = clock.sleep_until(echo::Instant::from_micros(u64::MAX));
        let timeout = async {
            Timer::after(Duration::from_millis(50)).await;
        };
        let started = Instant::now();
        async_io::block_on(futures_lite::future::or(never, timeout));
        assert!(started.elapsed() >= Duration::from_millis(50), "it came");
    }
}
