//! Rate limits and budgets as the real CRMs enforce them, for the fakes:
//! a rolling window (HubSpot's ten-second limit, search's per-second
//! limit), a daily budget, and a simulated other integration that spends
//! part of the same budget.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A rolling window: at most `max` requests in any `window`.
#[derive(Debug)]
pub(crate) struct RollingWindow {
    pub max: u32,
    pub window: Duration,
    recent: VecDeque<Instant>,
}

impl RollingWindow {
    pub(crate) fn new(max: u32, window: Duration) -> Self {
        Self {
            max,
            window,
            recent: VecDeque::new(),
        }
    }

    fn expire(&mut self, now: Instant) {
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            self.recent.pop_front();
        }
    }

    /// Counts a request if there is room; false when the limit is reached.
    pub(crate) fn try_take(&mut self, now: Instant) -> bool {
        self.expire(now);
        if self.recent.len() as u32 >= self.max {
            return false;
        }
        self.recent.push_back(now);
        true
    }

    /// Requests still allowed in the current window.
    pub(crate) fn remaining(&mut self, now: Instant) -> u32 {
        self.expire(now);
        self.max.saturating_sub(self.recent.len() as u32)
    }

    /// How long until the oldest request leaves the window.
    pub(crate) fn retry_after(&self, now: Instant) -> Duration {
        self.recent.front().map_or(Duration::ZERO, |t| {
            self.window.saturating_sub(now.duration_since(*t))
        })
    }
}

/// A daily call budget: reset at midnight in the account's time zone (as
/// HubSpot's is), or by a test through the inspection API.
#[derive(Debug)]
pub(crate) struct DailyBudget {
    pub max: u64,
    pub used: u64,
    /// The account's time zone, where the day turns.
    pub zone: jiff::tz::TimeZone,
    /// The account day `used` counts.
    pub day: Option<jiff::civil::Date>,
}

impl DailyBudget {
    pub(crate) fn new(max: u64, zone: jiff::tz::TimeZone) -> Self {
        Self {
            max,
            used: 0,
            zone,
            day: None,
        }
    }

    /// Starts a new count when the account's day turned.
    fn roll(&mut self) {
        let today = self.zone.to_datetime(jiff::Timestamp::now()).date();
        if self.day != Some(today) {
            self.day = Some(today);
            self.used = 0;
        }
    }

    pub(crate) fn try_take(&mut self) -> bool {
        self.roll();
        if self.used >= self.max {
            return false;
        }
        self.used += 1;
        true
    }

    pub(crate) fn remaining(&mut self) -> u64 {
        self.roll();
        self.max.saturating_sub(self.used)
    }
}
