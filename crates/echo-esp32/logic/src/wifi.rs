//! When the station connects, retries, and notices that its link is gone.
//!
//! [`Station`] is fed the radio's association state once per loop and answers with an
//! [`Action`]: start an attempt (which the firmware bounds by [`RetryPolicy::attempt_timeout`]),
//! bring the network up, or tear it down because the link was lost. Failed attempts are retried
//! forever, the waits growing as [`RetryPolicy::backoff`] says (echo's [`Backoff`], the rule
//! the echo roles use too), so a board left alone recovers when the access point returns.

use echo::Backoff;

use crate::{Duration, Instant};

/// How hard the station tries.
///
/// Start from [`RetryPolicy::new`] (or `default()`) and change what differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// How long one attempt may take before it is abandoned. Default 15 s.
    pub attempt_timeout: Duration,
    /// The waits between failed attempts. Default 1 s doubling up to 30 s.
    pub backoff: Backoff,
}

impl RetryPolicy {
    /// 15 s per attempt, then waits of 1 s, 2 s, 4 s ... up to 30 s.
    pub const fn new() -> Self {
        RetryPolicy {
            attempt_timeout: Duration::from_secs(15),
            backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(30)),
        }
    }

    /// With [`attempt_timeout`](Self::attempt_timeout).
    pub const fn with_attempt_timeout(mut self, attempt_timeout: Duration) -> Self {
        self.attempt_timeout = attempt_timeout;
        self
    }

    /// With [`backoff`](Self::backoff).
    pub const fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::new()
    }
}

/// What the firmware does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing: the link is up, or the next attempt is not due yet.
    Wait,
    /// Start connection attempt number `attempt` (from 1 since the link was last up), give up
    /// after `timeout`, and report a failure with [`Station::attempt_failed`].
    Connect {
        /// Attempt number.
        attempt: u32,
        /// How long the attempt may take.
        timeout: Duration,
    },
    /// The link is up: start the network (DHCP, then listen or connect).
    Up,
    /// The link was lost: close connections, forget the address, say so.
    Lost,
}

/// The station's link as the firmware sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Not associated; the next attempt is due at `retry_at`.
    Down {
        /// Failed attempts since the link was last up.
        failures: u32,
        retry_at: Instant,
    },
    /// An attempt was started and not reported failed.
    Connecting { attempt: u32 },
    /// Associated.
    Up,
}

/// Connection supervisor of a Wi-Fi station.
#[derive(Debug)]
pub struct Station {
    policy: RetryPolicy,
    state: State,
}

impl Station {
    /// A station that has not tried yet; the first [`poll`](Self::poll) asks for an attempt.
    pub fn new(policy: RetryPolicy) -> Self {
        Station {
            policy,
            state: State::Down {
                failures: 0,
                retry_at: Instant::ZERO,
            },
        }
    }

    /// The retry policy.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// Whether the link is up.
    pub fn is_up(&self) -> bool {
        matches!(self.state, State::Up)
    }

    /// When the next attempt is due, while the link is down and no attempt is under way: an
    /// async supervisor sleeps until then instead of polling.
    pub fn next_attempt(&self) -> Option<Instant> {
        match self.state {
            State::Down { retry_at, .. } => Some(retry_at),
            State::Connecting { .. } | State::Up => None,
        }
    }

    /// Decides what to do at `now`, given whether the radio is associated.
    pub fn poll(&mut self, now: Instant, associated: bool) -> Action {
        match (self.state, associated) {
            (State::Up, true) => Action::Wait,
            (State::Up, false) => {
                self.set(State::Down {
                    failures: 0,
                    retry_at: now,
                });
                Action::Lost
            }
            (State::Down { .. } | State::Connecting { .. }, true) => {
                self.set(State::Up);
                Action::Up
            }
            (State::Down { failures, retry_at }, false) if now >= retry_at => {
                let attempt = failures + 1;
                self.set(State::Connecting { attempt });
                Action::Connect {
                    attempt,
                    timeout: self.policy.attempt_timeout,
                }
            }
            (State::Down { .. }, false) => Action::Wait,
            // The firmware reports failures; an attempt that neither failed nor associated
            // counts as failed so that the station never waits forever.
            (State::Connecting { .. }, false) => {
                self.attempt_failed(now);
                Action::Wait
            }
        }
    }

    /// The attempt asked for by the last [`Action::Connect`] failed or timed out at `now`.
    pub fn attempt_failed(&mut self, now: Instant) {
        if let State::Connecting { attempt } = self.state {
            self.set(State::Down {
                failures: attempt,
                retry_at: now + self.policy.backoff.delay(attempt),
            });
        }
    }

    /// The one place the state changes. Not logged here: the firmware logs each action this
    /// answers with (attempt, failure and its reason, link up, link lost), which says more.
    fn set(&mut self, next: State) {
        self.state = next;
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;

    fn at(secs: u64) -> Instant {
        Instant::from_millis(secs * 1000)
    }

    fn policy() -> RetryPolicy {
        RetryPolicy::new()
            .with_attempt_timeout(Duration::from_secs(10))
            .with_backoff(Backoff::new(Duration::from_secs(1), Duration::from_secs(8)))
    }

    #[test]
    fn first_poll_asks_for_an_attempt_with_the_timeout() {
        let mut station = Station::new(policy());
        assert_eq!(
            station.poll(at(0), false),
            Action::Connect {
                attempt: 1,
                timeout: Duration::from_secs(10)
            }
        );
        assert_eq!(station.poll(at(1), true), Action::Up);
        assert!(station.is_up());
        assert_eq!(station.poll(at(2), true), Action::Wait);
    }

    #[test]
    fn failed_attempts_back_off_exponentially_up_to_the_cap() {
        let mut station = Station::new(policy());
        let mut now = at(0);
        assert!(matches!(
            station.poll(now, false),
            Action::Connect { attempt: 1, .. }
        ));
        let mut waits = std::vec::Vec::new();
        for attempt in 2..=6 {
            station.attempt_failed(now);
            let failed_at = now;
            loop {
                now = now + Duration::from_millis(250);
                if let Action::Connect {
                    attempt: started, ..
                } = station.poll(now, false)
                {
                    assert_eq!(started, attempt);
                    break;
                }
            }
            waits.push((now - failed_at).as_millis());
        }
        assert_eq!(waits, [1000, 2000, 4000, 8000, 8000]);
    }

    #[test]
    fn the_default_waits_up_to_30_s_between_attempts() {
        let backoff = RetryPolicy::default().backoff;
        assert_eq!(backoff.delay(1), Duration::from_secs(1));
        assert_eq!(backoff.delay(100), Duration::from_secs(30));
    }

    #[test]
    fn no_attempt_before_the_backoff_has_passed() {
        let mut station = Station::new(policy());
        station.poll(at(0), false);
        station.attempt_failed(at(10));
        assert_eq!(station.poll(at(10), false), Action::Wait);
        assert_eq!(
            station.poll(at(11), false),
            Action::Connect {
                attempt: 2,
                timeout: Duration::from_secs(10)
            }
        );
        station.attempt_failed(at(21));
        assert_eq!(station.poll(at(22), false), Action::Wait);
        assert!(matches!(
            station.poll(at(23), false),
            Action::Connect { attempt: 3, .. }
        ));
    }

    #[test]
    fn lost_link_is_reported_once_then_reconnected_at_once() {
        let mut station = Station::new(policy());
        station.poll(at(0), false);
        station.poll(at(1), true);
        assert_eq!(station.poll(at(100), false), Action::Lost);
        assert!(!station.is_up());
        assert_eq!(
            station.poll(at(100), false),
            Action::Connect {
                attempt: 1,
                timeout: Duration::from_secs(10)
            }
        );
        assert_eq!(station.poll(at(105), true), Action::Up);
    }

    #[test]
    fn an_unreported_attempt_that_did_not_associate_counts_as_failed() {
        let mut station = Station::new(policy());
        station.poll(at(0), false);
        assert_eq!(station.poll(at(10), false), Action::Wait);
        assert_eq!(station.poll(at(10), false), Action::Wait);
        assert!(matches!(
            station.poll(at(11), false),
            Action::Connect { attempt: 2, .. }
        ));
    }

    #[test]
    fn the_next_attempt_is_due_when_poll_asks_for_it() {
        let mut station = Station::new(policy());
        assert_eq!(
            station.next_attempt(),
            Some(at(0)),
            "the first is due at once"
        );
        station.poll(at(0), false);
        assert_eq!(station.next_attempt(), None, "an attempt is under way");
        station.attempt_failed(at(3));
        assert_eq!(station.next_attempt(), Some(at(4)));
        assert_eq!(
            station.poll(Instant::from_millis(3_999), false),
            Action::Wait
        );
        assert!(matches!(
            station.poll(at(4), false),
            Action::Connect { attempt: 2, .. }
        ));
        station.poll(at(5), true);
        assert_eq!(station.next_attempt(), None, "the link is up");
        assert_eq!(station.poll(at(9), false), Action::Lost);
        assert_eq!(station.next_attempt(), Some(at(9)), "after a loss, at once");
    }

    #[test]
    fn association_while_waiting_brings_the_link_up() {
        let mut station = Station::new(policy());
        station.poll(at(0), false);
        station.attempt_failed(at(1));
        assert_eq!(station.poll(at(1), true), Action::Up);
    }
}
