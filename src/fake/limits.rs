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

/// A daily call budget (reset by the test through the inspection API, or
/// at the fake's midnight).
#[derive(Debug)]
pub(crate) struct DailyBudget {
    pub max: u64,
    pub used: u64,
}

impl DailyBudget {
    pub(crate) fn try_take(&mut self) -> bool {
        if self.used >= self.max {
            return false;
        }
        self.used += 1;
        true
    }

    pub(crate) fn remaining(&self) -> u64 {
        self.max.saturating_sub(self.used)
    }
}
