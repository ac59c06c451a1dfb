//! A tiny Prometheus for tests that need answers but not data: every query returns one series
//! of ones (`up{job="a"}`), a label's values are one name, the targets list is empty.

#![allow(dead_code)]

use std::io::{Read, Write};

/// Starts it on a free loopback port; serves until the test process ends.
pub fn fake_prometheus() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&seen);
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                let body = if path.contains("/query_range") {
                    let values: Vec<String> = (0..60)
                        .map(|i| format!("[{},\"1\"]", now - 900 + i * 15))
                        .collect();
                    format!(
                        r#"{{"status":"success","data":{{"resultType":"matrix","result":[{{"metric":{{"__name__":"up","job":"a"}},"values":[{}]}}]}}}}"#,
                        values.join(",")
                    )
                } else if path.contains("/query") {
                    format!(
                        r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{"__name__":"up","job":"a"}},"value":[{now},"1"]}}]}}}}"#
                    )
                } else if path.contains("/series") {
                    r#"{"status":"success","data":[{"__name__":"up","job":"a"}]}"#.to_string()
                } else if path.contains("/label/__name__/values") {
                    r#"{"status":"success","data":["up"]}"#.to_string()
                } else if path.contains("/label") {
                    r#"{"status":"success","data":["order-service"]}"#.to_string()
                } else if path.contains("buildinfo") {
                    r#"{"status":"success","data":{"version":"2.42.0"}}"#.to_string()
                } else if path.contains("/targets") {
                    r#"{"status":"success","data":{"activeTargets":[],"droppedTargets":[]}}"#
                        .to_string()
                } else {
                    r#"{"status":"success","data":[]}"#.to_string()
                };
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    port
}
