//! Who may do what. With a token configured, ingest needs it, and every
//! other route but `/healthz` and the sign-in page needs it or the read
//! token: as a `Bearer` header (any case of the scheme) or, for a browser
//! that signed in once at `/login`, an HttpOnly session cookie. Tokens are
//! compared in constant time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use subtle::ConstantTimeEq;

use super::{ApiError, AppState};

/// What a request may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Access {
    None,
    Read,
    Write,
}

/// The tokens and the browser sessions signed in with them.
pub struct Auth {
    token: Option<String>,
    read_token: Option<String>,
    sessions: Mutex<HashMap<String, Instant>>,
}

/// How long a browser stays signed in.
const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// At most this many sessions; past it, the oldest are dropped.
const MAX_SESSIONS: usize = 10_000;
const COOKIE: &str = "heaptide_session";

impl Auth {
    pub fn new(token: Option<String>, read_token: Option<String>) -> Self {
        Auth {
            token,
            read_token,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// Whether any token is configured; without one, everything is open
    /// (and `serve` listens only on loopback).
    pub fn enabled(&self) -> bool {
        self.token.is_some() || self.read_token.is_some()
    }

    /// What a presented token grants.
    fn grant(&self, presented: &str) -> Access {
        let same = |want: &Option<String>| {
            want.as_ref()
                .is_some_and(|w| bool::from(w.as_bytes().ct_eq(presented.as_bytes())))
        };
        if same(&self.token) {
            Access::Write
        } else if same(&self.read_token) {
            Access::Read
        } else {
            Access::None
        }
    }

    /// What the request's headers grant.
    pub fn access(&self, headers: &HeaderMap) -> Access {
        if !self.enabled() {
            return Access::Write;
        }
        if let Some(t) = bearer(headers) {
            return self.grant(t);
        }
        match cookie(headers).map(|s| self.session_valid(s)) {
            Some(true) => Access::Read,
            _ => Access::None,
        }
    }

    fn session_valid(&self, id: &str) -> bool {
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        // The lookup is by hash; the id is 256 random bits, so its timing
        // tells nothing useful.
        sessions
            .get(id)
            .is_some_and(|t| t.elapsed() < SESSION_LIFETIME)
    }

    fn new_session(&self) -> Option<String> {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).ok()?;
        let id: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.retain(|_, t| t.elapsed() < SESSION_LIFETIME);
        while sessions.len() >= MAX_SESSIONS {
            let oldest = sessions
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => sessions.remove(&k),
                None => break,
            };
        }
        sessions.insert(id.clone(), Instant::now());
        Some(id)
    }
}

/// The token of an `Authorization: Bearer` header; the scheme's case does
/// not matter (RFC 9110 §11.1).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

/// Lets a request through to the read API, `/metrics` and the pages only
/// with read access. A browser asking for a page is sent to sign in; an
/// API client gets a 401.
pub async fn require_read(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    if state.auth.access(req.headers()) >= Access::Read {
        return next.run(req).await;
    }
    let path = req.uri().path();
    if path == "/" || path.starts_with("/ui/") {
        let here = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        return Redirect::to(&format!("/login?next={}", encode(here))).into_response();
    }
    let mut resp =
        ApiError::new(StatusCode::UNAUTHORIZED, "missing or wrong bearer token").into_response();
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

#[derive(serde::Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

#[derive(serde::Deserialize)]
pub struct LoginForm {
    token: String,
    next: Option<String>,
}

pub async fn login_page(axum::extract::Query(q): axum::extract::Query<LoginQuery>) -> Html<String> {
    Html(heaptide_ui::pages::login(
        &safe_next(q.next.as_deref()),
        None,
    ))
}

/// Checks the token and, if it grants reading, starts a session.
pub async fn login(State(state): State<Arc<AppState>>, Form(f): Form<LoginForm>) -> Response {
    let next = safe_next(f.next.as_deref());
    if state.auth.grant(f.token.trim()) < Access::Read {
        let page = heaptide_ui::pages::login(&next, Some("That token is not valid here."));
        return (StatusCode::UNAUTHORIZED, Html(page)).into_response();
    }
    let Some(id) = state.auth.new_session() else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no randomness for a session",
        )
        .into_response();
    };
    let cookie = format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        SESSION_LIFETIME.as_secs()
    );
    let mut resp = Redirect::to(&next).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// Only a path on this server, never another site (an open redirect):
/// one `/`, then anything but `/`, and no `\\` (which browsers read as
/// `/`) and no control or space character anywhere, since browsers drop
/// tabs and newlines from a URL (`/\t/evil.example` becomes
/// `//evil.example`).
fn safe_next(next: Option<&str>) -> String {
    let ok = |n: &str| {
        let mut chars = n.chars();
        chars.next() == Some('/')
            && chars.next().is_none_or(|c| c != '/' && c != '\\')
            && !n.chars().any(|c| c.is_control() || c.is_whitespace() || c == '\\')
    };
    match next {
        Some(n) if ok(n) => n.to_owned(),
        _ => "/".to_owned(),
    }
}

/// Percent-encodes a path for a query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, auth.parse().unwrap());
        h
    }

    #[test]
    fn tokens_grant_by_kind_and_scheme_case_does_not_matter() {
        let a = Auth::new(Some("w-secret".into()), Some("r-secret".into()));
        assert_eq!(a.access(&headers("Bearer w-secret")), Access::Write);
        assert_eq!(a.access(&headers("bearer w-secret")), Access::Write);
        assert_eq!(a.access(&headers("BEARER r-secret")), Access::Read);
        assert_eq!(a.access(&headers("Bearer w-secre")), Access::None);
        assert_eq!(a.access(&headers("Basic w-secret")), Access::None);
        assert_eq!(a.access(&HeaderMap::new()), Access::None);
        let open = Auth::new(None, None);
        assert_eq!(open.access(&HeaderMap::new()), Access::Write);
    }

    #[test]
    fn sessions_come_from_the_cookie_and_next_stays_on_this_server() {
        let a = Auth::new(Some("t".into()), None);
        let id = a.new_session().unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            format!("x=1; {COOKIE}={id}").parse().unwrap(),
        );
        assert_eq!(a.access(&h), Access::Read);
        h.insert(header::COOKIE, format!("{COOKIE}=nope").parse().unwrap());
        assert_eq!(a.access(&h), Access::None);
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        for evil in ["/\t/evil.example", "/\n/evil.example", "/ /evil.example", "/\\evil.example", "\\/evil", "/\u{85}/x"] {
            assert_eq!(safe_next(Some(evil)), "/", "{evil:?}");
        }
        assert_eq!(safe_next(Some("/")), "/");
        assert_eq!(
            safe_next(Some("/ui/service?service=a")),
            "/ui/service?service=a"
        );
    }
}
