// The crate's front page is ARCHITECTURE.md beside this file, so that readers of the repository
// and of rustdoc find the same text (tests/it/docs.rs checks its links).
#![doc = include_str!("ARCHITECTURE.md")]

pub mod aws;
pub mod error;
pub mod phases;
pub mod retry;
pub mod schema;
pub mod source;
pub mod staging;
pub mod stop;
pub mod storage;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod transform;
pub mod value;
pub mod warehouse;
