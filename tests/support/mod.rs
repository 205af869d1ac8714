//! Test infrastructure shared by integration tests that include it with `mod support;`.

pub mod fake_api_server;
pub mod kubernetes_objects;
