//! Time as the board gives it: the core reads no clock.

use core::ops::{Add, Sub};
pub use core::time::Duration;

/// A point on the board's monotonic clock, in microseconds since an arbitrary origin.
///
/// Boards convert their own clock (`std::time::Instant`, `esp_hal::time::Instant`,
/// `smoltcp::time::Instant`) once per loop and pass it to `poll`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Instant {
    micros: u64,
}

impl Instant {
    /// The clock's origin.
    pub const ZERO: Instant = Instant { micros: 0 };

    /// The instant `micros` microseconds after the origin.
    pub const fn from_micros(micros: u64) -> Self {
        Instant { micros }
    }

    /// The instant `millis` milliseconds after the origin.
    pub const fn from_millis(millis: u64) -> Self {
        Instant {
            micros: millis.saturating_mul(1000),
        }
    }

    /// Microseconds since the origin.
    pub const fn as_micros(self) -> u64 {
        self.micros
    }

    /// Milliseconds since the origin.
    pub const fn as_millis(self) -> u64 {
        self.micros / 1000
    }

    /// Time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub const fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_micros(self.micros.saturating_sub(earlier.micros))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;

    /// Saturates at the end of the clock rather than wrapping.
    fn add(self, rhs: Duration) -> Instant {
        let micros = u64::try_from(rhs.as_micros()).unwrap_or(u64::MAX);
        Instant {
            micros: self.micros.saturating_add(micros),
        }
    }
}

/// Whole milliseconds in `duration` for messages, at most `u32::MAX` (49 days). Numbers go to
/// messages as `u32`, which a 32-bit board formats anyway: each other integer type would bring
/// its own formatting code (`u128` the most).
pub(crate) fn millis(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}

impl Sub<Instant> for Instant {
    type Output = Duration;

    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_duration_since(rhs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_between_units() {
        assert_eq!(Instant::from_millis(3).as_micros(), 3000);
        assert_eq!(Instant::from_micros(4999).as_millis(), 4);
    }

    #[test]
    fn never_goes_negative_or_wraps() {
        let early = Instant::from_millis(10);
        let late = Instant::from_millis(30);
        assert_eq!(late - early, Duration::from_millis(20));
        assert_eq!(early - late, Duration::ZERO);
        assert_eq!(
            Instant::from_micros(u64::MAX - 1) + Duration::from_secs(1),
            Instant::from_micros(u64::MAX)
        );
    }
}
