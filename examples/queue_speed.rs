//! How many jobs a second Lethe's PostgreSQL queue hands out: `N` empty jobs are queued, then `K`
//! claimers, each with its own connection pool as separate worker processes would have, claim and
//! finish them (`Jobs::claim_for` then `Jobs::succeed`, the two statements a worker runs per job)
//! until none is left. Used by `bench/queue.sh`, which runs pgbench on the same SQL as the peer.
//!
//! Usage: `queue_speed URL JOBS CLAIMERS`; prints one JSON line with jobs/s for enqueueing and for
//! claiming plus finishing, and checks that every job was taken exactly once.

use std::collections::HashSet;
use std::time::Instant;

use lethe::store::{Capacity, NewJob, Store};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, jobs, claimers] = args.as_slice() else {
        anyhow::bail!("usage: queue_speed URL JOBS CLAIMERS");
    };
    let (jobs, claimers): (usize, usize) = (jobs.parse()?, claimers.parse()?);
    let store = Store::open(url).await?;
    let started = Instant::now();
    for i in 0..jobs {
        store
            .jobs()
            .enqueue(&NewJob::new("bench", serde_json::json!({ "n": i })))
            .await?;
    }
    let enqueue_s = started.elapsed().as_secs_f64();

    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(claimers + 1));
    let mut tasks = Vec::new();
    for w in 0..claimers {
        let (url, barrier) = (url.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let store = Store::connect(&url).await?;
            let worker = format!("bench-{w}");
            let capacity = Capacity {
                kinds: vec!["bench".into()],
                gpus: 0,
                memory_bytes: 1 << 34,
            };
            barrier.wait().await;
            let mut mine = Vec::new();
            while let Some(job) = store.jobs().claim_for(&worker, &capacity).await? {
                store
                    .jobs()
                    .succeed(&job.id, &worker, &serde_json::json!({}))
                    .await?;
                mine.push(job.id);
            }
            store.close().await;
            anyhow::Ok(mine)
        }));
    }
    barrier.wait().await;
    let started = Instant::now();
    let mut seen = HashSet::new();
    for t in tasks {
        for id in t.await?? {
            anyhow::ensure!(seen.insert(id.clone()), "job {id} was claimed twice");
        }
    }
    let claim_s = started.elapsed().as_secs_f64();
    anyhow::ensure!(seen.len() == jobs, "{} of {jobs} jobs were claimed", seen.len());
    println!(
        "{}",
        serde_json::json!({
            "jobs": jobs,
            "claimers": claimers,
            "enqueue_per_s": jobs as f64 / enqueue_s,
            "claim_finish_per_s": jobs as f64 / claim_s,
            "seconds": claim_s,
        })
    );
    Ok(())
}
