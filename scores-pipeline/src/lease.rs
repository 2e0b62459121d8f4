//! The ingester's lease: one key in a JetStream key-value bucket whose entries expire after the
//! lease's TTL. Whoever creates the key holds the lease and renews it (an update that names the
//! revision it holds) every third of the TTL; a holder that stops renewing loses it when the
//! entry expires, and the next replica to create the key takes over. The lease decides who
//! reads the upstream; the stream's fence, not the lease, is what makes a deposed holder
//! harmless (see `jetstream`).

use std::time::{Duration, Instant};

use async_nats::jetstream::kv::{self, CreateErrorKind, Store};

use crate::jetstream::JetStream;
use crate::log::LogError;

const KEY: &str = "ingester";

/// The lease's bucket.
#[derive(Clone, Debug)]
pub(crate) struct LeaseBucket {
    store: Store,
    ttl: Duration,
}

/// The lease, held.
#[derive(Debug)]
pub(crate) struct Lease {
    store: Store,
    holder: String,
    /// The revision the lease was taken with.
    term: u64,
    revision: u64,
    /// When the lease was last created or renewed, by this holder's clock.
    renewed: Instant,
    ttl: Duration,
}

impl LeaseBucket {
    /// The bucket, created (with the stream's replicas and the lease's TTL) if it is missing.
    pub(crate) async fn open(js: &JetStream) -> Result<LeaseBucket, LogError> {
        let config = js.config();
        let bucket = config.lease_bucket();
        let nats = |error: &dyn std::fmt::Display| {
            LogError::Nats(format!("opening the lease bucket {bucket}: {error}"))
        };
        let store = match js.context().get_key_value(&bucket).await {
            Ok(store) => store,
            Err(_) => {
                let kv_config = kv::Config {
                    bucket: bucket.clone(),
                    history: 1,
                    max_age: config.lease_ttl,
                    num_replicas: config.replicas,
                    ..kv::Config::default()
                };
                js.context().create_key_value(kv_config).await.map_err(|e| nats(&e))?
            }
        };
        Ok(LeaseBucket { store, ttl: config.lease_ttl })
    }

    /// Takes the lease for `holder` if no one holds it; `None` when someone does.
    pub(crate) async fn try_acquire(&self, holder: &str) -> Result<Option<Lease>, LogError> {
        let value = bytes::Bytes::from(holder.to_owned().into_bytes());
        match self.store.create(KEY, value).await {
            Ok(revision) => Ok(Some(Lease {
                store: self.store.clone(),
                holder: holder.to_owned(),
                term: revision,
                revision,
                renewed: Instant::now(),
                ttl: self.ttl,
            })),
            Err(error) if error.kind() == CreateErrorKind::AlreadyExists => Ok(None),
            Err(error) => Err(LogError::Nats(format!("taking the lease: {error}"))),
        }
    }
}

impl Lease {
    /// The revision the lease was taken with: this holder's term, unique to it.
    pub(crate) fn term(&self) -> u64 {
        self.term
    }

    /// How often the holder renews.
    pub(crate) fn renew_every(&self) -> Duration {
        self.ttl / 3
    }

    /// Renews the lease. `Ok(false)` once it is lost: someone else holds it, or it has not been
    /// renewed for a whole TTL (it may have expired on the server meanwhile).
    pub(crate) async fn renew(&mut self) -> Result<bool, LogError> {
        if self.renewed.elapsed() >= self.ttl {
            return Ok(false);
        }
        let value = bytes::Bytes::from(self.holder.clone().into_bytes());
        match self.store.update(KEY, value, self.revision).await {
            Ok(revision) => {
                self.revision = revision;
                self.renewed = Instant::now();
                Ok(true)
            }
            Err(error) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(false),
            Err(error) => Err(LogError::Nats(format!("renewing the lease: {error}"))),
        }
    }

    /// Gives the lease up, so that another replica takes over at once rather than after the TTL.
    /// Waits a second at most: with NATS away, the lease expires by itself anyway.
    pub(crate) async fn release(self) {
        let deleted = self.store.delete_expect_revision(KEY, Some(self.revision));
        match tokio::time::timeout(Duration::from_secs(1), deleted).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::debug!(%error, "could not release the lease; it expires by itself")
            }
            Err(_) => tracing::debug!("NATS did not answer; the lease expires by itself"),
        }
    }
}
