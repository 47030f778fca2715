//! Store tests, each run on SQLite and on PostgreSQL.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::TestDb;
use lethe::store::{Capacity, JobState, NewJob, Role, Store, StoreError};
use serde_json::json;

async fn migrations_apply_twice_without_change(db: &TestDb) {
    let store = db.open().await;
    store.migrate().await.expect("second migrate is a no-op");
    let (known, applied) = store.migration_status().await.unwrap();
    assert_eq!(known, applied);
    assert!(known >= 1);
    assert!(store.ping().await.unwrap().len() > 3);
    store.close().await;
}
on_both_engines!(
    migrations_are_idempotent,
    super::migrations_apply_twice_without_change
);

async fn users_are_unique_and_roles_checked(db: &TestDb) {
    let store = db.open().await;
    let u = store
        .users()
        .create("alice", Role::Reviewer, "h", true)
        .await
        .unwrap();
    assert_eq!(u.role, Role::Reviewer);
    let err = store
        .users()
        .create("alice", Role::Admin, "h", false)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::UserExists(ref n) if n == "alice"),
        "{err}"
    );
    let back = store.users().by_username("alice").await.unwrap().unwrap();
    assert!(back.must_change_password);
    assert_eq!(back.id, u.id);
    assert!(store.users().by_username("bob").await.unwrap().is_none());
    // The database itself refuses a role outside the closed set.
    let bad = sqlx::query(
        "INSERT INTO users (id, username, role, password_hash, created_at, updated_at) VALUES ('x', 'eve', 'root', 'h', 0, 0)",
    )
    .execute(store.pool())
    .await;
    assert!(bad.is_err());
    assert_eq!(store.users().count().await.unwrap(), 1);
    store.close().await;
}
on_both_engines!(users, super::users_are_unique_and_roles_checked);

/// Dual control's storage: a grant is decided once even when two admins confirm it at the same moment;
/// an approver key is enrolled once, activated once, revoked with its account's reset; settings replace.
async fn grants_are_decided_once_and_keys_belong_to_one_approver(db: &TestDb) {
    let store = Arc::new(db.open().await);
    let u = store
        .users()
        .create("rita", Role::Reviewer, "h", true)
        .await
        .unwrap();
    let g = store
        .grants()
        .create("create", "ghost", &json!({ "role": "reviewer" }), "admin")
        .await
        .unwrap();
    assert_eq!(
        store.grants().list(Some("pending")).await.unwrap(),
        vec![g.clone()]
    );
    let racers: Vec<_> = ["ada", "bob", "cyd", "dee"]
        .into_iter()
        .map(|who| {
            let (store, id) = (store.clone(), g.id.clone());
            tokio::spawn(async move {
                store
                    .grants()
                    .decide(&id, "pending", "confirmed", Some(who))
                    .await
            })
        })
        .collect();
    let mut won = 0;
    for r in racers {
        won += usize::from(r.await.unwrap().unwrap());
    }
    assert_eq!(won, 1, "exactly one confirmation takes effect");
    let back = store.grants().get(&g.id).await.unwrap().unwrap();
    assert_eq!(back.state, "confirmed");
    assert!(back.decided_by.is_some() && back.decided_at.is_some());
    assert!(store.grants().list(Some("pending")).await.unwrap().is_empty());
    assert_eq!(store.grants().list(None).await.unwrap().len(), 1);

    let key = lethe::store::NewApproverKey {
        user_id: &u.id,
        kind: "ed25519",
        public_key: &"ab".repeat(32),
        credential_id: None,
        rp_id: None,
        label: "laptop",
    };
    let k = store.grants().add_key(&key).await.unwrap();
    assert_eq!(k.state, "pending");
    assert!(
        store.grants().add_key(&key).await.is_err(),
        "a public key is enrolled once"
    );
    assert!(store.grants().activate_key(&k.id, "admin").await.unwrap());
    assert!(
        !store.grants().activate_key(&k.id, "admin").await.unwrap(),
        "activated once"
    );
    assert_eq!(store.grants().keys(Some(&u.id)).await.unwrap()[0].state, "active");
    assert_eq!(store.grants().revoke_keys(&u.id).await.unwrap(), 1);
    assert_eq!(store.grants().revoke_keys(&u.id).await.unwrap(), 0);
    assert!(!store.grants().revoke_key(&k.id).await.unwrap());

    assert_eq!(store.grants().setting("approver_role").await.unwrap(), None);
    store
        .grants()
        .set_setting("approver_role", "operator")
        .await
        .unwrap();
    store
        .grants()
        .set_setting("approver_role", "admin")
        .await
        .unwrap();
    assert_eq!(
        store.grants().setting("approver_role").await.unwrap().as_deref(),
        Some("admin")
    );
    store.close().await;
}
on_both_engines!(
    grants_and_approver_keys,
    super::grants_are_decided_once_and_keys_belong_to_one_approver
);

/// The security review's medium finding 3, in the database so that every console process counts the
/// same attempts: forty reservations at once for one account get one slot; failures and checks in flight
/// count together against the limit; an expired check frees its slot; a success forgets the failures.
async fn sign_in_attempts_are_reserved_once_across_connections(db: &TestDb) {
    use lethe::store::throttle::ThrottleKey;
    let store = Arc::new(db.open().await);
    let window = 900_000;
    let key = |k: &str, limit, in_flight| ThrottleKey {
        key: k.into(),
        limit,
        in_flight,
    };
    let rita = vec![key("user:rita", 5, 1), key("addr:10.0.0.1", 20, 4)];
    let racers: Vec<_> = (0..40)
        .map(|_| {
            let (store, keys) = (store.clone(), rita.clone());
            tokio::spawn(async move { store.throttle().reserve(&keys, 1_000, window, 30_000).await })
        })
        .collect();
    let mut held = Vec::new();
    for r in racers {
        if let Ok(ids) = r.await.unwrap().unwrap() {
            held.push(ids);
        }
    }
    assert_eq!(held.len(), 1, "one check of an account in flight at a time");
    store.throttle().failed(&held[0], 1_000, window).await.unwrap();
    // One at a time, five checks in all, then the window's wait.
    let mut checked = 1;
    while let Ok(ids) = store
        .throttle()
        .reserve(&rita, 2_000, window, 30_000)
        .await
        .unwrap()
    {
        store.throttle().failed(&ids, 2_000, window).await.unwrap();
        checked += 1;
        assert!(checked <= 5, "the limit holds");
    }
    assert_eq!(checked, 5);
    let wait = store
        .throttle()
        .reserve(&rita, 3_000, window, 30_000)
        .await
        .unwrap()
        .unwrap_err();
    assert!((890..=900).contains(&wait), "{wait}");
    // A check whose process died frees its slot when it expires.
    let remy = vec![key("user:remy", 5, 1)];
    let _lost = store
        .throttle()
        .reserve(&remy, 1_000, window, 30_000)
        .await
        .unwrap()
        .unwrap();
    assert!(store
        .throttle()
        .reserve(&remy, 2_000, window, 30_000)
        .await
        .unwrap()
        .is_err());
    assert!(store
        .throttle()
        .reserve(&remy, 31_001, window, 30_000)
        .await
        .unwrap()
        .is_ok());
    // After the window, or a success, rita may try again.
    assert!(store
        .throttle()
        .reserve(&rita, 1_000 + window + 2_000, window, 30_000)
        .await
        .unwrap()
        .is_ok());
    store.throttle().forget("user:rita").await.unwrap();
    store.close().await;
}
on_both_engines!(
    sign_in_throttle,
    super::sign_in_attempts_are_reserved_once_across_connections
);

/// The security review's low finding 8: two admins disabling each other at once left no enabled admin.
/// The last-admin check and the change are one atomic step now, on both engines.
async fn two_admins_disabling_each_other_at_once_leave_one_enabled(db: &TestDb) {
    let store = db.open().await;
    let a = store
        .users()
        .create("ada", Role::Admin, "h", false)
        .await
        .unwrap();
    let b = store
        .users()
        .create("bea", Role::Admin, "h", false)
        .await
        .unwrap();
    for round in 0..20 {
        let (s1, s2) = (db.open().await, db.open().await);
        let (ida, idb) = (a.id.clone(), b.id.clone());
        let t1 = tokio::spawn(async move {
            let r = s1
                .users()
                .set_role_keeping_an_admin(&idb, Role::Admin, true)
                .await;
            s1.close().await;
            r
        });
        let t2 = tokio::spawn(async move {
            let r = s2
                .users()
                .set_role_keeping_an_admin(&ida, Role::Admin, true)
                .await;
            s2.close().await;
            r
        });
        let (r1, r2) = (t1.await.unwrap().unwrap(), t2.await.unwrap().unwrap());
        assert!(
            r1 ^ r2,
            "round {round}: exactly one of the two changes may go through ({r1}, {r2})"
        );
        assert_eq!(store.users().active_admins().await.unwrap(), 1, "round {round}");
        for id in [&a.id, &b.id] {
            store.users().set_role(id, Role::Admin, false).await.unwrap();
        }
    }
    // Demoting the only admin is refused too, and changes nothing.
    store.users().set_role(&b.id, Role::Admin, true).await.unwrap();
    assert!(!store
        .users()
        .set_role_keeping_an_admin(&a.id, Role::Reviewer, false)
        .await
        .unwrap());
    assert_eq!(store.users().active_admins().await.unwrap(), 1);
    store.close().await;
}
on_both_engines!(
    last_admin,
    super::two_admins_disabling_each_other_at_once_leave_one_enabled
);

async fn job_lifecycle_records_progress_and_result(db: &TestDb) {
    let store = db.open().await;
    let jobs = store.jobs();
    let id = jobs
        .enqueue(&NewJob::new("ingest", json!({"name": "kb"})))
        .await
        .unwrap();
    let job = jobs.get(&id).await.unwrap();
    assert_eq!(job.state, JobState::Queued);
    assert_eq!(job.args, json!({"name": "kb"}));
    assert!(
        jobs.claim("w1", &["train"]).await.unwrap().is_none(),
        "kind filter must hold"
    );
    let claimed = jobs.claim("w1", &["ingest", "train"]).await.unwrap().unwrap();
    assert_eq!(claimed.id, id);
    assert_eq!(claimed.state, JobState::Running);
    assert_eq!(claimed.owner.as_deref(), Some("w1"));
    assert_eq!(claimed.attempts, 1);
    assert!(jobs.claim("w2", &[]).await.unwrap().is_none());
    jobs.heartbeat(&id, "w1", 0.5, Some("half way")).await.unwrap();
    let err = jobs.heartbeat(&id, "w2", 0.9, None).await.unwrap_err();
    assert!(matches!(err, StoreError::LeaseLost { .. }));
    let mid = jobs.get(&id).await.unwrap();
    assert_eq!(mid.progress, 0.5);
    assert_eq!(mid.message.as_deref(), Some("half way"));
    jobs.succeed(&id, "w1", &json!({"docs": 3})).await.unwrap();
    let done = jobs.get(&id).await.unwrap();
    assert_eq!(done.state, JobState::Succeeded);
    assert_eq!(done.progress, 1.0);
    assert_eq!(done.result, Some(json!({"docs": 3})));
    assert!(done.finished_at.is_some());
    // A finished job cannot be finished again.
    assert!(jobs.fail(&id, "w1", "late").await.is_err());
    assert!(matches!(
        jobs.get("job-nope").await,
        Err(StoreError::JobNotFound(_))
    ));
    store.close().await;
}
on_both_engines!(job_lifecycle, super::job_lifecycle_records_progress_and_result);

async fn stale_jobs_are_handed_back_then_failed(db: &TestDb) {
    let store = db.open().await;
    let jobs = store.jobs();
    let mut job = NewJob::new("train", json!({}));
    job.max_attempts = 2;
    let id = jobs.enqueue(&job).await.unwrap();
    jobs.claim("w1", &[]).await.unwrap().unwrap();
    // A fresh heartbeat is not stale.
    assert!(jobs.requeue_stale(60_000).await.unwrap().is_empty());
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let reaped = jobs.requeue_stale(5).await.unwrap();
    assert_eq!(reaped.len(), 1);
    assert_eq!(reaped[0].previous_owner, "w1");
    assert_eq!(reaped[0].now, JobState::Queued);
    // The silent worker has lost the job: it can neither heartbeat nor finish it.
    assert!(matches!(
        jobs.heartbeat(&id, "w1", 0.1, None).await,
        Err(StoreError::LeaseLost { .. })
    ));
    assert!(matches!(
        jobs.succeed(&id, "w1", &json!(1)).await,
        Err(StoreError::LeaseLost { .. })
    ));
    let again = jobs.claim("w2", &[]).await.unwrap().unwrap();
    assert_eq!(again.id, id);
    assert_eq!(again.attempts, 2);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let reaped = jobs.requeue_stale(5).await.unwrap();
    assert_eq!(reaped[0].now, JobState::Failed, "no attempts left");
    let failed = jobs.get(&id).await.unwrap();
    assert_eq!(failed.state, JobState::Failed);
    assert!(failed.error.unwrap().contains("w2 stopped heartbeating"));
    store.close().await;
}
on_both_engines!(stale_jobs, super::stale_jobs_are_handed_back_then_failed);

/// Many claimers, each with its own connection pool as separate worker processes would have, race over
/// many jobs: every job is claimed exactly once and none is lost.
async fn concurrent_claimers_take_each_job_exactly_once(db: &TestDb) {
    const JOBS: usize = 300;
    const CLAIMERS: usize = 12;
    let store = db.open().await;
    for i in 0..JOBS {
        store
            .jobs()
            .enqueue(&NewJob::new("audit", json!({ "n": i })))
            .await
            .unwrap();
    }
    let mut handles = Vec::new();
    let barrier = Arc::new(tokio::sync::Barrier::new(CLAIMERS));
    for w in 0..CLAIMERS {
        let url = db.url.clone();
        let barrier = barrier.clone();
        handles.push(tokio::spawn(async move {
            let worker = format!("w{w}");
            let store = Store::connect(&url).await.unwrap();
            barrier.wait().await;
            let mut mine = Vec::new();
            while let Some(job) = store.jobs().claim(&worker, &[]).await.unwrap() {
                assert_eq!(job.owner.as_deref(), Some(worker.as_str()));
                store
                    .jobs()
                    .succeed(&job.id, &worker, &json!({ "by": worker }))
                    .await
                    .unwrap();
                mine.push(job.id);
            }
            store.close().await;
            mine
        }));
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut busy_workers = 0;
    for h in handles {
        let mine = h.await.unwrap();
        if !mine.is_empty() {
            busy_workers += 1;
        }
        for id in mine {
            *seen.entry(id).or_default() += 1;
        }
    }
    assert_eq!(seen.len(), JOBS, "every job claimed");
    assert!(seen.values().all(|&n| n == 1), "no job claimed twice");
    assert!(busy_workers > 1, "claims were spread over several workers");
    let all = store.jobs().list(JOBS as i64 + 10).await.unwrap();
    assert_eq!(all.len(), JOBS);
    assert!(all
        .iter()
        .all(|j| j.state == JobState::Succeeded && j.attempts == 1));
    store.close().await;
}
on_both_engines!(
    concurrent_claims,
    super::concurrent_claimers_take_each_job_exactly_once
);

/// A claim takes only what the worker can run: no GPU job for a CPU worker, no job whose memory
/// estimate exceeds the worker's; a job queued behind them is not held up.
async fn claims_match_jobs_to_what_workers_have(db: &TestDb) {
    let store = db.open().await;
    let jobs = store.jobs();
    let mut gpu = NewJob::new("train", json!({"n": "gpu"}));
    gpu.needs_gpu = true;
    let gpu = jobs.enqueue(&gpu).await.unwrap();
    let mut big = NewJob::new("train", json!({"n": "big"}));
    big.needs_memory_bytes = 64 << 30;
    let big = jobs.enqueue(&big).await.unwrap();
    let small = jobs
        .enqueue(&NewJob::new("train", json!({"n": "small"})))
        .await
        .unwrap();
    let cpu = Capacity {
        kinds: vec!["train".into()],
        gpus: 0,
        memory_bytes: 16 << 30,
    };
    let got = jobs.claim_for("cpu", &cpu).await.unwrap().unwrap();
    assert_eq!(
        got.id, small,
        "the CPU worker skips the GPU and the oversized job"
    );
    assert!(jobs.claim_for("cpu", &cpu).await.unwrap().is_none());
    let gpu_worker = Capacity {
        gpus: 1,
        ..cpu.clone()
    };
    assert_eq!(jobs.claim_for("g", &gpu_worker).await.unwrap().unwrap().id, gpu);
    assert!(jobs.claim_for("g", &gpu_worker).await.unwrap().is_none());
    let big_worker = Capacity {
        memory_bytes: 128 << 30,
        ..cpu
    };
    let got = jobs.claim_for("b", &big_worker).await.unwrap().unwrap();
    assert_eq!(got.id, big);
    assert!(got.needs_memory_bytes == 64 << 30 && !got.needs_gpu);
    store.close().await;
}
on_both_engines!(capacity_claims, super::claims_match_jobs_to_what_workers_have);

/// A planning job queues its pieces and succeeds in one step; the merge waits until every piece of its
/// group succeeded, and fails when one of them fails for good.
async fn a_merge_waits_for_its_group_and_fails_with_it(db: &TestDb) {
    let store = db.open().await;
    let jobs = store.jobs();
    let plan = jobs.enqueue(&NewJob::new("audit", json!({}))).await.unwrap();
    jobs.claim("w", &[]).await.unwrap().unwrap();
    let piece = |kind: &str| {
        let mut j = NewJob::new(kind, json!({}));
        j.group_id = Some("aud-1".into());
        j
    };
    let mut merge = NewJob::new("audit-merge", json!({}));
    merge.after_group = Some("aud-1".into());
    let children = vec![piece("audit-shard"), piece("audit-shard"), merge];
    // A worker that lost the planning job cannot queue its pieces.
    assert!(matches!(
        jobs.spawn_and_succeed(&plan, "other", &children, &json!({}))
            .await,
        Err(StoreError::LeaseLost { .. })
    ));
    assert_eq!(jobs.list(10).await.unwrap().len(), 1, "nothing was queued");
    let ids = jobs
        .spawn_and_succeed(&plan, "w", &children, &json!({"audit": "aud-1"}))
        .await
        .unwrap();
    assert_eq!(ids.len(), 3);
    assert_eq!(jobs.get(&plan).await.unwrap().state, JobState::Succeeded);
    assert_eq!(jobs.group("aud-1").await.unwrap().len(), 2);
    for id in &ids {
        assert_eq!(
            jobs.get(id).await.unwrap().parent_id.as_deref(),
            Some(plan.as_str())
        );
    }
    // The merge is not claimable while pieces are open, even when it is the only one left queued.
    let a = jobs.claim("w", &["audit-shard"]).await.unwrap().unwrap();
    let b = jobs.claim("w", &["audit-shard"]).await.unwrap().unwrap();
    assert!(
        jobs.claim("w", &[]).await.unwrap().is_none(),
        "pieces are running"
    );
    jobs.succeed(&a.id, "w", &json!({})).await.unwrap();
    assert!(
        jobs.claim("w", &[]).await.unwrap().is_none(),
        "one piece is still running"
    );
    jobs.succeed(&b.id, "w", &json!({})).await.unwrap();
    let m = jobs.claim("w", &[]).await.unwrap().unwrap();
    assert_eq!(m.id, ids[2]);
    jobs.succeed(&m.id, "w", &json!({})).await.unwrap();

    // A second group whose piece fails: its merge is failed by the reaper, naming the piece.
    let mut p = NewJob::new("audit-shard", json!({}));
    p.group_id = Some("aud-2".into());
    let p = jobs.enqueue(&p).await.unwrap();
    let mut m = NewJob::new("audit-merge", json!({}));
    m.after_group = Some("aud-2".into());
    let m = jobs.enqueue(&m).await.unwrap();
    assert!(jobs.fail_orphans().await.unwrap().is_empty());
    jobs.claim("w", &[]).await.unwrap().unwrap();
    jobs.fail(&p, "w", "boom").await.unwrap();
    assert_eq!(
        jobs.fail_orphans().await.unwrap(),
        vec![(m.clone(), "aud-2".to_string())]
    );
    let failed = jobs.get(&m).await.unwrap();
    assert_eq!(failed.state, JobState::Failed);
    assert!(failed.error.unwrap().contains(&p));
    store.close().await;
}
on_both_engines!(job_groups, super::a_merge_waits_for_its_group_and_fails_with_it);

/// A named lock has one holder; the holder renews it; an expired lock can be taken by another.
async fn locks_have_one_holder_until_they_expire(db: &TestDb) {
    let store = db.open().await;
    let w = store.workers();
    assert_eq!(w.lock("run:r1", "a", 60_000).await.unwrap(), None);
    assert_eq!(w.lock("run:r1", "a", 60_000).await.unwrap(), None, "a renewal");
    assert_eq!(w.lock("run:r1", "b", 60_000).await.unwrap().as_deref(), Some("a"));
    assert_eq!(
        w.lock("run:r2", "b", 60_000).await.unwrap(),
        None,
        "other names are free"
    );
    // `a` lets it lapse: `b` takes it.
    assert_eq!(w.lock("run:r1", "a", -1).await.unwrap(), None);
    assert_eq!(w.lock("run:r1", "b", 60_000).await.unwrap(), None);
    assert_eq!(w.lock("run:r1", "a", 60_000).await.unwrap().as_deref(), Some("b"));
    // Only the holder releases it.
    w.unlock("run:r1", "a").await.unwrap();
    assert_eq!(w.lock("run:r1", "a", 60_000).await.unwrap().as_deref(), Some("b"));
    w.unlock("run:r1", "b").await.unwrap();
    assert_eq!(w.lock("run:r1", "a", 60_000).await.unwrap(), None);
    store.close().await;
}
on_both_engines!(named_locks, super::locks_have_one_holder_until_they_expire);

/// PostgreSQL over TLS. The test server runs Debian's default `ssl = on` with its snakeoil certificate,
/// issued to `localhost`. The URL's `sslmode` decides, as with libpq; the store says how its connection
/// is carried; `verify-full` checks the name, `verify-ca` the issuer; a TLS file that is missing or holds
/// no certificate is a clear error.
#[tokio::test]
async fn postgres_connections_are_encrypted_and_verified_as_the_url_asks() {
    let db = TestDb::postgres().await;
    let store = db.open().await;
    let setting = |name: &'static str| {
        let pool = store.pool().clone();
        async move {
            sqlx::query_scalar::<_, String>(&format!("SHOW {name}"))
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        setting("ssl").await,
        "on",
        "the test server must offer TLS (Debian's default)"
    );
    let cert = setting("ssl_cert_file").await;
    store.close().await;
    let by_name = db.url.replacen("127.0.0.1", "localhost", 1);
    let verify = |mode: &str, url: &str, ca: &str| format!("{url}?sslmode={mode}&sslrootcert={ca}");
    for (url, want) in [
        (format!("{by_name}?sslmode=disable"), "in clear"),
        (format!("{by_name}?sslmode=require"), "TLS (TLSv1."),
        (by_name.clone(), "TLS (TLSv1."),
        (verify("verify-full", &by_name, &cert), "TLS (TLSv1."),
    ] {
        let s = Store::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        let t = s.transport().await.unwrap();
        assert!(t.starts_with(want), "{url}: {t}");
        s.close().await;
    }
    // verify-full checks the name: the certificate names localhost, not 127.0.0.1.
    let by_addr = db.url.replacen("localhost", "127.0.0.1", 1);
    let err = Store::connect(&verify("verify-full", &by_addr, &cert))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not valid for name"), "{err}");
    // Files: missing, or holding no certificate.
    let tmp = tempfile::tempdir().unwrap();
    let err = Store::connect(&verify("verify-ca", &by_name, "/no/such/ca.pem"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("sslrootcert /no/such/ca.pem: cannot be read"),
        "{err}"
    );
    let garbage = tmp.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let err = Store::connect(&verify("verify-ca", &by_name, &garbage.display().to_string()))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("holds no PEM certificate"), "{err}");

    // verify-ca checks the issuer. The driver trusts the system's roots besides `sslrootcert`, and on
    // Debian those include the snakeoil certificate itself; `SSL_CERT_FILE` narrows them to one file
    // (docs/deploy.md), so `lethe doctor` runs in a child process with trust limited to another CA.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let other_ca = tmp.path().join("other-ca.pem");
    std::fs::write(&other_ca, other.cert.pem()).unwrap();
    let data = tmp.path().join("data");
    common::ok(common::lethe(&data, &["init"]));
    let doctor = |ca: &std::path::Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_lethe"))
            .arg("--data-dir")
            .arg(&data)
            .args([
                "--database-url",
                &verify("verify-ca", &by_name, &ca.display().to_string()),
            ])
            .arg("doctor")
            .env("SSL_CERT_FILE", &other_ca)
            .env_remove("SSL_CERT_DIR")
            .env_remove("LETHE_DATABASE_URL")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let refused = doctor(&other_ca);
    assert!(
        refused.contains("FAILS") && refused.contains("invalid peer certificate"),
        "{refused}"
    );
    let accepted = doctor(std::path::Path::new(&cert));
    assert!(accepted.contains(" answers ("), "{accepted}");
    assert!(accepted.contains("db connection      TLS (TLSv1."), "{accepted}");
}
