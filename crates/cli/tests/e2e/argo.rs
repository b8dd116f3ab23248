//! Reading the CLI's output the way a user of Argo Rollouts' CLI reads it, shared by the
//! single-host and the Kubernetes CLI tests; and a web metric's target.

use std::net::SocketAddr;

/// The parts of a `get rollout` tree every rollout has, checked as Argo draws them: the header
/// `Status:` line, no `()` after an image without a role, the column header at the line start,
/// the Rollout row `⟳ NAME Rollout ✔ Healthy AGE`. Returns the revision numbers in the order
/// shown.
pub fn check_tree_layout(tree: &str, name: &str) -> Vec<i64> {
    let lines: Vec<&str> = tree.lines().collect();
    assert!(tree.contains("Status:          ✔ Healthy"), "{tree}");
    assert!(
        !tree.contains("()"),
        "an image without a role has no parentheses:\n{tree}"
    );
    let header = lines
        .iter()
        .position(|l| l.starts_with("NAME "))
        .unwrap_or_else(|| panic!("no table header at the line start:\n{tree}"));
    let columns: Vec<&str> = lines[header].split_whitespace().collect();
    assert_eq!(columns, ["NAME", "KIND", "STATUS", "AGE", "INFO"], "{tree}");
    let rollout = cells(lines[header + 1], "⟳").unwrap_or_default();
    assert_eq!(rollout[..4], [name, "Rollout", "✔", "Healthy"], "{tree}");
    assert!(is_age(rollout[4]), "AGE of the rollout in:\n{tree}");
    lines
        .iter()
        .filter_map(|l| l.split("# revision:").nth(1))
        .filter_map(|n| n.trim().parse().ok())
        .collect()
}

/// The cells of a tree row after its kind icon (`└──⧉ NAME KIND …` → `[NAME, KIND, …]`).
pub fn cells<'a>(line: &'a str, icon: &str) -> Option<Vec<&'a str>> {
    let mut words = line.split_whitespace();
    words.find(|w| w.ends_with(icon))?;
    Some(words.collect())
}

/// `12s`, `3m20s`, `2h`: kubectl's compact ages.
pub fn is_age(text: &str) -> bool {
    text.chars().next().is_some_and(|c| c.is_ascii_digit())
        && text
            .chars()
            .all(|c| c.is_ascii_digit() || "smhdy".contains(c))
}

/// An HTTP server answering every request with `{"ok": true}`: a web metric's target.
pub fn json_ok_server() -> SocketAddr {
    json_server(r#"{"ok":true}"#)
}

/// An HTTP server answering every request with the JSON `body`.
pub fn json_server(body: &'static str) -> SocketAddr {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}
