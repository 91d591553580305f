//! The test kit: sample datasets, seeding DynamoDB, round-trip decoders and a writer of DynamoDB's
//! wire format. Compiled for the library's own tests and with the `testkit` feature (integration
//! tests, benchmarks, and the seed and bare-scan helper binaries); `cargo build --release` of the
//! product leaves it out.

pub mod decode;
pub mod export;
pub mod fixtures;
pub mod layouts;
pub mod runs;
pub mod storage;
pub mod wire;
