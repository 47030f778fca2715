//! The server face: `lethe serve`. Axum routes for the JSON API under `/api/v1` ([`api`]) and the
//! console pages rendered from `web/` ([`pages`]), behind one authentication layer ([`auth`]: sessions,
//! CSRF, Origin, throttling) and one set of security headers. Handlers parse, check the caller's role,
//! call [`crate::app`] and shape the answer; every rule about releases lives below, in `release`.

pub mod api;
pub mod auth;
pub mod charts;
pub mod error;
pub mod pages;
pub mod routes;
pub mod tls;
mod web;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue};
use axum::Router;

use crate::app::{App, Globals};
use crate::policy::Policy;

/// Largest request body: an uploaded corpus file. Everything else is small JSON or a form, and is capped
/// far lower by [`SMALL_BODY`]; the upload route alone raises the cap.
pub const MAX_UPLOAD: usize = 64 << 20;
/// Cap on every other request body.
pub const SMALL_BODY: usize = 256 << 10;

/// How `lethe serve` was asked to run.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub bind: SocketAddr,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Plain HTTP on an address other than loopback: only when the admin says so.
    pub insecure_http: bool,
    /// The origin browsers use, when a proxy in front terminates TLS (`https://lethe.example`): the
    /// Origin check compares with it, and an `https` origin gets Secure, `__Host-` cookies.
    pub public_origin: Option<String>,
    /// Run a job worker inside the server process too.
    pub worker: bool,
    /// The policy in force (default: the built-in one).
    pub policy: Option<PathBuf>,
}

/// Everything a handler needs, cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    app: tokio::sync::RwLock<Arc<App>>,
    pub policy: Policy,
    /// Whether browsers reach the console over TLS, here or at a proxy (cookies get `Secure` and the
    /// `__Host-` prefix).
    pub secure: bool,
    /// The origin browsers use, when it is not this listener's own (a TLS-terminating proxy).
    pub public_origin: Option<String>,
    pub templates: minijinja::Environment<'static>,
}

impl AppState {
    pub fn new(
        app: App,
        policy: Policy,
        tls: bool,
        public_origin: Option<String>,
    ) -> anyhow::Result<AppState> {
        let secure = tls
            || public_origin
                .as_deref()
                .is_some_and(|o| o.starts_with("https://"));
        Ok(AppState(Arc::new(Inner {
            app: tokio::sync::RwLock::new(Arc::new(app)),
            policy,
            secure,
            public_origin,
            templates: web::templates()?,
        })))
    }

    /// The appliance. A request waits while a key rotation runs.
    pub async fn app(&self) -> Arc<App> {
        self.0.app.read().await.clone()
    }

    /// Rotates the master key, one rotation at a time and with no request in between. The appliance
    /// reads the rotated key ring file at its next use (`app::keys::LiveKeyRing`), so it is not
    /// reopened.
    pub async fn rotate_keys(&self, admin: &str) -> anyhow::Result<crate::app::keys::RotateReport> {
        let app = self.0.app.write().await;
        app.keys_rotate_as(admin).await
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// The whole HTTP surface: API, console, static assets, with authentication, CSRF and security headers.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(api::router())
        .merge(pages::router(state.clone()))
        .merge(web::router())
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::layer))
        .layer(axum::middleware::from_fn(declared_length))
        .layer(axum::middleware::from_fn(security_headers))
        .layer(DefaultBodyLimit::max(SMALL_BODY))
        .with_state(state)
}

/// Headers every answer carries. The CSP allows scripts, styles and images from the appliance itself
/// only (no inline script, no CDN): the console's one script is a static file, its charts are SVG drawn
/// on the server.
async fn security_headers(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    let set = [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        // `same-origin`, not `no-referrer`: under `no-referrer` a browser sends `Origin: null` on the
        // console's own form posts, and the Origin check below could not tell them from a forged one.
        (header::REFERRER_POLICY, "same-origin"),
        (header::HeaderName::from_static("cross-origin-opener-policy"), "same-origin"),
    ];
    for (name, value) in set {
        h.insert(name, HeaderValue::from_static(value));
    }
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

/// Refuses a body whose declared length is over the cap before reading any of it; a body without a
/// declared length is still cut off at the cap as it streams in.
async fn declared_length(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let declared = routes::declared_length(&req);
    // Only the corpus upload (API and console form) takes large bodies.
    let upload = req.method() == axum::http::Method::POST
        && matches!(req.uri().path(), "/api/v1/corpora" | "/corpora");
    let cap = if upload { MAX_UPLOAD } else { SMALL_BODY };
    if declared.is_some_and(|n| n > cap as u64) {
        return error::ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body too large (at most {} KiB)", cap >> 10),
        )
        .into_response();
    }
    next.run(req).await
}

/// `scheme://host[:port]`, nothing more: what browsers send as Origin.
pub fn parse_origin(s: &str) -> anyhow::Result<String> {
    let t = s.trim().trim_end_matches('/');
    let rest = t
        .strip_prefix("https://")
        .or_else(|| t.strip_prefix("http://"))
        .ok_or_else(|| anyhow::anyhow!("--public-origin {s:?} must start with https:// (or http://)"))?;
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        anyhow::bail!(
            "--public-origin {s:?} must be scheme://host[:port] with no path, like https://lethe.example"
        );
    }
    Ok(t.to_ascii_lowercase())
}

/// Whether a plain-HTTP listener on `bind` is allowed.
pub fn check_bind(opts: &ServeOptions) -> anyhow::Result<()> {
    let tls = match (&opts.tls_cert, &opts.tls_key) {
        (Some(_), Some(_)) => true,
        (None, None) => false,
        _ => anyhow::bail!("--tls-cert and --tls-key go together: give both or neither"),
    };
    if !tls && !opts.bind.ip().is_loopback() && !opts.insecure_http {
        anyhow::bail!(
            "refusing to serve plain HTTP on {} (not loopback): sessions and passwords would cross the network \
             in clear. Give --tls-cert and --tls-key, or --insecure-http if a TLS proxy in front terminates it",
            opts.bind
        );
    }
    Ok(())
}

/// Runs the server until Ctrl-C or SIGTERM: the listener, and a job worker unless told not to.
pub async fn serve(globals: &Globals, opts: &ServeOptions) -> anyhow::Result<()> {
    check_bind(opts)?;
    let origin = opts.public_origin.as_deref().map(parse_origin).transpose()?;
    let tls = match (&opts.tls_cert, &opts.tls_key) {
        (Some(c), Some(k)) => Some(tls::load_config(c, k)?),
        _ => None,
    };
    let policy = crate::app::gate::load_policy(opts.policy.as_deref())?;
    let app = App::open(globals).await?;
    let state = AppState::new(app, policy, tls.is_some(), origin)?;
    let listener = tokio::net::TcpListener::bind(opts.bind)
        .await
        .with_context(|| format!("cannot listen on {}", opts.bind))?;
    let local = listener.local_addr().context("the listener has no address")?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    // Tests and scripts read this line to learn the port when binding port 0.
    println!("lethe console listening on {scheme}://{local}/");

    // The server's own worker, unless told not to (the host's devices are probed only then).
    let worker = if opts.worker {
        let worker_opts = crate::app::worker::WorkerOptions::detect(
            false,
            std::time::Duration::from_secs(1),
            crate::app::worker::LEASE_MS,
            None,
        )?;
        let name = worker_opts.name.clone();
        let worker_app = App::open(globals).await?;
        let task = tokio::spawn(async move {
            let mut report = crate::app::worker::WorkerReport::default();
            if let Err(e) = worker_app.work(&worker_opts, &mut report).await {
                tracing::error!("the server's worker stopped: {e:#}");
                eprintln!("the server's worker stopped: {e:#}");
            }
        });
        Some((name, task))
    } else {
        None
    };
    let sweeper = {
        let state = state.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(600)).await;
                let _ = auth::purge(&state).await;
            }
        })
    };

    let app = router(state);
    let result = match tls {
        Some(config) => tls::serve(listener, app, config, shutdown_signal()).await,
        None => {
            axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
                .with_graceful_shutdown(shutdown_signal())
                .await
        }
    };
    sweeper.abort();
    if let Some((name, task)) = worker {
        task.abort();
        // What the server's own worker held goes back to the queue now, not when its lease lapses.
        let back = App::open(globals).await?.stop_worker(&name).await?;
        if !back.is_empty() {
            eprintln!(
                "lethe serve: handed back {} running job(s) to the queue",
                back.len()
            );
        }
        if !crate::app::train::wait_for_training_stop("lethe serve").await && result.is_ok() {
            crate::app::train::exit_skipping_destructors(0);
        }
    }
    result.context("the server stopped")
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
