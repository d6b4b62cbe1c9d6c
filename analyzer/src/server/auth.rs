//! Who may do what. With tokens configured ([`super::tokens`]), ingest
//! needs a token that ingests for the batch's service, and every route
//! but health, the favicon and sign-in needs one that reads: as a
//! `Bearer` header (any case of the scheme) or, for a browser that
//! signed in once at `/login`, a signed session cookie
//! ([`super::session`]). A request with no valid token gets 401; one whose
//! token may not do what it asks gets 403.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};

use axum::extract::{ConnectInfo, FromRequest, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use governor::clock::DefaultClock;
use governor::state::keyed::DefaultKeyedStateStore;

use super::session::{SessionKey, LIFETIME_S};
use super::tokens::{Token, TokenSet, TokenSource};
use super::{ApiError, AppState};

/// Who a request comes from.
#[derive(Debug, Clone)]
pub enum Caller {
    /// No tokens are configured: everything is open (loopback only).
    Open,
    /// A bearer token.
    Token(Arc<Token>),
    /// A browser signed in with a token that reads.
    Session(Arc<Token>),
    /// No valid token or session.
    Nobody,
}

impl Caller {
    pub fn reads(&self) -> bool {
        match self {
            Caller::Open | Caller::Session(_) => true,
            Caller::Token(t) => t.reads(),
            Caller::Nobody => false,
        }
    }

    /// Whether it may send batches for `service`. A session never
    /// ingests: a browser's cookie is not an agent's credential.
    pub fn ingests(&self, service: &str) -> bool {
        match self {
            Caller::Open => true,
            Caller::Token(t) => t.ingests(service),
            Caller::Session(_) | Caller::Nobody => false,
        }
    }

    pub fn ingests_any(&self) -> bool {
        match self {
            Caller::Open => true,
            Caller::Token(t) => t.ingests_any(),
            Caller::Session(_) | Caller::Nobody => false,
        }
    }

    /// The token's name, for the rate limit's key and for messages.
    pub fn name(&self) -> &str {
        match self {
            Caller::Token(t) | Caller::Session(t) => &t.name,
            Caller::Open | Caller::Nobody => "",
        }
    }

    /// The answer to a request it may not make: 401 without a valid
    /// token, 403 with one that lacks the right.
    pub fn refusal(&self, what: &str) -> ApiError {
        match self {
            Caller::Nobody => {
                ApiError::new(StatusCode::UNAUTHORIZED, "missing or wrong bearer token")
            }
            _ => ApiError::new(
                StatusCode::FORBIDDEN,
                format!("token {:?} may not {what}", self.name()),
            ),
        }
    }
}

/// Sign-in attempts one address may make per minute.
const SIGN_INS_PER_MINUTE: u32 = 10;
/// Addresses the sign-in throttle remembers at most.
const MAX_THROTTLED: usize = 100_000;
const COOKIE: &str = "heaptide_session";

type Throttle = governor::RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, DefaultClock>;

/// The tokens in force, where they came from, and the session key.
pub struct Auth {
    tokens: RwLock<Arc<TokenSet>>,
    source: TokenSource,
    /// `None` when the OS gave no randomness for a key: no one can sign in.
    key: Option<Arc<SessionKey>>,
    /// `Secure` on the session cookie: the server is reached over TLS.
    secure: bool,
    throttle: Throttle,
}

impl Auth {
    pub fn new(
        tokens: TokenSet,
        source: TokenSource,
        key: Option<Arc<SessionKey>>,
        secure: bool,
    ) -> Self {
        let per_minute = NonZeroU32::new(SIGN_INS_PER_MINUTE).unwrap_or(NonZeroU32::MIN);
        Auth {
            tokens: RwLock::new(Arc::new(tokens)),
            source,
            key,
            secure,
            throttle: governor::RateLimiter::keyed(governor::Quota::per_minute(per_minute)),
        }
    }

    fn tokens(&self) -> Arc<TokenSet> {
        self.tokens
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Reads the token files again (SIGHUP). On any error the tokens in
    /// force stay, and the error says why.
    ///
    /// # Errors
    /// What [`TokenSource::load`] finds wrong.
    pub fn reload(&self) -> crate::Result<usize> {
        let fresh = self.source.load()?;
        let n = fresh.len();
        *self.tokens.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(fresh);
        Ok(n)
    }

    /// Who the request's headers say it is.
    pub fn caller(&self, headers: &HeaderMap) -> Caller {
        let tokens = self.tokens();
        if tokens.is_empty() {
            return Caller::Open;
        }
        if let Some(presented) = bearer(headers) {
            return tokens.find(presented).map_or(Caller::Nobody, Caller::Token);
        }
        let now = crate::select::now_ms().max(0) as u64 / 1000;
        let key = self.key.as_deref();
        cookie(headers)
            .and_then(|c| key?.verify(c, now))
            .and_then(|name| tokens.named(name))
            .filter(|t| t.reads())
            .map_or(Caller::Nobody, Caller::Session)
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

/// The peer's address, as the accept loop recorded it.
pub(super) fn peer(req_extensions: &axum::http::Extensions) -> IpAddr {
    req_extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

/// Lets a request through to the read API, `/metrics` and the pages only
/// for a caller that reads. A browser with no session asking for a page
/// is sent to sign in; others get a 401 or a 403.
pub async fn require_read(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let caller = state.auth.caller(req.headers());
    if caller.reads() {
        return next.run(req).await;
    }
    let path = req.uri().path();
    if matches!(caller, Caller::Nobody) && (path == "/" || path.starts_with("/ui/")) {
        let here = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        return Redirect::to(&format!("/login?next={}", encode(here))).into_response();
    }
    let mut resp = caller.refusal("read").into_response();
    if matches!(caller, Caller::Nobody) {
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
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

/// Checks the token and, if it reads, sets a signed session cookie.
/// Attempts are throttled per address, whatever their outcome.
pub async fn login(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let ip = peer(req.extensions());
    let auth = &state.auth;
    if auth.throttle.len() > MAX_THROTTLED {
        auth.throttle.retain_recent();
    }
    if auth.throttle.check_key(&ip).is_err() {
        return ApiError {
            retry_after: Some(std::time::Duration::from_secs(60)),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "more than {SIGN_INS_PER_MINUTE} sign-in attempts a minute from this address"
                ),
            )
        }
        .into_response();
    }
    let Ok(Form(f)) = Form::<LoginForm>::from_request(req, &()).await else {
        return ApiError::bad("form", "expected token and next").into_response();
    };
    let next = safe_next(f.next.as_deref());
    let token = auth.tokens().find(f.token.trim());
    let Some(token) = token.filter(|t| t.reads()) else {
        let page =
            heaptide_ui::pages::login(&next, Some("That token does not grant reading here."));
        return (StatusCode::UNAUTHORIZED, Html(page)).into_response();
    };
    let Some(key) = &auth.key else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no randomness for a session key",
        )
        .into_response();
    };
    let expires = crate::select::now_ms().max(0) as u64 / 1000 + LIFETIME_S;
    let value = key.sign(&token.name, expires);
    set_cookie(
        Redirect::to(&next).into_response(),
        &value,
        LIFETIME_S,
        auth.secure,
    )
}

/// Ends the browser's session: the cookie is cleared. A copy of the
/// cookie taken before stays valid until it ends (12 hours) or its
/// token is removed.
pub async fn logout(State(state): State<Arc<AppState>>) -> Response {
    set_cookie(
        Redirect::to("/login").into_response(),
        "",
        0,
        state.auth.secure,
    )
}

fn set_cookie(mut resp: Response, value: &str, max_age: u64, secure: bool) -> Response {
    let secure = if secure { "; Secure" } else { "" };
    let cookie =
        format!("{COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}");
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
            && chars.next().is_none_or(|c| c != '/')
            && !n
                .chars()
                .any(|c| c.is_control() || c.is_whitespace() || c == '\\')
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

    fn headers(name: header::HeaderName, v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, v.parse().unwrap());
        h
    }

    fn auth() -> Auth {
        let text = "[[token]]\nname = \"agents\"\nkind = \"ingest\"\nsecret = \"ingest-secret-0123\"\nservices = [\"svc\"]\n\
                    [[token]]\nname = \"grafana\"\nkind = \"read\"\nsecret = \"read-secret-012345\"\n";
        // A directory of each call's own: the tests run in parallel.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tokens.toml"), text).unwrap();
        let source = TokenSource {
            tokens_file: Some(dir.path().join("tokens.toml")),
            ..TokenSource::default()
        };
        Auth::new(
            source.load().unwrap(),
            source,
            Some(Arc::new(SessionKey::random().unwrap())),
            false,
        )
    }

    #[test]
    fn callers_read_or_ingest_by_their_token_and_scheme_case_does_not_matter() {
        let a = auth();
        let c = a.caller(&headers(header::AUTHORIZATION, "bearer ingest-secret-0123"));
        assert!(c.ingests("svc") && !c.ingests("other") && !c.reads());
        let c = a.caller(&headers(header::AUTHORIZATION, "BEARER read-secret-012345"));
        assert!(c.reads() && !c.ingests_any());
        let c = a.caller(&headers(header::AUTHORIZATION, "Bearer read-secret-01234"));
        assert!(matches!(c, Caller::Nobody));
        assert_eq!(c.refusal("read").status, StatusCode::UNAUTHORIZED);
        assert!(matches!(a.caller(&HeaderMap::new()), Caller::Nobody));
        let open = Auth::new(TokenSet::default(), TokenSource::default(), None, false);
        assert!(matches!(open.caller(&HeaderMap::new()), Caller::Open));
    }

    #[test]
    fn sessions_come_from_a_signed_cookie_of_a_reading_token() {
        let a = auth();
        let now = crate::select::now_ms() as u64 / 1000;
        let key = a.key.clone().unwrap();
        let good = key.sign("grafana", now + 60);
        let c = a.caller(&headers(header::COOKIE, &format!("x=1; {COOKIE}={good}")));
        assert!(c.reads() && !c.ingests("svc"), "a session never ingests");
        // Signed for a token that does not read, or for no token.
        for name in ["agents", "gone"] {
            let v = key.sign(name, now + 60);
            let c = a.caller(&headers(header::COOKIE, &format!("{COOKIE}={v}")));
            assert!(matches!(c, Caller::Nobody), "{name}");
        }
        let c = a.caller(&headers(header::COOKIE, &format!("{COOKIE}=nope")));
        assert!(matches!(c, Caller::Nobody));
    }

    #[test]
    fn next_stays_on_this_server() {
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        for evil in [
            "/\t/evil.example",
            "/\n/evil.example",
            "/ /evil.example",
            "/\\evil.example",
            "\\/evil",
            "/\u{85}/x",
        ] {
            assert_eq!(safe_next(Some(evil)), "/", "{evil:?}");
        }
        assert_eq!(safe_next(Some("/")), "/");
        assert_eq!(
            safe_next(Some("/ui/service?service=a")),
            "/ui/service?service=a"
        );
    }
}
