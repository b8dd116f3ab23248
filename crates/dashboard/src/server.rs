//! The HTTP side: routes, the guards every request passes (Host and Origin against DNS
//! rebinding and cross-site requests; for mutations also read-only mode and the bearer token),
//! the pages, the live streams and the actions.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use cutover_core::ops::Operation;
use jiff::Timestamp;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::backend::{Backend, RolloutKey};
use crate::html::{Esc, Frame};
use crate::live::{Event as LiveEvent, Hub, Sent, Snapshot, Topic};
use crate::pages::list::ListQuery;
use crate::pages::{Region, Regions, detail, list};
use crate::{DashboardError, assets, guard};

/// What every handler shares.
#[derive(Clone)]
pub struct App {
    backend: Arc<dyn Backend>,
    hub: Arc<Hub>,
    guard: Arc<guard::Guard>,
    root: Arc<str>,
    source: Arc<str>,
    read_only: bool,
    shutdown: CancellationToken,
}

impl App {
    /// The application state.
    pub fn new(
        backend: Arc<dyn Backend>,
        guard: guard::Guard,
        root: &str,
        read_only: bool,
        poll: Duration,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            source: Arc::from(backend.describe()),
            hub: Hub::new(backend.clone(), poll, shutdown.clone()),
            backend,
            guard: Arc::new(guard),
            root: Arc::from(root),
            read_only,
            shutdown,
        }
    }

    fn frame(&self) -> Frame<'_> {
        Frame {
            root: &self.root,
            source: &self.source,
            read_only: self.read_only,
        }
    }

    /// Pages watching live now.
    pub fn watchers(&self) -> usize {
        self.hub.watchers()
    }
}

/// The routes, under the root path.
pub fn router(app: App) -> Router {
    let r = app.root.to_string();
    let mut routes = Router::new()
        .route(&format!("{r}/"), get(list_page))
        .route(&format!("{r}/rollouts/{{ns}}/{{name}}"), get(detail_page))
        .route(
            &format!("{r}/rollouts/{{ns}}/{{name}}/actions"),
            post(action),
        )
        .route(&format!("{r}/live"), get(live_list))
        .route(
            &format!("{r}/live/rollouts/{{ns}}/{{name}}"),
            get(live_rollout),
        )
        .route(&format!("{r}/assets/{{file}}"), get(asset))
        .route(&format!("{r}/healthz"), get(|| async { "ok" }));
    if !r.is_empty() {
        let target = format!("{r}/");
        routes = routes.route(&r, get(move || async move { Redirect::permanent(&target) }));
    }
    routes
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(app.clone(), guard_request))
        .with_state(app)
}

/// Every request: Host and Origin checks, then security headers on the answer.
async fn guard_request(State(app): State<App>, request: Request, next: Next) -> Response {
    if let Err(refusal) = app.guard.check_request(&request) {
        return refusal.into_response();
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in guard::SECURITY_HEADERS {
        headers.insert(name.clone(), HeaderValue::from_static(value));
    }
    response
}

async fn list_page(State(app): State<App>, Query(q): Query<ListQuery>) -> Response {
    let now = Timestamp::now();
    // The answer pages watching the list share (the new page's stream starts from it).
    match app.hub.answer(Topic::List).await {
        Snapshot::Views(views) => {
            let page = list::page(
                &app.frame(),
                &views.list,
                &q,
                None,
                now,
                Some(views.version),
            );
            (no_store(), Html(page)).into_response()
        }
        Snapshot::Failed(e) => {
            let page = list::page(&app.frame(), &[], &q, Some(&e.to_string()), now, None);
            (e.status(), no_store(), Html(page)).into_response()
        }
        Snapshot::Loading => message_page(&app, StatusCode::SERVICE_UNAVAILABLE, "Not ready", ""),
    }
}

async fn detail_page(State(app): State<App>, Path((ns, name)): Path<(String, String)>) -> Response {
    let key = RolloutKey {
        namespace: ns,
        name,
    };
    let (view, version) = match app.hub.answer(Topic::Rollout(key.clone())).await {
        Snapshot::Views(views) => match views.list.first() {
            Some(view) => (view.clone(), views.version),
            None => return not_found(State(app)).await,
        },
        Snapshot::Failed(e) => {
            return message_page(&app, e.status(), "Rollout unavailable", &e.to_string());
        }
        Snapshot::Loading => {
            return message_page(&app, StatusCode::SERVICE_UNAVAILABLE, "Not ready", "");
        }
    };
    let page = detail::page(
        &app.frame(),
        &key,
        &view,
        Timestamp::now(),
        app.read_only,
        Some(version),
    );
    (no_store(), Html(page)).into_response()
}

async fn not_found(State(app): State<App>) -> Response {
    message_page(&app, StatusCode::NOT_FOUND, "Not found", "No page here.")
}

fn message_page(app: &App, status: StatusCode, title: &str, message: &str) -> Response {
    let frame = app.frame();
    let mut out = String::new();
    frame.open(&mut out, title, "");
    out.push_str(&format!(
        "<h1>{}</h1><p class=\"problem\" role=\"alert\">{}</p><p><a href=\"{}/\">All rollouts</a></p>",
        Esc(title),
        Esc(message),
        Esc(frame.root)
    ));
    frame.close(&mut out);
    (status, no_store(), Html(out)).into_response()
}

fn no_store() -> [(header::HeaderName, &'static str); 1] {
    [(header::CACHE_CONTROL, "no-store")]
}

async fn asset(Path(file): Path<String>) -> Response {
    match assets::get(&file) {
        Some((body, content_type)) => (
            [
                (header::CONTENT_TYPE, content_type),
                // Embedded in the binary: a new binary is a new dashboard, and pages are
                // not cached, so a short cache is enough.
                (header::CACHE_CONTROL, "max-age=300"),
            ],
            body,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// A mutation: read-only mode, then the bearer token, then the operation, then the backend.
/// The answer is JSON `{message}` or `{error}` with a status the page shows as it is.
async fn action(
    State(app): State<App>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if app.read_only {
        return refuse(
            StatusCode::FORBIDDEN,
            "this dashboard runs with --read-only: it changes nothing; use the CLI, or start \
             `cutover dashboard` without --read-only",
        );
    }
    if let Err(refusal) = app.guard.check_token(&headers) {
        return refusal.into_response();
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the operation as JSON with Content-Type: application/json",
        );
    }
    let op: Operation = match serde_json::from_slice(&body) {
        Ok(op) => op,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                &format!(
                    "unreadable operation ({e}); expected e.g. {{\"op\":\"promote\"}}, \
                     {{\"op\":\"undo\",\"toRevision\":2}} or \
                     {{\"op\":\"setImage\",\"container\":\"app\",\"image\":\"app:2\"}}"
                ),
            );
        }
    };
    if let Err(why) = check_operation(&op) {
        return refuse(StatusCode::UNPROCESSABLE_ENTITY, &why);
    }
    let key = RolloutKey {
        namespace: ns,
        name,
    };
    tracing::info!(rollout = %key.name, namespace = %key.namespace, ?op, "dashboard action");
    match app.backend.operate(&key, &op).await {
        Ok(message) => (StatusCode::OK, axum::Json(json!({ "message": message }))).into_response(),
        Err(e) => refuse(e.status(), &e.to_string()),
    }
}

/// What the CLI's argument parsing would refuse before asking the backend.
fn check_operation(op: &Operation) -> Result<(), String> {
    match op {
        Operation::SetImage { container, image } => {
            if container.is_empty() || image.trim().is_empty() {
                return Err("set image needs a container name and an image".into());
            }
            if image.chars().any(char::is_whitespace) {
                return Err(format!("image {image:?} contains spaces"));
            }
            Ok(())
        }
        Operation::Undo {
            to_revision: Some(n),
        } if *n < 1 => Err(format!("revision {n}: revisions are numbered from 1")),
        _ => Ok(()),
    }
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

/// The version of the answer a page was drawn from (`?v=`): its live stream then starts with
/// what changed since, not with everything again.
#[derive(serde::Deserialize)]
struct Since {
    #[serde(default)]
    v: Option<String>,
}

async fn live_list(
    State(app): State<App>,
    Query(q): Query<ListQuery>,
    Query(since): Query<Since>,
) -> Response {
    let root = app.root.to_string();
    let key = format!("list {q:?}");
    stream(app, Topic::List, true, key, since.v, move |views| {
        list::regions(views, &q, &root, None)
    })
}

async fn live_rollout(
    State(app): State<App>,
    Path((ns, name)): Path<(String, String)>,
    Query(since): Query<Since>,
) -> Response {
    let read_only = app.read_only;
    let key = RolloutKey {
        namespace: ns,
        name,
    };
    stream(
        app,
        Topic::Rollout(key),
        false,
        "rollout".into(),
        since.v,
        move |views| {
            views
                .first()
                .map(|v| detail::regions(v, None, read_only))
                .unwrap_or_default()
        },
    )
}

/// Sent first: reconnect a second after a lost connection (browsers wait longer by default).
const RETRY: &[u8] = b"retry: 1000\n\n";
/// Sent when nothing else was for a while, so that proxies keep the connection.
const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

/// A page's live stream (Server-Sent Events): on every new answer of its topic, the regions
/// that changed, as events encoded once for all pages; on a backend error, the problem
/// banner (the regions keep what they showed). Ends when the dashboard shuts down.
fn stream(
    app: App,
    topic: Topic,
    has_rows: bool,
    key: String,
    since: Option<String>,
    draw: impl Fn(&[cutover_local::api::RolloutView]) -> Regions + Send + 'static,
) -> Response {
    struct Page<F> {
        rx: tokio::sync::watch::Receiver<Snapshot>,
        sent: Sent,
        queue: std::collections::VecDeque<Bytes>,
        wait: bool,
        since: Option<String>,
        key: String,
        draw: F,
        shutdown: CancellationToken,
    }
    let page = Page {
        rx: app.hub.subscribe(topic),
        sent: Sent::new(has_rows),
        queue: std::iter::once(Bytes::from_static(RETRY)).collect(),
        wait: false,
        since,
        key,
        draw,
        shutdown: app.shutdown.clone(),
    };
    let events = futures::stream::unfold(page, |mut p| async move {
        loop {
            if let Some(event) = p.queue.pop_front() {
                return Some((Ok::<_, Infallible>(event), p));
            }
            if p.wait {
                tokio::select! {
                    changed = p.rx.changed() => if changed.is_err() { return None },
                    () = p.shutdown.cancelled() => return None,
                    () = tokio::time::sleep(Duration::from_secs(15)) => {
                        p.queue.push_back(Bytes::from_static(KEEP_ALIVE));
                        continue;
                    }
                }
            }
            p.wait = true;
            let snapshot = p.rx.borrow_and_update().clone();
            match snapshot {
                Snapshot::Loading => {}
                Snapshot::Views(views) => {
                    let drawn = views.drawn(&p.key, &p.draw);
                    if p.since.take() == Some(views.version.to_string()) {
                        // The page shows this very answer: only later changes are sent.
                        p.sent.prime(&drawn);
                    }
                    p.queue.extend(p.sent.diff(&drawn));
                    p.queue.extend(p.sent.one(&problem(None)));
                }
                Snapshot::Failed(e) => {
                    p.queue.extend(p.sent.one(&problem(Some(&e.to_string()))));
                }
            }
        }
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
            // Proxies (nginx) must pass events on as they come.
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        axum::body::Body::from_stream(events),
    )
        .into_response()
}

/// The problem banner: the backend's error, or empty.
fn problem(error: Option<&str>) -> LiveEvent {
    let html = error.map_or_else(String::new, |e| format!("<p>{}</p>", Esc(e)));
    LiveEvent::new(&Region::inner("problem", html))
}

impl IntoResponse for DashboardError {
    fn into_response(self) -> Response {
        refuse(self.status(), &self.to_string())
    }
}
