//! The console: server-rendered pages from `web/templates` and the forms they post. A page handler
//! gathers what the template shows through the same [`crate::app`] use cases as the API, with the same
//! role sets; a form handler does one thing and redirects (post/redirect/get), or shows the error page
//! with the core's reason and the status the API would give.

use std::collections::HashMap;

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use serde_json::{json, Value};

use super::api::{self, StartTraining};
use super::auth::{self, ClientAddr, Current};
use super::charts::{Chart, Guide, Marker, Series};
use super::error::{ApiError, ApiResult};
use super::routes::{ADMIN, EVIDENCE, EXPORT, LEDGER, OPERATE, READ, REQUEST, REVIEW};
use super::AppState;
use crate::app::study::StudyPoint;
use crate::app::train::{AuditFigures, CheckpointView};
use crate::eval::{Accuracy, Utility};
use crate::store::Role;

pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/", get(dashboard))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/logout-everywhere", post(logout_everywhere))
        .route("/password", get(password_page).post(password))
        .route(
            "/corpora",
            post(upload_corpus).layer(axum::extract::DefaultBodyLimit::max(super::MAX_UPLOAD)),
        )
        .route("/corpora/{name}", get(corpus_page))
        .route("/runs", post(start_run))
        .route("/runs/{id}", get(run_page))
        .route("/runs/{id}/gate", post(gate))
        .route("/runs/{id}/select", post(select))
        .route("/audits", post(start_audit))
        .route("/audits/{id}", get(audit_page))
        .route("/releases", get(releases_page))
        .route("/releases/{run}", get(release_page))
        .route("/releases/{run}/request", post(request_release))
        .route("/releases/{run}/review", post(review))
        .route("/releases/{run}/export", post(export))
        .route("/studies", get(studies_page))
        .route("/studies/{id}", get(study_page))
        .route("/ledger", get(ledger_page))
        .route("/admin", get(admin_page))
        .route("/admin/users", post(add_user))
        .route("/admin/users/{name}", post(set_user))
        .route("/admin/users/{name}/reset", post(reset_password))
        .route("/account", get(account_page))
        .route("/account/passkeys", post(enrol_passkey))
        .route("/admin/grants/{id}/confirm", post(confirm_grant))
        .route("/admin/grants/{id}/cancel", post(cancel_grant))
        .route("/admin/keys/rotate", post(rotate_keys))
        // As for the API: the role is checked before a form or an upload is read.
        .route_layer(axum::middleware::from_fn_with_state(state, guard))
}

/// Enforces [`super::routes::PAGES`] before any extractor runs.
async fn guard(
    State(s): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use super::routes::{Access, PAGES};
    let (method, path) = super::routes::matched(&req);
    let Some(&(_, _, access)) = PAGES.iter().find(|(m, p, _)| *p == path && *m == method) else {
        tracing::error!("page {method} {path} is missing from the access table");
        return auth::refuse(
            &path,
            StatusCode::INTERNAL_SERVER_ERROR,
            "this page has no access rule",
        );
    };
    let current = req.extensions().get::<Option<Current>>().cloned().flatten();
    let refused = match (access, current) {
        (Access::Public, _) | (Access::Session, Some(_)) => return next.run(req).await,
        (_, None) => see("/login"),
        (Access::Roles(_), Some(c)) if c.user.must_change_password => see("/password"),
        (Access::Roles(roles), Some(c)) => match c.require(roles) {
            Ok(()) => return next.run(req).await,
            Err(e) => fail(&s, Some(&c), e, "/"),
        },
    };
    super::routes::drain(req).await;
    refused
}

/// A signed-in console user. Without a session the browser is sent to the sign-in page; with a
/// one-time password still in place, to the password page.
pub struct Viewer(pub Current);

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Response> {
        let current = parts.extensions.get::<Option<Current>>().cloned().flatten();
        match current {
            None => Err(Redirect::to("/login").into_response()),
            Some(c) if c.user.must_change_password && parts.uri.path() != "/password" => {
                Err(Redirect::to("/password").into_response())
            }
            Some(c) => Ok(Viewer(c)),
        }
    }
}

fn me(c: &Current) -> Value {
    json!({
        "username": c.user.username,
        "role": c.user.role,
        "csrf": c.csrf,
        "must_change_password": c.user.must_change_password,
        "can_operate": OPERATE.contains(&c.user.role),
        "can_ledger": LEDGER.contains(&c.user.role),
    })
}

fn render(s: &AppState, name: &str, ctx: Value) -> Response {
    match s.templates.get_template(name).and_then(|t| t.render(&ctx)) {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!("template {name}: {e:#}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the console page could not be drawn; see the server log",
            )
                .into_response()
        }
    }
}

/// The error page for a failed page or form, with the status the API would answer.
fn fail(s: &AppState, c: Option<&Current>, e: ApiError, back: &str) -> Response {
    if e.status == StatusCode::UNAUTHORIZED {
        return Redirect::to("/login").into_response();
    }
    let heading = match e.status {
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::INTERNAL_SERVER_ERROR => "Something went wrong",
        _ => "That did not work",
    };
    let mut res = render(
        s,
        "error.html",
        json!({ "me": c.map(me), "status": e.status.as_u16(), "heading": heading, "message": e.message, "back": back }),
    );
    *res.status_mut() = e.status;
    res
}

/// Runs a page or form body, turning its error into the error page.
async fn page<F>(s: &AppState, c: &Current, back: &str, f: F) -> Response
where
    F: std::future::Future<Output = ApiResult<Response>>,
{
    match f.await {
        Ok(r) => r,
        Err(e) => fail(s, Some(c), e, back),
    }
}

fn see(to: &str) -> Response {
    Redirect::to(to).into_response()
}

fn field<'a>(f: &'a HashMap<String, String>, name: &str) -> ApiResult<&'a str> {
    f.get(name)
        .map(|v| v.as_str())
        .ok_or_else(|| ApiError::bad_request(format!("the form has no field {name:?}")))
}

fn when(ms: i64) -> String {
    crate::ledger::format_time(ms)
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn fmt_num(v: f64) -> String {
    if v.is_nan() {
        "n/a".into()
    } else if v.is_infinite() {
        "∞".into()
    } else if v == v.trunc() && v.abs() < 1e12 {
        format!("{v:.0}")
    } else if v.abs() < 1e-3 {
        format!("{v:e}")
    } else {
        format!("{v:.4}")
    }
}

fn gate_rows(rows: &Value) -> Vec<Value> {
    rows.as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    let mut r = r.clone();
                    if r["rule"] == "audit" {
                        // Not a figure: whether the audit is the one the policy asks for (the note says).
                        r["measured"] = Value::Null;
                        r["threshold"] = Value::Null;
                        r["measured_text"] = json!(if r["passed"] == true {
                            "as asked"
                        } else {
                            "differs"
                        });
                        r["threshold_text"] = json!("the policy's audit");
                        return r;
                    }
                    r["measured_text"] = json!(r["measured"]
                        .as_f64()
                        .map(fmt_num)
                        .unwrap_or_else(|| "not measured".into()));
                    r["threshold_text"] = json!(r["threshold"].as_f64().map(fmt_num).unwrap_or_default());
                    r
                })
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------------
// Sign-in, sign-out, password
// ---------------------------------------------------------------------------------------------------

async fn login_page(State(s): State<AppState>, current: Extension<Option<Current>>) -> Response {
    if current.0.is_some() {
        return see("/");
    }
    render(&s, "login.html", json!({ "username": "" }))
}

async fn login(
    State(s): State<AppState>,
    Extension(addr): Extension<ClientAddr>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let username = f.get("username").cloned().unwrap_or_default();
    let password = f.get("password").cloned().unwrap_or_default();
    match auth::sign_in(&s, &username, &password, addr.0.as_deref(), "console").await {
        Ok((user, token, _)) => {
            let to = if user.must_change_password {
                "/password"
            } else {
                "/"
            };
            auth::with_cookie(see(to), &auth::session_cookie(&s, &token))
        }
        Err(e) => {
            let mut res = render(
                &s,
                "login.html",
                json!({ "username": username, "error": e.message }),
            );
            *res.status_mut() = e.status;
            res
        }
    }
}

fn signed_out(s: &AppState) -> Response {
    auth::with_cookie(see("/login"), &auth::clear_cookie(s))
}

async fn logout(State(s): State<AppState>, current: Extension<Option<Current>>) -> Response {
    if let Some(c) = &current.0 {
        if let Err(e) = s.app().await.store.sessions().delete(&c.token_sha256).await {
            return fail(&s, Some(c), e.into(), "/");
        }
    }
    signed_out(&s)
}

async fn logout_everywhere(State(s): State<AppState>, Viewer(c): Viewer) -> Response {
    if let Err(e) = s.app().await.store.sessions().delete_for_user(&c.user.id).await {
        return fail(&s, Some(&c), e.into(), "/");
    }
    signed_out(&s)
}

async fn password_page(State(s): State<AppState>, Viewer(c): Viewer) -> Response {
    render(
        &s,
        "password.html",
        json!({ "me": me(&c), "min_chars": crate::app::accounts::MIN_PASSWORD_CHARS }),
    )
}

async fn password(
    State(s): State<AppState>,
    Extension(addr): Extension<ClientAddr>,
    Viewer(c): Viewer,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let current = f.get("current").cloned().unwrap_or_default();
    let new = f.get("new").cloned().unwrap_or_default();
    let again = f.get("confirm").cloned().unwrap_or_default();
    let error = |msg: String, status: StatusCode| {
        let mut res = render(
            &s,
            "password.html",
            json!({ "me": me(&c), "min_chars": crate::app::accounts::MIN_PASSWORD_CHARS, "error": msg }),
        );
        *res.status_mut() = status;
        res
    };
    if new != again {
        return error("the two new passwords differ".into(), StatusCode::BAD_REQUEST);
    }
    if let Err(e) = s.app().await.change_password(&c.user, &current, &new).await {
        let e = ApiError::from(e);
        return error(e.message, e.status);
    }
    // Every session ended with the change; this browser gets a fresh one.
    match auth::sign_in(&s, &c.user.username, &new, addr.0.as_deref(), "console").await {
        Ok((_, token, _)) => auth::with_cookie(see("/"), &auth::session_cookie(&s, &token)),
        Err(_) => see("/login"),
    }
}

// ---------------------------------------------------------------------------------------------------
// Dashboard, corpus, run
// ---------------------------------------------------------------------------------------------------

async fn dashboard(State(s): State<AppState>, Viewer(c): Viewer) -> Response {
    page(&s, &c, "/", async {
        c.require(READ)?;
        let app = s.app().await;
        let corpora: Vec<Value> = app
            .corpus_list()
            .await?
            .iter()
            .map(|k| json!({ "name": k.name, "created": when(k.created_at), "size": bytes(k.size_on_disk) }))
            .collect();
        let mut runs = Vec::new();
        let mut pending = Vec::new();
        for r in app.runs_list().await? {
            let st = app.release_status(&r.id).await?;
            if st.stage == "requested" {
                pending.push(json!({ "run": r.id, "stage": st.stage, "approvals_missing": st.approvals_missing }));
            }
            let mut v = json!(r);
            v["stage"] = json!(st.stage);
            runs.push(v);
        }
        let audits: Vec<Value> = app
            .audit_list(None)
            .await?
            .iter()
            .rev()
            .take(20)
            .map(|a| {
                let mut v = json!(a);
                v["finished"] = json!(a.finished_at.map(when).unwrap_or_default());
                v["report"] = Value::Null;
                v
            })
            .collect();
        let jobs = app.store.jobs().list(20).await?;
        let workers: Vec<Value> = app
            .live_workers()
            .await?
            .iter()
            .map(|w| {
                json!({ "name": w.name, "host": w.host, "gpus": w.gpus, "memory": bytes(w.memory_bytes.max(0) as u64),
                        "seen": when(w.seen_at) })
            })
            .collect();
        Ok(render(
            &s,
            "dashboard.html",
            json!({ "me": me(&c), "corpora": corpora, "runs": runs, "pending": pending, "audits": audits, "jobs": jobs,
                    "workers": workers }),
        ))
    })
    .await
}

async fn upload_corpus(
    State(s): State<AppState>,
    Viewer(c): Viewer,
    form: axum::extract::Multipart,
) -> Response {
    page(&s, &c, "/", async {
        c.require(OPERATE)?;
        let (opts, files) = api::read_upload(form).await?;
        let name = opts.name.clone();
        s.app()
            .await
            .ingest_uploads(opts, files, &c.user.username)
            .await?;
        Ok(see(&format!("/corpora/{name}")))
    })
    .await
}

async fn corpus_page(State(s): State<AppState>, Viewer(c): Viewer, Path(name): Path<String>) -> Response {
    page(&s, &c, "/", async {
        c.require(READ)?;
        let app = s.app().await;
        let k = app.corpus_show(&name).await?;
        let v = json!(k);
        // The summary's figures, flattened to label/value pairs; paths and ids stay, text never exists here.
        let mut facts = Vec::new();
        flatten("", &v, &mut facts);
        let runs: Vec<Value> = app
            .runs_list()
            .await?
            .into_iter()
            .filter(|r| r.corpus_id == k.id)
            .map(|r| json!({ "id": r.id, "objective": r.objective, "state": r.state }))
            .collect();
        Ok(render(
            &s,
            "corpus.html",
            json!({ "me": me(&c), "c": v, "facts": facts, "runs": runs }),
        ))
    })
    .await
}

/// `a.b.c` → value pairs of a JSON tree, for fact lists.
fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.replace('_', " ")
                } else {
                    format!("{prefix} · {}", k.replace('_', " "))
                };
                flatten(&key, v, out);
            }
        }
        Value::Array(a) if a.iter().all(|x| !x.is_object() && !x.is_array()) => {
            out.push((
                prefix.to_string(),
                a.iter().map(scalar).collect::<Vec<_>>().join(", "),
            ));
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                flatten(&format!("{prefix} {}", i + 1), x, out);
            }
        }
        other => out.push((prefix.to_string(), scalar(other))),
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Number(n) => n.as_f64().map(fmt_num).unwrap_or_else(|| n.to_string()),
        other => other.to_string(),
    }
}

/// Training and validation loss per epoch; the other objective's run on the same corpus joins the
/// chart when there is one, so diffusion and AR compare on one picture.
async fn loss_chart(app: &crate::app::App, run: &crate::store::RunRow) -> ApiResult<String> {
    let mut series = Vec::new();
    let mut add = |label: &str, epochs: &[crate::store::MetricRow]| {
        let pick = |f: &dyn Fn(&crate::store::MetricRow) -> Option<f64>| -> Vec<(f64, f64)> {
            epochs
                .iter()
                .filter_map(|m| f(m).map(|v| (m.epoch as f64, v)))
                .collect()
        };
        series.push(Series {
            name: format!("{label} train"),
            points: pick(&|m| m.train_loss),
            ..Series::default()
        });
        series.push(Series {
            name: format!("{label} validation"),
            points: pick(&|m| m.val_loss),
            ..Series::default()
        });
    };
    let details = app.run_details(&run.id).await?;
    add(&run.objective, &details.epochs);
    let other = app
        .runs_list()
        .await?
        .into_iter()
        .find(|r| r.corpus_id == run.corpus_id && r.objective != run.objective && r.state == "succeeded");
    if let Some(o) = other {
        let d = app.run_details(&o.id).await?;
        add(&format!("{} ({})", o.objective, o.id), &d.epochs);
    }
    Ok(Chart {
        title: format!("Loss per epoch, run {}", run.id),
        x_label: "epoch".into(),
        y_label: "loss (nats/token)".into(),
        log_x: false,
        series,
        ..Chart::default()
    }
    .line_svg())
}

#[derive(serde::Deserialize)]
struct RunQuery {
    /// A job the previous form queued, to say so at the top of the page.
    job: Option<String>,
}

async fn run_page(
    State(s): State<AppState>,
    Viewer(c): Viewer,
    Path(id): Path<String>,
    Query(q): Query<RunQuery>,
) -> Response {
    page(&s, &c, "/", async {
        c.require(READ)?;
        let app = s.app().await;
        let d = app.run_details(&id).await?;
        let chart = loss_chart(&app, &d.run).await?;
        let mut config = Vec::new();
        flatten("", &d.run.config, &mut config);
        let audits = app.audit_list(Some(&id)).await?;
        let stage = app.release_status(&id).await?.stage;
        let utilities = utilities_of(&app, &d.history).await?;
        let history = history_rows(&d.history, &utilities, &audits);
        let (points, unmeasured) = frontier_points(&app, &d.run, &d.history, &utilities).await?;
        let (by_extraction, by_exposure) = frontier_charts(&points, &s.policy);
        let jobs = app.store.jobs().list(200).await?;
        let selections: Vec<Value> = jobs
            .iter()
            .filter(|j| j.kind == "select" && j.args["run"] == id.as_str())
            .take(5)
            .map(|j| {
                json!({
                    "id": j.id, "state": j.state, "by": j.created_by, "when": when(j.created_at),
                    "message": j.error.clone().or_else(|| j.message.clone()).unwrap_or_default(),
                    "step": j.result.as_ref().and_then(|r| r.get("step")).filter(|v| !v.is_null()).cloned(),
                })
            })
            .collect();
        let notice = q
            .job
            .as_deref()
            .and_then(|q| jobs.iter().find(|j| j.id == q && j.args["run"] == id.as_str()))
            .map(|j| {
                let what = match (j.kind.as_str(), j.args["step"].as_i64()) {
                    ("select", _) => "selection of the best checkpoint".to_string(),
                    ("audit", Some(step)) => format!("audit of step {step}"),
                    (kind, _) => kind.to_string(),
                };
                format!(
                    "Queued job {} ({what}); it is {}. A worker runs it: the dashboard shows its progress.",
                    j.id,
                    j.state.as_str()
                )
            });
        let t = &s.policy.thresholds;
        let policy = json!({
            "name": s.policy.name,
            "max_exact_extraction": fmt_num(t.max_exact_extraction),
            "max_canary_exposure": fmt_num(t.max_canary_exposure),
            "min_choice_accuracy": t.min_choice_accuracy.map(pct),
            "statistic": s.policy.statistic,
            "rank_by": s.policy.select.rank_by,
            "max_audits": s.policy.select.max_audits,
        });
        Ok(render(
            &s,
            "run.html",
            json!({
                "me": me(&c), "run": d.run, "corpus": d.corpus, "loss_chart": chart, "config": config,
                "history": history, "audits": audits, "stage": stage, "selections": selections,
                "notice": notice, "policy": policy, "frontier_extraction": by_extraction,
                "frontier_exposure": by_exposure, "frontier_points": points.len(), "unmeasured": unmeasured,
            }),
        ))
    })
    .await
}

async fn start_run(
    State(s): State<AppState>,
    Viewer(c): Viewer,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    page(&s, &c, "/", async {
        c.require(OPERATE)?;
        let num = |k: &str| -> ApiResult<Option<u64>> {
            match f.get(k).map(|v| v.trim()).filter(|v| !v.is_empty()) {
                None => Ok(None),
                Some(v) => v
                    .parse()
                    .map(Some)
                    .map_err(|_| ApiError::bad_request(format!("{k} must be a whole number, not {v:?}"))),
            }
        };
        let objective = match f.get("objective").map(String::as_str) {
            None | Some("diffusion") => crate::train::Objective::Diffusion,
            Some("ar") => crate::train::Objective::Ar,
            Some(o) => return Err(ApiError::bad_request(format!("unknown objective {o:?}"))),
        };
        let req = StartTraining {
            corpus: field(&f, "corpus")?.to_string(),
            objective: Some(objective),
            preset: f.get("preset").cloned(),
            epochs: num("epochs")?,
            layers: None,
            width: None,
            heads: None,
            context: None,
            batch_size: None,
            seed: None,
            max_steps: None,
            gpu: f.get("gpu").is_some_and(|v| v == "on" || v == "true"),
        };
        s.app()
            .await
            .enqueue_train(&req.into_request(&c.user.username))
            .await?;
        Ok(see("/"))
    })
    .await
}

async fn gate(State(s): State<AppState>, Viewer(c): Viewer, Path(id): Path<String>) -> Response {
    let back = format!("/runs/{id}");
    page(&s, &c, &back, async {
        c.require(OPERATE)?;
        s.app().await.gate(&id, &s.policy, Some(&c.user.username)).await?;
        Ok(see(&format!("/releases/{id}")))
    })
    .await
}

/// Queues `gate --select` under the server's policy: a worker audits the kept checkpoints that lack an
/// audit and gates the most useful one that passes.
async fn select(State(s): State<AppState>, Viewer(c): Viewer, Path(id): Path<String>) -> Response {
    let back = format!("/runs/{id}");
    page(&s, &c, &back, async {
        c.require(OPERATE)?;
        let req = crate::app::gate::SelectRequest::new(&id, &s.policy, Some(&c.user.username))?;
        let job = s.app().await.enqueue_select(&req).await?;
        Ok(see(&format!("/runs/{id}?job={job}")))
    })
    .await
}

async fn start_audit(
    State(s): State<AppState>,
    Viewer(c): Viewer,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    page(&s, &c, "/", async {
        c.require(OPERATE)?;
        let run = field(&f, "run")?.to_string();
        let mut req = api::audit_request(&s, run.clone(), false, &c.user.username);
        req.gpu = f.get("gpu").is_some_and(|v| v == "on");
        if let Some(v) = f.get("step").map(|v| v.trim()).filter(|v| !v.is_empty()) {
            req.step = Some(
                v.parse()
                    .map_err(|_| ApiError::bad_request(format!("step must be a whole number, not {v:?}")))?,
            );
        }
        if let Some(n) = f.get("shards").filter(|v| !v.is_empty()) {
            let n: usize = n
                .parse()
                .map_err(|_| ApiError::bad_request(format!("shards must be a whole number, not {n:?}")))?;
            let mut params = crate::app::audit_shards::request_params(&req);
            params.shards = n;
            req.params = Some(params);
        }
        let job = s.app().await.enqueue_audit(&req).await?;
        // A checkpoint's audit is asked for from the run page, which then says it was queued.
        Ok(match req.step {
            Some(_) => see(&format!("/runs/{run}?job={job}")),
            None => see("/"),
        })
    })
    .await
}

// ---------------------------------------------------------------------------------------------------
// What a checkpoint learned beside what it memorized
// ---------------------------------------------------------------------------------------------------

/// Held-out continuation choice picks one of [`crate::eval::CHOICES`] continuations: guessing scores this.
const CHANCE: f64 = 1.0 / crate::eval::CHOICES as f64;

fn pct(v: f64) -> String {
    if v.is_finite() {
        format!("{:.1}%", v * 100.0)
    } else {
        "n/a".into()
    }
}

/// Whether a held-out choice accuracy cannot be told from guessing: its 95% interval holds chance. A
/// model that learned this little also memorizes little, so its low memorization figures say little.
fn at_chance(a: &Accuracy) -> bool {
    a.low <= CHANCE && CHANCE <= a.high
}

fn accuracy_view(a: &Accuracy) -> Value {
    json!({
        "value": pct(a.value), "low": pct(a.low), "high": pct(a.high), "n": a.n, "correct": a.correct,
        "mask_draws": a.mask_draws, "at_chance": at_chance(a),
    })
}

/// What a checkpoint learned, as the templates show it (`None` figures read "not measured").
fn utility_view(u: &Utility) -> Value {
    let custom = u.custom.as_ref().map(|c| {
        let mut v = accuracy_view(&c.accuracy);
        // A customer's items need not have four choices: chance is theirs, not 25%.
        if let Some(m) = v.as_object_mut() {
            m.remove("at_chance");
        }
        v["file"] = json!(c.file);
        v["sha256"] = json!(c.sha256);
        v
    });
    json!({
        "bits_per_byte": u.bits_per_byte.map(|b| format!("{b:.3}")),
        "nats_per_token": u.nats_per_token.map(|n| format!("{n:.3}")),
        "exact": u.estimator == "exact",
        "estimator": u.estimator,
        "windows": u.windows, "tokens": u.tokens, "bytes": u.bytes, "mask_draws": u.mask_draws,
        "choice": u.choice_accuracy.as_ref().map(accuracy_view),
        "custom": custom,
    })
}

/// Epochs done at a checkpoint: whole numbers as such, fractions to two places.
fn epochs_text(e: Option<f64>) -> String {
    match e {
        Some(e) if (e - e.round()).abs() < 1e-9 => format!("{e:.0}"),
        Some(e) => format!("{e:.2}"),
        None => String::new(),
    }
}

fn objective_name(objective: &str) -> &str {
    match objective {
        "ar" => "AR",
        other => other,
    }
}

/// What each checkpoint of a history learned: its own record's figures, or, for a checkpoint saved before
/// checkpoints were evaluated, those its audit measured.
async fn utilities_of(app: &crate::app::App, history: &[CheckpointView]) -> ApiResult<Vec<Option<Utility>>> {
    let mut out = Vec::with_capacity(history.len());
    for c in history {
        let u = match (&c.utility, &c.audit) {
            (Some(u), _) => Some(u.clone()),
            (None, Some(a)) => app
                .audit_row(&a.id)
                .await?
                .report
                .and_then(|r| r.get("utility").cloned())
                .and_then(|u| serde_json::from_value(u).ok()),
            (None, None) => None,
        };
        out.push(u);
    }
    Ok(out)
}

/// The run page's checkpoint table: one row per checkpoint of the history, oldest first.
fn history_rows(
    history: &[CheckpointView],
    utilities: &[Option<Utility>],
    audits: &[crate::store::AuditRow],
) -> Vec<Value> {
    history
        .iter()
        .zip(utilities)
        .map(|(c, u)| {
            let running = audits
                .iter()
                .find(|a| a.checkpoint_step == c.step && a.state == "running")
                .map(|a| a.id.clone());
            let audit = c.audit.as_ref().map(|a| {
                json!({
                    "id": a.id, "quick": a.quick, "exact": fmt_num(a.extraction_exact),
                    "exact_high": fmt_num(a.extraction_exact_high),
                    "exposure": format!("{:.2}", a.max_canary_exposure),
                    "auc": format!("{:.3}", a.membership_max_auc),
                })
            });
            json!({
                "step": c.step, "epochs": epochs_text(c.epochs), "kept": c.kept,
                "sha": c.weights_sha256.chars().take(12).collect::<String>(),
                "bits_per_byte": u.as_ref().and_then(|u| u.bits_per_byte).map(|b| format!("{b:.3}")),
                "upper_bound": u.as_ref().is_some_and(|u| u.estimator != "exact"),
                "choice": u.as_ref().and_then(|u| u.choice_accuracy.as_ref()).map(accuracy_view),
                "audit": audit, "audit_running": running,
            })
        })
        .collect()
}

/// One audited checkpoint on the frontier charts.
struct FrontierPoint {
    run: String,
    objective: String,
    this_run: bool,
    step: i64,
    epochs: Option<f64>,
    choice: Accuracy,
    audit: AuditFigures,
}

/// The audited checkpoints of `run` and of every other run on its corpus that have a held-out choice
/// accuracy, and how many audited ones have none (saved and audited before it was measured).
async fn frontier_points(
    app: &crate::app::App,
    run: &crate::store::RunRow,
    history: &[CheckpointView],
    utilities: &[Option<Utility>],
) -> ApiResult<(Vec<FrontierPoint>, usize)> {
    fn add(
        out: &mut (Vec<FrontierPoint>, usize),
        run: &crate::store::RunRow,
        this_run: bool,
        history: &[CheckpointView],
        utilities: &[Option<Utility>],
    ) {
        for (c, u) in history.iter().zip(utilities) {
            let Some(audit) = &c.audit else { continue };
            match u.as_ref().and_then(|u| u.choice_accuracy) {
                Some(choice) => out.0.push(FrontierPoint {
                    run: run.id.clone(),
                    objective: run.objective.clone(),
                    this_run,
                    step: c.step,
                    epochs: c.epochs,
                    choice,
                    audit: audit.clone(),
                }),
                None => out.1 += 1,
            }
        }
    }
    let mut out = (Vec::new(), 0);
    add(&mut out, run, true, history, utilities);
    for other in app.runs_list().await? {
        if other.corpus_id != run.corpus_id || other.id == run.id {
            continue;
        }
        let checkpoints = app.store.runs().checkpoints(&other.id).await?;
        let h = app.history(&other.id, &checkpoints).await?;
        let u = utilities_of(app, &h).await?;
        add(&mut out, &other, false, &h, &u);
    }
    Ok(out)
}

/// Held-out choice accuracy against the exact extraction rate's upper bound, and against the highest
/// canary exposure: this run's audited checkpoints filled, the other runs' on the corpus hollow, colour
/// and shape by objective; the policy's limits dashed, chance dotted.
fn frontier_charts(points: &[FrontierPoint], policy: &crate::policy::Policy) -> (String, String) {
    let mut groups: Vec<(bool, &str)> = points
        .iter()
        .map(|p| (p.this_run, p.objective.as_str()))
        .collect();
    // This run first, then the others by objective (diffusion before ar).
    groups.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(a.1)));
    groups.dedup();
    let series = |x: &dyn Fn(&FrontierPoint) -> f64| -> Vec<Series> {
        groups
            .iter()
            .map(|&(this_run, objective)| {
                let ps: Vec<&FrontierPoint> = points
                    .iter()
                    .filter(|p| p.this_run == this_run && p.objective == objective)
                    .collect();
                let ar = objective == "ar";
                Series {
                    name: format!(
                        "{}, {}",
                        objective_name(objective),
                        if this_run { "this run" } else { "other runs" }
                    ),
                    points: ps.iter().map(|p| (x(p), p.choice.value)).collect(),
                    y_ranges: ps.iter().map(|p| Some((p.choice.low, p.choice.high))).collect(),
                    labels: ps
                        .iter()
                        .map(|p| {
                            let epochs = match p.epochs {
                                Some(_) => format!(" ({} epochs)", epochs_text(p.epochs)),
                                None => String::new(),
                            };
                            format!(
                                "{} step {}{epochs}, audit {}: choice {} ({}–{}, n = {}), exact extraction ≤ {}, \
                                 canary exposure {:.2} bits",
                                p.run,
                                p.step,
                                p.audit.id,
                                pct(p.choice.value),
                                pct(p.choice.low),
                                pct(p.choice.high),
                                p.choice.n,
                                fmt_num(p.audit.extraction_exact_high),
                                p.audit.max_canary_exposure
                            )
                        })
                        .collect(),
                    marker: if ar { Marker::Square } else { Marker::Circle },
                    hollow: !this_run,
                    colour: Some(usize::from(ar)),
                    dashed: false,
                }
            })
            .collect()
    };
    let t = &policy.thresholds;
    let mut y_guides = vec![Guide::y(CHANCE, "chance 25%").dotted()];
    if let Some(min) = t.min_choice_accuracy {
        y_guides.push(Guide::y(min, format!("policy minimum {}", pct(min))));
    }
    let y_label = "held-out choice accuracy (share)";
    let by_extraction = Chart {
        title: "What it learned against exact extraction".into(),
        x_label: "exact extraction rate, upper end of its 95% interval (share of samples)".into(),
        y_label: y_label.into(),
        log_x: false,
        series: series(&|p| p.audit.extraction_exact_high),
        guides: [
            vec![Guide::x(
                t.max_exact_extraction,
                format!("policy limit {}", fmt_num(t.max_exact_extraction)),
            )],
            y_guides.clone(),
        ]
        .concat(),
        x_from_zero: true,
        y_from_zero: false,
    };
    let by_exposure = Chart {
        title: "What it learned against canary exposure".into(),
        x_label: "highest exposure of a canary the model saw (bits)".into(),
        y_label: y_label.into(),
        log_x: false,
        series: series(&|p| p.audit.max_canary_exposure),
        guides: [
            vec![Guide::x(
                t.max_canary_exposure,
                format!("policy limit {} bits", fmt_num(t.max_canary_exposure)),
            )],
            y_guides,
        ]
        .concat(),
        x_from_zero: true,
        y_from_zero: false,
    };
    (by_extraction.scatter_svg(), by_exposure.scatter_svg())
}

// ---------------------------------------------------------------------------------------------------
// Audit
// ---------------------------------------------------------------------------------------------------

/// `text` cut into runs that are inside one of `needles` (found left to right) and runs that are not.
fn highlight(text: &str, needles: &[&str]) -> Vec<Value> {
    let mut hits: Vec<(usize, usize)> = Vec::new();
    for n in needles.iter().filter(|n| !n.is_empty()) {
        if let Some(at) = text.find(n) {
            hits.push((at, at + n.len()));
        }
    }
    hits.sort();
    let mut out = Vec::new();
    let mut pos = 0;
    for (a, b) in hits {
        if b <= pos {
            continue;
        }
        let a = a.max(pos);
        if a > pos {
            out.push(json!({ "text": &text[pos..a], "hit": false }));
        }
        out.push(json!({ "text": &text[a..b], "hit": true }));
        pos = b;
    }
    if pos < text.len() {
        out.push(json!({ "text": &text[pos..], "hit": false }));
    }
    out
}

/// The longest common prefix of two texts, on a character boundary.
fn common_prefix<'a>(a: &'a str, b: &str) -> &'a str {
    let mut end = 0;
    for ((i, x), y) in a.char_indices().zip(b.chars()) {
        if x != y {
            break;
        }
        end = i + x.len_utf8();
    }
    &a[..end]
}

/// Each canary's exposure against the times the audited checkpoint saw it (copies trained × epochs), with
/// the policy's limit and the highest exposure of the never-seen controls (what chance gives). Reports
/// from before canaries were counted by times seen have neither: they are drawn by copies planted.
fn exposure_chart(canaries: &crate::audit::exposure::CanaryReport, policy: &crate::policy::Policy) -> String {
    let old = canaries.controls == 0 && canaries.canaries.iter().all(|k| k.copies_trained == 0);
    let seen: Vec<_> = canaries
        .canaries
        .iter()
        .filter(|k| old || k.copies_trained > 0)
        .collect();
    let mut guides = vec![Guide::y(
        policy.thresholds.max_canary_exposure,
        format!(
            "policy limit {} bits",
            fmt_num(policy.thresholds.max_canary_exposure)
        ),
    )];
    if canaries.controls > 0 {
        guides.push(
            Guide::y(
                canaries.control_max_exposure,
                format!("never-seen controls (max of {})", canaries.controls),
            )
            .dotted(),
        );
    }
    Chart {
        title: if old {
            "Canary exposure against repeats".into()
        } else {
            "Canary exposure against times seen".into()
        },
        x_label: if old {
            "times the canary was planted".into()
        } else {
            "times the checkpoint saw the canary (copies trained × epochs)".into()
        },
        y_label: "exposure (bits)".into(),
        log_x: true,
        series: vec![Series {
            name: "canary".into(),
            points: seen
                .iter()
                .map(|k| (if old { k.repeats as f64 } else { k.times_seen }, k.exposure))
                .collect(),
            labels: seen
                .iter()
                .map(|k| {
                    format!(
                        "canary {}: {} of {} copies trained, seen {} times, exposure {:.2} bits ({})",
                        k.id,
                        k.copies_trained,
                        k.repeats,
                        fmt_num(k.times_seen),
                        k.exposure,
                        k.method
                    )
                })
                .collect(),
            ..Series::default()
        }],
        guides,
        x_from_zero: false,
        y_from_zero: true,
    }
    .scatter_svg()
}

async fn audit_page(State(s): State<AppState>, Viewer(c): Viewer, Path(id): Path<String>) -> Response {
    page(&s, &c, "/", async {
        c.require(READ)?;
        let app = s.app().await;
        let may_see = EVIDENCE.contains(&c.user.role);
        let row = app.audit_row(&id).await?;
        let details = app.audit_details(&id, may_see && row.evidence_file.is_some(), None).await?;
        let a = details.row;
        let stage = app.release_status(&a.run_id).await?.stage;
        let mut ctx = json!({ "me": me(&c), "a": a, "stage": stage, "policy_name": s.policy.name });
        if let Some(report) = &a.report {
            let parsed: crate::audit::AuditReport = serde_json::from_value(report.clone())
                .map_err(|e| anyhow::anyhow!("the report of audit {id} is not readable: {e}"))?;
            let g = crate::policy::evaluate(&s.policy, &parsed);
            ctx["gate"] = json!({ "passed": g.passed, "rows": gate_rows(&json!(g.rows)) });
            ctx["utility"] = json!(parsed.utility.as_ref().map(utility_view));
            ctx["exposure_chart"] = json!(exposure_chart(&parsed.canaries, &s.policy));
            ctx["membership"] = json!(parsed
                .membership
                .methods
                .iter()
                .map(|m| json!({ "method": m.method, "auc": fmt_num(m.auc.auc), "low": fmt_num(m.auc.low), "high": fmt_num(m.auc.high) }))
                .collect::<Vec<_>>());
            ctx["max_auc"] = json!(fmt_num(parsed.membership.max_auc));
            ctx["report"] = report.clone();
        }
        match details.evidence {
            Some(ev) => {
                let ex = |list: &[crate::audit::report::ExtractionExample]| -> Vec<Value> {
                    list.iter()
                        .map(|e| {
                            let mut v = json!(e);
                            let same = common_prefix(&e.generated, &e.truth);
                            v["generated_segments"] = json!(highlight(&e.generated, &[same]));
                            v["edit"] = json!(fmt_num(e.edit));
                            v
                        })
                        .collect()
                };
                let reg: Vec<Value> = ev
                    .regurgitation
                    .iter()
                    .map(|r| {
                        let mut v = json!(r);
                        let needles: Vec<&str> = r.spans.iter().map(|s| s.text.as_str()).collect();
                        v["segments"] = json!(highlight(&r.text, &needles));
                        v["covered"] = json!(format!("{:.0}%", r.covered_share * 100.0));
                        v
                    })
                    .collect();
                ctx["evidence"] = json!({
                    "secrets": ev.secrets,
                    "regurgitation": reg,
                });
                ctx["extraction"] = json!([
                    { "title": "Discoverable extraction (prefix)", "examples": ex(&ev.extraction) },
                    { "title": "Infilling extraction", "examples": ex(&ev.infilling) },
                ]);
            }
            None if !may_see => {
                ctx["evidence_note"] = json!(format!(
                    "The evidence (generations beside corpus text) is shown to reviewers and auditors; you are {}.",
                    c.user.role
                ));
            }
            None => ctx["evidence_note"] = json!("This audit has no evidence."),
        }
        Ok(render(&s, "audit.html", ctx))
    })
    .await
}

// ---------------------------------------------------------------------------------------------------
// Releases and reviews
// ---------------------------------------------------------------------------------------------------

async fn releases_page(State(s): State<AppState>, Viewer(c): Viewer) -> Response {
    page(&s, &c, "/", async {
        c.require(READ)?;
        let statuses = s.app().await.release_statuses().await?;
        Ok(render(
            &s,
            "releases.html",
            json!({ "me": me(&c), "statuses": statuses }),
        ))
    })
    .await
}

async fn release_page(State(s): State<AppState>, Viewer(c): Viewer, Path(run): Path<String>) -> Response {
    page(&s, &c, "/releases", async {
        c.require(READ)?;
        let app = s.app().await;
        let st = app.release_status(&run).await?;
        let r = app.run_row(&run).await?;
        let open = st.release.as_ref().is_some_and(|r| r.state == "requested");
        let released = st.release.as_ref().is_some_and(|r| r.state == "released");
        let approved = st.release.as_ref().is_some_and(|r| r.state == "approved");
        let reviewed = st.reviews.iter().any(|v| v.username == c.user.username);
        let approvals = st.reviews.iter().filter(|v| v.decision == "approve").count();
        let can_request = REQUEST.contains(&c.user.role)
            && st.gate.is_some()
            && st.release.as_ref().is_none_or(|r| matches!(r.state.as_str(), "rejected" | "void"));
        let can_review = REVIEW.contains(&c.user.role) && open && !reviewed;
        let can_export = EXPORT.contains(&c.user.role) && (approved || released);
        let bundle_ready = released && api::bundle_dir(&app, &run).await?.join("manifest.json").exists();
        let public_key = app.signing_public_key()?;
        let verified = if bundle_ready {
            Some(api::verify_on_server(&app, &run, &public_key).await?)
        } else {
            None
        };
        let reviews: Vec<Value> = st
            .reviews
            .iter()
            .map(|v| json!({ "reviewer": v.username, "decision": v.decision, "comment": v.comment, "at": when(v.created_at) }))
            .collect();
        let gate = st.gate.as_ref().map(|g| gate_rows(&g.rows));
        Ok(render(
            &s,
            "release.html",
            json!({
                "me": me(&c), "s": st, "trained_by": r.created_by, "approvals": approvals, "reviews": reviews,
                "gate_rows": gate, "can_request": can_request, "can_review": can_review, "can_export": can_export,
                "released": released, "bundle_ready": bundle_ready, "public_key": public_key, "verified": verified,
            }),
        ))
    })
    .await
}

async fn request_release(
    State(s): State<AppState>,
    Viewer(c): Viewer,
    Path(run): Path<String>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let back = format!("/releases/{run}");
    page(&s, &c, &back, async {
        c.require(REQUEST)?;
        let waiver = f.get("waiver").map(|w| w.trim()).filter(|w| !w.is_empty());
        s.app()
            .await
            .request_release(&c.user, &run, &s.policy, waiver, None)
            .await?;
        Ok(see(&back))
    })
    .await
}

async fn review(
    State(s): State<AppState>,
    Viewer(c): Viewer,
    Path(run): Path<String>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let back = format!("/releases/{run}");
    page(&s, &c, &back, async {
        c.require(REVIEW)?;
        let approve = match field(&f, "decision")? {
            "approve" => true,
            "reject" => false,
            other => return Err(ApiError::bad_request(format!("unknown decision {other:?}"))),
        };
        let comment = f.get("comment").cloned().unwrap_or_default();
        // An approval carries the passkey's assertion, which the page's script fills in.
        let filled = |k: &str| f.get(k).filter(|v| !v.is_empty()).cloned();
        let proof = match (filled("credential"), filled("signature")) {
            (Some(credential), Some(signature)) if approve => Some(crate::app::release::ApprovalProof {
                credential,
                signature,
                authenticator_data: filled("authenticator_data"),
                client_data: filled("client_data"),
            }),
            _ => None,
        };
        s.app()
            .await
            .review_release(&c.user, &run, &s.policy, approve, &comment, proof)
            .await?;
        Ok(see(&back))
    })
    .await
}

async fn export(State(s): State<AppState>, Viewer(c): Viewer, Path(run): Path<String>) -> Response {
    let back = format!("/releases/{run}");
    page(&s, &c, &back, async {
        c.require(EXPORT)?;
        let app = s.app().await;
        let dir = api::bundle_dir(&app, &run).await?;
        api::create_parent(&dir)?;
        app.export_release(&c.user, &run, &s.policy, &dir).await?;
        Ok(see(&back))
    })
    .await
}

// ---------------------------------------------------------------------------------------------------
// Studies
// ---------------------------------------------------------------------------------------------------

/// The runs a study's specification asks for: each epoch budget for each objective.
fn planned(spec: &Value) -> usize {
    let n = |k: &str| spec[k].as_array().map_or(0, Vec::len);
    n("epochs") * n("objectives")
}

async fn studies_page(State(s): State<AppState>, Viewer(c): Viewer) -> Response {
    page(&s, &c, "/", async {
        c.require(READ)?;
        let rows: Vec<Value> = s
            .app()
            .await
            .studies_list()
            .await?
            .iter()
            .map(|d| {
                json!({
                    "id": d.row.id, "kind": d.row.kind, "corpus": d.corpus, "state": d.row.state,
                    "points": d.points.len(), "planned": planned(&d.row.spec), "created_by": d.row.created_by,
                    "created": when(d.row.created_at), "finished": d.row.finished_at.map(when),
                    "error": d.row.error,
                })
            })
            .collect();
        Ok(render(
            &s,
            "studies.html",
            json!({ "me": me(&c), "studies": rows }),
        ))
    })
    .await
}

/// A study's figures by epochs, one line per objective (diffusion blue circles, AR orange squares, as on
/// the run page); x is log₂ epochs.
fn study_charts(points: &[StudyPoint]) -> Vec<Value> {
    let mut objectives: Vec<crate::train::Objective> = points.iter().map(|p| p.objective).collect();
    objectives.sort_by_key(|o| o.as_str() == "ar");
    objectives.dedup();
    let chart = |id: &str,
                 title: &str,
                 y_label: &str,
                 y: &dyn Fn(&StudyPoint) -> Option<f64>,
                 ranges: bool,
                 guides: Vec<Guide>| {
        let series = objectives
            .iter()
            .map(|&o| {
                let ar = o == crate::train::Objective::Ar;
                let mut ps: Vec<&StudyPoint> = points.iter().filter(|p| p.objective == o).collect();
                ps.sort_by_key(|p| p.epochs);
                let name = match (id, ar) {
                    ("study-bpb", true) => "AR (exact)".to_string(),
                    ("study-bpb", false) => "diffusion (upper bound)".to_string(),
                    _ => objective_name(o.as_str()).to_string(),
                };
                Series {
                    name,
                    points: ps
                        .iter()
                        .map(|p| (p.epochs as f64, y(p).unwrap_or(f64::NAN)))
                        .collect(),
                    y_ranges: if ranges {
                        ps.iter()
                            .map(|p| p.choice_accuracy.map(|a| (a.low, a.high)))
                            .collect()
                    } else {
                        Vec::new()
                    },
                    labels: ps
                        .iter()
                        .map(|p| format!("{} epochs: run {}, audit {}", p.epochs, p.run, p.audit))
                        .collect(),
                    marker: if ar { Marker::Square } else { Marker::Circle },
                    hollow: false,
                    colour: Some(usize::from(ar)),
                    // Both objectives often share a figure (no extraction at all): AR's dashes let
                    // diffusion's line show through.
                    dashed: ar,
                }
            })
            .collect();
        let svg = Chart {
            title: title.into(),
            x_label: "epochs over the same unique tokens (log₂ scale)".into(),
            y_label: y_label.into(),
            log_x: true,
            series,
            // Extraction and exposure start at none; bits per byte and accuracy where the figures are.
            y_from_zero: matches!(id, "study-extraction" | "study-exposure"),
            guides,
            x_from_zero: false,
        }
        .line_svg();
        json!({ "id": id, "svg": svg })
    };
    vec![
        chart(
            "study-bpb",
            "Held-out bits per byte",
            "bits per byte (lower is better)",
            &|p| p.bits_per_byte,
            false,
            Vec::new(),
        ),
        chart(
            "study-choice",
            "Held-out continuation choice",
            "choice accuracy (share)",
            &|p| p.choice_accuracy.map(|a| a.value),
            true,
            vec![Guide::y(CHANCE, "chance 25%").dotted()],
        ),
        chart(
            "study-extraction",
            "Exact extraction",
            "upper end of the 95% interval",
            &|p| Some(p.exact_extraction_high),
            false,
            Vec::new(),
        ),
        chart(
            "study-exposure",
            "Highest canary exposure",
            "exposure (bits)",
            &|p| Some(p.max_canary_exposure),
            false,
            Vec::new(),
        ),
    ]
}

async fn study_page(State(s): State<AppState>, Viewer(c): Viewer, Path(id): Path<String>) -> Response {
    page(&s, &c, "/studies", async {
        c.require(READ)?;
        let d = s.app().await.study_details(&id).await?;
        let mut points: Vec<&StudyPoint> = d.points.iter().collect();
        points.sort_by_key(|p| (p.epochs, p.objective.as_str() == "ar"));
        let rows: Vec<Value> = points
            .iter()
            .map(|p| {
                json!({
                    "objective": objective_name(p.objective.as_str()), "epochs": p.epochs, "run": p.run,
                    "step": p.step, "audit": p.audit,
                    "train_loss": p.final_train_loss.map(|l| format!("{l:.3}")),
                    "bits_per_byte": p.bits_per_byte.map(|b| format!("{b:.3}")),
                    "upper_bound": p.objective != crate::train::Objective::Ar,
                    "choice": p.choice_accuracy.as_ref().map(accuracy_view),
                    "exact": fmt_num(p.exact_extraction), "exact_high": fmt_num(p.exact_extraction_high),
                    "infill": p.infill_exact.map(fmt_num),
                    "exposure": format!("{:.2}", p.max_canary_exposure),
                    "auc": format!("{:.3}", p.membership_auc),
                    "seconds": format!("{:.0}", p.train_seconds),
                })
            })
            .collect();
        let mut spec = Vec::new();
        flatten("", &d.row.spec, &mut spec);
        Ok(render(
            &s,
            "study.html",
            json!({
                "me": me(&c), "study": d.row, "corpus": d.corpus, "rows": rows, "charts": study_charts(&d.points),
                "spec": spec, "planned": planned(&d.row.spec),
                "created": when(d.row.created_at), "finished": d.row.finished_at.map(when),
            }),
        ))
    })
    .await
}

// ---------------------------------------------------------------------------------------------------
// Ledger and admin
// ---------------------------------------------------------------------------------------------------

#[derive(serde::Deserialize)]
struct LedgerQuery {
    since: Option<String>,
}

async fn ledger_page(State(s): State<AppState>, Viewer(c): Viewer, Query(q): Query<LedgerQuery>) -> Response {
    page(&s, &c, "/", async {
        c.require(LEDGER)?;
        let app = s.app().await;
        let (since, window) = match q.since.as_deref() {
            Some("all") => (None, "in all".to_string()),
            Some(v) => (
                Some(crate::ledger::parse_since(v, crate::store::now_ms()).map_err(|e| ApiError::bad_request(e.to_string()))?),
                format!("since {v}"),
            ),
            None => (None, "in all (newest first, at most 500)".to_string()),
        };
        let mut entries = app.store.ledger().entries(since).await?;
        entries.reverse();
        entries.truncate(500);
        let rows: Vec<Value> = entries
            .iter()
            .map(|e| json!({ "seq": e.seq, "when": when(e.at_ms), "actor": e.actor, "action": e.action, "subject": e.subject, "details": crate::ledger::canonical_json(&e.details) }))
            .collect();
        let (intact, verdict) = match app.ledger_verify().await? {
            Ok(r) => (
                true,
                format!(
                    "Ledger intact: {} entries, {} signed checkpoints verified, {} entries after the last checkpoint.",
                    r.report.entries, r.report.checkpoints_verified, r.report.unprotected_tail
                ),
            ),
            Err(b) => (false, format!("Ledger verification FAILED: {b}")),
        };
        Ok(render(
            &s,
            "ledger.html",
            json!({ "me": me(&c), "entries": rows, "intact": intact, "verdict": verdict, "window": window }),
        ))
    })
    .await
}

async fn admin_view(s: &AppState, c: &Current, created: Option<Value>) -> ApiResult<Response> {
    c.require(ADMIN)?;
    let app = s.app().await;
    let users = app.store.users().list().await?;
    let grants = app.pending_grants().await?;
    let approver_keys = app.approver_keys(None).await?;
    let keys = app.keys_list().await?;
    let versions: Vec<Value> = keys
        .versions
        .iter()
        .map(|v| {
            let state = if v.retired {
                "retired"
            } else if v.current {
                "current"
            } else {
                "kept for unwrapping"
            };
            json!({ "version": v.version, "state": state, "wrapped": v.wraps })
        })
        .collect();
    let mut thresholds = Vec::new();
    flatten("", &json!(s.policy.thresholds), &mut thresholds);
    flatten("approvals", &json!(s.policy.approvals), &mut thresholds);
    let roles: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
    Ok(render(
        s,
        "admin.html",
        json!({
            "me": me(c), "users": users, "roles": roles, "keys": keys, "key_versions": versions,
            "grants": grants, "approver_keys": approver_keys,
            "public_key": app.signing_public_key()?, "policy": s.policy, "thresholds": thresholds, "created": created,
        }),
    ))
}

async fn admin_page(State(s): State<AppState>, Viewer(c): Viewer) -> Response {
    page(&s, &c, "/", admin_view(&s, &c, None)).await
}

async fn add_user(
    State(s): State<AppState>,
    Viewer(c): Viewer,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    page(&s, &c, "/admin", async {
        c.require(ADMIN)?;
        let username = field(&f, "username")?.trim().to_string();
        let role: Role = field(&f, "role")?.parse().map_err(ApiError::bad_request)?;
        let g = s.app().await.add_user(&c.user, &username, role).await?;
        admin_view(&s, &c, Some(granted_notice(&username, role, &g))).await
    })
    .await
}

async fn set_user(
    State(s): State<AppState>,
    Viewer(c): Viewer,
    Path(name): Path<String>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    page(&s, &c, "/admin", async {
        c.require(ADMIN)?;
        let role: Role = field(&f, "role")?.parse().map_err(ApiError::bad_request)?;
        let disabled = match f.get("disabled").map(String::as_str) {
            Some("true") => true,
            None | Some("false") => false,
            Some(o) => {
                return Err(ApiError::bad_request(format!(
                    "disabled must be true or false, not {o:?}"
                )))
            }
        };
        match s.app().await.set_user(&c.user, &name, role, disabled).await? {
            g @ crate::app::grants::Granted::Pending { .. } => {
                admin_view(&s, &c, Some(granted_notice(&name, role, &g))).await
            }
            crate::app::grants::Granted::Done { .. } => Ok(see("/admin")),
        }
    })
    .await
}

async fn reset_password(State(s): State<AppState>, Viewer(c): Viewer, Path(name): Path<String>) -> Response {
    page(&s, &c, "/admin", async {
        c.require(ADMIN)?;
        let app = s.app().await;
        let g = app.reset_password(&c.user, &name).await?;
        let role = app.user(&name).await?.role;
        admin_view(&s, &c, Some(granted_notice(&name, role, &g))).await
    })
    .await
}

/// The challenge of a passkey enrolment: bound to the account and the session (its CSRF token, which
/// only this session's pages know), so a creation made for another session or account is refused.
fn enrolment_challenge(c: &Current) -> String {
    crate::vault::approver::challenge_for(
        format!("lethe.passkey.enrol\n{}\n{}", c.user.username, c.csrf).as_bytes(),
    )
}

async fn account_view(s: &AppState, c: &Current, notice: Option<Value>) -> ApiResult<Response> {
    let app = s.app().await;
    let keys = app.approver_keys(Some(&c.user)).await?;
    let grants: Vec<_> = app
        .pending_grants()
        .await?
        .into_iter()
        .filter(|g| g.target == c.user.username)
        .collect();
    Ok(render(
        s,
        "account.html",
        json!({
            "me": me(c), "keys": keys, "grants": grants, "notice": notice,
            "challenge": enrolment_challenge(c),
            "user_handle": crate::vault::approver::b64url(c.user.id.as_bytes()),
        }),
    ))
}

async fn account_page(State(s): State<AppState>, Viewer(c): Viewer) -> Response {
    page(&s, &c, "/", account_view(&s, &c, None)).await
}

/// A passkey made by the account page's script: its public key (SubjectPublicKeyInfo), credential id
/// and client data, checked for this session's challenge and this server's origin; it waits for an
/// admin's confirmation.
async fn enrol_passkey(
    State(s): State<AppState>,
    Viewer(c): Viewer,
    headers: axum::http::HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    page(&s, &c, "/account", async {
        let origin = super::auth::own_origin(&s, &headers)
            .ok_or_else(|| ApiError::bad_request("the request names no Host"))?;
        let bad = |e: crate::vault::approver::ApproverError| ApiError::bad_request(e.to_string());
        crate::vault::approver::check_client_data(
            field(&f, "client_data")?,
            "webauthn.create",
            &enrolment_challenge(&c),
            Some(&origin),
        )
        .map_err(bad)?;
        let point = crate::vault::approver::p256_point_from_spki(field(&f, "public_key")?).map_err(bad)?;
        let rp_id = origin
            .split("://")
            .nth(1)
            .unwrap_or_default()
            .rsplit_once(':')
            .map(|(h, _)| h.to_string())
            .unwrap_or_else(|| origin.split("://").nth(1).unwrap_or_default().to_string());
        let label = f.get("label").cloned().unwrap_or_else(|| "passkey".into());
        let g = s
            .app()
            .await
            .enrol_passkey(&c.user, &point, field(&f, "credential_id")?, &rp_id, &label)
            .await?;
        account_view(&s, &c, Some(json!({ "grant": g.id }))).await
    })
    .await
}

/// What the admin page says after a change that may wait for a second admin.
fn granted_notice(username: &str, role: Role, g: &crate::app::grants::Granted) -> Value {
    match g {
        crate::app::grants::Granted::Done { one_time_password } => {
            json!({ "username": username, "role": role, "password": one_time_password })
        }
        crate::app::grants::Granted::Pending { grant } => {
            json!({ "username": username, "role": role, "grant": grant.id })
        }
    }
}

async fn confirm_grant(State(s): State<AppState>, Viewer(c): Viewer, Path(id): Path<String>) -> Response {
    page(&s, &c, "/admin", async {
        c.require(ADMIN)?;
        let app = s.app().await;
        let done = app
            .confirm_grant(crate::app::grants::Confirmer::Admin(&c.user), &id)
            .await?;
        let role = app.user(&done.grant.target).await.map(|u| u.role).ok();
        let notice = done.one_time_password.as_ref().map(|p| {
            json!({ "username": done.grant.target, "role": role, "password": p, "confirmed": done.grant.id })
        });
        match notice {
            Some(n) => admin_view(&s, &c, Some(n)).await,
            None => Ok(see("/admin")),
        }
    })
    .await
}

async fn cancel_grant(State(s): State<AppState>, Viewer(c): Viewer, Path(id): Path<String>) -> Response {
    page(&s, &c, "/admin", async {
        c.require(ADMIN)?;
        s.app().await.cancel_grant(&c.user, &id).await?;
        Ok(see("/admin"))
    })
    .await
}

async fn rotate_keys(State(s): State<AppState>, Viewer(c): Viewer) -> Response {
    page(&s, &c, "/admin", async {
        c.require(ADMIN)?;
        s.rotate_keys(&c.user.username).await?;
        Ok(see("/admin"))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highlights_found_spans_in_order_without_overlap() {
        let segs = highlight("abc def ghi def", &["def ghi", "ghi d", "zzz", ""]);
        let texts: Vec<(String, bool)> = segs
            .iter()
            .map(|v| {
                (
                    v["text"].as_str().unwrap().to_string(),
                    v["hit"].as_bool().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            texts,
            [
                ("abc ".into(), false),
                ("def ghi".into(), true),
                (" d".into(), true),
                ("ef".into(), false)
            ]
        );
    }

    #[test]
    fn common_prefix_stops_on_a_character_boundary() {
        assert_eq!(common_prefix("héllo", "hélp"), "hél");
        assert_eq!(common_prefix("x", "y"), "");
    }
}
