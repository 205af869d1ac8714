//! The replicated assignment table: model, commands and their pure `apply`, the Raft peer
//! network, node identity, bootstrap and membership automation, reads.

pub mod apply;
pub mod command;
pub mod intern;
pub mod model;
pub mod persist;
pub mod types;
