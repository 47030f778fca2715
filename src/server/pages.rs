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
use super::charts::{Chart, Series};
use super::error::{ApiError, ApiResult};
use super::routes::{ADMIN, EVIDENCE, EXPORT, LEDGER, OPERATE, READ, REQUEST, REVIEW};
use super::AppState;
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
        .route("/audits", post(start_audit))
        .route("/audits/{id}", get(audit_page))
        .route("/releases", get(releases_page))
        .route("/releases/{run}", get(release_page))
        .route("/releases/{run}/request", post(request_release))
        .route("/releases/{run}/review", post(review))
        .route("/releases/{run}/export", post(export))
        .route("/ledger", get(ledger_page))
        .route("/admin", get(admin_page))
        .route("/admin/users", post(add_user))
        .route("/admin/users/{name}", post(set_user))
        .route("/admin/users/{name}/reset", post(reset_password))
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
        });
        series.push(Series {
            name: format!("{label} validation"),
            points: pick(&|m| m.val_loss),
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
    }
    .line_svg())
}

async fn run_page(State(s): State<AppState>, Viewer(c): Viewer, Path(id): Path<String>) -> Response {
    page(&s, &c, "/", async {
        c.require(READ)?;
        let app = s.app().await;
        let d = app.run_details(&id).await?;
        let chart = loss_chart(&app, &d.run).await?;
        let mut config = Vec::new();
        flatten("", &d.run.config, &mut config);
        let audits = app.audit_list(Some(&id)).await?;
        let stage = app.release_status(&id).await?.stage;
        Ok(render(
            &s,
            "run.html",
            json!({
                "me": me(&c), "run": d.run, "corpus": d.corpus, "loss_chart": chart, "config": config,
                "checkpoints": d.checkpoints, "audits": audits, "stage": stage,
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
        if let Some(n) = f.get("shards").filter(|v| !v.is_empty()) {
            let n: usize = n
                .parse()
                .map_err(|_| ApiError::bad_request(format!("shards must be a whole number, not {n:?}")))?;
            let mut params = crate::app::audit_shards::request_params(&req);
            params.shards = n;
            req.params = Some(params);
        }
        s.app().await.enqueue_audit(&req).await?;
        Ok(see("/"))
    })
    .await
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
            let mut by_repeats: std::collections::BTreeMap<u32, Vec<(f64, f64)>> = Default::default();
            for k in &parsed.canaries.canaries {
                by_repeats.entry(0).or_default().push((k.repeats as f64, k.exposure));
            }
            let chart = Chart {
                title: "Canary exposure against repeats".into(),
                x_label: "times the canary was planted".into(),
                y_label: "exposure (bits)".into(),
                log_x: true,
                series: vec![Series { name: "canary".into(), points: by_repeats.remove(&0).unwrap_or_default() }],
            };
            ctx["exposure_chart"] = json!(chart.scatter_svg());
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
        let bundle_ready = released && api::bundle_dir(&app, &run).join("manifest.json").exists();
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
        s.app()
            .await
            .review_release(&c.user, &run, &s.policy, approve, &comment)
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
        let dir = api::bundle_dir(&app, &run);
        api::create_parent(&dir)?;
        app.export_release(&c.user, &run, &s.policy, &dir).await?;
        Ok(see(&back))
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
                    r.entries, r.checkpoints_verified, r.unprotected_tail
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
        let password = s.app().await.add_user(&c.user, &username, role).await?;
        admin_view(
            &s,
            &c,
            Some(json!({ "username": username, "role": role, "password": password })),
        )
        .await
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
        s.app().await.set_user(&c.user, &name, role, disabled).await?;
        Ok(see("/admin"))
    })
    .await
}

async fn reset_password(State(s): State<AppState>, Viewer(c): Viewer, Path(name): Path<String>) -> Response {
    page(&s, &c, "/admin", async {
        c.require(ADMIN)?;
        let app = s.app().await;
        let password = app.reset_password(&c.user, &name).await?;
        let role = app.user(&name).await?.role;
        admin_view(
            &s,
            &c,
            Some(json!({ "username": name, "role": role, "password": password })),
        )
        .await
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
