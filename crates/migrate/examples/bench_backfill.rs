//! Backfill benchmark (scripts/bench-migrate runs it): the seed's `full_name = user_name` on
//! ROWS rows, cutover's batched backfill with fixed pauses (THROTTLES, in ms, default 0,5,20)
//! and with adaptive pacing, against one naive `UPDATE`, in the same run, with concurrent
//! writers measuring their latency idle and during each backfill: a curve of rows/s against
//! writer p99. Needs DATABASE_URL (a database it may create others next to). Not a test.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cutover_migrate::pg::Postgres;
use cutover_migrate::{Options, Pacing, PhaseKind, Request, execute, load_dir, test_cluster};

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

async fn client(url: &str) -> Res<tokio_postgres::Client> {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(c)
}

/// Writers updating random rows' user_name (what v1 keeps doing) until stopped; latencies in µs.
fn writers(
    url: &str,
    n: usize,
    rows: i64,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Res<Vec<u64>>>> {
    (0..n)
        .map(|w| {
            let (url, stop) = (url.to_owned(), stop.clone());
            tokio::spawn(async move {
                let db = client(&url).await?;
                let stmt = db
                    .prepare("UPDATE users SET user_name = $1 WHERE id = $2")
                    .await?;
                let mut lat = Vec::new();
                let mut seed = 88_172_645_463_325_252u64 ^ (w as u64 + 1);
                while !stop.load(Ordering::SeqCst) {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let id = i64::try_from(seed % u64::try_from(rows)?)? + 1;
                    let t = Instant::now();
                    db.execute(&stmt, &[&format!("w{seed}"), &id]).await?;
                    lat.push(u64::try_from(t.elapsed().as_micros())?);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Ok(lat)
            })
        })
        .collect()
}

async fn collect(tasks: Vec<tokio::task::JoinHandle<Res<Vec<u64>>>>) -> Res<(usize, f64, f64)> {
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    all.sort_unstable();
    let pct = |p: f64| {
        let i = ((all.len() as f64 - 1.0) * p).round() as usize;
        all.get(i).copied().unwrap_or(0) as f64 / 1000.0
    };
    Ok((all.len(), pct(0.5), pct(0.99)))
}

async fn prepare(
    base: &str,
    rows: i64,
    label: &str,
) -> Res<(String, Postgres, Vec<cutover_migrate::Migration>)> {
    let url = test_cluster::fresh_database(base, label).await?;
    let db = client(&url).await?;
    db.batch_execute(&format!(
        "CREATE TABLE users (id bigserial PRIMARY KEY, user_name varchar(255) NOT NULL, email text);
         INSERT INTO users (user_name) SELECT 'user-' || g FROM generate_series(1, {rows}) g;"
    ))
    .await?;
    // Its own message: VACUUM cannot share an implicit transaction with other statements.
    db.batch_execute("VACUUM ANALYZE users").await?;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/migrations");
    let migrations: Vec<_> = load_dir(&dir)?
        .into_iter()
        .filter(|m| m.name.starts_with("001"))
        .collect();
    let pg = Postgres::connect(&url, &Options::default()).await?;
    Ok((url, pg, migrations))
}

fn request(command: PhaseKind) -> Request {
    Request {
        command,
        target: None,
        rollout: None,
        bake: jiff::SignedDuration::ZERO,
        force: None,
        now: jiff::Timestamp::now(),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Res<()> {
    let base = std::env::var("DATABASE_URL").map_err(|_| "set DATABASE_URL")?;
    let rows: i64 = std::env::var("ROWS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(300_000);
    let batch: u32 = std::env::var("BATCH")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1000);
    let nwriters: usize = std::env::var("WRITERS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(2);
    let throttles: Vec<u64> = std::env::var("THROTTLES")
        .unwrap_or_else(|_| "0,5,20".into())
        .split(',')
        .filter_map(|t| t.trim().parse().ok())
        .collect();
    let mut runs: Vec<(String, Option<Pacing>)> = throttles
        .iter()
        .map(|ms| {
            (
                format!("fixed {ms} ms"),
                Some(Pacing::Fixed(Duration::from_millis(*ms))),
            )
        })
        .collect();
    runs.push(("adaptive".into(), Some(Pacing::default())));
    runs.push(("naive UPDATE".into(), None));
    println!("rows {rows}, batch {batch}, writers {nwriters}");
    println!(
        "| pacing | rows/s | duration | longest batch | batches (backoffs) | writers idle p50/p99 | writers during p50/p99 | p99 during/idle |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (label, pacing) in runs {
        let db_label = label.replace(' ', "_");
        let (url, mut pg, migrations) = prepare(&base, rows, &db_label).await?;
        let options = Options {
            batch_size: batch,
            pacing: pacing.clone().unwrap_or_default(),
            ..Options::default()
        };
        execute(&mut pg, &migrations, &request(PhaseKind::Expand), &options).await?;
        // Idle baseline, measured right before each backfill: the machine's load drifts.
        let stop = Arc::new(AtomicBool::new(false));
        let w = writers(&url, nwriters, rows, stop.clone());
        tokio::time::sleep(Duration::from_secs(3)).await;
        stop.store(true, Ordering::SeqCst);
        let (_, idle50, idle99) = collect(w).await?;
        let stop = Arc::new(AtomicBool::new(false));
        let w = writers(&url, nwriters, rows, stop.clone());
        tokio::time::sleep(Duration::from_millis(300)).await;
        let t = Instant::now();
        let (done, lock_ms, batches) = if pacing.is_some() {
            let out = execute(
                &mut pg,
                &migrations,
                &request(PhaseKind::Backfill),
                &options,
            )
            .await?;
            let r = out.report;
            (
                r.rows,
                r.max_batch_millis,
                format!("{} ({})", r.batches, r.pacing.backoffs),
            )
        } else {
            let db = client(&url).await?;
            let t = Instant::now();
            let msgs = db
                .simple_query("BEGIN; SET LOCAL cutover.backfill = 'on'; UPDATE users SET full_name = user_name WHERE full_name IS NULL; COMMIT;")
                .await?;
            let n = msgs.iter().find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::CommandComplete(n) if *n > 0 => Some(*n),
                _ => None,
            });
            (
                i64::try_from(n.unwrap_or(0))?,
                t.elapsed().as_secs_f64() * 1000.0,
                "1".into(),
            )
        };
        let secs = t.elapsed().as_secs_f64();
        stop.store(true, Ordering::SeqCst);
        let (count, p50, p99) = collect(w).await?;
        println!(
            "| {label} | {:.0} | {secs:.2} s ({done} rows) | {lock_ms:.1} ms | {batches} | {idle50:.2} / {idle99:.2} ms | {p50:.2} / {p99:.2} ms ({count} writes) | {:.2}× |",
            done as f64 / secs,
            if idle99 > 0.0 { p99 / idle99 } else { 0.0 },
        );
    }
    Ok(())
}
