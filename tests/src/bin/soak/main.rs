//! An hour of a simulated fleet against an analyzer that profiles itself.
//!
//! `cargo run --release -p heaptide-tests --bin soak [-- --agents 200 --minutes 60]`
//!
//! The same binary is both sides. With `--serve` it is `analyzer serve`
//! (the library's one server, on a store of its own) with heaptide's
//! agent linked in and sending to it, as service `heaptide-analyzer`.
//! Without, it starts itself that way and plays `--agents` agents against
//! it for `--minutes`, as `ingest_load` does (45 metrics every 10 s, a heap
//! profile of 2,000 stacks every minute), reading the analyzer's RSS each
//! minute. At the end `analyzer leaks` judges the analyzer's own history.
//! `--keep DIR` keeps the store in DIR.

heaptide_agent::global_allocator!();

use std::process::Command;
use std::time::{Duration, Instant};

use heaptide_tests::{bin, flag_value, now_ms, Proc};
use heaptide_wire::INGEST_PATH;

#[path = "../ingest_load/fleet.rs"]
#[allow(dead_code)]
mod fleet;

/// The fleet's shape, as `ingest_load` has it.
const METRICS: usize = 45;
const STACKS: usize = 2000;

fn main() {
    if std::env::args().any(|a| a == "--serve") {
        serve();
    } else {
        drive();
    }
}

/// The analyzer, profiling itself.
fn serve() {
    use heaptide_analyzer::config::{ServeConfig, Settings};
    let store = flag_value("--store").expect("--store");
    let flags = Settings {
        listen: Some("127.0.0.1:0".into()),
        store: Some(store),
        // Every simulated agent connects from loopback.
        rate_limit: Some(100_000.0),
        request_rate_per_address: Some(1_000_000.0),
        max_requests_per_address: Some(100_000),
        ..Default::default()
    };
    let cfg = ServeConfig::resolve(flags, |_| None, None).expect("config");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    static AGENT: std::sync::Mutex<Option<heaptide_agent::Agent>> = std::sync::Mutex::new(None);
    rt.block_on(heaptide_analyzer::serve(
        cfg,
        |addr| {
            let agent = heaptide_agent::builder()
                .service("heaptide-analyzer")
                .instance("soak")
                .endpoint(format!("http://{addr}"))
                .start()
                .expect("agent");
            *AGENT.lock().unwrap() = Some(agent);
            println!("soak: analyzer on http://{addr}");
        },
        std::future::pending(),
    ))
    .expect("serve");
}

fn drive() {
    let agents: usize = flag_value("--agents").map_or(200, |v| v.parse().unwrap());
    let minutes: u64 = flag_value("--minutes").map_or(60, |v| v.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    // `--keep DIR` keeps the store for a closer look afterwards.
    let store = match flag_value("--keep") {
        Some(d) => {
            std::fs::create_dir_all(&d).unwrap();
            std::path::Path::new(&d).join("soak.db")
        }
        None => dir.path().join("soak.db"),
    };
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--serve", "--store"]).arg(&store);
    let server = Proc::start(cmd, dir.path().join("serve.log"));
    let pid = server.child.id();
    let url = server.url(INGEST_PATH);
    let mut rng = fastrand::Rng::with_seed(7);
    let profiles: Vec<String> = (0..6).map(|v| fleet::profile(v, &mut rng)).collect();
    let origin = fleet::Origin {
        t0: Instant::now(),
        ms: now_ms(),
    };
    println!("| minute | batches | errors | p50 ms | p99 ms | analyzer CPU % | analyzer RSS MiB |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for m in 1..=minutes {
        let s = fleet::run_step_at(&url, pid, agents, 60, &profiles, origin);
        println!(
            "| {m} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
            s.batches,
            s.errors,
            s.p50,
            s.p99,
            s.cpu,
            heaptide_tests::resident(pid).now_mib
        );
    }
    std::thread::sleep(Duration::from_secs(15));
    let leaks = |service: &str, format: &str| {
        let out = Command::new(bin("analyzer"))
            .args(["leaks", "--fresh", "--since", &format!("{}m", minutes + 5)])
            .args(["--service", service, "--format", format, "--store"])
            .arg(&store)
            .output()
            .expect("analyzer leaks");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    println!(
        "\n`analyzer leaks --service heaptide-analyzer`:\n\n```\n{}```",
        leaks("heaptide-analyzer", "table")
    );
    let sim: serde_json::Value = serde_json::from_str(&leaks("sim", "json")).unwrap_or_default();
    // The simulated heap and RSS grow 1,000 bytes a batch by construction
    // (`fleet::metrics`): every agent's two are leaks to find.
    println!(
        "\nleaks found in the {agents} simulated agents (heap and RSS of each grow 1 KB a batch): {}",
        sim["findings"].as_array().map_or(0, Vec::len)
    );
    drop(server);
}
