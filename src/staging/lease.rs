//! A lease on a run: `runs/<run-id>/lease.json`, created only if absent (a conditional PUT), so
//! of two `run`s of one run id started together exactly one works on it; the other is told who
//! holds it and until when. The holder renews it while it works and removes it at the end; a
//! lease not renewed for [`LEASE_SECONDS`] (its holder was killed) may be taken over, and at once
//! when its holder was a process of this host that is no longer running.

use chrono::{DateTime, Duration as Span, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;

use super::Staging;
use crate::error::{Class, Classify};
use crate::storage::StoreError;

/// How long a lease holds without being renewed.
pub const LEASE_SECONDS: i64 = 120;

/// How often the holder renews it.
const RENEW_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LeaseRecord {
    /// Which process holds it: `pid <n> on <host>`.
    holder: String,
    #[serde(with = "super::rfc3339")]
    started_at: DateTime<Utc>,
    #[serde(with = "super::rfc3339")]
    expires_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("run {run_id} is being worked on by another process ({holder}, since {since}); its lease holds until {expires_at} unless renewed. Nothing was done; let it finish, then see where the run stands")]
    Held {
        run_id: String,
        holder: String,
        since: String,
        expires_at: String,
    },
}

impl Classify for LeaseError {
    fn class(&self) -> Class {
        match self {
            LeaseError::Store(e) => e.class(),
            LeaseError::Held { .. } => Class::Retry,
        }
    }
}

/// A held lease; renewed in the background until [`RunLease::release`].
pub struct RunLease {
    staging: Staging,
    key: String,
    holder: String,
    renewal: tokio::task::JoinHandle<()>,
}

fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "an unknown host".into())
}

fn this_process() -> String {
    format!("pid {} on {}", std::process::id(), this_host())
}

/// Whether `holder` (as [`this_process`] names one) was a process of this host that has ended:
/// its lease need not be waited out. A process of another host (another container) is never
/// known to be gone, and a reused pid only makes the lease look held.
fn holder_is_gone(holder: &str) -> bool {
    let Some((pid, host)) = holder
        .strip_prefix("pid ")
        .and_then(|rest| rest.split_once(" on "))
    else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    host == this_host()
        && pid != std::process::id()
        && !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

fn record(holder: &str, started_at: DateTime<Utc>) -> bytes::Bytes {
    let record = LeaseRecord {
        holder: holder.to_string(),
        started_at,
        expires_at: Utc::now() + Span::seconds(LEASE_SECONDS),
    };
    serde_json::to_vec(&record)
        .expect("lease serialises")
        .into()
}

impl RunLease {
    /// Takes the lease of `run_id`, or says who holds it.
    pub async fn acquire(staging: &Staging, run_id: &str) -> Result<RunLease, LeaseError> {
        let key = staging.layout.run_lease(run_id);
        let holder = this_process();
        let started_at = Utc::now();
        let body = record(&holder, started_at);
        let store = &staging.store;
        if !store
            .put_if_absent(&key, body.clone(), "application/json")
            .await?
        {
            let current = match store.get(&key).await? {
                Some(bytes) => serde_json::from_slice::<LeaseRecord>(&bytes).ok(),
                None => None,
            };
            let live = current
                .as_ref()
                .is_some_and(|r| r.expires_at > Utc::now() && !holder_is_gone(&r.holder));
            if let (true, Some(r)) = (live, current) {
                return Err(LeaseError::Held {
                    run_id: run_id.to_string(),
                    holder: r.holder,
                    since: super::rfc3339::text(&r.started_at),
                    expires_at: super::rfc3339::text(&r.expires_at),
                });
            }
            // Expired, unreadable, or its holder ended on this host: its holder is gone. Of two processes taking it over at
            // once, the conditional PUT lets one win.
            tracing::warn!(run_id, lease = %staging.url(&key), "taking over an expired lease");
            store.delete_keys(std::slice::from_ref(&key)).await?;
            if !store.put_if_absent(&key, body, "application/json").await? {
                return Box::pin(RunLease::acquire(staging, run_id)).await;
            }
        }
        let renewal = {
            let (staging, key, holder) = (staging.clone(), key.clone(), holder.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(RENEW_EVERY).await;
                    let body = record(&holder, started_at);
                    if let Err(e) = staging.store.put(&key, body, "application/json").await {
                        tracing::warn!(error = %e, "could not renew the run's lease");
                    }
                }
            })
        };
        Ok(RunLease {
            staging: staging.clone(),
            key,
            holder,
            renewal,
        })
    }

    /// Gives the lease up (if it is still this process's).
    pub async fn release(self) {
        self.renewal.abort();
        let ours = match self.staging.store.get(&self.key).await {
            Ok(Some(bytes)) => {
                serde_json::from_slice::<LeaseRecord>(&bytes).is_ok_and(|r| r.holder == self.holder)
            }
            _ => false,
        };
        if ours {
            if let Err(e) = self
                .staging
                .store
                .delete_keys(std::slice::from_ref(&self.key))
                .await
            {
                tracing::warn!(error = %e, "could not remove the run's lease; it expires by itself");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::staging::Layout;
    use crate::storage::memory::MemoryStore;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_lease_of_a_process_gone_from_this_host_is_taken_over_at_once() {
        let staging = Staging::new(Arc::new(MemoryStore::new("b")), Layout::new("p"));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = child.id();
        child.wait().unwrap();
        let live_until = Utc::now() + Span::seconds(LEASE_SECONDS);
        for (run, host, taken) in [
            ("here", this_host(), true),
            ("there", "elsewhere".into(), false),
        ] {
            let held = LeaseRecord {
                holder: format!("pid {gone} on {host}"),
                started_at: Utc::now(),
                expires_at: live_until,
            };
            staging
                .store
                .put(
                    &staging.layout.run_lease(run),
                    serde_json::to_vec(&held).unwrap().into(),
                    "application/json",
                )
                .await
                .unwrap();
            let got = RunLease::acquire(&staging, run).await;
            assert_eq!(got.is_ok(), taken, "{run}: {:?}", got.err());
        }
    }

    #[tokio::test]
    async fn one_holder_at_a_time_and_an_expired_lease_is_taken_over() {
        let staging = Staging::new(Arc::new(MemoryStore::new("b")), Layout::new("p"));
        let lease = RunLease::acquire(&staging, "r").await.unwrap();
        let err = RunLease::acquire(&staging, "r").await.err().unwrap();
        assert!(err.to_string().contains("another process"), "{err}");
        assert_eq!(err.class(), Class::Retry);
        lease.release().await;
        let again = RunLease::acquire(&staging, "r").await.unwrap();
        // A holder that was killed: its lease (as leases have always been written) expired long
        // ago.
        let stale = r#"{"holder":"pid 1 on gone","started_at":"2026-01-01T00:00:00+00:00","expires_at":"2026-01-01T00:02:00+00:00"}"#;
        let record: LeaseRecord = serde_json::from_str(stale).unwrap();
        assert_eq!(serde_json::to_string(&record).unwrap(), stale);
        let key = staging.layout.run_lease("s");
        staging
            .store
            .put(&key, stale.as_bytes().to_vec().into(), "application/json")
            .await
            .unwrap();
        let taken = RunLease::acquire(&staging, "s").await.unwrap();
        taken.release().await;
        again.release().await;
        assert_eq!(staging.store.get(&key).await.unwrap(), None);
    }
}
