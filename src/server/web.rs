//! The console's files from `web/`: templates and static assets, embedded at build time so the binary
//! is the whole appliance (no files to lose, nothing fetched from a CDN).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::AppState;

/// Every template, by name.
const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../../web/templates/base.html")),
    ("login.html", include_str!("../../web/templates/login.html")),
    ("password.html", include_str!("../../web/templates/password.html")),
    ("error.html", include_str!("../../web/templates/error.html")),
    (
        "dashboard.html",
        include_str!("../../web/templates/dashboard.html"),
    ),
    ("corpus.html", include_str!("../../web/templates/corpus.html")),
    ("run.html", include_str!("../../web/templates/run.html")),
    ("audit.html", include_str!("../../web/templates/audit.html")),
    ("releases.html", include_str!("../../web/templates/releases.html")),
    ("release.html", include_str!("../../web/templates/release.html")),
    ("ledger.html", include_str!("../../web/templates/ledger.html")),
    ("studies.html", include_str!("../../web/templates/studies.html")),
    ("study.html", include_str!("../../web/templates/study.html")),
    ("admin.html", include_str!("../../web/templates/admin.html")),
    ("account.html", include_str!("../../web/templates/account.html")),
];

/// The template environment. HTML auto-escaping is on for every `.html` template (minijinja's default),
/// so corpus text and user input in evidence cannot inject markup; the only `|safe` values are the SVG
/// charts, which [`super::charts`] escapes itself.
pub fn templates() -> anyhow::Result<minijinja::Environment<'static>> {
    let mut env = minijinja::Environment::new();
    for (name, body) in TEMPLATES {
        env.add_template(name, body)
            .map_err(|e| anyhow::anyhow!("console template {name} is invalid: {e}"))?;
    }
    Ok(env)
}

const CSS: &str = include_str!("../../web/static/app.css");
const JS: &str = include_str!("../../web/static/app.js");

fn asset(body: &'static str, kind: &'static str) -> Response {
    let mut res = (StatusCode::OK, body).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    // Assets change only with the binary; an hour's cache is plenty and survives no upgrade for long.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    res
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/static/app.css",
            get(|| async { asset(CSS, "text/css; charset=utf-8") }),
        )
        .route(
            "/static/app.js",
            get(|| async { asset(JS, "text/javascript; charset=utf-8") }),
        )
}
