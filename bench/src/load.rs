//! A small HTTP/1.1 load generator over raw TCP, loopback only: pre-built requests on
//! keep-alive connections, either as fast as the server answers (closed loop) or at a fixed
//! rate with latency measured from each request's scheduled time (so a stall is counted
//! against every request it delays, not hidden).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

/// What a run saw.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Responses received.
    pub responses: usize,
    /// `2xx` responses whose body says the event was stored (`"accepted":1`), or every
    /// `2xx` for [`Expect::Any2xx`].
    pub accepted: usize,
    /// Responses that did not count (non-2xx, or a 2xx that did not store) and broken
    /// connections.
    pub errors: usize,
    /// Status of the first response that did not count, for the report.
    pub first_error: Option<String>,
    pub elapsed: Duration,
    /// Latency of each response, microseconds.
    pub latencies: Vec<u32>,
}

impl Outcome {
    pub fn accepted_per_second(&self) -> f64 {
        self.accepted as f64 / self.elapsed.as_secs_f64()
    }

    /// The `p`-quantile latency (0..=1), milliseconds.
    pub fn quantile_ms(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        let index = ((sorted.len() - 1) as f64 * p).round() as usize;
        f64::from(sorted[index]) / 1000.0
    }

    fn merge(&mut self, other: Outcome) {
        self.responses += other.responses;
        self.accepted += other.accepted;
        self.errors += other.errors;
        self.first_error = self.first_error.take().or(other.first_error);
        self.latencies.extend(other.latencies);
    }
}

/// What counts as accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// A `2xx` whose body contains `"accepted":1`.
    Stored,
    /// Any `2xx` (the wire-limit row).
    Any2xx,
}

/// One response: status and whether the body said "stored".
struct Answer {
    status: u16,
    stored: bool,
    body: String,
}

/// A keep-alive connection sending pre-built requests.
struct Connection {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Connection {
    async fn open(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buffer: Vec::with_capacity(4096),
        })
    }

    async fn exchange(&mut self, request: &[u8]) -> anyhow::Result<Answer> {
        self.stream.write_all(request).await?;
        self.buffer.clear();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                bail!("connection closed");
            }
            self.buffer.extend_from_slice(&chunk[..n]);
            if let Some(i) = find(&self.buffer, b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = std::str::from_utf8(&self.buffer[..head_end]).context("response head")?;
        let status: u16 = head
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .context("status line")?;
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .unwrap_or(0);
        while self.buffer.len() < head_end + length {
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                bail!("connection closed mid-body");
            }
            self.buffer.extend_from_slice(&chunk[..n]);
        }
        let body = &self.buffer[head_end..head_end + length];
        Ok(Answer {
            status,
            stored: find(body, b"\"accepted\":1").is_some(),
            body: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
        })
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn counts(answer: &Answer, expect: Expect) -> bool {
    (200..300).contains(&answer.status) && (expect == Expect::Any2xx || answer.stored)
}

/// Send `requests` (each used once, in order) over `connections` keep-alive connections
/// as fast as answers come, for at most `duration`.
pub async fn closed_loop(
    addr: SocketAddr,
    requests: Arc<Vec<Vec<u8>>>,
    connections: usize,
    duration: Duration,
    expect: Expect,
) -> anyhow::Result<Outcome> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (requests, next) = (requests.clone(), next.clone());
        let mut connection = Connection::open(addr).await?;
        tasks.push(tokio::spawn(async move {
            let mut out = Outcome::default();
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(request) = requests.get(i) else {
                    break;
                };
                let sent = Instant::now();
                match connection.exchange(request).await {
                    Ok(answer) => {
                        out.responses += 1;
                        out.latencies.push(sent.elapsed().as_micros() as u32);
                        if counts(&answer, expect) {
                            out.accepted += 1;
                        } else {
                            out.errors += 1;
                            out.first_error.get_or_insert_with(|| {
                                format!("{} {}", answer.status, answer.body)
                            });
                        }
                    }
                    Err(e) => {
                        out.errors += 1;
                        out.first_error.get_or_insert_with(|| e.to_string());
                        match Connection::open(addr).await {
                            Ok(c) => connection = c,
                            Err(_) => break,
                        }
                    }
                }
            }
            out
        }));
    }
    let mut total = Outcome::default();
    for task in tasks {
        total.merge(task.await?);
    }
    total.elapsed = started.elapsed();
    Ok(total)
}

/// Send `requests` at `rate` per second for `duration` (at most `requests.len()`), each on
/// an idle connection from a pool (opening more when none is idle); latency counts from the
/// request's scheduled time.
pub async fn fixed_rate(
    addr: SocketAddr,
    requests: Arc<Vec<Vec<u8>>>,
    rate: u32,
    duration: Duration,
    expect: Expect,
) -> anyhow::Result<Outcome> {
    let total = ((duration.as_secs_f64() * f64::from(rate)) as usize).min(requests.len());
    let pool: Arc<Mutex<Vec<Connection>>> = Arc::new(Mutex::new(Vec::new()));
    for _ in 0..16 {
        pool.lock().await.push(Connection::open(addr).await?);
    }
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        let scheduled = started + interval.mul_f64(i as f64);
        tokio::time::sleep_until(scheduled.into()).await;
        let (pool, requests) = (pool.clone(), requests.clone());
        tasks.push(tokio::spawn(async move {
            let connection = pool.lock().await.pop();
            let mut connection = match connection {
                Some(c) => c,
                None => Connection::open(addr).await?,
            };
            let answer = connection.exchange(&requests[i]).await;
            let latency = scheduled.elapsed();
            if answer.is_ok() {
                pool.lock().await.push(connection);
            }
            let answer = answer.map(|a| (counts(&a, expect), format!("{} {}", a.status, a.body)));
            anyhow::Ok((answer, latency))
        }));
    }
    let mut out = Outcome::default();
    for task in tasks {
        match task.await? {
            Ok((Ok((counted, answer)), latency)) => {
                out.responses += 1;
                out.latencies.push(latency.as_micros() as u32);
                if counted {
                    out.accepted += 1;
                } else {
                    out.errors += 1;
                    out.first_error.get_or_insert(answer);
                }
            }
            Ok((Err(e), _)) => {
                out.errors += 1;
                out.first_error.get_or_insert_with(|| e.to_string());
            }
            Err(e) => {
                out.errors += 1;
                out.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    out.elapsed = started.elapsed();
    Ok(out)
}
