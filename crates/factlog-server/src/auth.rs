//! Bearer tokens and roles.
//!
//! Roles are ordered: `admin` may do everything `write` may, and `write` everything `read` may.
//! Which role a request needs depends only on its method and path ([`required_role`]), so that
//! the whole policy is this one function. Tokens are compared in constant time and never logged.

use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::Response;
use factlog_api::ProblemKind;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::config::TokenConfig;
use crate::error::ApiError;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads, subscriptions, metrics, and the projections' status and dead letters.
    Read,
    /// Appends, and everything `read` may do.
    Write,
    /// Administration (`/admin/...`, and controlling projections), and everything `write` may
    /// do.
    Admin,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        })
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read" => Ok(Role::Read),
            "write" => Ok(Role::Write),
            "admin" => Ok(Role::Admin),
            _ => Err(format!("role {s:?} is not one of read, write, admin")),
        }
    }
}

/// The role a request needs; `None` for what is open to everyone (health, readiness and the API
/// document, so that load balancers and tooling need no token).
pub fn required_role(method: &Method, path: &str) -> Option<Role> {
    match path {
        "/health" | "/ready" | "/openapi.json" => return None,
        _ => {}
    }
    if path == "/admin" || path.starts_with("/admin/") {
        return Some(Role::Admin);
    }
    // Projections: anyone who reads may look; controlling them (pause, reset, rebuild, dead
    // letters) is administration.
    if path == "/projections" || path.starts_with("/projections/") {
        return Some(if *method == Method::GET || *method == Method::HEAD {
            Role::Read
        } else {
            Role::Admin
        });
    }
    if *method == Method::GET || *method == Method::HEAD {
        Some(Role::Read)
    } else {
        Some(Role::Write)
    }
}

/// The configured tokens.
#[derive(Debug, Clone, Default)]
pub struct Tokens(Vec<TokenConfig>);

impl Tokens {
    pub fn new(tokens: Vec<TokenConfig>) -> Self {
        Self(tokens)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The role of `presented`, comparing against every token in constant time, so that timing
    /// reveals neither which token matched, nor how much of one did, nor its length: both sides
    /// are compared as SHA-256 digests, which have one length.
    pub fn role_of(&self, presented: &str) -> Option<Role> {
        let presented = Sha256::digest(presented.as_bytes());
        let mut found = None;
        for token in &self.0 {
            let expected = Sha256::digest(token.token.expose().as_bytes());
            let equal: bool = expected.ct_eq(&presented).into();
            if equal {
                found = found.max(Some(token.role));
            }
        }
        found
    }
}

/// The middleware that enforces [`required_role`].
pub async fn authorize(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(required) = required_role(request.method(), request.uri().path()) else {
        return next.run(request).await;
    };
    if state.tokens.is_empty() {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    let Some(presented) = presented else {
        return axum::response::IntoResponse::into_response(ApiError::new(
            ProblemKind::Unauthorized,
            "send a token as `Authorization: Bearer <token>`",
        ));
    };
    match state.tokens.role_of(presented) {
        None => axum::response::IntoResponse::into_response(ApiError::new(
            ProblemKind::Unauthorized,
            "the bearer token is not valid",
        )),
        Some(role) if role < required => axum::response::IntoResponse::into_response(
            ApiError::new(
                ProblemKind::Forbidden,
                format!("this needs the {required} role; the token has the {role} role"),
            )
            .with("requiredRole", required.to_string())
            .with("role", role.to_string()),
        ),
        Some(_) => next.run(request).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn policy() {
        assert_eq!(required_role(&Method::GET, "/health"), None);
        assert_eq!(required_role(&Method::GET, "/openapi.json"), None);
        assert_eq!(required_role(&Method::GET, "/streams/a"), Some(Role::Read));
        assert_eq!(required_role(&Method::GET, "/metrics"), Some(Role::Read));
        assert_eq!(
            required_role(&Method::POST, "/streams/a"),
            Some(Role::Write)
        );
        assert_eq!(required_role(&Method::POST, "/append"), Some(Role::Write));
        assert_eq!(
            required_role(&Method::GET, "/admin/stats"),
            Some(Role::Admin)
        );
        assert_eq!(required_role(&Method::GET, "/administer"), Some(Role::Read));
        assert_eq!(
            required_role(&Method::GET, "/projections"),
            Some(Role::Read)
        );
        assert_eq!(
            required_role(&Method::GET, "/projections/p/dead-letters"),
            Some(Role::Read)
        );
        for path in [
            "/projections/p/pause",
            "/projections/p/reset",
            "/projections/p/rebuild",
            "/projections/p/dead-letters/1/retry",
        ] {
            assert_eq!(
                required_role(&Method::POST, path),
                Some(Role::Admin),
                "{path}"
            );
        }
        assert_eq!(
            required_role(&Method::POST, "/projectionsx"),
            Some(Role::Write)
        );
    }

    #[test]
    fn tokens_match_exactly() {
        let tokens = Tokens::new(vec![
            TokenConfig {
                name: None,
                role: Role::Read,
                token: Secret::new("reader"),
            },
            TokenConfig {
                name: None,
                role: Role::Admin,
                token: Secret::new("boss"),
            },
        ]);
        assert_eq!(tokens.role_of("reader"), Some(Role::Read));
        assert_eq!(tokens.role_of("boss"), Some(Role::Admin));
        assert_eq!(tokens.role_of("read"), None);
        assert_eq!(tokens.role_of("readerx"), None);
        assert_eq!(tokens.role_of(""), None);
    }
}
