//! The lease an awake actor holds on its namespace in the KV, and when it
//! must be renewed.
//!
//! Writes are fenced by the backend (see [`crate::kv::Fence`]), but a warm
//! read makes no KV call at all, so an owner could keep answering SELECTs
//! from its cache after another host took the actor over. The lease closes
//! that: a call starts only while the local lease is known valid, measured
//! on this host's monotonic clock from the moment the claim (or renewal) was
//! sent, minus a margin for the rate drift between clocks. Past half its
//! life the next call renews it first (one KV round trip per half-life of a
//! busy actor, none for an idle one); a call that outlives it renews before
//! its result is handed out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::actor_id::ActorId;
use crate::kv::{Fence, KvError, KvStore};

/// How a host claims the actors it wakes.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// This host's name in the store's leases; `None`: a random name per
    /// [`crate::Host`]. Two hosts must never share one.
    pub owner: Option<String>,
    /// How long a claim lasts unless renewed: the longest another host waits
    /// to take over the actors of a host that died. Default 30 s.
    pub ttl: Duration,
    /// Subtracted from the lease on this host's side, for clocks that run at
    /// different rates. Default 1 s.
    pub drift_margin: Duration,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        LeaseConfig { owner: None, ttl: Duration::from_secs(30), drift_margin: Duration::from_secs(1) }
    }
}

impl LeaseConfig {
    /// This host's owner name: the configured one, or a fresh random one.
    pub(crate) fn owner_name(&self) -> Arc<str> {
        match &self.owner {
            Some(name) => name.as_str().into(),
            None => format!("host-{:016x}", rand::random::<u64>()).into(),
        }
    }
}

/// A held lease: the claim's fence and when it runs out here.
#[derive(Clone, Debug)]
pub(crate) struct Lease {
    pub(crate) fence: Fence,
    owner: Arc<str>,
    ttl: Duration,
    margin: Duration,
    renew_at: Instant,
    valid_until: Instant,
}

impl Lease {
    /// The lease of a claim (or renewal) sent at `sent`.
    pub(crate) fn new(fence: Fence, owner: Arc<str>, config: &LeaseConfig, sent: Instant) -> Lease {
        let mut lease = Lease {
            fence,
            owner,
            ttl: config.ttl,
            margin: config.drift_margin,
            renew_at: sent,
            valid_until: sent,
        };
        lease.restart(sent);
        lease
    }

    fn restart(&mut self, sent: Instant) {
        self.renew_at = sent + self.ttl / 2;
        self.valid_until = sent + self.ttl.saturating_sub(self.margin);
    }

    /// Whether a call starting at `now` should renew first.
    pub(crate) fn wants_renewal(&self, now: Instant) -> bool {
        now >= self.renew_at
    }

    /// Whether, at `now`, no other host can have claimed the actor yet.
    pub(crate) fn is_valid(&self, now: Instant) -> bool {
        now < self.valid_until
    }

    /// Renews the lease in the store.
    pub(crate) async fn renew(&mut self, kv: &dyn KvStore, actor: &ActorId) -> Result<(), KvError> {
        let sent = Instant::now();
        kv.renew(actor, self.fence, &self.owner, self.ttl).await?;
        self.restart(sent);
        Ok(())
    }
}
