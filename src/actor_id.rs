//! `ActorId`: the name of an actor, and of its key namespace in a `KvStore`.

use std::fmt;
use std::sync::Arc;

use crate::error::Error;

/// The longest actor id accepted, in bytes.
pub const MAX_ACTOR_ID_LEN: usize = 128;

/// A validated actor id: 1 to 128 bytes of ASCII letters, digits and `._:-`.
///
/// The alphabet keeps ids safe to print, to use in file names and to embed in
/// a shared backend's key prefix without escaping.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ActorId(Arc<str>);

impl ActorId {
    /// Checks `id` and wraps it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidActorId`] when `id` is empty, too long, or has a
    /// character outside `[A-Za-z0-9._:-]`.
    pub fn new(id: &str) -> Result<Self, Error> {
        let invalid = |reason: String| Error::InvalidActorId { id: id.to_owned(), reason };
        if id.is_empty() {
            return Err(invalid("it is empty".into()));
        }
        if id.len() > MAX_ACTOR_ID_LEN {
            return Err(invalid(format!("it is {} bytes long, the limit is {MAX_ACTOR_ID_LEN}", id.len())));
        }
        if let Some(c) = id.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'))) {
            return Err(invalid(format!("{c:?} is not one of A-Z a-z 0-9 . _ : -")));
        }
        Ok(ActorId(id.into()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for ActorId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        ActorId::new(s)
    }
}

impl fmt::Display for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ActorId({:?})", &*self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        assert_eq!(ActorId::new("user-42:room_7.v2").unwrap().as_str(), "user-42:room_7.v2");
    }

    #[test]
    fn rejects_empty_long_and_odd_ids() {
        for bad in ["", "a b", "x/y", "é", &"a".repeat(MAX_ACTOR_ID_LEN + 1)] {
            let err = ActorId::new(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidActorId { .. }), "{bad:?} gave {err}");
        }
    }
}
