//! Registry authentication: the `WWW-Authenticate` challenge of `GET /v2/`,
//! then either HTTP basic credentials on every request or a bearer token
//! from the challenge's realm (Docker's token protocol).

use serde::Deserialize;

/// Username and password for a registry (or its token service).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// What a registry's challenge asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Picks the first challenge we can answer from a `WWW-Authenticate` value.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    for c in http_auth::parser::ChallengeParser::new(header) {
        let Ok(c) = c else {
            return None;
        };
        let param = |name: &str| {
            c.params
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.to_unescaped())
        };
        if c.scheme.eq_ignore_ascii_case("bearer") {
            let realm = param("realm")?;
            return Some(Challenge::Bearer {
                realm,
                service: param("service"),
                scope: param("scope"),
            });
        }
        if c.scheme.eq_ignore_ascii_case("basic") {
            return Some(Challenge::Basic);
        }
    }
    None
}

/// A token service's answer (`token`, or OAuth2's `access_token`).
#[derive(Deserialize)]
pub struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
}

impl TokenResponse {
    pub fn into_token(self) -> Option<String> {
        self.token.or(self.access_token).filter(|t| !t.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.example.com/token".into(),
                service: Some("registry.example.com".into()),
                scope: Some("repository:a/b:pull".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="basic-realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(parse_challenge(r#"Bearer service="x""#), None);
        assert_eq!(parse_challenge("\"garbage"), None);
    }

    #[test]
    fn credentials_never_print_the_password() {
        let c = Credentials {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
