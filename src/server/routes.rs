//! Who may call what: the role sets the handlers demand, and the API's route table, from which the
//! OpenAPI document is made. The role sets are the server's half of the access rules; the release rules
//! (who may approve which run) are `release`'s, and the handlers call them as well.

use crate::store::Role;

/// Every role: reading figures that hold no corpus text.
pub const READ: &[Role] = &[Role::Admin, Role::Operator, Role::Reviewer, Role::Auditor];
/// Ingest, train, audit, gate, ask for a release.
pub const OPERATE: &[Role] = &[Role::Operator];
/// Asking for a release: the core allows operators and admins.
pub const REQUEST: &[Role] = &[Role::Operator, Role::Admin];
/// Approving or rejecting: reviewers (the policy names the exact role; the core checks it too).
pub const REVIEW: &[Role] = &[Role::Reviewer];
/// Audit evidence: generations beside their corpus source, secrets masked.
pub const EVIDENCE: &[Role] = &[Role::Reviewer, Role::Auditor];
/// Exporting an approved release.
pub const EXPORT: &[Role] = &[Role::Operator, Role::Reviewer, Role::Admin];
/// Users, roles, keys.
pub const ADMIN: &[Role] = &[Role::Admin];
/// The ledger.
pub const LEDGER: &[Role] = &[Role::Admin, Role::Auditor, Role::Reviewer];

/// The lower-case method and the route template a request matched, to look it up in the tables here.
pub fn matched(req: &axum::extract::Request) -> (String, String) {
    let path = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    (req.method().as_str().to_ascii_lowercase(), path)
}

/// The body length a request declares (`Content-Length`), if it declares one.
pub fn declared_length(req: &axum::extract::Request) -> Option<u64> {
    req.headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Reads and drops the body of a request refused before its handler ran, when it is small. A server
/// that closes a connection with unread bytes in it makes the kernel send a reset, and the client may
/// then lose the refusal itself; a large body (an upload) is not worth reading for a caller refused.
pub async fn drain(req: axum::extract::Request) {
    let small = declared_length(&req).is_some_and(|n| n <= super::SMALL_BODY as u64);
    if small {
        let _ = axum::body::to_bytes(req.into_body(), super::SMALL_BODY).await;
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy)]
pub enum Access {
    /// Anyone, signed in or not.
    Public,
    /// Any signed-in user, even one who still has to change a one-time password.
    Session,
    /// Signed-in users with one of these roles.
    Roles(&'static [Role]),
}

/// One API route, for the OpenAPI document.
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
    pub summary: &'static str,
}

use Access::*;

/// The API. Paths use OpenAPI's `{name}` parameters, which are also axum 0.8's.
pub const API: &[Route] = &[
    Route { method: "get", path: "/api/v1/health", access: Public, summary: "Liveness: the server answers and reaches its database" },
    Route { method: "get", path: "/api/v1/openapi.json", access: Public, summary: "This document" },
    Route { method: "post", path: "/api/v1/session", access: Public, summary: "Sign in with {username, password}; returns a bearer token and the CSRF token, and sets the session cookie" },
    Route { method: "get", path: "/api/v1/session", access: Session, summary: "Who is signed in" },
    Route { method: "delete", path: "/api/v1/session", access: Session, summary: "Sign out" },
    Route { method: "post", path: "/api/v1/session/password", access: Session, summary: "Change one's own password with {current, new}; ends every session and starts a new one" },
    Route { method: "post", path: "/api/v1/session/revoke-all", access: Session, summary: "Sign out everywhere" },
    Route { method: "get", path: "/api/v1/corpora", access: Roles(READ), summary: "Corpora with their sizes (never any text)" },
    Route { method: "post", path: "/api/v1/corpora", access: Roles(OPERATE), summary: "Ingest uploaded files (multipart: name, vocab, holdout, canaries, files), held in memory only" },
    Route { method: "get", path: "/api/v1/corpora/{name}", access: Roles(READ), summary: "One corpus" },
    Route { method: "get", path: "/api/v1/runs", access: Roles(READ), summary: "Training runs" },
    Route { method: "post", path: "/api/v1/runs", access: Roles(OPERATE), summary: "Queue a training run {corpus, objective, preset, epochs, …}" },
    Route { method: "get", path: "/api/v1/runs/{id}", access: Roles(READ), summary: "A run: configuration, checkpoints, per-epoch metrics" },
    Route { method: "post", path: "/api/v1/runs/{id}/gate", access: Roles(OPERATE), summary: "Evaluate the run's latest audit against the policy in force" },
    Route { method: "get", path: "/api/v1/audits", access: Roles(READ), summary: "Audits, optionally ?run=ID" },
    Route { method: "post", path: "/api/v1/audits", access: Roles(OPERATE), summary: "Queue an audit {run, quick, step}" },
    Route { method: "get", path: "/api/v1/audits/{id}", access: Roles(READ), summary: "An audit's figures" },
    Route { method: "get", path: "/api/v1/audits/{id}/evidence", access: Roles(EVIDENCE), summary: "An audit's evidence, secrets masked" },
    Route { method: "get", path: "/api/v1/studies", access: Roles(READ), summary: "Repetition studies, newest first, with the points measured so far" },
    Route { method: "get", path: "/api/v1/studies/{id}", access: Roles(READ), summary: "A study: its specification and, per objective and epoch budget, what the run learned and memorized" },
    Route { method: "get", path: "/api/v1/releases", access: Roles(READ), summary: "Where every run stands on its way to release" },
    Route { method: "post", path: "/api/v1/releases", access: Roles(REQUEST), summary: "Ask for the release of {run} (with {waiver} when the gate failed and the policy allows it)" },
    Route { method: "get", path: "/api/v1/releases/{run}", access: Roles(READ), summary: "A run's release: gate, request, reviews, approvals missing" },
    Route { method: "get", path: "/api/v1/releases/{run}/statement", access: Roles(REVIEW), summary: "The statement an approval with ?comment=TEXT signs, and its WebAuthn challenge" },
    Route { method: "post", path: "/api/v1/releases/{run}/approve", access: Roles(REVIEW), summary: "Approve with {comment, proof: {credential, signature}}: an Ed25519 signature by an enrolled key over the statement" },
    Route { method: "post", path: "/api/v1/releases/{run}/reject", access: Roles(REVIEW), summary: "Reject with {comment}" },
    Route { method: "post", path: "/api/v1/releases/{run}/export", access: Roles(EXPORT), summary: "Release an approved run and write its signed bundle" },
    Route { method: "get", path: "/api/v1/releases/{run}/bundle", access: Roles(READ), summary: "The signed bundle as a tar file" },
    Route {
        method: "get",
        path: "/api/v1/releases/{run}/verify",
        access: Roles(READ),
        summary: "Whether the bundle this server exported still verifies against its signing key",
    },
    Route { method: "get", path: "/api/v1/users", access: Roles(ADMIN), summary: "Accounts" },
    Route { method: "post", path: "/api/v1/users", access: Roles(ADMIN), summary: "Create {username, role}; returns a one-time password" },
    Route { method: "patch", path: "/api/v1/users/{name}", access: Roles(ADMIN), summary: "Change {role, disabled}" },
    Route { method: "post", path: "/api/v1/users/{name}/reset-password", access: Roles(ADMIN), summary: "A new one-time password (for an approver or admin: a grant a second admin confirms)" },
    Route { method: "get", path: "/api/v1/grants", access: Roles(ADMIN), summary: "Grants waiting for a second admin (dual control)" },
    Route { method: "post", path: "/api/v1/grants/{id}/confirm", access: Roles(ADMIN), summary: "Confirm a grant as an admin other than the one who asked; a new account's one-time password comes back" },
    Route { method: "post", path: "/api/v1/grants/{id}/cancel", access: Roles(READ), summary: "Withdraw one's own pending grant, or refuse one as an admin" },
    Route { method: "get", path: "/api/v1/approver-keys", access: Roles(READ), summary: "Approvers' public keys and passkeys, with their state" },
    Route { method: "post", path: "/api/v1/approver-keys", access: Roles(READ), summary: "Enrol one's own Ed25519 key {public_key, proof, label}; pending until an admin confirms" },
    Route { method: "post", path: "/api/v1/approver-keys/{id}/revoke", access: Roles(READ), summary: "Revoke a key (its owner or an admin)" },
    Route { method: "get", path: "/api/v1/jobs", access: Roles(READ), summary: "The job queue" },
    Route { method: "get", path: "/api/v1/jobs/events", access: Roles(READ), summary: "Server-sent events: the queue's jobs, each time one changes" },
    Route { method: "get", path: "/api/v1/jobs/{id}", access: Roles(READ), summary: "One job" },
    Route { method: "get", path: "/api/v1/workers", access: Roles(READ), summary: "Live workers and what each can run (GPUs, memory, kinds)" },
    Route { method: "get", path: "/api/v1/ledger", access: Roles(LEDGER), summary: "Ledger entries, optionally ?since=24h or an RFC 3339 time" },
    Route { method: "get", path: "/api/v1/ledger/verify", access: Roles(LEDGER), summary: "Walk the chain and the signed checkpoints" },
    Route { method: "get", path: "/api/v1/keys", access: Roles(ADMIN), summary: "Master key versions and the signing key's public half" },
    Route { method: "post", path: "/api/v1/keys/rotate", access: Roles(ADMIN), summary: "Rotate the master key (re-wraps data keys)" },
    Route { method: "get", path: "/api/v1/policy", access: Roles(READ), summary: "The policy in force" },
];

/// The OpenAPI 3.1 document of [`API`].
pub fn openapi() -> serde_json::Value {
    let mut paths = serde_json::Map::new();
    for r in API {
        let entry = paths
            .entry(r.path.to_string())
            .or_insert_with(|| serde_json::json!({}));
        let params: Vec<serde_json::Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| serde_json::json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        let (security, roles) = match r.access {
            Access::Public => (serde_json::json!([]), Vec::new()),
            Access::Session => (
                serde_json::json!([{ "cookie": [] }, { "bearer": [] }]),
                vec!["any signed-in user"],
            ),
            Access::Roles(rs) => (
                serde_json::json!([{ "cookie": [] }, { "bearer": [] }]),
                rs.iter().map(|r| r.as_str()).collect(),
            ),
        };
        let mut op = serde_json::json!({
            "summary": r.summary,
            "security": security,
            "x-roles": roles,
            "responses": {
                "200": { "description": "OK" },
                "400": { "description": "Malformed request", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
                "401": { "description": "Not signed in" },
                "403": { "description": "Role, rule, CSRF token or Origin refused" },
                "404": { "description": "No such resource" }
            }
        });
        if !params.is_empty() {
            op["parameters"] = serde_json::Value::Array(params);
        }
        entry[r.method] = op;
    }
    serde_json::json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Lethe API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Everything the console does. Browsers use the session cookie and send the CSRF token as X-CSRF-Token on every state-changing request; other clients send Authorization: Bearer TOKEN from POST /api/v1/session."
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "cookie": { "type": "apiKey", "in": "cookie", "name": "lethe_session" },
                "bearer": { "type": "http", "scheme": "bearer" }
            },
            "schemas": {
                "Error": { "type": "object", "required": ["error", "status"], "properties": { "error": { "type": "string" }, "status": { "type": "integer" } } }
            }
        }
    })
}

/// The console's pages and forms, with the same role sets as the API routes they mirror. Anonymous
/// callers are sent to the sign-in page and one-time passwords to the password page, so only
/// [`Access::Public`] and [`Access::Roles`] appear, and [`Access::Session`] for the password and
/// sign-out forms.
pub const PAGES: &[(&str, &str, Access)] = &[
    ("get", "/", Roles(READ)),
    ("get", "/login", Public),
    ("post", "/login", Public),
    ("post", "/logout", Public),
    ("post", "/logout-everywhere", Session),
    ("get", "/password", Session),
    ("post", "/password", Session),
    ("post", "/corpora", Roles(OPERATE)),
    ("get", "/corpora/{name}", Roles(READ)),
    ("post", "/runs", Roles(OPERATE)),
    ("get", "/runs/{id}", Roles(READ)),
    ("post", "/runs/{id}/gate", Roles(OPERATE)),
    ("post", "/runs/{id}/select", Roles(OPERATE)),
    ("post", "/audits", Roles(OPERATE)),
    ("get", "/audits/{id}", Roles(READ)),
    ("get", "/releases", Roles(READ)),
    ("get", "/releases/{run}", Roles(READ)),
    ("post", "/releases/{run}/request", Roles(REQUEST)),
    ("post", "/releases/{run}/review", Roles(REVIEW)),
    ("post", "/releases/{run}/export", Roles(EXPORT)),
    ("get", "/studies", Roles(READ)),
    ("get", "/studies/{id}", Roles(READ)),
    ("get", "/ledger", Roles(LEDGER)),
    ("get", "/admin", Roles(ADMIN)),
    ("post", "/admin/users", Roles(ADMIN)),
    ("post", "/admin/users/{name}", Roles(ADMIN)),
    ("post", "/admin/users/{name}/reset", Roles(ADMIN)),
    ("post", "/admin/grants/{id}/confirm", Roles(ADMIN)),
    ("post", "/admin/grants/{id}/cancel", Roles(ADMIN)),
    ("get", "/account", Roles(READ)),
    ("post", "/account/passkeys", Roles(READ)),
    ("post", "/admin/keys/rotate", Roles(ADMIN)),
];
