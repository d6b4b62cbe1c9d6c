//! Every route, with what it needs of its caller, in one table: the
//! router is built from it, `docs/security.md` shows it, and a test
//! checks each route against each kind of token.

use std::sync::Arc;

use axum::routing::{get, post, put, MethodRouter};
use axum::Router;

use super::{api, auth, dashboards, debuginfo, health, ingest, metrics, AppState};

/// What a route needs of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Anyone: health, the favicon, sign-in and sign-out.
    Nothing,
    /// A token or session that reads.
    Read,
    /// A token that sends batches (for the batch's service).
    Ingest,
}

impl Need {
    /// As the table in `docs/security.md` writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Need::Nothing => "nothing",
            Need::Read => "read",
            Need::Ingest => "ingest",
        }
    }
}

/// One route: its method, its path and what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub need: Need,
}

type Handler = MethodRouter<Arc<AppState>>;

fn all() -> Vec<(Route, Handler)> {
    let r = |method, path, need| Route { method, path, need };
    let mut v: Vec<(Route, Handler)> = vec![
        (
            r("POST", heaptide_wire::INGEST_PATH, Need::Ingest),
            post(ingest::handler),
        ),
        (
            r("POST", heaptide_wire::INGEST_PPROF_PATH, Need::Ingest),
            post(ingest::pprof_handler),
        ),
        (
            r("POST", heaptide_wire::otlp::PROFILES_PATH, Need::Ingest),
            post(ingest::otlp_handler),
        ),
        (
            r("PUT", heaptide_wire::DEBUGINFO_PATH, Need::Ingest),
            put(debuginfo::upload),
        ),
        (r("GET", "/healthz", Need::Nothing), get(health)),
        // What load balancers' examples probe; the same answer.
        (r("GET", "/health", Need::Nothing), get(health)),
        (
            r("GET", "/favicon.ico", Need::Nothing),
            get(dashboards::favicon),
        ),
        (r("GET", "/login", Need::Nothing), get(auth::login_page)),
        (r("POST", "/login", Need::Nothing), post(auth::login)),
        (r("POST", "/logout", Need::Nothing), post(auth::logout)),
        (r("GET", "/metrics", Need::Read), get(metrics::handler)),
    ];
    let reads = api::routes().into_iter().chain(dashboards::routes());
    v.extend(reads.map(|(path, h)| (r("GET", path, Need::Read), h)));
    v
}

/// Every route the router serves.
pub fn table() -> Vec<Route> {
    all().into_iter().map(|(r, _)| r).collect()
}

/// The router of [`table`]: routes that read behind the read check.
/// Ingest routes check their token themselves, since a batch's service
/// is known only once it is decoded.
pub(super) fn router(state: &Arc<AppState>) -> Router<Arc<AppState>> {
    let (mut open, mut read) = (Router::new(), Router::new());
    for (route, handler) in all() {
        match route.need {
            Need::Read => read = read.route(route.path, handler),
            Need::Nothing | Need::Ingest => open = open.route(route.path, handler),
        }
    }
    let read = read.route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        auth::require_read,
    ));
    open.merge(read)
}
