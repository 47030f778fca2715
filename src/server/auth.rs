//! Who is asking, and may they: sessions, the CSRF and Origin checks on every state-changing request,
//! sign-in throttling, and the extractors handlers use to demand a signed-in user.
//!
//! A session token is 256 random bits, given to the browser in an HttpOnly, SameSite=Strict cookie
//! (`__Host-lethe_session`, Secure, when served over TLS; `lethe_session` on plain-HTTP loopback, where
//! browsers refuse the `__Host-` prefix because it demands Secure) or to an API client in the sign-in
//! answer for use as `Authorization: Bearer`. The database keeps only its SHA-256. A session ends after
//! [`IDLE_MS`] without a request, [`ABSOLUTE_MS`] after sign-in, at sign-out, at "sign out everywhere",
//! at a password change and when its account is disabled.
//!
//! A cookie rides along on requests another site makes the browser send, so every state-changing request
//! made with the cookie must carry the session's CSRF token (header `X-CSRF-Token`, form field `_csrf`,
//! or `?_csrf=` for the console's file upload only) and, when the browser names its Origin, come from this origin. A bearer
//! token is never sent by a browser on its own, so bearer requests need no CSRF token.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ring::digest;

use super::error::{ApiError, ApiResult};
use super::AppState;
use crate::store::{now_ms, Role, User};

/// A session ends after this long without a request.
pub const IDLE_MS: i64 = 30 * 60 * 1000;
/// A session ends this long after sign-in, however busy.
pub const ABSOLUTE_MS: i64 = 12 * 60 * 60 * 1000;
/// Failed sign-ins counted over this window.
const THROTTLE_WINDOW_MS: i64 = 15 * 60 * 1000;
/// Failed sign-ins per account within the window before the account is refused for a while: a guess a
/// minute at most, far below what a password of 12 characters would need.
const ACCOUNT_LIMIT: usize = 5;
/// Failed sign-ins per client address within the window (several users may share a proxy address).
const ADDRESS_LIMIT: usize = 20;

/// The signed-in caller of this request.
#[derive(Debug, Clone)]
pub struct Current {
    pub user: User,
    pub csrf: String,
    pub token_sha256: String,
}

impl Current {
    /// Refuses unless the caller holds one of `roles`.
    pub fn require(&self, roles: &[Role]) -> ApiResult<()> {
        if roles.contains(&self.user.role) {
            return Ok(());
        }
        let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        Err(ApiError::forbidden(format!(
            "this needs the {} role; {} is {}",
            names.join(" or "),
            self.user.username,
            self.user.role
        )))
    }
}

/// The client's address, when the listener knows it.
#[derive(Debug, Clone)]
pub struct ClientAddr(pub Option<String>);

/// Extractor: a signed-in user who has set their own password. Anonymous callers get 401; a user still
/// on a one-time password gets 403 until they change it.
pub struct Signed(pub Current);

/// Extractor: any signed-in user, one-time password or not (sign-out, password change, who-am-I).
pub struct AnySession(pub Current);

impl FromRequestParts<AppState> for AnySession {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Option<Current>>()
            .cloned()
            .flatten()
            .map(AnySession)
            .ok_or_else(ApiError::unauthorized)
    }
}

impl FromRequestParts<AppState> for Signed {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let AnySession(c) = AnySession::from_request_parts(parts, state).await?;
        if c.user.must_change_password {
            return Err(ApiError::forbidden(
                "change your one-time password first (POST /api/v1/session/password, or the console's password page)",
            ));
        }
        Ok(Signed(c))
    }
}

pub fn cookie_name(state: &AppState) -> &'static str {
    if state.secure {
        "__Host-lethe_session"
    } else {
        "lethe_session"
    }
}

/// The `Set-Cookie` value that hands a browser its session.
pub fn session_cookie(state: &AppState, token: &str) -> String {
    let secure = if state.secure { "; Secure" } else { "" };
    format!(
        "{}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        cookie_name(state),
        ABSOLUTE_MS / 1000
    )
}

/// The `Set-Cookie` value that removes it.
pub fn clear_cookie(state: &AppState) -> String {
    let secure = if state.secure { "; Secure" } else { "" };
    format!(
        "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}",
        cookie_name(state)
    )
}

/// `res` with `cookie` set (one of [`session_cookie`] or [`clear_cookie`]).
pub fn with_cookie(mut res: Response, cookie: &str) -> Response {
    if let Ok(v) = axum::http::HeaderValue::from_str(cookie) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

fn sha256_hex(s: &str) -> String {
    hex::encode(digest::digest(&digest::SHA256, s.as_bytes()))
}

fn token_from(headers: &HeaderMap, cookie: &str) -> Option<(String, bool)> {
    if let Some(v) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        if let Some(t) = v.strip_prefix("Bearer ") {
            return Some((t.trim().to_string(), false));
        }
    }
    for v in headers.get_all(header::COOKIE) {
        let Ok(v) = v.to_str() else { continue };
        for pair in v.split(';') {
            if let Some((k, val)) = pair.trim().split_once('=') {
                if k == cookie && !val.is_empty() {
                    return Some((val.to_string(), true));
                }
            }
        }
    }
    None
}

/// Equal in time independent of where the strings differ.
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    // Tokens have a fixed length, so the length check leaks nothing; the bytes are all compared.
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn wants_html(path: &str) -> bool {
    !path.starts_with("/api/")
}

pub fn refuse(path: &str, status: StatusCode, message: &str) -> Response {
    if wants_html(path) {
        let body = format!(
            "<!doctype html><title>{status}</title><link rel=\"stylesheet\" href=\"/static/app.css\">\
             <main class=\"narrow\"><h1>{}</h1><p>{}</p><p><a href=\"/\">Back to the console</a></p></main>",
            status.as_u16(),
            super::charts::escape(message)
        );
        (status, axum::response::Html(body)).into_response()
    } else {
        ApiError::new(status, message).into_response()
    }
}

/// The origin this server answers as, from the Host header the browser used.
pub(crate) fn own_origin(state: &AppState, headers: &HeaderMap) -> Option<String> {
    if let Some(o) = &state.public_origin {
        return Some(o.clone());
    }
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let scheme = if state.secure { "https" } else { "http" };
    Some(format!("{scheme}://{host}"))
}

/// Finds the caller's session, enforces Origin and CSRF on state-changing requests, and leaves
/// `Option<Current>` and [`ClientAddr`] in the request for handlers.
pub async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let addr = ClientAddr(
        req.extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string()),
    );
    let now = now_ms();
    let mut current = None;
    let mut by_cookie = false;
    if let Some((token, cookie)) = token_from(req.headers(), cookie_name(&state)) {
        let app = state.app().await;
        match app
            .store
            .sessions()
            .touch(&sha256_hex(&token), now, now - IDLE_MS)
            .await
        {
            Ok(Some(row)) if !row.user.disabled => {
                by_cookie = cookie;
                current = Some(Current {
                    user: row.user,
                    csrf: row.csrf,
                    token_sha256: row.token_sha256,
                });
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!("cannot read sessions: {e}");
                return refuse(&path, StatusCode::INTERNAL_SERVER_ERROR, "cannot read sessions");
            }
        }
    }

    let unsafe_method = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let mut req = req;
    if unsafe_method {
        let headers = req.headers();
        // `Origin: null` (a sandboxed frame, a privacy setting) names no origin; Sec-Fetch-Site, which
        // pages cannot forge, decides then.
        let origin = headers
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .filter(|o| *o != "null");
        if let Some(origin) = origin {
            if Some(origin.to_ascii_lowercase())
                != own_origin(&state, headers).map(|o| o.to_ascii_lowercase())
            {
                return refuse(
                    &path,
                    StatusCode::FORBIDDEN,
                    &format!("request from another origin ({origin}) refused"),
                );
            }
        } else if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
            if !matches!(site, "same-origin" | "none") {
                return refuse(&path, StatusCode::FORBIDDEN, "cross-site request refused");
            }
        }
        if let (Some(c), true) = (&current, by_cookie) {
            let (ok, rebuilt) = csrf_ok(req, &c.csrf).await;
            let Some(rebuilt) = rebuilt else {
                return refuse(&path, StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
            };
            req = rebuilt;
            if !ok {
                return refuse(
                    &path,
                    StatusCode::FORBIDDEN,
                    "CSRF token missing or wrong; reload the page and try again",
                );
            }
        }
    }
    req.extensions_mut().insert(current);
    req.extensions_mut().insert(addr);
    next.run(req).await
}

/// Whether the request carries the session's CSRF token, and the request again (a form body has to be
/// read to find the field, so it is put back); `None` when the body is over the small-body cap.
async fn csrf_ok(req: Request, expected: &str) -> (bool, Option<Request>) {
    if let Some(v) = req.headers().get("x-csrf-token").and_then(|v| v.to_str().ok()) {
        let ok = same(v, expected);
        return (ok, Some(req));
    }
    // A file upload's form cannot be read before the check without buffering the files, so the
    // console's upload form (and only it) carries the token in its action's query string.
    let is_upload = req.uri().path() == UPLOAD_PATH
        && req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("multipart/form-data"));
    if let (true, Some(q)) = (is_upload, req.uri().query()) {
        if let Some(v) = form_field(q, "_csrf") {
            let ok = same(&v, expected);
            return (ok, Some(req));
        }
    }
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return (false, Some(req));
    }
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, super::SMALL_BODY).await else {
        return (false, None);
    };
    let ok = std::str::from_utf8(&bytes)
        .ok()
        .and_then(|b| form_field(b, "_csrf"))
        .is_some_and(|v| same(&v, expected));
    (
        ok,
        Some(Request::from_parts(parts, axum::body::Body::from(bytes))),
    )
}

/// The console's corpus upload: the one route whose CSRF token comes in the query string.
const UPLOAD_PATH: &str = "/corpora";

fn form_field(encoded: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(encoded.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Password checks of one account that may run at once.
pub const ACCOUNT_IN_FLIGHT: usize = 1;
/// Password checks from one address that may run at once.
pub const ADDRESS_IN_FLIGHT: usize = 4;
/// How long a check holds its slot if its process dies before it ends.
const FLIGHT_MS: i64 = 30_000;

/// A reserved sign-in attempt. The throttle lives in the database (`store::throttle`), so every console
/// process on one database counts the same failures and checks: an attempt is reserved before its
/// password is checked, the failures in the window and the checks in flight count together against the
/// limit (parallel guesses cannot all be checked before the first failure is recorded), and at most
/// [`ACCOUNT_IN_FLIGHT`] checks per account and [`ADDRESS_IN_FLIGHT`] per address run at once. Resolve
/// it with [`Attempt::failed`] or [`Attempt::succeeded`]; dropped unresolved (an error before the check
/// ended), it frees its slots.
pub struct Attempt {
    store: crate::store::Store,
    ids: Vec<String>,
    account: String,
    resolved: bool,
}

/// Reserves an attempt for `username` from `addr`, or the seconds to wait when a limit is reached.
pub async fn reserve(
    store: &crate::store::Store,
    username: &str,
    addr: Option<&str>,
    now: i64,
) -> Result<Result<Attempt, u64>, crate::store::StoreError> {
    let keys = keys(username, addr);
    Ok(
        match store
            .throttle()
            .reserve(&keys, now, THROTTLE_WINDOW_MS, FLIGHT_MS)
            .await?
        {
            Ok(ids) => Ok(Attempt {
                store: store.clone(),
                ids,
                account: keys[0].key.clone(),
                resolved: false,
            }),
            Err(wait) => Err(wait),
        },
    )
}

impl Attempt {
    /// The password was wrong: a failure for the account and the address.
    pub async fn failed(mut self, now: i64) -> Result<(), crate::store::StoreError> {
        self.resolved = true;
        self.store
            .throttle()
            .failed(&self.ids, now, THROTTLE_WINDOW_MS)
            .await
    }

    /// The password was right: the slots are freed and the account's failures forgotten.
    pub async fn succeeded(mut self) -> Result<(), crate::store::StoreError> {
        self.resolved = true;
        self.store.throttle().release(&self.ids).await?;
        self.store.throttle().forget(&self.account).await
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if self.resolved {
            return;
        }
        let (store, ids) = (self.store.clone(), std::mem::take(&mut self.ids));
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                // If this fails too, the slot expires by itself after FLIGHT_MS.
                let _ = store.throttle().release(&ids).await;
            });
        }
    }
}

/// The throttle's keys for an attempt: the account's, then the address's.
fn keys(username: &str, addr: Option<&str>) -> Vec<crate::store::throttle::ThrottleKey> {
    use crate::store::throttle::ThrottleKey;
    let mut k = vec![ThrottleKey {
        key: format!("user:{username}"),
        limit: ACCOUNT_LIMIT,
        in_flight: ACCOUNT_IN_FLIGHT,
    }];
    if let Some(a) = addr {
        k.push(ThrottleKey {
            key: format!("addr:{a}"),
            limit: ADDRESS_LIMIT,
            in_flight: ADDRESS_IN_FLIGHT,
        });
    }
    k
}

/// A new session for `username`, after the throttle and the password check: the token (to hand out
/// once) and the CSRF token.
pub async fn sign_in(
    state: &AppState,
    username: &str,
    password: &str,
    addr: Option<&str>,
    via: &str,
) -> ApiResult<(User, String, String)> {
    let now = now_ms();
    // The attempt is reserved before the password is checked, so parallel guesses count at once.
    let app = state.app().await;
    let attempt = match reserve(&app.store, username, addr, now).await? {
        Ok(a) => a,
        Err(wait) => {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("too many failed sign-ins; try again in {wait} s"),
            ))
        }
    };
    let user = match app.authenticate(username, password, via).await {
        Ok(u) => u,
        Err(e) => {
            if e.chain()
                .any(|c| c.downcast_ref::<crate::store::StoreError>().is_some())
            {
                return Err(e.into());
            }
            attempt.failed(now).await?;
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "wrong user name or password, or the account is disabled",
            ));
        }
    };
    attempt.succeeded().await?;
    let token = crate::vault::random_hex(32).map_err(anyhow::Error::from)?;
    let csrf = crate::vault::random_hex(32).map_err(anyhow::Error::from)?;
    app.store
        .sessions()
        .create(&sha256_hex(&token), &user.id, &csrf, addr, now, now + ABSOLUTE_MS)
        .await?;
    Ok((user, token, csrf))
}

/// Removes sessions past their expiry.
pub async fn purge(state: &AppState) -> ApiResult<u64> {
    let now = now_ms();
    Ok(state
        .app()
        .await
        .store
        .sessions()
        .purge_expired(now, now - IDLE_MS)
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_are_decoded() {
        assert_eq!(
            form_field("a=1&_csrf=ab%2Bc+d&x", "_csrf").as_deref(),
            Some("ab+c d")
        );
        assert_eq!(form_field("a=1", "_csrf"), None);
        assert_eq!(form_field("_csrf=%zz%4", "_csrf").as_deref(), Some("%zz%4"));
    }

    #[test]
    fn the_wait_counts_failures_in_the_window_and_checks_in_flight_together() {
        use crate::store::throttle::wait_for;
        let w = THROTTLE_WINDOW_MS;
        assert_eq!(wait_for(&[], 0, ACCOUNT_LIMIT, ACCOUNT_IN_FLIGHT, 1_000, w), None);
        let five = [1_000; ACCOUNT_LIMIT];
        let wait = wait_for(&five, 0, ACCOUNT_LIMIT, ACCOUNT_IN_FLIGHT, 2_000, w).unwrap();
        assert!((890..=900).contains(&wait), "{wait}");
        // Four failures and one check in flight reach the limit of five: wait a second.
        assert_eq!(wait_for(&five[..4], 1, ACCOUNT_LIMIT, 9, 2_000, w), Some(1));
        // One check in flight is the account's cap on its own.
        assert_eq!(
            wait_for(&[], 1, ACCOUNT_LIMIT, ACCOUNT_IN_FLIGHT, 2_000, w),
            Some(1)
        );
        assert_eq!(wait_for(&[], 3, ADDRESS_LIMIT, ADDRESS_IN_FLIGHT, 2_000, w), None);
        assert_eq!(
            wait_for(&[], 4, ADDRESS_LIMIT, ADDRESS_IN_FLIGHT, 2_000, w),
            Some(1)
        );
    }

    #[test]
    fn tokens_come_from_bearer_or_the_named_cookie() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "other=1; lethe_session=abc".parse().unwrap());
        assert_eq!(token_from(&h, "lethe_session"), Some(("abc".into(), true)));
        assert_eq!(token_from(&h, "__Host-lethe_session"), None);
        h.insert(header::AUTHORIZATION, "Bearer tok".parse().unwrap());
        assert_eq!(token_from(&h, "lethe_session"), Some(("tok".into(), false)));
    }
}
