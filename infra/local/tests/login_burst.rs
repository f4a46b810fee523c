//! A login burst must not exhaust memory: argon2id takes 19 MiB per hash, so hashing runs under
//! a semaphore sized to the cores, whatever the number of requests in flight. The real binary,
//! on its embedded defaults and the real argon2 cost, takes 300 concurrent logins; its peak
//! resident memory (`VmHWM`) stays under 300 MiB.
//!
//! Each login names its own address (a burst on one address would mostly be refused by the
//! lockout before any hashing): one real account, the rest unknown, which cost a full hash of
//! the dummy password all the same.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BURST: usize = 300;
const CEILING_MIB: u64 = 300;

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

/// The process's peak resident set, in KiB, as the kernel counts it.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_login_burst_keeps_the_server_under_its_memory_ceiling() {
    let dir = std::env::temp_dir().join(format!("meterline-burst-{}", ulid::Ulid::new()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_meterline"))
        .current_dir(&dir)
        .env_clear()
        .env("PORT", port.to_string())
        .env("MAIL_OUTBOX_DIR", dir.join("outbox"))
        // The per-IP throttle would refuse most of the burst before any hashing.
        .env("AUTH_IP_LIMIT_PER_MIN", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the local server");
    let pid = child.id();
    let _running = Running(child);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match client.get(format!("{base}/health")).send().await {
            Ok(response) if response.status().is_success() => break,
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            other => panic!("server did not come up: {other:?}"),
        }
    }
    let credentials =
        serde_json::json!({"email": "burst@example.com", "password": "correct horse battery"});
    let signup = client
        .post(format!("{base}/v1/auth/signup"))
        .json(&credentials)
        .send()
        .await
        .expect("signup");
    assert_eq!(signup.status(), 201);
    let before = peak_rss_kib(pid);

    let logins = (0..BURST).map(|i| {
        let client = client.clone();
        let url = format!("{base}/v1/auth/login");
        let credentials = if i == 0 {
            credentials.clone()
        } else {
            let email = format!("burst{i}@example.com");
            serde_json::json!({"email": email, "password": "correct horse battery"})
        };
        tokio::spawn(async move {
            client
                .post(url)
                .json(&credentials)
                .timeout(Duration::from_secs(120))
                .send()
                .await
                .map(|response| response.status().as_u16())
        })
    });
    let mut statuses = std::collections::BTreeMap::new();
    for login in logins.collect::<Vec<_>>() {
        let status = login.await.expect("task").unwrap_or(0);
        *statuses.entry(status).or_insert(0) += 1;
    }
    let peak = peak_rss_kib(pid);
    println!(
        "login burst of {BURST}: peak RSS {} MiB (before the burst {} MiB); answers {statuses:?}",
        peak / 1024,
        before / 1024
    );
    // Every login was hashed and answered: the account's with 200, the unknown ones with 401.
    let expected = std::collections::BTreeMap::from([(200, 1), (401, BURST - 1)]);
    assert_eq!(statuses, expected);
    assert!(
        peak < CEILING_MIB * 1024,
        "peak RSS {} MiB over {CEILING_MIB} MiB",
        peak / 1024
    );
    let _ = std::fs::remove_dir_all(&dir);
}
