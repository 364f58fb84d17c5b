//! The time the correlator closes windows by: event time, as the input
//! carries it, not the wall clock.
//!
//! With the wall clock, a replay faster than real time closes each window
//! as soon as its first batch arrives (the wall is far past it), so the
//! reports of the same packets from other points, a batch later, come
//! too late: the journeys depend on the pace of the replay. With the
//! newest time the input vouches for, they do not. The wall clock still
//! counts when the input falls silent, so that live windows close when
//! traffic stops: after `quiet_ns` without input, the watermark moves on
//! with the wall.

/// The newest event time seen, moved on by silence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermark {
    event_ns: i64,
    /// Wall time when input last arrived.
    input_wall_ns: i64,
    quiet_ns: i64,
}

impl Watermark {
    /// A watermark that starts at the first input, and follows the wall
    /// once the input has been silent for `quiet_ns`.
    pub fn new(quiet_ns: i64) -> Self {
        Self {
            event_ns: i64::MIN,
            input_wall_ns: i64::MIN,
            quiet_ns,
        }
    }

    /// Input arrived at `wall_ns` vouching for event time `event_ns`
    /// ([`Correlator::event_time_ns`](crate::Correlator::event_time_ns));
    /// `i64::MIN` says nothing of event time, but still counts as input.
    pub fn input(&mut self, event_ns: i64, wall_ns: i64) {
        self.event_ns = self.event_ns.max(event_ns);
        self.input_wall_ns = wall_ns;
    }

    /// The watermark at wall time `wall_ns`.
    pub fn at(&self, wall_ns: i64) -> i64 {
        if self.event_ns == i64::MIN {
            return i64::MIN;
        }
        let silent = wall_ns.saturating_sub(self.input_wall_ns);
        self.event_ns
            .saturating_add(silent.saturating_sub(self.quiet_ns).max(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn event_time_leads_and_silence_moves_it_on() {
        let mut w = Watermark::new(10 * S);
        assert_eq!(w.at(5 * S), i64::MIN, "nothing seen, nothing closes");
        w.input(100 * S, 1_000 * S);
        // however far the wall is (a replay of old input), event time rules
        assert_eq!(w.at(1_000 * S), 100 * S);
        assert_eq!(w.at(1_010 * S), 100 * S);
        // silent longer than the quiet time: on with the wall
        assert_eq!(w.at(1_013 * S), 103 * S);
        // an older batch does not move it back
        w.input(90 * S, 1_014 * S);
        assert_eq!(w.at(1_014 * S), 100 * S);
    }
}
