//! A webhook receiver: a real HTTP server on 127.0.0.1 that records every
//! request's body and headers, and answers as the test sets it to.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Ok,
    /// This status, at once.
    Status(u16),
    /// 200, after this long.
    Slow(Duration),
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub authorization: Option<String>,
    pub body: serde_json::Value,
}

#[derive(Default)]
struct Shared {
    answer: Mutex<Option<Answer>>,
    got: Mutex<Vec<Received>>,
}

/// A running receiver; it stops when dropped.
pub struct Receiver {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Receiver {
    /// Starts a receiver that answers `answer`, on its own thread.
    pub fn start(answer: Answer) -> Receiver {
        let shared = Arc::new(Shared::default());
        *shared.answer.lock().unwrap() = Some(answer);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let s = shared.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(l.local_addr().unwrap()).unwrap();
                let app = Router::new().route("/{*path}", post(record)).with_state(s);
                let _ = axum::serve(l, app)
                    .with_graceful_shutdown(async {
                        let _ = stop_rx.await;
                    })
                    .await;
            });
        });
        Receiver {
            addr: addr_rx.recv_timeout(Duration::from_secs(10)).unwrap(),
            shared,
            _stop: stop_tx,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn set_answer(&self, a: Answer) {
        *self.shared.answer.lock().unwrap() = Some(a);
    }

    /// Every alert received so far, from the `alerts` of each
    /// Alertmanager-shaped notification, in arrival order.
    pub fn alerts(&self) -> Vec<serde_json::Value> {
        self.received()
            .into_iter()
            .flat_map(|g| g.body["alerts"].as_array().cloned().unwrap_or_default())
            .collect()
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.shared.got.lock().unwrap().clone()
    }
}

async fn record(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let answer = s.answer.lock().unwrap().unwrap_or(Answer::Ok);
    s.got.lock().unwrap().push(Received {
        at: Instant::now(),
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: serde_json::from_slice(&body)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&body).into())),
    });
    match answer {
        Answer::Ok => StatusCode::OK,
        Answer::Status(c) => StatusCode::from_u16(c).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        Answer::Slow(d) => {
            tokio::time::sleep(d).await;
            StatusCode::OK
        }
    }
}
