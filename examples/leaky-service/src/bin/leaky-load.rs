//! Drives load at the leaky example: `leaky-load URL SECONDS ROUTE...`,
//! round-robin over the routes from four threads. Prints the requests sent.

use std::time::{Duration, Instant};

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(base), Some(secs)) = (
        args.first(),
        args.get(1).and_then(|s| s.parse::<f64>().ok()),
    ) else {
        eprintln!("usage: leaky-load URL SECONDS ROUTE...");
        return std::process::ExitCode::from(2);
    };
    let routes: Vec<String> = if args.len() > 2 {
        args[2..].to_vec()
    } else {
        vec!["/work".into()]
    };
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (base, routes) = (base.trim_end_matches('/').to_owned(), routes.clone());
            std::thread::spawn(move || {
                let http: ureq::Agent = ureq::Agent::config_builder()
                    .timeout_global(Some(Duration::from_secs(5)))
                    .http_status_as_error(false)
                    .build()
                    .into();
                let mut n = 0u64;
                let mut key = t * 100_000;
                while Instant::now() < end {
                    let route = &routes[(n as usize + t as usize) % routes.len()];
                    key += 1;
                    let url = if route.contains('?') {
                        format!("{base}{route}")
                    } else {
                        format!("{base}{route}?key={}", key % 1500)
                    };
                    if http
                        .get(&url)
                        .call()
                        .map(|mut r| r.body_mut().read_to_string().is_ok())
                        .unwrap_or(false)
                    {
                        n += 1;
                    }
                    // About 100 requests a second per thread: load, not a flood.
                    std::thread::sleep(Duration::from_millis(10));
                }
                n
            })
        })
        .collect();
    let total: u64 = threads.into_iter().map(|t| t.join().unwrap_or(0)).sum();
    println!("{total}");
    std::process::ExitCode::SUCCESS
}
