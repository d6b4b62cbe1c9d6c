//! ClickHouse's HTTP interface: a statement in, `RowBinary` out, and
//! failures sorted into what a caller can act on.

use std::time::Duration;

use base64::Engine;

use super::url::ClickHouseUrl;
use super::ChError;

/// The largest answer read: every query this store sends is bounded (by
/// its window, `LIMIT` or ids), so more means something is wrong.
const MAX_ANSWER_BYTES: u64 = 1 << 30;
/// How much of an error's text is kept: the first line names the fault.
const MAX_ERROR_CHARS: usize = 300;

pub(super) struct Client {
    agent: ureq::Agent,
    endpoint: String,
    authorization: String,
    database: String,
}

impl Client {
    pub(super) fn new(url: &ClickHouseUrl) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(3)))
            .timeout_global(Some(Duration::from_secs(60)))
            .http_status_as_error(false)
            .user_agent(concat!("heaptide-analyzer/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let credentials = format!("{}:{}", url.user, url.password);
        Client {
            agent,
            endpoint: format!("http://{}:{}/", url.host, url.port),
            authorization: format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(credentials)
            ),
            database: url.database.clone(),
        }
    }

    /// Runs `sql` in the store's database and returns the answer's bytes.
    pub(super) fn query(&self, sql: &str) -> Result<Vec<u8>, ChError> {
        self.post(&[("database", &self.database)], sql.as_bytes())
    }

    /// Runs `sql` outside any database: creating the database itself.
    pub(super) fn query_server(&self, sql: &str) -> Result<Vec<u8>, ChError> {
        self.post(&[], sql.as_bytes())
    }

    /// Inserts `rows`, encoded as `RowBinary`, into `table`.
    pub(super) fn insert(&self, table: &str, rows: &[u8]) -> Result<(), ChError> {
        let query = format!("INSERT INTO {table} FORMAT RowBinary");
        self.post(&[("database", &self.database), ("query", &query)], rows)
            .map(|_| ())
    }

    fn post(&self, params: &[(&str, &str)], body: &[u8]) -> Result<Vec<u8>, ChError> {
        let mut req = self
            .agent
            .post(&self.endpoint)
            .header("Authorization", &self.authorization);
        for (k, v) in params {
            req = req.query(*k, *v);
        }
        let mut resp = req
            .send(body)
            .map_err(|e| ChError::Unreachable(e.to_string()))?;
        let code = resp.status().as_u16();
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_to_vec()
            .map_err(|e| ChError::Unreachable(format!("reading the answer: {e}")))?;
        if code == 200 {
            return Ok(bytes);
        }
        Err(classify(code, &String::from_utf8_lossy(&bytes)))
    }
}

/// An error answer: wrong credentials (ClickHouse 18.16 says 401 with
/// codes 192 and 193; later versions 516), the server going away, or a
/// statement it refused.
fn classify(code: u16, text: &str) -> ChError {
    let first = text.lines().next().unwrap_or("").trim();
    let short: String = first.chars().take(MAX_ERROR_CHARS).collect();
    let auth = ["Code: 192,", "Code: 193,", "Code: 516,"];
    if code == 401 || code == 403 || auth.iter().any(|c| first.starts_with(c)) {
        return ChError::Auth;
    }
    // 503, and "too many simultaneous queries" (202): the server is there
    // but cannot take the work now.
    if code == 503 || first.starts_with("Code: 202,") {
        return ChError::Unreachable(short);
    }
    ChError::Query(short)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_credentials_are_told_apart_from_bad_statements() {
        let wrong = "Code: 193, e.displayText() = DB::Exception: Wrong password for user heaptide";
        assert!(matches!(classify(401, wrong), ChError::Auth));
        assert!(matches!(
            classify(500, "Code: 516, e.displayText() = x"),
            ChError::Auth
        ));
        assert!(matches!(
            classify(
                400,
                "Code: 62, e.displayText() = DB::Exception: Syntax error"
            ),
            ChError::Query(_)
        ));
        assert!(matches!(classify(503, "busy"), ChError::Unreachable(_)));
    }
}
