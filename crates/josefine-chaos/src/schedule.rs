//! The seeded plan of a chaos run: which disturbances happen, when (from the start of
//! the chaos phase) and how long until the victim comes back. Pure: the same seed and
//! settings give the same plan. Victims are drawn when an event fires, from the
//! members running then (`target`), which the plan itself determines.

use crate::rng::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// SIGKILL a running member; start a new incarnation of it `back_after_ms` later.
    KillMember,
    /// SIGTERM a running member (it commits and leaves); start it again later.
    LeaveMember,
    /// SIGKILL the broker; start it again on the same port and bucket later.
    KillBroker,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    pub at_ms: u64,
    pub action: Action,
    /// Picks the victim among the members running when the event fires.
    pub target: u64,
    pub back_after_ms: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct PlanConfig {
    pub member_kills: usize,
    pub leaves: usize,
    pub broker_kills: usize,
    /// Time between two events, drawn uniformly.
    pub gap_ms: (u64, u64),
    /// How long a killed member stays away: below the session timeout its old
    /// membership is still there when it comes back, above it the group already
    /// rebalanced without it.
    pub member_back_ms: (u64, u64),
    pub rejoin_ms: (u64, u64),
    pub broker_back_ms: (u64, u64),
}

pub fn plan(seed: u64, config: &PlanConfig) -> Vec<Event> {
    let mut rng = Rng::new(seed);
    let mut actions = Vec::new();
    for (action, n) in [
        (Action::KillMember, config.member_kills),
        (Action::LeaveMember, config.leaves),
        (Action::KillBroker, config.broker_kills),
    ] {
        actions.extend((0..n).map(|_| action));
    }
    rng.shuffle(&mut actions);
    let mut at = 0;
    actions
        .into_iter()
        .map(|action| {
            at += rng.between(config.gap_ms.0, config.gap_ms.1);
            let back = match action {
                Action::KillMember => config.member_back_ms,
                Action::LeaveMember => config.rejoin_ms,
                Action::KillBroker => config.broker_back_ms,
            };
            Event {
                at_ms: at,
                action,
                target: rng.next_u64(),
                back_after_ms: rng.between(back.0, back.1),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: PlanConfig = PlanConfig {
        member_kills: 5,
        leaves: 2,
        broker_kills: 1,
        gap_ms: (1000, 2000),
        member_back_ms: (0, 100),
        rejoin_ms: (200, 300),
        broker_back_ms: (400, 500),
    };

    #[test]
    fn a_plan_has_every_event_asked_for_in_time_order_within_bounds() {
        let events = plan(42, &CONFIG);
        let count = |a| events.iter().filter(|e| e.action == a).count();
        assert_eq!(count(Action::KillMember), 5);
        assert_eq!(count(Action::LeaveMember), 2);
        assert_eq!(count(Action::KillBroker), 1);
        let mut last = 0;
        for e in &events {
            let gap = e.at_ms - last;
            assert!((1000..=2000).contains(&gap), "gap {gap}");
            last = e.at_ms;
            let back = match e.action {
                Action::KillMember => 0..=100,
                Action::LeaveMember => 200..=300,
                Action::KillBroker => 400..=500,
            };
            assert!(back.contains(&e.back_after_ms));
        }
    }

    #[test]
    fn the_seed_decides_the_plan() {
        assert_eq!(plan(7, &CONFIG), plan(7, &CONFIG));
        assert_ne!(plan(7, &CONFIG), plan(8, &CONFIG));
    }
}
