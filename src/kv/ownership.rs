//! Single-owner fencing: which host may write an actor's keys.
//!
//! Waking an actor claims it. A claim bumps the actor's generation, stored
//! with the actor in the backend, and records a lease (who holds it, until
//! when). Every write carries the [`Fence`] of the claim it was made under,
//! and the backend checks it against the stored generation in the same
//! atomic step as the write: once another host has claimed the actor, the
//! old owner's writes fail with [`KvError::OwnershipLost`] and change
//! nothing. The lease only decides whether a claim must wait; safety rests
//! on the generation alone, so a paused process that wakes up with an
//! expired lease still cannot write.
//!
//! Generations never go back: deleting an actor keeps its generation, or a
//! host fenced out before the delete could write again after it.
//!
//! [`Owners`] is the table for backends that one process holds (memory,
//! redb): their generations live in that process, since no other process
//! can reach the store.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::KvError;
use crate::actor_id::ActorId;

/// The generation a write was made under. A backend applies a write only
/// while its fence equals the actor's current generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fence(u64);

impl Fence {
    /// The fence of an actor nobody has claimed yet, for tools that fill a
    /// fresh store. Its writes fail once anyone claims the actor.
    pub const UNCLAIMED: Fence = Fence(0);

    /// The fence of generation `generation`, as a backend stored it.
    pub const fn from_generation(generation: u64) -> Fence {
        Fence(generation)
    }

    /// The generation.
    pub const fn generation(self) -> u64 {
        self.0
    }
}

/// What a claim does about a lease that another owner still holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Takeover {
    /// Fail with [`KvError::Owned`]; claim only a free or expired lease.
    #[default]
    IfFree,
    /// Claim regardless: the current owner is fenced out. For an operator
    /// who knows the other host is gone.
    Force,
}

/// A request to own an actor.
#[derive(Clone, Copy, Debug)]
pub struct ClaimRequest<'a> {
    /// Who claims: a name unique to the claiming host.
    pub owner: &'a str,
    /// How long the lease lasts unless renewed.
    pub ttl: Duration,
    /// What to do about a live lease of another owner.
    pub takeover: Takeover,
    /// Keys to read in the same step, after the claim took effect (a wake
    /// reads its file metadata and first page here, saving a round trip).
    pub read: &'a [Bytes],
}

/// A successful claim.
#[derive(Clone, Debug)]
pub struct Claimed {
    /// The fence every write of the new owner carries.
    pub fence: Fence,
    /// The values of [`ClaimRequest::read`], in order.
    pub values: Vec<Option<Bytes>>,
}

#[derive(Debug)]
struct Lease {
    owner: String,
    until: Instant,
}

#[derive(Debug, Default)]
struct Owner {
    generation: u64,
    lease: Option<Lease>,
}

/// Generations and leases of the actors of a store held by one process.
#[derive(Debug, Default)]
pub(crate) struct Owners {
    actors: HashMap<ActorId, Owner>,
}

impl Owners {
    /// Claims `actor`, or says who holds it.
    pub(crate) fn claim(&mut self, actor: &ActorId, request: &ClaimRequest<'_>) -> Result<Fence, KvError> {
        let now = Instant::now();
        let owner = self.actors.entry(actor.clone()).or_default();
        if let Some(lease) = &owner.lease
            && request.takeover == Takeover::IfFree
            && lease.owner != request.owner
            && lease.until > now
        {
            return Err(KvError::Owned { owner: lease.owner.clone(), remaining: lease.until - now });
        }
        owner.generation += 1;
        owner.lease = Some(Lease { owner: request.owner.to_owned(), until: now + request.ttl });
        Ok(Fence(owner.generation))
    }

    /// Extends the lease of the owner holding `fence`.
    pub(crate) fn renew(&mut self, actor: &ActorId, fence: Fence, owner: &str, ttl: Duration) -> Result<(), KvError> {
        self.check(actor, fence)?;
        let entry = self.actors.entry(actor.clone()).or_default();
        entry.lease = Some(Lease { owner: owner.to_owned(), until: Instant::now() + ttl });
        Ok(())
    }

    /// Ends the lease of the owner holding `fence`; a stale fence has
    /// nothing to release.
    pub(crate) fn release(&mut self, actor: &ActorId, fence: Fence) {
        if let Some(owner) = self.actors.get_mut(actor)
            && owner.generation == fence.0
        {
            owner.lease = None;
        }
    }

    /// Whether a write under `fence` may land.
    pub(crate) fn check(&self, actor: &ActorId, fence: Fence) -> Result<(), KvError> {
        let current = self.actors.get(actor).map_or(0, |o| o.generation);
        if current == fence.0 { Ok(()) } else { Err(KvError::OwnershipLost { held: fence.0, current }) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(owner: &str, takeover: Takeover) -> ClaimRequest<'_> {
        ClaimRequest { owner, ttl: Duration::from_secs(60), takeover, read: &[] }
    }

    #[test]
    fn a_live_lease_refuses_others_until_forced_and_fences_the_old_owner() {
        let mut owners = Owners::default();
        let actor = ActorId::new("a").unwrap();
        owners.check(&actor, Fence::UNCLAIMED).unwrap();
        let first = owners.claim(&actor, &request("host-a", Takeover::IfFree)).unwrap();
        assert!(owners.check(&actor, Fence::UNCLAIMED).is_err());
        let refused = owners.claim(&actor, &request("host-b", Takeover::IfFree)).unwrap_err();
        assert!(matches!(&refused, KvError::Owned { owner, .. } if owner == "host-a"), "{refused}");
        let second = owners.claim(&actor, &request("host-b", Takeover::Force)).unwrap();
        assert!(second > first);
        assert!(matches!(owners.check(&actor, first), Err(KvError::OwnershipLost { held: 1, current: 2 })));
        assert!(owners.renew(&actor, first, "host-a", Duration::from_secs(1)).is_err());
        owners.release(&actor, first);
        assert!(owners.claim(&actor, &request("host-c", Takeover::IfFree)).is_err(), "a stale release freed the lease");
        owners.release(&actor, second);
        owners.claim(&actor, &request("host-c", Takeover::IfFree)).unwrap();
    }

    #[test]
    fn an_expired_lease_can_be_claimed() {
        let mut owners = Owners::default();
        let actor = ActorId::new("a").unwrap();
        owners.claim(&actor, &ClaimRequest { ttl: Duration::ZERO, ..request("host-a", Takeover::IfFree) }).unwrap();
        owners.claim(&actor, &request("host-b", Takeover::IfFree)).unwrap();
    }
}
