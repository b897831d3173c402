//! Time for key lifecycles (deletion dates, rotation schedules), in Unix seconds.

use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock time plus a fixed offset. The offset exists so tests can move a running server's
/// lifecycle clock past a 7-day deletion window or a 90-day rotation period; it never affects
/// request authentication, which always uses the real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct Clock {
    offset_seconds: i64,
}

impl Clock {
    pub fn with_offset(offset_seconds: i64) -> Self {
        Self { offset_seconds }
    }

    pub fn offset_seconds(&self) -> i64 {
        self.offset_seconds
    }

    pub fn now(&self) -> i64 {
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        i64::try_from(real)
            .unwrap_or(i64::MAX)
            .saturating_add(self.offset_seconds)
    }
}
