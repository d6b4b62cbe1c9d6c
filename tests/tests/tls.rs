//! TLS between a real agent and a real analyzer, with certificates made in
//! the test: the analyzer terminates TLS itself (`--tls-cert`,
//! `--tls-key`), the agent trusts the test's CA (`HEAPTIDE_CA_FILE`) and
//! carries an ingest token, and a reader reads over https.

use std::time::Duration;

use heaptide_testkit::certs::Certs;
use heaptide_testkit::*;

const INGEST: &str = "ingest-token-over-tls-0001";
const READ: &str = "read-token-over-tls-00002";

#[test]
fn an_agent_sends_over_https_to_an_analyzer_that_terminates_tls() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::make(dir.path());
    let (ingest, read) = (dir.path().join("token"), dir.path().join("read-token"));
    std::fs::write(&ingest, INGEST).unwrap();
    std::fs::write(&read, READ).unwrap();
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let an = analyzer(
        dir.path(),
        &dir.path().join("h.db"),
        "127.0.0.1:0",
        &[
            "--tls-cert",
            &path(&certs.cert),
            "--tls-key",
            &path(&certs.key),
            "--token-file",
            &path(&ingest),
            "--read-token-file",
            &path(&read),
        ],
    );
    assert_eq!(an.scheme, "https", "serve announces https");
    let ca = path(&certs.ca);
    let _agent = leaky(
        dir.path(),
        &format!("https://127.0.0.1:{}", an.addr.port()),
        "tls-1",
        &[("HEAPTIDE_TOKEN", INGEST), ("HEAPTIDE_CA_FILE", &ca)],
    );
    let client = certs.client();
    let auth = format!("Bearer {READ}");
    let instances = wait_for("a batch over https", Duration::from_secs(60), || {
        let mut r = client
            .get(an.url("/v1/instances?service=leaky-service"))
            .header("Authorization", &auth)
            .call()
            .ok()?;
        let v: serde_json::Value =
            serde_json::from_str(&r.body_mut().read_to_string().ok()?).ok()?;
        (v["instances"].as_array()?.len() == 1).then_some(v)
    });
    assert_eq!(instances["instances"][0]["instance"], "tls-1");
    // No plain HTTP on the TLS port.
    let plain = format!("http://{}/healthz", an.addr);
    assert!(
        http().get(&plain).call().is_err(),
        "plain http was answered"
    );
    // A client that does not trust the CA is refused by its own TLS.
    assert!(http().get(an.url("/healthz")).call().is_err());
    // Over TLS, the session cookie is Secure.
    let r = client
        .post(an.url("/login"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send(format!("token={READ}&next=%2F"))
        .unwrap();
    let cookie = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(cookie.contains("; Secure"), "{cookie}");
}
