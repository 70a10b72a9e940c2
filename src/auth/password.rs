//! Password hashing (argon2id at OWASP's recommended parameters) and the password policy: a
//! minimum length and a check against common passwords, no composition rules (NIST SP 800-63B).

use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};

/// OWASP Password Storage Cheat Sheet: argon2id, 19 MiB, 2 iterations, 1 lane.
fn argon2() -> Argon2<'static> {
    // These constants are valid parameters; `Params::new` only rejects out-of-range values.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Passwords that appear at the top of every breach corpus, lower-cased. A password equal to
/// one of these (ignoring case) or made of one repeated character is refused.
const COMMON: &[&str] = &[
    "123456",
    "123456789",
    "12345678",
    "password",
    "qwerty123",
    "qwerty1",
    "111111",
    "12345",
    "secret",
    "123123",
    "1234567890",
    "1234567",
    "000000",
    "qwerty",
    "abc123",
    "password1",
    "iloveyou",
    "11111111",
    "dragon",
    "monkey",
    "123123123",
    "123321",
    "qwertyuiop",
    "00000000",
    "password123",
    "654321",
    "1q2w3e4r",
    "666666",
    "1q2w3e4r5t",
    "987654321",
    "123qwe",
    "qwe123",
    "1qaz2wsx",
    "zxcvbnm",
    "asdfghjkl",
    "112233",
    "121212",
    "princess",
    "sunshine",
    "football",
    "baseball",
    "welcome",
    "welcome1",
    "admin",
    "admin123",
    "letmein",
    "letmein1",
    "trustno1",
    "master",
    "shadow",
    "superman",
    "batman",
    "starwars",
    "passw0rd",
    "p@ssw0rd",
    "p@ssword",
    "whatever",
    "michael",
    "charlie",
    "jennifer",
    "jordan23",
    "hunter2",
    "hello123",
    "freedom",
    "computer",
    "internet",
    "changeme",
    "changeme123",
    "default",
    "login",
    "administrator",
    "root",
    "toor",
    "test123",
    "testtest",
    "password12",
    "password1234",
    "1234qwer",
    "q1w2e3r4",
    "q1w2e3r4t5",
    "a1b2c3d4",
    "aa123456",
    "abcd1234",
    "abcdef",
    "abcdefg",
    "abcdefgh",
    "abcdefghij",
    "qazwsx",
    "qwertyu",
    "asdf1234",
    "zaq12wsx",
    "1qazxsw2",
    "mustang",
    "access",
    "killer",
    "pokemon",
    "lovely",
    "loveyou",
    "iloveyou1",
    "myspace1",
    "summer2024",
    "winter2024",
    "spring2024",
    "autumn2024",
    "summer2025",
    "winter2025",
    "spring2025",
    "summer2026",
    "winter2026",
    "spring2026",
    "ocrd",
    "ocrdocrd",
];

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("the password must have at least {0} characters")]
    TooShort(usize),
    #[error("the password must have at most 1024 characters")]
    TooLong,
    #[error("this password is too common; choose another")]
    Common,
}

/// Checks a new password against the policy. `email` is refused as a password too.
pub fn check_policy(password: &str, min_length: usize, email: &str) -> Result<(), PolicyError> {
    let length = password.chars().count();
    if length < min_length {
        return Err(PolicyError::TooShort(min_length));
    }
    if length > 1024 {
        return Err(PolicyError::TooLong);
    }
    let lower = password.to_lowercase();
    let one_char = lower.chars().all(|c| lower.starts_with(c));
    let local_part = email.split('@').next().unwrap_or(email).to_lowercase();
    if one_char
        || COMMON.contains(&lower.as_str())
        || lower == email.to_lowercase()
        || lower == local_part
    {
        return Err(PolicyError::Common);
    }
    Ok(())
}

/// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`) with a random salt. CPU-heavy: call it
/// off the async threads.
pub fn hash(password: &str) -> Result<String, String> {
    argon2()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` matches `phc`. A malformed stored hash never matches. CPU-heavy.
pub fn verify(password: &str, phc: &str) -> bool {
    argon2().verify_password(password.as_bytes(), phc).is_ok()
}

/// At most one hash per core at a time: each takes 19 MiB and a core for tens of
/// milliseconds, so a burst of sign-ins queues here instead of exhausting memory.
fn permits() -> &'static tokio::sync::Semaphore {
    static PERMITS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    PERMITS.get_or_init(|| {
        tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
    })
}

/// [`hash`] on the blocking pool, within the concurrency cap.
pub async fn hash_async(password: String) -> Result<String, String> {
    let _permit = permits().acquire().await.map_err(|e| e.to_string())?;
    tokio::task::spawn_blocking(move || hash(&password))
        .await
        .map_err(|e| e.to_string())?
}

/// [`verify`] on the blocking pool, within the concurrency cap.
pub async fn verify_async(password: String, phc: String) -> Result<bool, String> {
    let _permit = permits().acquire().await.map_err(|e| e.to_string())?;
    tokio::task::spawn_blocking(move || verify(&password, &phc))
        .await
        .map_err(|e| e.to_string())
}

/// A valid hash of a random password, verified against when an email is unknown, so that a
/// login takes as long whether or not the account exists.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash(&uuid::Uuid::new_v4().to_string()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_with_owasp_parameters_and_verify() {
        let phc = hash("correct horse battery staple").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify("correct horse battery staple", &phc));
        assert!(!verify("correct horse battery stapl", &phc));
        assert!(!verify("anything", "not a hash"));
        assert_ne!(phc, hash("correct horse battery staple").unwrap(), "salted");
    }

    #[test]
    fn policy_is_length_and_commonness_only() {
        assert!(check_policy("short", 10, "a@b.c").is_err());
        assert!(check_policy("password123", 10, "a@b.c").is_err());
        assert!(check_policy("PASSWORD123", 10, "a@b.c").is_err());
        assert!(check_policy("aaaaaaaaaaaa", 10, "a@b.c").is_err());
        assert!(check_policy("mia.keller@example.com", 10, "mia.keller@example.com").is_err());
        // No composition rules: a long lower-case passphrase is fine.
        assert!(check_policy("purple monkey dishwasher", 10, "a@b.c").is_ok());
    }
}
