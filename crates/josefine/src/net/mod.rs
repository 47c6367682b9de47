//! Transport: the per-socket connection task ([`connection`]) and brokers with lazy,
//! version-negotiated, reconnecting connections ([`broker`]).

pub mod broker;
pub mod connection;
pub mod sasl;

pub use broker::{Broker, BrokerConfig};
pub use connection::{Connection, ConnectionConfig};
