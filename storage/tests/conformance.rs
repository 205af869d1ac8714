//! openraft's storage conformance suite, run against the real sled store on disk.

mod support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_store_passes_openraft_conformance_suite() {
    openraft::testing::log::Suite::test_all(support::TempStoreBuilder)
        .await
        .expect("conformance suite");
}
