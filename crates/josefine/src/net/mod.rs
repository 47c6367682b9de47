//! Transport: the per-socket connection task ([`connection`]) and brokers with lazy,
//! version-negotiated, reconnecting connections ([`broker`]).

mod authenticate;
pub(crate) mod broker;
pub(crate) mod connection;
pub(crate) mod sasl;
pub(crate) mod tls;

pub(crate) use broker::{Broker, BrokerConfig, WeakBroker};
