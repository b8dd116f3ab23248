//! A tiny HTTP receiver on 127.0.0.1 that records what it gets (std only, one request per
//! connection), shared by the delivery tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request received.
#[derive(Clone, Debug)]
pub struct Received {
    pub headers: BTreeMap<String, String>,
    pub body: serde_json::Value,
    /// The body's bytes, as signed.
    pub raw: Vec<u8>,
}

/// The receiver: answers `503` to the first `fail_first` requests, then `200`.
pub struct Receiver {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Received>>>,
    pub refused: Arc<Mutex<usize>>,
    /// The requests answered `503`.
    pub rejected: Arc<Mutex<Vec<Received>>>,
    fail_first: Arc<AtomicUsize>,
}

impl Receiver {
    pub fn start(fail_first: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        Self::serve(listener, fail_first)
    }

    pub fn serve(listener: TcpListener, fail_first: usize) -> Self {
        let addr = listener.local_addr().expect("addr");
        let received = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(Mutex::new(0));
        let rejected = Arc::new(Mutex::new(Vec::new()));
        let fail_first = Arc::new(AtomicUsize::new(fail_first));
        let (r, f, j, limit) = (
            received.clone(),
            refused.clone(),
            rejected.clone(),
            fail_first.clone(),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let Some(request) = read_request(&mut stream) else {
                    continue;
                };
                let fail = {
                    let mut refused = f.lock().expect("lock");
                    if *refused < limit.load(Ordering::SeqCst) {
                        *refused += 1;
                        true
                    } else {
                        false
                    }
                };
                let status = if fail {
                    j.lock().expect("lock").push(request);
                    "503 Service Unavailable"
                } else {
                    r.lock().expect("lock").push(request);
                    "200 OK"
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
            }
        });
        Self {
            addr,
            received,
            refused,
            rejected,
            fail_first,
        }
    }

    /// Answers `200` to every request from now on.
    pub fn accept_all(&self) {
        self.fail_first.store(0, Ordering::SeqCst);
    }

    pub fn all_rejected(&self) -> Vec<Received> {
        self.rejected.lock().expect("lock").clone()
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn all(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }

    /// Waits (polling, up to a minute) until `done` holds for what arrived.
    pub fn wait(&self, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let all = self.all();
            if done(&all) {
                return all;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {all:#?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The deliveries of revision `revision`, counted by trigger.
pub fn triggers_of(all: &[Received], revision: i64) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for r in all.iter().filter(|r| r.body["revision"] == revision) {
        *counts
            .entry(r.body["trigger"].as_str().unwrap_or_default().to_string())
            .or_default() += 1;
    }
    counts
}

fn read_request(stream: &mut std::net::TcpStream) -> Option<Received> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut headers = BTreeMap::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers.get("content-length")?.parse().ok()?;
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(Received {
        headers,
        body: serde_json::from_slice(&body).ok()?,
        raw: body,
    })
}
