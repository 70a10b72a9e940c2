//! The session port: login sessions in Redis with a TTL, or in process for all-in-one.
//!
//! The cookie holds a random session id (256 bits). The store keys sessions by the id's
//! SHA-256, so a copy of Redis does not hand out live cookies. Each session has its own CSRF
//! token, which cookie-authenticated changes must echo in `X-CSRF-Token`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_redis::redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub user_id: String,
    pub csrf_token: String,
    /// The account's [`credential_stamp`](super::credential_stamp) at login: a password change
    /// or reset changes it, which ends every session started before.
    #[serde(default)]
    pub stamp: String,
}

#[derive(Debug, thiserror::Error)]
#[error("session store unavailable: {0}")]
pub struct SessionError(String);

#[derive(Clone, Debug)]
pub enum Sessions {
    Redis {
        pool: deadpool_redis::Pool,
        prefix: String,
        ttl: Duration,
    },
    Local {
        map: Arc<Mutex<HashMap<String, (Session, Instant)>>>,
        ttl: Duration,
    },
}

/// 32 random bytes from the operating system, hex-encoded: session ids, CSRF and API tokens.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    // The OS random source failing is not something to carry on from.
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    hex::encode(bytes)
}

fn key_of(session_id: &str) -> String {
    hex::encode(Sha256::digest(session_id.as_bytes()))
}

impl Sessions {
    pub fn local(ttl: Duration) -> Sessions {
        Sessions::Local {
            map: Arc::default(),
            ttl,
        }
    }

    pub fn redis(pool: deadpool_redis::Pool, key_prefix: &str, ttl: Duration) -> Sessions {
        Sessions::Redis {
            pool,
            prefix: format!("{key_prefix}session:"),
            ttl,
        }
    }

    pub fn ttl(&self) -> Duration {
        match self {
            Sessions::Redis { ttl, .. } | Sessions::Local { ttl, .. } => *ttl,
        }
    }

    /// Starts a session; returns its id (the cookie value) and the session.
    pub async fn create(
        &self,
        user_id: &str,
        stamp: String,
    ) -> Result<(String, Session), SessionError> {
        let id = random_token();
        let session = Session {
            user_id: user_id.to_owned(),
            csrf_token: random_token(),
            stamp,
        };
        match self {
            Sessions::Redis { pool, prefix, ttl } => {
                let json =
                    serde_json::to_string(&session).map_err(|e| SessionError(e.to_string()))?;
                let mut conn = pool.get().await.map_err(|e| SessionError(e.to_string()))?;
                let _: () = conn
                    .set_ex(
                        format!("{prefix}{}", key_of(&id)),
                        json,
                        ttl.as_secs().max(1),
                    )
                    .await
                    .map_err(|e| SessionError(e.to_string()))?;
            }
            Sessions::Local { map, ttl } => {
                let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
                map.retain(|_, (_, expires)| *expires > Instant::now());
                map.insert(key_of(&id), (session.clone(), Instant::now() + *ttl));
            }
        }
        Ok((id, session))
    }

    pub async fn get(&self, id: &str) -> Result<Option<Session>, SessionError> {
        match self {
            Sessions::Redis { pool, prefix, .. } => {
                let mut conn = pool.get().await.map_err(|e| SessionError(e.to_string()))?;
                let json: Option<String> = conn
                    .get(format!("{prefix}{}", key_of(id)))
                    .await
                    .map_err(|e| SessionError(e.to_string()))?;
                Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
            }
            Sessions::Local { map, .. } => {
                let map = map.lock().unwrap_or_else(|e| e.into_inner());
                Ok(map
                    .get(&key_of(id))
                    .filter(|(_, expires)| *expires > Instant::now())
                    .map(|(s, _)| s.clone()))
            }
        }
    }

    /// Ends a session (logout); ending an unknown one succeeds.
    pub async fn delete(&self, id: &str) -> Result<(), SessionError> {
        match self {
            Sessions::Redis { pool, prefix, .. } => {
                let mut conn = pool.get().await.map_err(|e| SessionError(e.to_string()))?;
                let _: () = conn
                    .del(format!("{prefix}{}", key_of(id)))
                    .await
                    .map_err(|e| SessionError(e.to_string()))?;
            }
            Sessions::Local { map, .. } => {
                map.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&key_of(id));
            }
        }
        Ok(())
    }
}
