//! Tokens with scopes against a real `analyzer serve`: every route in the
//! router against every kind of token, scoped ingest, reloads on SIGHUP,
//! and signed sessions that any analyzer sharing the key accepts.

use std::path::Path;
use std::time::Duration;

use heaptide_analyzer::routes::{table, Need};
use heaptide_testkit::fixtures;
use heaptide_testkit::*;
use heaptide_wire::{Batch, INGEST_PATH, INGEST_PPROF_PATH};

const INGEST: &str = "ingest-secret-for-svc-0001";
const READ: &str = "read-secret-for-all-00002";
const ADMIN: &str = "admin-secret-for-all-0003";

fn tokens_file(dir: &Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("tokens.toml");
    let text = format!(
        "[[token]]\nname = \"svc-agents\"\nkind = \"ingest\"\nsecret = \"{INGEST}\"\nservices = [\"svc\"]\n\
         [[token]]\nname = \"grafana\"\nkind = \"read\"\nsecret = \"{READ}\"\n\
         [[token]]\nname = \"ops\"\nkind = \"admin\"\nsecret = \"{ADMIN}\"\n{extra}"
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn analyzer_with(dir: &Path, extra: &[&str]) -> Proc {
    let tokens = tokens_file(dir, "");
    let mut args = vec!["--tokens-file", tokens.to_str().unwrap()];
    args.extend_from_slice(extra);
    let mut an = analyzer(dir, &dir.join("h.db"), "127.0.0.1:0", &args);
    an.token = Some(ADMIN.into());
    an
}

/// (status, location, set-cookie, body) of a request.
fn send(
    an: &Proc,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, String, String) {
    // A route's pattern made into one request of it.
    let path = match path.replace("{build_id}", "abcd1234") {
        p if p != path => format!("{p}?service=svc&instance=i-1"),
        p => p,
    };
    let url = an.url(&path);
    let mut r = if method == "GET" {
        let mut req = no_redirects().get(&url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.call()
    } else {
        let agent = no_redirects();
        let mut req = if method == "PUT" {
            agent.put(&url)
        } else {
            agent.post(&url)
        };
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send(body)
    }
    .unwrap();
    let (location, cookie) = (header(&r, "location"), header(&r, "set-cookie"));
    let text = r.body_mut().read_to_string().unwrap_or_default();
    (r.status().as_u16(), location, cookie, text)
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

fn batch(service: &str, instance: &str) -> Vec<u8> {
    let now = now_ms();
    let mut b: Batch = fixtures::batch(fixtures::agent(service, instance, 7, now - 60_000), 1, now);
    b.samples.push(fixtures::metrics(now, &[("fds", 10.0)]));
    serde_json::to_vec(&b).unwrap()
}

/// The routes of the table in docs/security.md.
fn documented_routes() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let doc = std::fs::read_to_string(root.join("docs/security.md")).unwrap();
    let start = doc
        .find("<!-- routes -->")
        .expect("the routes table's start");
    let end = doc
        .find("<!-- /routes -->")
        .expect("the routes table's end");
    doc[start..end]
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let route = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            Some((route.to_owned(), (*cells.get(2)?).to_owned()))
        })
        .collect()
}

#[test]
fn every_route_answers_each_kind_of_token_as_the_table_says() {
    let routes = table();
    let from_router: Vec<(String, String)> = routes
        .iter()
        .map(|r| {
            (
                format!("{} {}", r.method, r.path),
                r.need.as_str().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        documented_routes(),
        from_router,
        "docs/security.md's routes table differs from the router's"
    );
    let dir = tempfile::tempdir().unwrap();
    let an = analyzer_with(dir.path(), &[]);
    let kinds: [(&str, Option<&str>); 4] = [
        ("none", None),
        ("ingest", Some(INGEST)),
        ("read", Some(READ)),
        ("admin", Some(ADMIN)),
    ];
    for r in &routes {
        for (kind, secret) in kinds {
            let auth = secret.map(bearer);
            let headers: Vec<(&str, &str)> =
                auth.iter().map(|a| ("Authorization", a.as_str())).collect();
            let (status, location, _, body) = send(&an, r.method, r.path, &headers, b"{}");
            let allowed = match (r.need, kind) {
                (Need::Nothing, _) | (_, "admin") => true,
                (Need::Read, k) => k == "read",
                (Need::Ingest, k) => k == "ingest",
            };
            let what = format!(
                "{} {} with {kind}: {status} {location} {body:.200}",
                r.method, r.path
            );
            if allowed {
                assert!(
                    ![401, 403].contains(&status) && !location.starts_with("/login?next="),
                    "refused: {what}"
                );
            } else if kind == "none" {
                let to_login = status == 303 && location.starts_with("/login?next=/");
                assert!(status == 401 || to_login, "not refused: {what}");
            } else {
                assert_eq!(status, 403, "{what}");
                assert!(body.contains("may not"), "{what}");
            }
        }
    }
}

#[test]
fn a_scoped_ingest_token_writes_only_its_services() {
    let dir = tempfile::tempdir().unwrap();
    let an = analyzer_with(dir.path(), &[]);
    let auth = bearer(INGEST);
    let json = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    let (status, _, _, body) = send(&an, "POST", INGEST_PATH, &json, &batch("payroll", "p-1"));
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("svc-agents") && body.contains("payroll"),
        "{body}"
    );
    let (status, _, _, body) = send(&an, "POST", INGEST_PATH, &json, &batch("svc", "s-1"));
    assert_eq!(status, 200, "{body}");
    let pprof = format!("{INGEST_PPROF_PATH}?service=payroll&instance=p-2");
    let (status, _, _, body) = send(&an, "POST", &pprof, &json, b"not read");
    assert_eq!(status, 403, "{body}");
    // Only its own service was stored; the read token cannot write.
    let services = an.get_json("/v1/services");
    let names: Vec<&str> = services["services"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["service"].as_str())
        .collect();
    assert_eq!(names, ["svc"]);
    let auth = bearer(READ);
    let read = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    assert_eq!(
        send(&an, "POST", INGEST_PATH, &read, &batch("svc", "s-2")).0,
        403
    );
}

#[test]
fn tokens_are_read_again_on_sighup_and_a_bad_file_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let an = analyzer_with(dir.path(), &[]);
    let late = "late-reader-secret-00004";
    let reads = |secret: &str| {
        let auth = bearer(secret);
        send(&an, "GET", "/v1/services", &[("Authorization", &auth)], b"").0
    };
    assert_eq!(reads(late), 401);
    tokens_file(
        dir.path(),
        &format!("[[token]]\nname = \"late\"\nkind = \"read\"\nsecret = \"{late}\"\n"),
    );
    let hup = || nix::sys::signal::kill(an.pid(), nix::sys::signal::Signal::SIGHUP).unwrap();
    hup();
    wait_for("the new token", Duration::from_secs(10), || {
        (reads(late) == 200).then_some(())
    });
    std::fs::write(dir.path().join("tokens.toml"), "[[token]]\nname = 1\n").unwrap();
    hup();
    wait_for("the failed reload", Duration::from_secs(10), || {
        let (_, text) = an.get("/metrics");
        text.contains("heaptide_token_reloads_total{outcome=\"failed\"} 1")
            .then_some(())
    });
    assert_eq!(reads(late), 200, "a bad file keeps the tokens in force");
    assert!(
        an.stderr().contains("tokens not reloaded"),
        "{}",
        an.stderr()
    );
}

/// Signs in at `an` with `token`; returns (status, the session cookie).
fn sign_in(an: &Proc, token: &str) -> (u16, String, String) {
    let form = format!("token={token}&next=%2Fui%2Fservice%3Fservice%3Dsvc");
    let form_type = [("Content-Type", "application/x-www-form-urlencoded")];
    let (status, _, cookie, body) = send(an, "POST", "/login", &form_type, form.as_bytes());
    (
        status,
        cookie.split(';').next().unwrap_or("").to_owned(),
        body,
    )
}

#[test]
fn a_session_signed_at_one_analyzer_opens_another_until_its_token_goes() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("session-key");
    std::fs::write(&key, "0123456789abcdef0123456789abcdef-shared").unwrap();
    let key_args = ["--session-key-file", key.to_str().unwrap()];
    let (a_dir, b_dir, c_dir) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    for d in [&a_dir, &b_dir, &c_dir] {
        std::fs::create_dir_all(d).unwrap();
    }
    let a = analyzer_with(&a_dir, &key_args);
    let b = analyzer_with(&b_dir, &key_args);
    let c = analyzer_with(&c_dir, &[]);
    let (status, _, body) = sign_in(&a, INGEST);
    assert_eq!(status, 401, "an ingest token does not sign in: {body}");
    let (status, session, _) = sign_in(&a, READ);
    assert_eq!(status, 303);
    assert!(session.starts_with("heaptide_session=v1:"), "{session}");
    for (an, want) in [(&a, 200), (&b, 200), (&c, 303)] {
        let (status, ..) = send(an, "GET", "/", &[("Cookie", &session)], b"");
        assert_eq!(status, want, "another key, another answer");
    }
    // Sign-out clears the cookie.
    let (status, location, cleared, _) = send(&a, "POST", "/logout", &[], b"");
    assert_eq!((status, location.as_str()), (303, "/login"));
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    // The token removed and SIGHUP: its sessions end.
    std::fs::write(
        b_dir.join("tokens.toml"),
        format!("[[token]]\nname = \"ops\"\nkind = \"admin\"\nsecret = \"{ADMIN}\"\n"),
    )
    .unwrap();
    nix::sys::signal::kill(b.pid(), nix::sys::signal::Signal::SIGHUP).unwrap();
    wait_for("the session to end", Duration::from_secs(10), || {
        (send(&b, "GET", "/", &[("Cookie", &session)], b"").0 == 303).then_some(())
    });
    // Sign-in attempts are throttled per address: 10 a minute.
    let statuses: Vec<u16> = (0..12).map(|_| sign_in(&c, "wrong").0).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        10,
        "{statuses:?}"
    );
    assert_eq!(statuses[11], 429, "{statuses:?}");
}
