//! The configuration file (`targetallocator.yaml`, upstream-compatible, plus our `cluster:`,
//! `collectors:` and `balanced:` sections). Being written.
