//! Transport: the per-socket connection task ([`connection`]) and brokers with lazy,
//! version-negotiated, reconnecting connections ([`broker`]).

mod authenticate;
pub mod broker;
pub mod connection;
pub mod sasl;
pub mod tls;

pub use broker::{Broker, BrokerConfig};
pub use connection::{Connection, ConnectionConfig};
pub use tls::TlsConfig;
