//! Reading a segment's parts in phase 3, one request ahead of the loader.

use crate::storage::{Body, Store, StoreError};

/// Opens a known sequence of parts for reading one after another, with the GET of the next part
/// already under way while the current one is read (and the first one's from the start, while
/// the caller sets up its warehouse connection): a store's time to first byte (a few
/// milliseconds on S3, more on a busy S3-compatible server) then overlaps with other work
/// instead of adding to it. At most one request runs ahead, and it holds only the response head
/// and what the connection buffers, so memory does not grow with part size.
pub struct PartReader {
    store: Store,
    state: std::sync::Mutex<ReaderState>,
}

struct ReaderState {
    upcoming: std::collections::VecDeque<String>,
    ahead: Option<(String, tokio::task::JoinHandle<Result<Body, StoreError>>)>,
}

impl PartReader {
    /// `keys` in the order they will be opened; the first one's GET starts now (so this must be
    /// called within a Tokio runtime).
    pub fn new(store: Store, keys: Vec<String>) -> Self {
        let mut upcoming: std::collections::VecDeque<String> = keys.into();
        let ahead = upcoming.pop_front().map(|first| {
            let store = store.clone();
            let key = first.clone();
            (
                first,
                tokio::spawn(async move { store.get_stream(&key).await }),
            )
        });
        PartReader {
            store,
            state: std::sync::Mutex::new(ReaderState { upcoming, ahead }),
        }
    }

    /// The body of `key`. Keys opened out of the announced order still work (fetched on the
    /// spot); the request running ahead for another key is then dropped.
    pub async fn open(&self, key: &str) -> Result<Body, StoreError> {
        let ahead = {
            let mut state = self.state.lock().expect("part reader lock");
            let ahead = state.ahead.take();
            // Everything up to and including `key` is now behind us.
            if let Some(at) = state.upcoming.iter().position(|k| k == key) {
                state.upcoming.drain(..=at);
            }
            state.ahead = state.upcoming.pop_front().map(|next| {
                let store = self.store.clone();
                let k = next.clone();
                (
                    next,
                    tokio::spawn(async move { store.get_stream(&k).await }),
                )
            });
            ahead
        };
        match ahead {
            Some((k, handle)) if k == key => match handle.await {
                Ok(result) => result,
                // The task only fails if it panicked or the runtime is shutting down.
                Err(_) => self.store.get_stream(key).await,
            },
            Some((_, handle)) => {
                handle.abort();
                self.store.get_stream(key).await
            }
            None => self.store.get_stream(key).await,
        }
    }
}

impl Drop for PartReader {
    fn drop(&mut self) {
        if let Ok(mut state) = self.state.lock() {
            if let Some((_, handle)) = state.ahead.take() {
                handle.abort();
            }
        }
    }
}
