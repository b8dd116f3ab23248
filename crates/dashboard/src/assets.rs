//! The stylesheet and the script, embedded in the binary: no CDN, no build step, so the
//! dashboard works offline and `cargo build` is all it takes.

const STYLE: &str = include_str!("assets/style.css");
const SCRIPT: &str = include_str!("assets/app.js");

/// An embedded file and its content type.
pub fn get(name: &str) -> Option<(&'static str, &'static str)> {
    match name {
        "style.css" => Some((STYLE, "text/css; charset=utf-8")),
        "app.js" => Some((SCRIPT, "text/javascript; charset=utf-8")),
        _ => None,
    }
}
