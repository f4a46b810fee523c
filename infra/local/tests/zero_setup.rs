//! The `cargo run` promise: the real binary, started in an empty directory with no services and
//! no configuration but a port, serves the API on a SQLite file it creates there.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

#[tokio::test]
async fn the_binary_runs_on_embedded_defaults() {
    let dir = std::env::temp_dir().join(format!("meterline-run-{}", ulid::Ulid::new()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_meterline"))
        .current_dir(&dir)
        .env_clear()
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the local server");
    let _running = Running(child);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match client.get(format!("{base}/health")).send().await {
            Ok(response) if response.status().is_success() => break,
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            other => panic!("server did not come up: {other:?}"),
        }
    }
    let signup = client
        .post(format!("{base}/v1/auth/signup"))
        .json(
            &serde_json::json!({"email": "first@example.com", "password": "correct horse battery"}),
        )
        .send()
        .await
        .expect("signup");
    assert_eq!(signup.status(), 201);
    let health: serde_json::Value = client
        .get(format!("{base}/v1/health"))
        .send()
        .await
        .expect("health")
        .json()
        .await
        .expect("json");
    assert_eq!(health["checks"]["store"]["backend"], "sqlite");
    assert!(
        dir.join("meterline.db").exists(),
        "SQLite file in the working directory"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_setting_stops_the_binary_naming_the_variable() {
    let dir = std::env::temp_dir().join(format!("meterline-run-{}", ulid::Ulid::new()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let cases: [(&[(&str, &str)], &str); 3] = [
        (&[("PORT", "eighty")], "PORT"),
        (&[("APP_ENV", "production")], "JWT_SECRET"),
        (
            &[("APP_ENV", "production"), ("JWT_SECRET", "too-short")],
            "JWT_SECRET",
        ),
    ];
    for (vars, variable) in cases {
        let output = Command::new(env!("CARGO_BIN_EXE_meterline"))
            .current_dir(&dir)
            .env_clear()
            .envs(vars.iter().copied())
            .output()
            .expect("run");
        assert_eq!(output.status.code(), Some(2), "{vars:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(variable), "{vars:?}: {stderr}");
    }
    assert!(
        !dir.join("meterline.db").exists(),
        "nothing started, nothing written"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
