//! The route table a caller installs, and the pure routing decisions made on it: header match,
//! weighted (optionally sticky) choice. No I/O here, so the decisions are unit-tested directly.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use http::HeaderMap;

/// Cookie whose value makes the weighted split sticky per client.
pub const STICKY_COOKIE: &str = "cutover-split";
/// Header used as the sticky key when the cookie is absent.
pub const STICKY_HEADER: &str = "x-cutover-key";

/// Everything the router needs to route one Service, installed as one immutable snapshot.
#[derive(Clone, Debug, Default)]
pub struct RouteTable {
    /// Ready endpoints of each revision, by pod-template hash.
    pub backends: BTreeMap<String, Vec<SocketAddr>>,
    /// Where requests that match no header route go, with relative weights.
    pub default_route: Vec<WeightedRevision>,
    /// Checked in order before weights; the first match wins.
    pub header_routes: Vec<HeaderRoute>,
    /// Copy a share of requests to another revision.
    pub mirror: Option<MirrorRule>,
    /// Longest wait for a backend's response head once the whole request is forwarded, after
    /// which the client gets a 504. None: the router's default; zero: no limit.
    pub response_timeout: Option<Duration>,
}

impl RouteTable {
    /// A table sending everything to one revision served by `backends`.
    pub fn single(revision: &str, backends: Vec<SocketAddr>) -> Self {
        Self {
            backends: BTreeMap::from([(revision.to_owned(), backends)]),
            default_route: vec![WeightedRevision {
                revision: revision.to_owned(),
                weight: 100,
            }],
            header_routes: Vec::new(),
            mirror: None,
            response_timeout: None,
        }
    }
}

/// A revision and its relative weight (0–100; weights need not sum to 100).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WeightedRevision {
    pub revision: String,
    pub weight: u32,
}

/// Send requests whose `header` matches to `revision`.
#[derive(Clone, Debug)]
pub struct HeaderRoute {
    pub header: String,
    pub matcher: HeaderMatch,
    pub revision: String,
}

/// How a header value is matched.
#[derive(Clone, Debug)]
pub enum HeaderMatch {
    Exact(String),
    Prefix(String),
    /// Matched against the whole value, like Istio's `regex` (an implicit `^...$`).
    Regex(regex::Regex),
}

/// A header route prepared for the request path: parsed header name, anchored regex, and the
/// target as an index into the snapshot's revisions.
#[derive(Debug)]
pub(crate) struct CompiledHeaderRoute {
    header: http::HeaderName,
    matcher: Matcher,
    pub revision: usize,
}

#[derive(Debug)]
enum Matcher {
    Exact(String),
    Prefix(String),
    Regex(regex::Regex),
}

impl Matcher {
    fn matches(&self, value: &str) -> bool {
        match self {
            Matcher::Exact(expected) => value == expected,
            Matcher::Prefix(prefix) => value.starts_with(prefix.as_str()),
            Matcher::Regex(re) => re.is_match(value),
        }
    }
}

impl CompiledHeaderRoute {
    /// `None` when the header name is not a valid HTTP header name (such a route never matches).
    pub fn compile(route: &HeaderRoute, revision: usize) -> Option<Self> {
        let header = http::HeaderName::from_bytes(route.header.as_bytes()).ok()?;
        let matcher = match &route.matcher {
            HeaderMatch::Exact(value) => Matcher::Exact(value.clone()),
            HeaderMatch::Prefix(value) => Matcher::Prefix(value.clone()),
            // Anchoring a valid regex in a non-capturing group keeps it valid.
            HeaderMatch::Regex(re) => Matcher::Regex(
                regex::Regex::new(&format!("^(?:{})$", re.as_str())).unwrap_or_else(|_| re.clone()),
            ),
        };
        Some(Self {
            header,
            matcher,
            revision,
        })
    }
}

/// Copy `percent` (0–100) of requests to `revision`; its responses are discarded.
#[derive(Clone, Debug, PartialEq)]
pub struct MirrorRule {
    pub revision: String,
    pub percent: f64,
}

/// Index of the first header route matching `headers`.
pub(crate) fn match_header_route<'a>(
    routes: &'a [CompiledHeaderRoute],
    headers: &HeaderMap,
) -> Option<&'a CompiledHeaderRoute> {
    routes.iter().find(|route| {
        headers
            .get_all(&route.header)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| route.matcher.matches(v))
    })
}

/// The client's sticky key: cookie `cutover-split`, else header `x-cutover-key`.
pub(crate) fn sticky_key(headers: &HeaderMap) -> Option<&[u8]> {
    for cookie in headers.get_all(http::header::COOKIE) {
        let Ok(cookie) = cookie.to_str() else {
            continue;
        };
        for pair in cookie.split(';') {
            if let Some((name, value)) = pair.trim().split_once('=')
                && name == STICKY_COOKIE
                && !value.is_empty()
            {
                return Some(value.as_bytes());
            }
        }
    }
    headers
        .get(STICKY_HEADER)
        .map(|v| v.as_bytes())
        .filter(|v| !v.is_empty())
}

/// FNV-1a, 64 bit: stable across processes and releases, so a client keeps its revision.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The 64-bit finalizer of MurmurHash3 (fmix64): every input bit affects every output bit.
pub(crate) fn mix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// A point in `[0, total)` for the weighted choice: the sticky key's hash, else random.
pub(crate) fn split_point(key: Option<&[u8]>, total: u64) -> u64 {
    match key {
        // FNV-1a leaves its high bits poorly mixed for keys that differ only at the end
        // ("client-1", "client-2"), so a finalizer mixes them before multiply-shift maps the
        // hash uniformly onto [0, total) without modulo bias.
        Some(key) => ((u128::from(mix64(fnv1a(key))) * u128::from(total)) >> 64) as u64,
        None => fastrand::u64(0..total),
    }
}

/// Index into `weights` whose cumulative range holds `point`; `None` when all weights are 0.
pub(crate) fn pick_weighted(weights: impl IntoIterator<Item = u32>, point: u64) -> Option<usize> {
    let mut upper = 0u64;
    for (index, weight) in weights.into_iter().enumerate() {
        upper += u64::from(weight);
        if point < upper {
            return Some(index);
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, http::HeaderValue::from_static(value));
        }
        map
    }

    fn compiled(header: &str, matcher: HeaderMatch) -> CompiledHeaderRoute {
        let route = HeaderRoute {
            header: header.into(),
            matcher,
            revision: String::new(),
        };
        CompiledHeaderRoute::compile(&route, 0).unwrap()
    }

    #[test]
    fn regex_is_a_full_match() {
        let m = compiled("x", HeaderMatch::Regex(regex::Regex::new("tr.e").unwrap())).matcher;
        assert!(m.matches("true"));
        assert!(!m.matches("xtrue"));
        assert!(!m.matches("truex"));
        let alt = compiled("x", HeaderMatch::Regex(regex::Regex::new("a|ab").unwrap())).matcher;
        assert!(alt.matches("ab"));
    }

    #[test]
    fn first_matching_header_route_wins() {
        let mut canary = compiled("x-canary", HeaderMatch::Exact("true".into()));
        canary.revision = 7;
        let mut qa = compiled("x-user", HeaderMatch::Prefix("qa-".into()));
        qa.revision = 8;
        let routes = vec![canary, qa];
        let hit = |h| match_header_route(&routes, &h).map(|r| r.revision);
        assert_eq!(hit(headers(&[("x-canary", "true")])), Some(7));
        assert_eq!(hit(headers(&[("x-user", "qa-1")])), Some(8));
        assert_eq!(hit(headers(&[("x-canary", "no")])), None);
    }

    #[test]
    fn sticky_split_is_proportional_for_keys_that_differ_only_at_the_end() {
        let to_second = (0..1000)
            .map(|i| format!("client-{i}"))
            .filter(|k| pick_weighted([80, 20], split_point(Some(k.as_bytes()), 100)) == Some(1))
            .count();
        assert!((150..=250).contains(&to_second), "{to_second} of 1000");
    }

    #[test]
    fn sticky_key_prefers_cookie() {
        let h = headers(&[("cookie", "a=1; cutover-split=u42"), ("x-cutover-key", "k")]);
        assert_eq!(sticky_key(&h), Some(&b"u42"[..]));
        assert_eq!(
            sticky_key(&headers(&[("x-cutover-key", "k")])),
            Some(&b"k"[..])
        );
        assert_eq!(sticky_key(&headers(&[])), None);
    }

    #[test]
    fn weighted_pick_normalises_and_handles_zero() {
        assert_eq!(pick_weighted([0, 0], 0), None);
        assert_eq!(pick_weighted([3, 1], 2), Some(0));
        assert_eq!(pick_weighted([3, 1], 3), Some(1));
        assert_eq!(pick_weighted([0, 5], 0), Some(1));
    }

    #[test]
    fn sticky_split_is_stable_and_roughly_proportional() {
        let mut green = 0;
        for user in 0..10_000 {
            let key = format!("user-{user}");
            let point = split_point(Some(key.as_bytes()), 100);
            assert_eq!(point, split_point(Some(key.as_bytes()), 100));
            if pick_weighted([90, 10], point) == Some(1) {
                green += 1;
            }
        }
        assert!((800..1200).contains(&green), "green got {green} of 10000");
    }
}
