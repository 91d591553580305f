//! A request to stop early (SIGTERM from AWS Batch on a Spot interruption, or Ctrl-C), shared by
//! everything one command runs. Work that can stop cleanly checks it at safe points — phase 1
//! between pages, phase 3 between tables — saves what it can and returns an error of the retry
//! class; the command line gives everything else a short grace period.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

#[derive(Debug, Clone, Default)]
pub struct Stop {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    requested: AtomicBool,
    why: std::sync::Mutex<Option<String>>,
    notify: Notify,
}

impl Stop {
    /// Asks everything watching to stop; `why` names the cause (e.g. `SIGTERM`).
    pub fn request(&self, why: &str) {
        *self.inner.why.lock().expect("stop lock") = Some(why.to_string());
        self.inner.requested.store(true, Ordering::SeqCst);
        self.inner.notify.notify_waiters();
    }

    pub fn is_requested(&self) -> bool {
        self.inner.requested.load(Ordering::SeqCst)
    }

    /// What asked to stop, once something did.
    pub fn why(&self) -> Option<String> {
        self.inner.why.lock().expect("stop lock").clone()
    }

    /// Resolves once a stop is requested (at once if it was already).
    pub async fn requested(&self) {
        loop {
            let notified = self.inner.notify.notified();
            if self.is_requested() {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_wake_when_a_stop_is_requested_and_later_ones_return_at_once() {
        let stop = Stop::default();
        assert!(!stop.is_requested());
        let waiter = tokio::spawn({
            let stop = stop.clone();
            async move { stop.requested().await }
        });
        tokio::task::yield_now().await;
        stop.request("SIGTERM");
        waiter.await.unwrap();
        stop.requested().await;
        assert_eq!(stop.why().as_deref(), Some("SIGTERM"));
    }
}
