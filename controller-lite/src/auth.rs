//! UAA-compatible authentication: argon2id password hashes and HS256-signed
//! JWT access and refresh tokens carrying `user_name`, `user_id`, `scope`
//! and `exp`. The signing key comes from the config or is generated at first
//! start and kept in the data directory.

use std::path::{Path, PathBuf};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm as ArgonAlgorithm, Argon2, Params, Version};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::db::users::User;

/// Errors from authentication.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Wrong user name or password.
    #[error("bad credentials")]
    BadCredentials,
    /// The token is malformed, badly signed, expired or of the wrong kind.
    #[error("invalid token: {0}")]
    InvalidToken(String),
    /// Hashing failed (bad parameters).
    #[error("password hashing: {0}")]
    Hash(String),
    /// A key file could not be read or written.
    #[error("key file {path}: {source}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Random bytes were not available.
    #[error("no randomness: {0}")]
    Random(String),
}

/// Scope every user has.
pub const USER_SCOPES: &[&str] = &[
    "openid",
    "cloud_controller.read",
    "cloud_controller.write",
    "uaa.user",
];
/// Scope that makes a user a platform admin.
pub const ADMIN_SCOPE: &str = "cloud_controller.admin";

/// The claims of our tokens (a subset of UAA's).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Token id.
    pub jti: String,
    /// Subject (user guid).
    pub sub: String,
    /// User guid.
    pub user_id: String,
    /// Login name.
    pub user_name: String,
    /// Email (the login name).
    pub email: String,
    /// OAuth client.
    pub client_id: String,
    /// OAuth client (UAA's short name).
    pub cid: String,
    /// Granted scopes.
    pub scope: Vec<String>,
    /// Audiences.
    pub aud: Vec<String>,
    /// Issuer (the token endpoint).
    pub iss: String,
    /// Issued at.
    pub iat: u64,
    /// Expiry.
    pub exp: u64,
    /// Identity zone.
    pub zid: String,
    /// Identity origin.
    pub origin: String,
    /// `password` or `refresh_token`.
    pub grant_type: String,
    /// `access` or `refresh`: a refresh token is never accepted as an access token.
    pub token_use: String,
}

impl Claims {
    /// Whether the token carries the admin scope.
    pub fn is_admin(&self) -> bool {
        self.scope.iter().any(|s| s == ADMIN_SCOPE)
    }
}

/// A freshly issued pair.
#[derive(Debug, Clone)]
pub struct TokenPair {
    /// Access token (JWT).
    pub access_token: String,
    /// Refresh token (JWT).
    pub refresh_token: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Granted scopes.
    pub scope: Vec<String>,
    /// Access token id.
    pub jti: String,
}

/// Signs and checks tokens.
#[derive(Clone)]
pub struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    issuer: String,
    access_ttl: u64,
    refresh_ttl: u64,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl TokenIssuer {
    /// A token issuer with an HS256 secret.
    pub fn new(secret: &[u8], issuer: String, access_ttl: u64, refresh_ttl: u64) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            issuer,
            access_ttl,
            refresh_ttl,
        }
    }

    fn claims(&self, user: &User, grant_type: &str, token_use: &str, ttl: u64) -> Claims {
        let now = unix_now();
        let mut scope: Vec<String> = USER_SCOPES.iter().map(|s| (*s).to_owned()).collect();
        if user.admin {
            scope.push(ADMIN_SCOPE.to_owned());
        }
        Claims {
            jti: uuid::Uuid::new_v4().simple().to_string(),
            sub: user.guid.clone(),
            user_id: user.guid.clone(),
            user_name: user.name.clone(),
            email: user.name.clone(),
            client_id: "cf".into(),
            cid: "cf".into(),
            scope,
            aud: vec!["cloud_controller".into(), "openid".into(), "cf".into()],
            iss: self.issuer.clone(),
            iat: now,
            exp: now + ttl,
            zid: "uaa".into(),
            origin: "uaa".into(),
            grant_type: grant_type.into(),
            token_use: token_use.into(),
        }
    }

    /// Issues an access and a refresh token for `user`.
    pub fn issue(&self, user: &User, grant_type: &str) -> Result<TokenPair, AuthError> {
        let access = self.claims(user, grant_type, "access", self.access_ttl);
        let refresh = self.claims(user, grant_type, "refresh", self.refresh_ttl);
        let header = Header::new(Algorithm::HS256);
        let sign = |c: &Claims| {
            encode(&header, c, &self.encoding).map_err(|e| AuthError::InvalidToken(e.to_string()))
        };
        Ok(TokenPair {
            access_token: sign(&access)?,
            refresh_token: sign(&refresh)?,
            expires_in: self.access_ttl,
            scope: access.scope.clone(),
            jti: access.jti,
        })
    }

    fn verify(&self, token: &str, token_use: &str) -> Result<Claims, AuthError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&["cloud_controller", "cf"]);
        validation.set_issuer(&[&self.issuer]);
        validation.leeway = 0;
        let data = decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|e| AuthError::InvalidToken(e.to_string()))?;
        if data.claims.token_use != token_use {
            return Err(AuthError::InvalidToken(format!("not an {token_use} token")));
        }
        Ok(data.claims)
    }

    /// Checks an access token.
    pub fn verify_access(&self, token: &str) -> Result<Claims, AuthError> {
        self.verify(token, "access")
    }

    /// Checks a refresh token.
    pub fn verify_refresh(&self, token: &str) -> Result<Claims, AuthError> {
        self.verify(token, "refresh")
    }
}

/// Fills `buf` with OS randomness.
pub fn random_bytes(buf: &mut [u8]) -> Result<(), AuthError> {
    getrandom::fill(buf).map_err(|e| AuthError::Random(e.to_string()))
}

/// A random hex secret of `bytes` bytes.
pub fn random_secret(bytes: usize) -> Result<String, AuthError> {
    let mut buf = vec![0u8; bytes];
    random_bytes(&mut buf)?;
    Ok(hex::encode(buf))
}

/// Reads the secret kept in `path`, or generates one and writes it (mode 0600).
pub fn load_or_create_secret(path: &Path) -> Result<String, AuthError> {
    let err = |source| AuthError::KeyFile {
        path: path.to_owned(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let secret = random_secret(32)?;
    write_private(path, &secret).map_err(err)?;
    Ok(secret)
}

/// Writes `text` to a new file readable only by its owner, atomically.
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Argon2id cost.
#[derive(Debug, Clone, Copy)]
pub struct HashCost {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Iterations.
    pub iterations: u32,
}

/// Hashes a password into a PHC string.
pub fn hash_password(password: &str, cost: HashCost) -> Result<String, AuthError> {
    let params = Params::new(cost.memory_kib, cost.iterations, 1, None)
        .map_err(|e| AuthError::Hash(e.to_string()))?;
    let argon = Argon2::new(ArgonAlgorithm::Argon2id, Version::V0x13, params);
    let mut salt = [0u8; 16];
    random_bytes(&mut salt)?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| AuthError::Hash(e.to_string()))?;
    Ok(argon
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| AuthError::Hash(e.to_string()))?
        .to_string())
}

/// Whether `password` matches the PHC `hash` (false for a malformed hash).
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(admin: bool) -> User {
        User {
            guid: "u-1".into(),
            name: "dev".into(),
            password_hash: String::new(),
            admin,
        }
    }

    #[test]
    fn passwords_hash_and_verify() {
        let h = hash_password(
            "s3cret",
            HashCost {
                memory_kib: 64,
                iterations: 1,
            },
        )
        .expect("hash");
        assert!(verify_password("s3cret", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("s3cret", "not a hash"));
    }

    #[test]
    fn tokens_round_trip_and_kinds_do_not_mix() {
        let issuer = TokenIssuer::new(b"k", "http://x/oauth/token".into(), 60, 600);
        let pair = issuer.issue(&user(true), "password").expect("issue");
        let c = issuer.verify_access(&pair.access_token).expect("verify");
        assert_eq!(c.user_name, "dev");
        assert!(c.is_admin());
        assert!(issuer.verify_access(&pair.refresh_token).is_err());
        assert!(issuer.verify_refresh(&pair.refresh_token).is_ok());
        let other = TokenIssuer::new(b"other", "http://x/oauth/token".into(), 60, 600);
        assert!(other.verify_access(&pair.access_token).is_err());
    }

    #[test]
    fn expired_tokens_are_refused() {
        let issuer = TokenIssuer::new(b"k", "i".into(), 60, 600);
        let mut claims = issuer.claims(&user(false), "password", "access", 60);
        claims.exp = unix_now() - 10;
        let token =
            encode(&Header::new(Algorithm::HS256), &claims, &issuer.encoding).expect("encode");
        assert!(issuer.verify_access(&token).is_err());
    }
}
