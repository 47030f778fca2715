//! The JSON API under `/api/v1`: everything the console can do, for scripts and other tools. Each
//! handler demands its role set from [`super::routes`], calls one use case in [`crate::app`] and
//! answers JSON; errors are [`ApiError`]s.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{self, AnySession, ClientAddr, Signed};
use super::error::{ApiError, ApiResult};
use super::routes::{self, ADMIN, EVIDENCE, EXPORT, LEDGER, OPERATE, READ, REQUEST, REVIEW};
use super::AppState;
use crate::app::audit::AuditRequest;
use crate::app::train::TrainRequest;
use crate::store::Role;
use crate::train::{Objective, TrainSpec};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/health", get(health))
        .route("/api/v1/openapi.json", get(|| async { Json(routes::openapi()) }))
        .route("/api/v1/session", post(sign_in).get(whoami).delete(sign_out))
        .route("/api/v1/session/password", post(change_password))
        .route("/api/v1/session/revoke-all", post(revoke_all))
        .route(
            "/api/v1/corpora",
            get(corpora)
                .post(upload_corpus)
                .layer(axum::extract::DefaultBodyLimit::max(super::MAX_UPLOAD)),
        )
        .route("/api/v1/corpora/{name}", get(corpus))
        .route("/api/v1/runs", get(runs).post(start_run))
        .route("/api/v1/runs/{id}", get(run))
        .route("/api/v1/runs/{id}/gate", post(gate))
        .route("/api/v1/audits", get(audits).post(start_audit))
        .route("/api/v1/audits/{id}", get(audit))
        .route("/api/v1/audits/{id}/evidence", get(evidence))
        .route("/api/v1/studies", get(studies))
        .route("/api/v1/studies/{id}", get(study))
        .route("/api/v1/releases", get(releases).post(request_release))
        .route("/api/v1/releases/{run}", get(release))
        .route("/api/v1/releases/{run}/statement", get(statement))
        .route("/api/v1/releases/{run}/approve", post(approve))
        .route("/api/v1/releases/{run}/reject", post(reject))
        .route("/api/v1/releases/{run}/export", post(export))
        .route("/api/v1/releases/{run}/bundle", get(bundle))
        .route("/api/v1/releases/{run}/verify", get(verify))
        .route("/api/v1/users", get(users).post(add_user))
        .route("/api/v1/users/{name}", axum::routing::patch(set_user))
        .route("/api/v1/users/{name}/reset-password", post(reset_password))
        .route("/api/v1/grants", get(grants))
        .route("/api/v1/grants/{id}/confirm", post(confirm_grant))
        .route("/api/v1/grants/{id}/cancel", post(cancel_grant))
        .route("/api/v1/approver-keys", get(approver_keys).post(enrol_key))
        .route("/api/v1/approver-keys/{id}/revoke", post(revoke_key))
        .route("/api/v1/jobs", get(jobs))
        .route("/api/v1/jobs/events", get(job_events))
        .route("/api/v1/jobs/{id}", get(job))
        .route("/api/v1/workers", get(workers))
        .route("/api/v1/ledger", get(ledger))
        .route("/api/v1/ledger/verify", get(ledger_verify))
        .route("/api/v1/keys", get(keys))
        .route("/api/v1/keys/rotate", post(rotate_keys))
        .route("/api/v1/policy", get(policy))
        // Runs after routing and before any extractor, so a caller without the role is refused before
        // their body is even parsed: a malformed request from the wrong role is a 403, not a 400.
        .route_layer(axum::middleware::from_fn(guard))
        .fallback(|| async { ApiError::not_found("no such API route (see /api/v1/openapi.json)") })
}

/// Enforces [`routes::API`]: the access each route declares is checked here, once, for every route; the
/// handlers' own `require` calls repeat it where they run.
async fn guard(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let (method, path) = routes::matched(&req);
    let Some(route) = routes::API.iter().find(|r| r.path == path && r.method == method) else {
        tracing::error!("route {method} {path} is missing from the access table");
        return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "this route has no access rule")
            .into_response();
    };
    let current = req.extensions().get::<Option<auth::Current>>().cloned().flatten();
    let verdict = match (route.access, current) {
        (routes::Access::Public, _) => Ok(()),
        (_, None) => Err(ApiError::unauthorized()),
        (routes::Access::Session, Some(_)) => Ok(()),
        (routes::Access::Roles(_), Some(c)) if c.user.must_change_password => Err(ApiError::forbidden(
            "change your one-time password first (POST /api/v1/session/password, or the console's password page)",
        )),
        (routes::Access::Roles(roles), Some(c)) => c.require(roles),
    };
    match verdict {
        Ok(()) => next.run(req).await,
        Err(e) => {
            routes::drain(req).await;
            e.into_response()
        }
    }
}

/// A JSON body, with a clear 400 (or 415) instead of axum's plain-text rejection.
pub struct Body<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for Body<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;
    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(e) => Err(ApiError::new(
                e.status(),
                format!("malformed request body: {}", e.body_text()),
            )),
        }
    }
}

async fn health(State(s): State<AppState>) -> ApiResult<Json<Value>> {
    let app = s.app().await;
    let db = app.store.ping().await?;
    Ok(Json(
        json!({ "ok": true, "database": db, "version": env!("CARGO_PKG_VERSION") }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    username: String,
    password: String,
}

fn session_json(user: &crate::store::User, csrf: &str) -> Value {
    json!({
        "user": user.username,
        "role": user.role,
        "must_change_password": user.must_change_password,
        "csrf": csrf,
    })
}

fn with_cookie(cookie: String, body: Value) -> Response {
    auth::with_cookie(Json(body).into_response(), &cookie)
}

async fn sign_in(
    State(s): State<AppState>,
    Extension(addr): Extension<ClientAddr>,
    Body(b): Body<SignIn>,
) -> ApiResult<Response> {
    let (user, token, csrf) = auth::sign_in(&s, &b.username, &b.password, addr.0.as_deref(), "api").await?;
    let mut body = session_json(&user, &csrf);
    body["token"] = json!(token);
    Ok(with_cookie(auth::session_cookie(&s, &token), body))
}

async fn whoami(AnySession(c): AnySession) -> Json<Value> {
    Json(session_json(&c.user, &c.csrf))
}

async fn sign_out(State(s): State<AppState>, AnySession(c): AnySession) -> ApiResult<Response> {
    s.app().await.store.sessions().delete(&c.token_sha256).await?;
    Ok(with_cookie(auth::clear_cookie(&s), json!({ "signed_out": true })))
}

async fn revoke_all(State(s): State<AppState>, AnySession(c): AnySession) -> ApiResult<Response> {
    let n = s.app().await.store.sessions().delete_for_user(&c.user.id).await?;
    Ok(with_cookie(
        auth::clear_cookie(&s),
        json!({ "sessions_ended": n }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordChange {
    current: String,
    new: String,
}

async fn change_password(
    State(s): State<AppState>,
    Extension(addr): Extension<ClientAddr>,
    AnySession(c): AnySession,
    Body(b): Body<PasswordChange>,
) -> ApiResult<Response> {
    s.app().await.change_password(&c.user, &b.current, &b.new).await?;
    let (user, token, csrf) = auth::sign_in(&s, &c.user.username, &b.new, addr.0.as_deref(), "api").await?;
    let mut body = session_json(&user, &csrf);
    body["token"] = json!(token);
    Ok(with_cookie(auth::session_cookie(&s, &token), body))
}

async fn corpora(State(s): State<AppState>, Signed(c): Signed) -> ApiResult<Json<Value>> {
    c.require(READ)?;
    Ok(Json(json!(s.app().await.corpus_list().await?)))
}

/// Reads an upload form: `name`, optional `vocab`, `holdout`, `canaries`, and one or more files.
pub async fn read_upload(
    mut form: axum::extract::Multipart,
) -> ApiResult<(crate::corpus::IngestOptions, Vec<(String, Vec<u8>)>)> {
    let mut opts = crate::corpus::IngestOptions::default();
    let mut files = Vec::new();
    let bad = |e: axum::extract::multipart::MultipartError| {
        ApiError::new(e.status(), format!("malformed upload: {}", e.body_text()))
    };
    // A refused field does not end the reading: the rest of the upload is read (and dropped) first, so
    // the client, still sending, gets the refusal instead of a reset connection.
    let mut refused: Option<ApiError> = None;
    while let Some(field) = form.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or_default().to_string();
        if refused.is_some() {
            field.bytes().await.map_err(bad)?;
            continue;
        }
        if let Some(file) = field.file_name().map(str::to_string) {
            let bytes = field.bytes().await.map_err(bad)?;
            if !file.is_empty() {
                files.push((file, bytes.to_vec()));
            }
            continue;
        }
        let text = field.text().await.map_err(bad)?;
        let text = text.trim();
        let number = |what: &str| -> ApiResult<usize> {
            text.parse()
                .map_err(|_| ApiError::bad_request(format!("{what} must be a whole number, not {text:?}")))
        };
        let parsed: ApiResult<()> = (|| {
            match name.as_str() {
                "name" => opts.name = text.to_string(),
                "vocab" if !text.is_empty() => opts.vocab = number("vocab")?,
                "canaries" if !text.is_empty() => opts.canaries = number("canaries")?,
                "holdout" if !text.is_empty() => {
                    opts.holdout = text.parse().map_err(|_| {
                        ApiError::bad_request(format!("holdout must be a share like 0.02, not {text:?}"))
                    })?
                }
                "vocab" | "canaries" | "holdout" | "_csrf" => {}
                other => return Err(ApiError::bad_request(format!("unknown upload field {other:?}"))),
            }
            Ok(())
        })();
        if let Err(e) = parsed {
            files.clear();
            refused = Some(e);
        }
    }
    if let Some(e) = refused {
        return Err(e);
    }
    if opts.name.is_empty() {
        return Err(ApiError::bad_request(
            "the upload needs a corpus name (field `name`)",
        ));
    }
    Ok((opts, files))
}

async fn upload_corpus(
    State(s): State<AppState>,
    Signed(c): Signed,
    form: axum::extract::Multipart,
) -> ApiResult<(StatusCode, Json<Value>)> {
    c.require(OPERATE)?;
    let (opts, files) = read_upload(form).await?;
    let report = s
        .app()
        .await
        .ingest_uploads(opts, files, &c.user.username)
        .await?;
    Ok((StatusCode::CREATED, Json(json!(report))))
}

async fn corpus(
    State(s): State<AppState>,
    Signed(c): Signed,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    c.require(READ)?;
    Ok(Json(json!(s.app().await.corpus_show(&name).await?)))
}

async fn runs(State(s): State<AppState>, Signed(c): Signed) -> ApiResult<Json<Value>> {
    c.require(READ)?;
    Ok(Json(json!(s.app().await.runs_list().await?)))
}

async fn run(State(s): State<AppState>, Signed(c): Signed, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    c.require(READ)?;
    Ok(Json(json!(s.app().await.run_details(&id).await?)))
}

/// What an operator may set when queueing training from the console or the API; the rest takes the
/// CLI's defaults.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartTraining {
    pub corpus: String,
    #[serde(default)]
    pub objective: Option<Objective>,
    #[serde(default)]
    pub preset: Option<String>,
    #[serde(default)]
    pub epochs: Option<u64>,
    #[serde(default)]
    pub layers: Option<i64>,
    #[serde(default)]
    pub width: Option<i64>,
    #[serde(default)]
    pub heads: Option<i64>,
    #[serde(default)]
    pub context: Option<i64>,
    #[serde(default)]
    pub batch_size: Option<usize>,
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default)]
    pub max_steps: Option<u64>,
    /// Only a worker with a GPU may run it.
    #[serde(default)]
    pub gpu: bool,
}

impl StartTraining {
    pub fn into_request(self, user: &str) -> TrainRequest {
        let d = TrainSpec::default();
        let spec = TrainSpec {
            objective: self.objective.unwrap_or(d.objective),
            preset: self.preset.unwrap_or(d.preset.clone()),
            overrides: crate::model::ModelOverrides {
                layers: self.layers,
                width: self.width,
                heads: self.heads,
                context: self.context,
                ..Default::default()
            },
            epochs: self.epochs.unwrap_or(d.epochs),
            batch_size: self.batch_size.unwrap_or(d.batch_size),
            seed: self.seed.unwrap_or(d.seed),
            ..d
        };
        TrainRequest {
            corpus: self.corpus,
            spec,
            max_steps: self.max_steps,
            created_by: Some(user.to_string()),
            job_id: None,
            gpu: self.gpu,
        }
    }
}

async fn start_run(
    State(s): State<AppState>,
    Signed(c): Signed,
    Body(b): Body<StartTraining>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    c.require(OPERATE)?;
    let id = s
        .app()
        .await
        .enqueue_train(&b.into_request(&c.user.username))
        .await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "job_id": id }))))
}

async fn gate(
    State(s): State<AppState>,
    Signed(c): Signed,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    c.require(OPERATE)?;
    Ok(Json(json!(
        s.app().await.gate(&id, &s.policy, Some(&c.user.username)).await?
    )))
}

#[derive(Deserialize)]
struct RunFilter {
    run: Option<String>,
}

async fn audits(
    State(s): State<AppState>,
    Signed(c): Signed,
    Query(f): Query<RunFilter>,
) -> ApiResult<Json<Value>> {
    c.require(READ)?;
    Ok(Json(json!(s.app().await.audit_list(f.run.as_deref()).await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartAudit {
    pub run: String,
    #[serde(default)]
    pub quick: bool,
    /// Corpus shards to cut the audit into, each a job any worker may take.
    #[serde(default)]
    pub shards: Option<usize>,
    /// Only workers with a GPU may run it.
    #[serde(default)]
    pub gpu: bool,
    /// The checkpoint to audit (a kept one, or the newest); the newest when absent.
    #[serde(default)]
    pub step: Option<i64>,
}

/// The audit a console operator queues: the policy's own parameters and rule packs, so the gate can
/// use it.
pub fn audit_request(s: &AppState, run: String, quick: bool, user: &str) -> AuditRequest {
    AuditRequest {
        run,
        quick,
        params: if quick { None } else { Some(s.policy.audit.clone()) },
        rules: s.policy.secret_packs.clone(),
        deny_list: s.policy.deny_list.clone(),
        created_by: Some(user.to_string()),
        job_id: None,
        gpu: false,
        step: None,
        eval_file: None,
    }
}

async fn start_audit(
    State(s): State<AppState>,
    Signed(c): Signed,
    Body(b): Body<StartAudit>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    c.require(OPERATE)?;
    let mut req = audit_request(&s, b.run, b.quick, &c.user.username);
    req.gpu = b.gpu;
    req.step = b.step;
    if let Some(n) = b.shards {
        let mut params = crate::app::audit_shards::request_params(&req);
        params.shards = n;
        req.params = Some(params);
    }
    let id = s.app().await.enqueue_audit(&req).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "job_id": id }))))
}

async fn audit(
    State(s): State<AppState>,
    Signed(c): Signed,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    c.require(READ)?;
    Ok(Json(json!(s.app().await.audit_row(&id).await?)))
}

async fn evidence(
    State(s): State<AppState>,
    Signed(c): Signed,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    c.require(EVIDENCE)?;
    Ok(Json(json!(s.app().await.audit_details(&id, true, None).await?)))
}

async fn studies(State(s): State<AppState>, Signed(c): Signed) -> ApiResult<Json<Value>> {
    c.require(READ)?;
    Ok(Json(json!(s.app().await.studies_list().await?)))
}

async fn study(
    State(s): State<AppState>,
    Signed(c): Signed,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    c.require(READ)?;
    Ok(Json(json!(s.app().await.study_details(&id).await?)))
}

async fn releases(State(s): State<AppState>, Signed(c): Signed) -> ApiResult<Json<Value>> {
    c.require(READ)?;
    Ok(Json(json!(s.app().await.release_statuses().await?)))
}

async fn release(
    State(s): State<AppState>,
    Signed(c): Signed,
    Path(run): Path<String>,
) -> ApiResult<Json<Value>> {
    c.require(READ)?;
    Ok(Json(json!(s.app().await.release_status(&run).await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestRelease {
    run: String,
    #[serde(default)]
    waiver: Option<String>,
    /// The checkpoint step (default: the one gated last under the server's policy).
    #[serde(default)]
    step: Option<i64>,
}

async fn request_release(
    State(s): State<AppState>,
    Signed(c): Signed,
    Body(b): Body<RequestRelease>,
) -> ApiResult<Json<Value>> {
    c.require(REQUEST)?;
    let app = s.app().await;
    app.request_release(&c.user, &b.run, &s.policy, b.waiver.as_deref(), b.step)
        .await?;
    Ok(Json(json!(app.release_status(&b.run).await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Review {
    comment: String,
    #[serde(default)]
    proof: Option<crate::app::release::ApprovalProof>,
}

#[derive(Deserialize)]
struct StatementQuery {
    comment: String,
}

async fn statement(
    State(s): State<AppState>,
    Signed(c): Signed,
    Path(run): Path<String>,
    axum::extract::Query(q): axum::extract::Query<StatementQuery>,
) -> ApiResult<Json<Value>> {
    c.require(REVIEW)?;
    let app = s.app().await;
    let statement = app
        .approval_statement(&c.user, &run, &s.policy, &q.comment)
        .await?;
    let keys: Vec<Value> = app
        .approver_keys(Some(&c.user))
        .await?
        .into_iter()
        .filter(|k| k.state == "active")
        .map(|k| json!({ "id": k.id, "kind": k.kind, "credential_id": k.credential_id, "public_key": k.public_key }))
        .collect();
    Ok(Json(json!({
        "statement": statement,
        "challenge": crate::vault::approver::challenge_for(statement.as_bytes()),
        "keys": keys,
    })))
}

async fn approve(
    s: State<AppState>,
    c: Signed,
    run: Path<String>,
    b: Body<Review>,
) -> ApiResult<Json<Value>> {
    review(s, c, run, b, true).await
}

async fn reject(s: State<AppState>, c: Signed, run: Path<String>, b: Body<Review>) -> ApiResult<Json<Value>> {
    review(s, c, run, b, false).await
}

async fn review(
    State(s): State<AppState>,
    Signed(c): Signed,
    Path(run): Path<String>,
    Body(b): Body<Review>,
    approve: bool,
) -> ApiResult<Json<Value>> {
    c.require(REVIEW)?;
    let app = s.app().await;
    let status = app
        .review_release(&c.user, &run, &s.policy, approve, &b.comment, b.proof)
        .await?;
    Ok(Json(json!(status)))
}

/// Where the server keeps the bundle it exported for a run: `bundles/<run id>` in the data directory,
/// for a well-formed run id of a run that exists (anything else, `%2F` and `..` included, is refused
/// before any directory is made or read).
pub async fn bundle_dir(s: &crate::app::App, run: &str) -> ApiResult<std::path::PathBuf> {
    if !is_run_id(run) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("{run:?} is not a run id (run- and hex digits)"),
        ));
    }
    let row = s.run_row(run).await?;
    Ok(s.config.data_dir.join("bundles").join(&row.id))
}

/// `run-` followed by 1 to 64 lowercase hex digits: the only shape of a run id.
pub fn is_run_id(s: &str) -> bool {
    s.strip_prefix("run-").is_some_and(|h| {
        (1..=64).contains(&h.len())
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

async fn export(
    State(s): State<AppState>,
    Signed(c): Signed,
    Path(run): Path<String>,
) -> ApiResult<Json<Value>> {
    c.require(EXPORT)?;
    let app = s.app().await;
    let dir = bundle_dir(&app, &run).await?;
    create_parent(&dir)?;
    let exported = app.export_release(&c.user, &run, &s.policy, &dir).await?;
    Ok(Json(json!(exported)))
}

/// Makes the directory the server's bundles live in.
pub fn create_parent(dir: &std::path::Path) -> ApiResult<()> {
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| anyhow::Error::from(e).context(format!("cannot create {}", parent.display())))?;
    }
    Ok(())
}

/// The directory of a run's exported bundle, checked to be released and present on this server.
async fn released_bundle(app: &crate::app::App, run: &str) -> ApiResult<std::path::PathBuf> {
    let status = app.release_status(run).await?;
    if status.release.as_ref().map(|r| r.state.as_str()) != Some("released") {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("run {run} is {}, not released: export it first", status.stage),
        ));
    }
    let dir = bundle_dir(app, run).await?;
    if !dir.join("manifest.json").exists() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("run {run} was released but its bundle is not on this server: export it again"),
        ));
    }
    Ok(dir)
}

/// Bytes of tar output sent on at a time.
const TAR_CHUNK: usize = 256 * 1024;

/// A `Write` that hands what the tar builder writes to the response in chunks, so a download never
/// holds the bundle in memory (the review saw every download build the whole tar first).
struct ChunkSender {
    tx: tokio::sync::mpsc::Sender<std::io::Result<Vec<u8>>>,
    buf: Vec<u8>,
}

impl ChunkSender {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(TAR_CHUNK));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the download was closed"))
    }
}

impl std::io::Write for ChunkSender {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= TAR_CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// The exported bundle of a run as a tar stream, packed from the directory `export` wrote while it is
/// sent.
pub async fn bundle_tar_body(app: &crate::app::App, run: &str) -> ApiResult<axum::body::Body> {
    let dir = released_bundle(app, run).await?;
    let name = format!("lethe-release-{run}");
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(4);
    tokio::task::spawn_blocking(move || {
        let mut w = ChunkSender {
            tx: tx.clone(),
            buf: Vec::with_capacity(TAR_CHUNK),
        };
        let packed = (|| -> std::io::Result<()> {
            let mut b = tar::Builder::new(&mut w);
            b.mode(tar::HeaderMode::Deterministic);
            b.append_dir_all(&name, &dir)?;
            b.finish()
        })()
        .and_then(|()| std::io::Write::flush(&mut w));
        if let Err(e) = packed {
            // The client sees a cut download, not a well-formed tar with files missing.
            let _ = tx.blocking_send(Err(e));
        }
    });
    let stream =
        futures_util::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|chunk| (chunk, rx)) },
        );
    Ok(axum::body::Body::from_stream(stream))
}

async fn bundle(
    State(s): State<AppState>,
    Signed(c): Signed,
    Path(run): Path<String>,
) -> ApiResult<Response> {
    c.require(READ)?;
    let app = s.app().await;
    let body = bundle_tar_body(&app, &run).await?;
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-tar"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"lethe-release-{run}.tar\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok((headers, body).into_response())
}

/// Verification results of bundles on this server, by directory, with what they were computed over:
/// the SHA-256 of the manifest and every file's name, size and modification time. A page view of a
/// release whose bundle has not changed is answered from here, without hashing the model again.
type VerifyCache = std::sync::Mutex<std::collections::HashMap<std::path::PathBuf, (String, Value)>>;

fn verify_cache() -> &'static VerifyCache {
    static CACHE: std::sync::OnceLock<VerifyCache> = std::sync::OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// What a bundle directory's verification depends on, cheaply: the manifest's digest and each file's
/// name, size and modification time.
fn bundle_fingerprint(dir: &std::path::Path, public_key: &str) -> std::io::Result<String> {
    let manifest = std::fs::read(dir.join("manifest.json"))?;
    let mut parts = vec![
        crate::release::bundle::sha256_hex(&manifest),
        public_key.to_string(),
    ];
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let m = e.metadata()?;
        let mtime = m
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        parts.push(format!("{}:{}:{mtime}", e.file_name().to_string_lossy(), m.len()));
    }
    Ok(crate::release::bundle::sha256_hex(parts.join("\n").as_bytes()))
}

/// Whether the bundle this server exported for `run` still verifies against the signing key: `ok` and a
/// sentence for people.
pub async fn verify_on_server(app: &crate::app::App, run: &str, public_key: &str) -> ApiResult<Value> {
    let dir = bundle_dir(app, run).await?;
    if !dir.join("manifest.json").exists() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("run {run} has no exported bundle on this server"),
        ));
    }
    let pk = public_key.to_string();
    let r = tokio::task::spawn_blocking(move || -> Value {
        let fp = bundle_fingerprint(&dir, &pk).ok();
        if let (Some(fp), Ok(cache)) = (&fp, verify_cache().lock()) {
            if let Some((seen, v)) = cache.get(&dir) {
                if seen == fp {
                    return v.clone();
                }
            }
        }
        let v = match crate::app::release::verify_bundle(&dir, &pk) {
            Ok(_) => {
                json!({ "ok": true, "message": "The bundle on this server verifies: every file matches the signed manifest." })
            }
            Err(e) => {
                json!({ "ok": false, "message": format!("The bundle on this server does NOT verify: {e:#}") })
            }
        };
        if let (Some(fp), Ok(mut cache)) = (fp, verify_cache().lock()) {
            cache.insert(dir, (fp, v.clone()));
        }
        v
    })
    .await
    .map_err(anyhow::Error::from)?;
    Ok(r)
}

async fn verify(
    State(s): State<AppState>,
    Signed(c): Signed,
    Path(run): Path<String>,
) -> ApiResult<Json<Value>> {
    c.require(READ)?;
    let app = s.app().await;
    let pk = app.signing_public_key()?;
    Ok(Json(verify_on_server(&app, &run, &pk).await?))
}

fn user_json(u: &crate::store::User) -> Value {
    json!({
        "username": u.username,
        "role": u.role,
        "disabled": u.disabled,
        "must_change_password": u.must_change_password,
        "created_at": u.created_at,
    })
}

async fn users(State(s): State<AppState>, Signed(c): Signed) -> ApiResult<Json<Value>> {
    c.require(ADMIN)?;
    let list = s.app().await.store.users().list().await?;
    Ok(Json(Value::Array(list.iter().map(user_json).collect())))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    username: String,
    role: Role,
}

async fn add_user(
    State(s): State<AppState>,
    Signed(c): Signed,
    Body(b): Body<NewUser>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    c.require(ADMIN)?;
    let g = s.app().await.add_user(&c.user, &b.username, b.role).await?;
    let code = match g {
        crate::app::grants::Granted::Done { .. } => StatusCode::CREATED,
        crate::app::grants::Granted::Pending { .. } => StatusCode::ACCEPTED,
    };
    let mut v = json!({ "username": b.username, "role": b.role });
    merge(&mut v, json!(g));
    Ok((code, Json(v)))
}

/// Adds `extra`'s fields to the object `v`.
fn merge(v: &mut Value, extra: Value) {
    if let (Some(o), Value::Object(m)) = (v.as_object_mut(), extra) {
        o.extend(m);
    }
}

async fn grants(State(s): State<AppState>, Signed(c): Signed) -> ApiResult<Json<Value>> {
    c.require(ADMIN)?;
    Ok(Json(json!(s.app().await.pending_grants().await?)))
}

async fn confirm_grant(
    State(s): State<AppState>,
    Signed(c): Signed,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    c.require(ADMIN)?;
    let done = s
        .app()
        .await
        .confirm_grant(crate::app::grants::Confirmer::Admin(&c.user), &id)
        .await?;
    Ok(Json(json!(done)))
}

async fn cancel_grant(
    State(s): State<AppState>,
    Signed(c): Signed,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    c.require(READ)?;
    Ok(Json(json!(s.app().await.cancel_grant(&c.user, &id).await?)))
}

async fn approver_keys(State(s): State<AppState>, Signed(c): Signed) -> ApiResult<Json<Value>> {
    c.require(READ)?;
    Ok(Json(json!(s.app().await.approver_keys(None).await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    public_key: String,
    proof: String,
    label: String,
}

async fn enrol_key(
    State(s): State<AppState>,
    Signed(c): Signed,
    Body(b): Body<NewKey>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    c.require(READ)?;
    let g = s
        .app()
        .await
        .enrol_ed25519(&c.user, &b.public_key, &b.proof, &b.label)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "status": "pending", "grant": g })),
    ))
}

async fn revoke_key(
    State(s): State<AppState>,
    Signed(c): Signed,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    c.require(READ)?;
    s.app().await.revoke_approver_key(&c.user, &id).await?;
    Ok(Json(json!({ "revoked": id })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserChange {
    role: Option<Role>,
    disabled: Option<bool>,
}

async fn set_user(
    State(s): State<AppState>,
    Signed(c): Signed,
    Path(name): Path<String>,
    Body(b): Body<UserChange>,
) -> ApiResult<Json<Value>> {
    c.require(ADMIN)?;
    let app = s.app().await;
    let target = app.user(&name).await?;
    let g = app
        .set_user(
            &c.user,
            &name,
            b.role.unwrap_or(target.role),
            b.disabled.unwrap_or(target.disabled),
        )
        .await?;
    let mut v = user_json(&app.user(&name).await?);
    merge(&mut v, json!(g));
    Ok(Json(v))
}

async fn reset_password(
    State(s): State<AppState>,
    Signed(c): Signed,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    c.require(ADMIN)?;
    let g = s.app().await.reset_password(&c.user, &name).await?;
    let mut v = json!({ "username": name });
    merge(&mut v, json!(g));
    Ok(Json(v))
}

async fn jobs(State(s): State<AppState>, Signed(c): Signed) -> ApiResult<Json<Value>> {
    c.require(READ)?;
    Ok(Json(json!(s.app().await.store.jobs().list(100).await?)))
}

async fn workers(State(s): State<AppState>, Signed(c): Signed) -> ApiResult<Json<Value>> {
    c.require(READ)?;
    Ok(Json(json!(s.app().await.live_workers().await?)))
}

async fn job(State(s): State<AppState>, Signed(c): Signed, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    c.require(READ)?;
    match s.app().await.store.jobs().get(&id).await {
        Ok(j) => Ok(Json(json!(j))),
        Err(crate::store::StoreError::JobNotFound(_)) => Err(ApiError::not_found(format!("no job {id}"))),
        Err(e) => Err(e.into()),
    }
}

/// The job list as an event each time it changes (checked every second), and a comment every 15 s so
/// proxies keep the connection open. The console's one script turns these into live progress bars.
async fn job_events(
    State(s): State<AppState>,
    Signed(c): Signed,
) -> ApiResult<Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>>> {
    c.require(READ)?;
    let stream = futures_util::stream::unfold((s, String::new(), true), |(s, last, first)| async move {
        loop {
            if !first {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            let app = s.app().await;
            let now = match app.store.jobs().list(50).await {
                Ok(jobs) => serde_json::to_string(&jobs).unwrap_or_default(),
                Err(e) => {
                    tracing::error!("job events: {e}");
                    continue;
                }
            };
            if now != last || first {
                let ev = Event::default().event("jobs").data(now.clone());
                return Some((Ok(ev), (s, now, false)));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

#[derive(Deserialize)]
struct Since {
    since: Option<String>,
}

async fn ledger(
    State(s): State<AppState>,
    Signed(c): Signed,
    Query(q): Query<Since>,
) -> ApiResult<Json<Value>> {
    c.require(LEDGER)?;
    let since = q
        .since
        .as_deref()
        .map(|v| crate::ledger::parse_since(v, crate::store::now_ms()))
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(Json(json!(s.app().await.store.ledger().entries(since).await?)))
}

async fn ledger_verify(State(s): State<AppState>, Signed(c): Signed) -> ApiResult<Json<Value>> {
    c.require(LEDGER)?;
    let r = s.app().await.ledger_verify().await?;
    Ok(Json(match r {
        Ok(report) => json!({ "intact": true, "report": report }),
        Err(b) => json!({ "intact": false, "break": b, "message": b.to_string() }),
    }))
}

async fn keys(State(s): State<AppState>, Signed(c): Signed) -> ApiResult<Json<Value>> {
    c.require(ADMIN)?;
    let app = s.app().await;
    let public = app.signing_public_key()?;
    Ok(Json(
        json!({ "master": app.keys_list().await?, "signing_public_key": public }),
    ))
}

async fn rotate_keys(State(s): State<AppState>, Signed(c): Signed) -> ApiResult<Json<Value>> {
    c.require(ADMIN)?;
    Ok(Json(json!(s.rotate_keys(&c.user.username).await?)))
}

async fn policy(State(s): State<AppState>, Signed(c): Signed) -> ApiResult<Json<Value>> {
    c.require(READ)?;
    Ok(Json(json!(s.policy)))
}
