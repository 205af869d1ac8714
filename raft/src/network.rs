//! The peer network: HTTP on its own port, bincode bodies, every RPC carrying the cluster id
//! and the addressed node id.

pub mod client;
pub mod server;
pub mod wire;
