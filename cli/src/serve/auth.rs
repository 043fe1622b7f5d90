//! Bearer tokens: which token opens which actor.
//!
//! The auth file has one grant per line, `ACTOR TOKEN` for one actor or
//! `* TOKEN` for every actor; `#` starts a comment. Tokens are compared in
//! constant time, and every configured token is compared, so the time a
//! refusal takes says nothing about how close a guess came.

use std::path::Path;

use anyhow::{Context, Result, bail};
use wasqlite::ActorId;

/// Shortest token accepted: a guessable token is no lock.
const MIN_TOKEN_LEN: usize = 16;

/// Who a request authenticated as: the index of its grant, or nobody on a
/// server without tokens. A stream is bound to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Credential {
    Anonymous,
    Grant(usize),
}

struct Grant {
    /// `None`: every actor.
    actor: Option<String>,
    token: Vec<u8>,
}

pub(crate) struct Auth {
    /// `None`: `--no-auth`, anyone may reach any actor.
    grants: Option<Vec<Grant>>,
}

impl Auth {
    pub(crate) fn open() -> Auth {
        Auth { grants: None }
    }

    pub(crate) fn from_file(path: &Path) -> Result<Auth> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading the auth file {}", path.display()))?;
        let mut grants = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let at = || format!("{}:{}", path.display(), n + 1);
            let mut words = line.split_whitespace();
            let (Some(actor), Some(token), None) = (words.next(), words.next(), words.next()) else {
                bail!("{}: expected `ACTOR TOKEN` or `* TOKEN`", at());
            };
            if token.len() < MIN_TOKEN_LEN {
                bail!("{}: the token is {} characters long; use at least {MIN_TOKEN_LEN} (e.g. `openssl rand -hex 32`)", at(), token.len());
            }
            let actor = match actor {
                "*" => None,
                id => Some(ActorId::new(id).with_context(at)?.as_str().to_owned()),
            };
            grants.push(Grant { actor, token: token.as_bytes().to_vec() });
        }
        if grants.is_empty() {
            bail!("the auth file {} grants nothing; add `ACTOR TOKEN` or `* TOKEN` lines", path.display());
        }
        Ok(Auth { grants: Some(grants) })
    }

    /// Checks the `Authorization` header of a request for `actor`.
    pub(crate) fn check(&self, actor: &ActorId, header: Option<&[u8]>) -> Result<Credential, &'static str> {
        let Some(grants) = &self.grants else { return Ok(Credential::Anonymous) };
        let Some(header) = header else { return Err("this server needs a token: send `Authorization: Bearer TOKEN` (the clients' authToken)") };
        let token = match header.get(..7) {
            Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer ") => header[7..].trim_ascii(),
            _ => return Err("the Authorization header is not `Bearer TOKEN`"),
        };
        let mut found = None;
        for (i, grant) in grants.iter().enumerate() {
            let applies = grant.actor.as_deref().is_none_or(|a| a == actor.as_str());
            if constant_time_eq(&grant.token, token) && applies && found.is_none() {
                found = Some(i);
            }
        }
        found.map(Credential::Grant).ok_or("the token does not open this actor")
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(text: &str) -> Result<Auth> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("auth");
        std::fs::write(&path, text)?;
        Auth::from_file(&path)
    }

    #[test]
    fn tokens_open_their_own_actor_and_global_ones_every_actor() -> Result<()> {
        let a = auth("# grants\nalpha aaaaaaaaaaaaaaaaaaaa\n* gggggggggggggggggggg # every actor\n")?;
        let (alpha, beta) = (ActorId::new("alpha")?, ActorId::new("beta")?);
        assert_eq!(a.check(&alpha, Some(b"Bearer aaaaaaaaaaaaaaaaaaaa")), Ok(Credential::Grant(0)));
        assert!(a.check(&beta, Some(b"Bearer aaaaaaaaaaaaaaaaaaaa")).is_err());
        assert_eq!(a.check(&beta, Some(b"bearer gggggggggggggggggggg")), Ok(Credential::Grant(1)));
        assert!(a.check(&alpha, Some(b"Bearer aaaaaaaaaaaaaaaaaaa")).is_err(), "a prefix of a token is not the token");
        assert!(a.check(&alpha, Some(b"Bearer aaaaaaaaaaaaaaaaaaaaa")).is_err(), "nor is a longer one");
        assert!(a.check(&alpha, Some(b"Basic aaaaaaaaaaaaaaaaaaaa")).is_err());
        assert!(a.check(&alpha, None).is_err());
        Ok(())
    }

    #[test]
    fn a_bad_auth_file_says_which_line() {
        let short = auth("alpha short\n").err().map(|e| format!("{e:#}")).unwrap_or_default();
        assert!(short.contains(":1: the token is 5 characters"), "{short}");
        let bad_id = auth("\nal/pha aaaaaaaaaaaaaaaaaaaa\n").err().map(|e| format!("{e:#}")).unwrap_or_default();
        assert!(bad_id.contains(":2") && bad_id.contains("invalid actor id"), "{bad_id}");
        let empty = auth("# nothing\n").err().map(|e| format!("{e:#}")).unwrap_or_default();
        assert!(empty.contains("grants nothing"), "{empty}");
    }
}
