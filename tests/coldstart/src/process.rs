//! One function process: its release binary spawned with a clean, production-like
//! environment and its own Runtime API, invoked event by event, measured, then killed.

use crate::runtime_api::{Invocation, Report, RuntimeApi};
use anyhow::{Context, bail};
use axum::body::Bytes;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// Longest the harness waits for one answer (the function's own timeout is 10 s).
const ANSWER_WAIT: Duration = Duration::from_secs(30);

/// How to start one function.
#[derive(Debug, Clone)]
pub struct Launch {
    /// `AWS_LAMBDA_FUNCTION_NAME` (also the binary's name).
    pub name: String,
    /// The release binary.
    pub binary: PathBuf,
    /// The whole environment (nothing is inherited from the harness), without
    /// `AWS_LAMBDA_RUNTIME_API`, which each process gets for its own endpoint.
    pub env: Vec<(String, String)>,
    /// Where the process's stdout and stderr go (overwritten at each start).
    pub log: PathBuf,
}

/// One answered invocation.
#[derive(Debug)]
pub struct Answer {
    /// What the function POSTed to `.../response`.
    pub body: Bytes,
    /// From spawning the process to the response's arrival.
    pub since_spawn: Duration,
    /// From handing the event out (answering the poll) to the response's arrival.
    pub since_delivery: Duration,
}

/// A running function process.
pub struct Session {
    launch: Launch,
    child: Child,
    pid: u32,
    api: RuntimeApi,
    spawned_at: Instant,
    first_poll: Option<Instant>,
    invocations: u64,
}

impl Session {
    /// Starts the Runtime API, then the process (the clock starts just before the spawn).
    pub async fn start(launch: &Launch) -> anyhow::Result<Self> {
        let api = RuntimeApi::start().await?;
        let log = std::fs::File::create(&launch.log)
            .with_context(|| format!("create {}", launch.log.display()))?;
        let log_err = log.try_clone()?;
        let mut command = Command::new(&launch.binary);
        command
            .env_clear()
            .envs(launch.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("AWS_LAMBDA_RUNTIME_API", api.address())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .kill_on_drop(true);
        let spawned_at = Instant::now();
        let child = command
            .spawn()
            .with_context(|| format!("spawn {}", launch.binary.display()))?;
        let pid = child
            .id()
            .with_context(|| format!("{} exited at once", launch.name))?;
        Ok(Self {
            launch: launch.clone(),
            child,
            pid,
            api,
            spawned_at,
            first_poll: None,
            invocations: 0,
        })
    }

    /// Hands `payload` to the function as the next event and waits for its response. An
    /// invocation error, an init error, an early exit or no answer in 30 s is an error.
    pub async fn invoke(&mut self, payload: &serde_json::Value) -> anyhow::Result<Answer> {
        self.invocations += 1;
        let request_id = format!(
            "c01d5a7a-0000-4000-8000-{:06x}{:06x}",
            self.pid & 0xff_ffff,
            self.invocations
        );
        self.api.submit(Invocation {
            request_id: request_id.clone(),
            function_arn: format!(
                "arn:aws:lambda:us-east-1:123456789012:function:{}",
                self.launch.name
            ),
            payload: serde_json::to_vec(payload)?,
        })?;
        let deadline = tokio::time::sleep(ANSWER_WAIT);
        tokio::pin!(deadline);
        let mut delivered = None;
        loop {
            tokio::select! {
                report = self.api.next_report() => match report {
                    Some(Report::Polled { at }) => {
                        self.first_poll.get_or_insert(at);
                    }
                    Some(Report::Delivered { request_id: id, at }) if id == request_id => {
                        delivered = Some(at);
                    }
                    Some(Report::Delivered { request_id: id, .. }) => {
                        bail!("{}: handed out {id} while waiting for {request_id}", self.launch.name)
                    }
                    Some(Report::Response { request_id: id, at, body }) => {
                        if id != request_id {
                            bail!("{}: a response for {id}, not {request_id}", self.launch.name);
                        }
                        let delivered = delivered.with_context(|| {
                            format!("{}: a response before its event was handed out", self.launch.name)
                        })?;
                        return Ok(Answer {
                            body,
                            since_spawn: at - self.spawned_at,
                            since_delivery: at - delivered,
                        });
                    }
                    Some(Report::Error { request_id: id, error_type, body }) => bail!(
                        "{}: invocation {id} failed ({}): {}\n{}",
                        self.launch.name,
                        error_type.unwrap_or_default(),
                        String::from_utf8_lossy(&body),
                        self.log_tail()
                    ),
                    Some(Report::InitError { error_type, body }) => bail!(
                        "{}: init failed ({}): {}\n{}",
                        self.launch.name,
                        error_type.unwrap_or_default(),
                        String::from_utf8_lossy(&body),
                        self.log_tail()
                    ),
                    Some(Report::Unexpected { method, uri }) => bail!(
                        "{}: asked the Runtime API for {method} {uri}, which this harness does not serve",
                        self.launch.name
                    ),
                    None => bail!("{}: the Runtime API server stopped", self.launch.name),
                },
                status = self.child.wait() => {
                    let status = status?;
                    bail!(
                        "{} exited ({status}) before answering {request_id}\n{}",
                        self.launch.name,
                        self.log_tail()
                    );
                }
                () = &mut deadline => bail!(
                    "{}: no answer to {request_id} within {ANSWER_WAIT:?}\n{}",
                    self.launch.name,
                    self.log_tail()
                ),
            }
        }
    }

    /// From the spawn to the first `GET .../invocation/next`: the function's init phase.
    pub fn init_duration(&self) -> Option<Duration> {
        self.first_poll.map(|at| at - self.spawned_at)
    }

    /// The process's peak resident set so far (`VmHWM` in `/proc/<pid>/status`), in bytes.
    pub fn peak_rss(&self) -> anyhow::Result<u64> {
        let path = format!("/proc/{}/status", self.pid);
        let status = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
        let line = status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .with_context(|| format!("no VmHWM in {path}"))?;
        let kib: u64 = line
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .with_context(|| format!("VmHWM {line:?}"))?;
        Ok(kib * 1024)
    }

    /// Kills the process (SIGKILL, as Lambda freezes and reclaims it) and reaps it.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} had already exited ({status})\n{}",
                self.launch.name,
                self.log_tail()
            );
        }
        self.child.kill().await?;
        Ok(())
    }

    /// The last lines the process wrote, for error messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.launch.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        format!(
            "--- last lines of {} ---\n{tail}",
            self.launch.log.display()
        )
    }
}
