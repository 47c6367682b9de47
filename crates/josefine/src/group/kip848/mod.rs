//! The consumer group protocol of KIP-848 (`group.protocol=consumer`): the broker
//! assigns, members reconcile one partition at a time, and there is no group-wide
//! barrier. [`membership`] is the state machine, [`driver`] its I/O.

pub(crate) mod driver;
pub(crate) mod membership;
