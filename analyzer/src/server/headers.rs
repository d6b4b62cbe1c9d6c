//! Response headers that keep a browser from being turned against the
//! fleet's data: no content sniffing, and a Content-Security-Policy that
//! lets only heaptide's own scripts run. Pages carry one inline script
//! and inferno's flamegraphs another, so both are allowed by hash, never
//! as `unsafe-inline`: a frame name that slipped past escaping still could
//! not run.

use std::sync::OnceLock;

use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine;
use sha2::{Digest, Sha256};

/// Adds `nosniff` to every response, and the page policy to HTML.
pub async fn security(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    let html = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if html && !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        if let Ok(v) = HeaderValue::from_str(page_policy()) {
            h.insert(header::CONTENT_SECURITY_POLICY, v);
        }
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    resp
}

fn page_policy() -> &'static str {
    static POLICY: OnceLock<String> = OnceLock::new();
    POLICY.get_or_init(|| {
        format!(
            "default-src 'none'; script-src '{}'; style-src 'unsafe-inline'; img-src 'self' data:; \
             object-src 'self'; frame-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            sha256(heaptide_ui::pages::SCRIPT)
        )
    })
}

/// The policy of one flamegraph SVG: its own script and its `onload`
/// handler, by hash.
pub fn svg_policy(svg: &str) -> String {
    // The hash is of the script's text: its CDATA sections joined, without
    // their markers (inferno's script has more than one).
    let script = svg
        .split_once("<script type=\"text/ecmascript\">")
        .and_then(|(_, rest)| rest.split_once("</script>"))
        .map(|(s, _)| s.replace("<![CDATA[", "").replace("]]>", ""));
    let scripts = match script {
        Some(s) => format!("'unsafe-hashes' '{}' '{}'", sha256("init(evt)"), sha256(&s)),
        None => "'none'".to_owned(),
    };
    format!("default-src 'none'; script-src {scripts}; style-src 'unsafe-inline'")
}

fn sha256(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}
