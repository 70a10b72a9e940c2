//! When a failed delivery is tried again, and when an endpoint has failed for too long.
//!
//! Svix's schedule: the first try at once, then after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and
//! 10 h (8 tries over about 28 hours), each delay give or take 10 % so that a recovering
//! receiver is not hit by every retry at once. A `Retry-After` longer than the next delay
//! (up to a day) is waited for. An endpoint whose every attempt failed for 5 days is disabled.

use std::time::Duration;

/// The waits before the 2nd, 3rd, … attempt, in seconds.
const DELAYS: [u64; 7] = [5, 300, 1800, 7200, 18_000, 36_000, 36_000];
/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(86_400);
/// An endpoint failing this long is disabled.
const DISABLE_AFTER: Duration = Duration::from_secs(5 * 86_400);

/// The schedule on a clock that `webhooks.clock_scale` may compress (tests).
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    scale: f64,
}

impl Schedule {
    pub fn new(scale: f64) -> Schedule {
        Schedule { scale }
    }

    /// The wait after failed attempt number `attempts` (1 is the first try), or `None` when
    /// the delivery has had all its tries.
    pub fn retry_in(&self, attempts: i32, retry_after: Option<Duration>) -> Option<Duration> {
        let index = usize::try_from(attempts).ok()?.checked_sub(1)?;
        let planned = Duration::from_secs(*DELAYS.get(index)?);
        let jittered = planned.mul_f64(0.9 + 0.2 * fastrand::f64());
        let wait = jittered.max(retry_after.unwrap_or_default().min(MAX_RETRY_AFTER));
        Some(wait.mul_f64(self.scale))
    }

    /// Whether an endpoint failing for `failing_for` (on the real clock) is to be disabled.
    pub fn failing_too_long(&self, failing_for: Duration) -> bool {
        failing_for >= DISABLE_AFTER.mul_f64(self.scale)
    }

    /// How many tries a delivery gets.
    pub const fn tries() -> i32 {
        DELAYS.len() as i32 + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_svix_with_jitter_then_gives_up() {
        let real = Schedule::new(1.0);
        for (attempt, planned) in (1..).zip(DELAYS) {
            for _ in 0..50 {
                let wait = real.retry_in(attempt, None).unwrap().as_secs_f64();
                let planned = planned as f64;
                assert!(
                    wait >= planned * 0.9 && wait <= planned * 1.1,
                    "{attempt}: {wait}"
                );
            }
        }
        assert_eq!(real.retry_in(Schedule::tries(), None), None);
        assert_eq!(real.retry_in(0, None), None);
    }

    #[test]
    fn retry_after_is_honoured_up_to_a_day_and_the_clock_scales() {
        let real = Schedule::new(1.0);
        let hour = Duration::from_secs(3600);
        assert_eq!(real.retry_in(1, Some(hour)), Some(hour));
        let week = Duration::from_secs(7 * 86_400);
        assert_eq!(real.retry_in(1, Some(week)), Some(MAX_RETRY_AFTER));
        let fast = Schedule::new(0.001);
        assert_eq!(
            fast.retry_in(1, Some(hour)),
            Some(Duration::from_millis(3600))
        );
        assert!(!fast.failing_too_long(Duration::from_secs(431)));
        assert!(fast.failing_too_long(Duration::from_secs(433)));
        assert!(!real.failing_too_long(Duration::from_secs(4 * 86_400)));
    }
}
