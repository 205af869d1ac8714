//! The replicated assignment table: model, commands and their pure `apply`, the Raft peer
//! network, node identity, bootstrap and membership automation, reads.
//!
//! ```text
//!  model ◄── command ◄── apply (pure) ◄── persist (TableMachine: StateMachineLogic)
//!                                             │
//!  Replica ── Raft(TypeConfig) ── storage (ta-storage: sled)
//!     ├── network::server (peer port: Raft RPCs, identity, adopt, read index)
//!     ├── network::client (RaftNetworkV2 over HTTP)
//!     ├── bootstrap (lowest name forms the cluster once)
//!     └── membership (leader swaps in replicas that return with a wiped volume)
//! ```

pub mod apply;
mod bootstrap;
pub mod command;
pub mod config;
pub mod contact;
pub mod dev_api;
pub mod error;
pub mod identity;
pub mod intern;
mod membership;
pub mod model;
pub mod network;
pub mod persist;
pub mod prefetch;
pub mod recover;
pub mod replica;
pub mod types;
pub mod workload;

pub use command::Command;
pub use command::CommandBody;
pub use command::CommandBuilder;
pub use command::Expect;
pub use command::Outcome;
pub use command::Response;
pub use config::ClusterConfig;
pub use config::RaftTimings;
pub use contact::Freshness;
pub use error::ProposeError;
pub use error::ReadError;
pub use error::StartError;
pub use model::CollectorState;
pub use model::Table;
pub use model::TargetId;
pub use replica::Proposal;
pub use replica::Replica;
pub use replica::ReplicaStatus;
