//! Standard Webhooks signing: `webhook-signature: v1,<base64 HMAC-SHA256 of id.timestamp.body>`
//! under a `whsec_` secret (base64 of random bytes), one signature per active secret while a
//! secret is rotated.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

const PREFIX: &str = "whsec_";

/// A new secret: `whsec_` and the base64 of 32 random bytes.
pub fn new_secret() -> String {
    let mut key = [0u8; 32];
    // The OS random source failing is not something to go on without.
    getrandom::fill(&mut key).expect("the operating system's random source failed");
    format!("{PREFIX}{}", STANDARD.encode(key))
}

/// The `webhook-signature` header value: `v1,<signature>` per secret, space-separated. A secret
/// that is not `whsec_` + base64 signs nothing (stored secrets are always made by
/// [`new_secret`]).
pub fn signature(secrets: &[String], id: &str, timestamp: i64, body: &str) -> String {
    secrets
        .iter()
        .filter_map(|secret| {
            let key = STANDARD.decode(secret.strip_prefix(PREFIX)?).ok()?;
            let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
            mac.update(format!("{id}.{timestamp}.").as_bytes());
            mac.update(body.as_bytes());
            Some(format!(
                "v1,{}",
                STANDARD.encode(mac.finalize().into_bytes())
            ))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example in the Standard Webhooks specification's reference libraries.
    #[test]
    fn signs_the_specifications_example() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned();
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            signature(&[secret], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn every_active_secret_signs_and_malformed_ones_do_not() {
        let (a, b) = (new_secret(), new_secret());
        assert!(a.starts_with(PREFIX) && a.len() == PREFIX.len() + 44, "{a}");
        let both = signature(&[a.clone(), b.clone()], "msg_1", 1, "{}");
        let parts: Vec<&str> = both.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], signature(&[a], "msg_1", 1, "{}"));
        assert_eq!(parts[1], signature(&[b], "msg_1", 1, "{}"));
        assert_eq!(signature(&["nope".into()], "msg_1", 1, "{}"), "");
    }
}
