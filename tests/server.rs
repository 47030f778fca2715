//! The server over HTTP: every route against every role and anonymous access (from a table written here,
//! independently of the server's own), sessions and their cookie, CSRF and Origin checks, sign-in
//! throttling, one-time passwords, malformed and oversize requests, security headers, the bind rules,
//! and the release workflow through the API with its bundle downloaded and verified.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::release::{approver_key, gated_run, with_users, write_policy, LAX};
use common::{fails_with, lethe, ok};
use serde_json::{json, Value};

/// A `lethe serve` process on a free loopback port, killed when dropped.
struct Server {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Server {
    fn start(data: &Path, extra: &[&str]) -> Server {
        let log = data.with_extension("server.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_lethe"))
            .arg("--data-dir")
            .arg(data)
            .args(["serve", "--bind", "127.0.0.1:0", "--no-worker"])
            .args(extra)
            .env_remove("LETHE_DATABASE_URL")
            .env_remove("LETHE_MASTER_KEY")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .trim()
            .strip_prefix("lethe console listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .trim_end_matches('/')
            .to_string();
        Server { child, base, log }
    }

    /// What the server wrote on stderr so far (internal errors are logged there, never sent).
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An answer: status, headers (lower-case names, all values) and the body as text.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: HashMap<String, Vec<String>>,
    body: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.first()).map(String::as_str)
    }
}

enum Body<'a> {
    None,
    Json(Value),
    Form(&'a [(&'a str, &'a str)]),
    Raw(&'a str, Vec<u8>),
}

/// Who is asking: nobody, a bearer token, or a browser-like cookie (with an optional CSRF token).
#[derive(Clone, Copy)]
enum As<'a> {
    Anonymous,
    Bearer(&'a str),
    Cookie(&'a str, Option<&'a str>),
}

fn send(base: &str, method: &str, path: &str, who: As, headers: &[(&str, &str)], body: Body) -> Resp {
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let mut req = agent.request(method, &format!("{base}{path}"));
    match who {
        As::Anonymous => {}
        As::Bearer(t) => req = req.set("Authorization", &format!("Bearer {t}")),
        As::Cookie(c, csrf) => {
            req = req.set("Cookie", &format!("lethe_session={c}"));
            if let Some(t) = csrf {
                req = req.set("X-CSRF-Token", t);
            }
        }
    }
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let result = match body {
        Body::None => req.call(),
        Body::Json(v) => req.send_json(v),
        Body::Form(f) => req.send_form(f),
        Body::Raw(ct, bytes) => req.set("Content-Type", ct).send_bytes(&bytes),
    };
    let res = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {path}: {e}"),
    };
    let mut headers: HashMap<String, Vec<String>> = HashMap::new();
    for name in res.headers_names() {
        let all = res.all(&name).into_iter().map(str::to_string).collect();
        headers.insert(name.to_ascii_lowercase(), all);
    }
    let status = res.status();
    // The event stream never ends; its status and headers are the answer.
    let body = if headers
        .get("content-type")
        .is_some_and(|v| v.iter().any(|c| c.starts_with("text/event-stream")))
    {
        String::new()
    } else {
        res.into_string().unwrap_or_default()
    };
    Resp {
        status,
        headers,
        body,
    }
}

/// Signs `user` in over the API and sets their own password when they still have a one-time one;
/// returns (bearer token, CSRF token).
/// Percent-encodes a query value.
fn query_value(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An approval's body signed, as an API client does: the statement the server names for this comment,
/// signed with `user`'s approver key (the comment alone when the server names none or `user` has no key).
fn signed_approval(b: &str, token: &str, data: &Path, user: &str, run: &str, comment: &str) -> Body<'static> {
    let st = send(
        b,
        "GET",
        &format!(
            "/api/v1/releases/{run}/statement?comment={}",
            query_value(comment)
        ),
        As::Bearer(token),
        &[],
        Body::None,
    );
    let key = approver_key(data, user);
    match (st.status, key.exists()) {
        (200, true) => {
            let key = lethe::vault::approver::ApproverKey::load(&key).unwrap();
            let statement = st.json()["statement"].as_str().unwrap().to_string();
            Body::Json(json!({
                "comment": comment,
                "proof": { "credential": key.public_key_hex(), "signature": key.sign(statement.as_bytes()) },
            }))
        }
        _ => Body::Json(json!({ "comment": comment })),
    }
}

fn sign_in(base: &str, user: &str, otp: &str) -> (String, String) {
    let r = send(
        base,
        "POST",
        "/api/v1/session",
        As::Anonymous,
        &[],
        Body::Json(json!({ "username": user, "password": otp })),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let token = v["token"].as_str().unwrap().to_string();
    if v["must_change_password"] == true {
        let r = send(
            base,
            "POST",
            "/api/v1/session/password",
            As::Bearer(&token),
            &[],
            Body::Json(json!({ "current": otp, "new": OWN_PASSWORD })),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        let v = r.json();
        return (
            v["token"].as_str().unwrap().to_string(),
            v["csrf"].as_str().unwrap().to_string(),
        );
    }
    (token, v["csrf"].as_str().unwrap().to_string())
}

/// The password every test user picks once the one-time one is spent.
const OWN_PASSWORD: &str = "correct horse battery staple";

const ROLES: [&str; 4] = ["admin", "operator", "reviewer", "auditor"];

/// The access rules, written out here as the specification: (method, path, roles allowed). `*` is any
/// signed-in user, even one still on a one-time password; `-` is anyone.
const API_RULES: &[(&str, &str, &str)] = &[
    ("GET", "/api/v1/health", "-"),
    ("GET", "/api/v1/openapi.json", "-"),
    ("POST", "/api/v1/session", "-"),
    ("GET", "/api/v1/session", "*"),
    ("DELETE", "/api/v1/session", "*"),
    ("POST", "/api/v1/session/password", "*"),
    ("POST", "/api/v1/session/revoke-all", "*"),
    ("GET", "/api/v1/corpora", "admin operator reviewer auditor"),
    ("POST", "/api/v1/corpora", "operator"),
    ("GET", "/api/v1/corpora/{name}", "admin operator reviewer auditor"),
    ("GET", "/api/v1/runs", "admin operator reviewer auditor"),
    ("POST", "/api/v1/runs", "operator"),
    ("GET", "/api/v1/runs/{id}", "admin operator reviewer auditor"),
    ("POST", "/api/v1/runs/{id}/gate", "operator"),
    ("GET", "/api/v1/audits", "admin operator reviewer auditor"),
    ("POST", "/api/v1/audits", "operator"),
    ("GET", "/api/v1/audits/{id}", "admin operator reviewer auditor"),
    ("GET", "/api/v1/audits/{id}/evidence", "reviewer auditor"),
    ("GET", "/api/v1/studies", "admin operator reviewer auditor"),
    ("GET", "/api/v1/studies/{id}", "admin operator reviewer auditor"),
    ("GET", "/api/v1/releases", "admin operator reviewer auditor"),
    ("POST", "/api/v1/releases", "operator admin"),
    ("GET", "/api/v1/releases/{run}", "admin operator reviewer auditor"),
    ("GET", "/api/v1/releases/{run}/statement", "reviewer"),
    ("POST", "/api/v1/releases/{run}/approve", "reviewer"),
    ("POST", "/api/v1/releases/{run}/reject", "reviewer"),
    ("POST", "/api/v1/releases/{run}/export", "operator reviewer admin"),
    (
        "GET",
        "/api/v1/releases/{run}/bundle",
        "admin operator reviewer auditor",
    ),
    (
        "GET",
        "/api/v1/releases/{run}/verify",
        "admin operator reviewer auditor",
    ),
    ("GET", "/api/v1/users", "admin"),
    ("POST", "/api/v1/users", "admin"),
    ("PATCH", "/api/v1/users/{name}", "admin"),
    ("POST", "/api/v1/users/{name}/reset-password", "admin"),
    ("GET", "/api/v1/grants", "admin"),
    ("POST", "/api/v1/grants/{id}/confirm", "admin"),
    (
        "POST",
        "/api/v1/grants/{id}/cancel",
        "admin operator reviewer auditor",
    ),
    ("GET", "/api/v1/approver-keys", "admin operator reviewer auditor"),
    ("POST", "/api/v1/approver-keys", "admin operator reviewer auditor"),
    (
        "POST",
        "/api/v1/approver-keys/{id}/revoke",
        "admin operator reviewer auditor",
    ),
    ("GET", "/api/v1/jobs", "admin operator reviewer auditor"),
    ("GET", "/api/v1/jobs/events", "admin operator reviewer auditor"),
    ("GET", "/api/v1/jobs/{id}", "admin operator reviewer auditor"),
    ("GET", "/api/v1/workers", "admin operator reviewer auditor"),
    ("GET", "/api/v1/ledger", "admin auditor reviewer"),
    ("GET", "/api/v1/ledger/verify", "admin auditor reviewer"),
    ("GET", "/api/v1/keys", "admin"),
    ("POST", "/api/v1/keys/rotate", "admin"),
    ("GET", "/api/v1/policy", "admin operator reviewer auditor"),
];

/// Console pages and forms: (method, path, roles allowed). Anonymous callers are sent to /login.
const PAGE_RULES: &[(&str, &str, &str)] = &[
    ("GET", "/", "admin operator reviewer auditor"),
    ("POST", "/corpora", "operator"),
    ("GET", "/corpora/kb", "admin operator reviewer auditor"),
    ("GET", "/runs/run-nope", "admin operator reviewer auditor"),
    ("GET", "/audits/aud-nope", "admin operator reviewer auditor"),
    ("GET", "/releases", "admin operator reviewer auditor"),
    ("GET", "/releases/run-nope", "admin operator reviewer auditor"),
    ("GET", "/studies", "admin operator reviewer auditor"),
    ("GET", "/studies/study-nope", "admin operator reviewer auditor"),
    ("GET", "/ledger", "admin auditor reviewer"),
    ("GET", "/admin", "admin"),
    ("POST", "/runs", "operator"),
    ("POST", "/runs/run-nope/gate", "operator"),
    ("POST", "/runs/run-nope/select", "operator"),
    ("POST", "/audits", "operator"),
    ("POST", "/releases/run-nope/request", "operator admin"),
    ("POST", "/releases/run-nope/review", "reviewer"),
    ("POST", "/releases/run-nope/export", "operator reviewer admin"),
    ("POST", "/admin/users", "admin"),
    ("POST", "/admin/users/nobody", "admin"),
    ("POST", "/admin/users/nobody/reset", "admin"),
    ("POST", "/admin/keys/rotate", "admin"),
    ("POST", "/admin/grants/grant-nope/confirm", "admin"),
    ("POST", "/admin/grants/grant-nope/cancel", "admin"),
    ("GET", "/account", "admin operator reviewer auditor"),
    ("POST", "/account/passkeys", "admin operator reviewer auditor"),
];

/// A concrete path for a rule's template, and a body that is well formed for it (so a refusal can only
/// come from the access rule), chosen so that nothing the matrix does ends a session or a user.
fn concrete(path: &str) -> String {
    path.replace("{name}", "nobody")
        .replace("{id}", "nope")
        .replace("{run}", "run-nope")
}

fn body_for(method: &str, path: &str) -> Body<'static> {
    match (method, path) {
        ("GET", _) => Body::None,
        (_, "/api/v1/session") => Body::Json(json!({ "username": "nobody", "password": "wrong-password" })),
        (_, "/api/v1/runs") => Body::Json(json!({ "corpus": "nope" })),
        (_, "/api/v1/audits") => Body::Json(json!({ "run": "nope" })),
        (_, "/api/v1/releases") => Body::Json(json!({ "run": "nope" })),
        (_, p) if p.ends_with("/approve") || p.ends_with("/reject") => Body::Json(json!({ "comment": "ok" })),
        (_, "/api/v1/users") => Body::Json(json!({ "username": "newbie", "role": "auditor" })),
        ("PATCH", _) => Body::Json(json!({ "role": "auditor" })),
        (_, "/api/v1/session/password") => Body::Json(json!({ "current": "x", "new": "y" })),
        _ => Body::Json(json!({})),
    }
}

#[test]
fn every_route_answers_each_role_and_anonymous_access_as_the_rules_say() {
    let (_tmp, data, pw) = with_users(&[("olga", "operator"), ("rita", "reviewer"), ("ada", "auditor")]);
    let input = data.parent().unwrap().join("in");
    common::synth_and_ingest(&data, &input, 20, 3, &["--vocab", "512"]);
    let srv = Server::start(&data, &[]);
    let b = srv.base.as_str();
    let mut tokens: HashMap<&str, String> = HashMap::new();
    for (role, user) in ROLES.iter().zip(["admin", "olga", "rita", "ada"]) {
        tokens.insert(role, sign_in(b, user, &pw[user]).0);
    }

    // The table here covers exactly the routes the server documents.
    let doc = send(b, "GET", "/api/v1/openapi.json", As::Anonymous, &[], Body::None).json();
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(p, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(|m| (m.to_uppercase(), p.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    let ruled: BTreeSet<(String, String)> = API_RULES
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(documented, ruled);

    let skip_for_roles = ["/api/v1/session/revoke-all"];
    for &(method, template, allowed) in API_RULES {
        let path = concrete(template);
        if template == "/api/v1/session" && method == "DELETE" {
            continue; // signing out is tested on its own below
        }
        let anon = send(b, method, &path, As::Anonymous, &[], body_for(method, template));
        if allowed == "-" {
            // Public: never refused for want of a session (a wrong password is a 401 of its own).
            assert_ne!(anon.status, 403, "{method} {path} is public: {}", anon.body);
            assert!(
                !anon.body.contains("sign in first"),
                "{method} {path}: {}",
                anon.body
            );
        } else {
            assert_eq!(anon.status, 401, "{method} {path} anonymous: {}", anon.body);
            assert_eq!(anon.json()["error"], "sign in first");
        }
        if skip_for_roles.contains(&template) {
            continue;
        }
        for role in ROLES {
            let r = send(
                b,
                method,
                &path,
                As::Bearer(&tokens[role]),
                &[],
                body_for(method, template),
            );
            let may = allowed == "-" || allowed == "*" || allowed.split(' ').any(|a| a == role);
            if allowed == "-" {
                assert_ne!(r.status, 403, "{role} {method} {path}: {}", r.body);
                assert!(
                    !r.body.contains("sign in first"),
                    "{role} {method} {path}: {}",
                    r.body
                );
            } else if may {
                assert!(
                    r.status != 401 && r.status != 403 && r.status != 500,
                    "{role} may {method} {path}, got {}: {}",
                    r.status,
                    r.body
                );
            } else {
                assert_eq!(r.status, 403, "{role} may not {method} {path}: {}", r.body);
                assert!(
                    r.json()["error"]
                        .as_str()
                        .unwrap()
                        .contains(&format!("is {role}")),
                    "{}",
                    r.body
                );
            }
        }
    }

    for &(method, path, allowed) in PAGE_RULES {
        let form: &[(&str, &str)] = &[
            ("corpus", "nope"),
            ("run", "run-nope"),
            ("decision", "approve"),
            ("comment", "c"),
            ("username", "pagey"),
            ("role", "auditor"),
        ];
        let body = || {
            if method == "GET" {
                Body::None
            } else {
                Body::Form(form)
            }
        };
        let anon = send(b, method, path, As::Anonymous, &[], body());
        assert_eq!(anon.status, 303, "{method} {path} anonymous");
        assert_eq!(anon.header("location"), Some("/login"));
        for role in ROLES {
            let r = send(b, method, path, As::Bearer(&tokens[role]), &[], body());
            if allowed.split(' ').any(|a| a == role) {
                assert!(
                    ![401, 403, 500].contains(&r.status) && r.header("location") != Some("/login"),
                    "{role} may {method} {path}, got {}",
                    r.status
                );
            } else {
                assert_eq!(r.status, 403, "{role} may not {method} {path}");
                assert!(r.body.contains(&format!("is {role}")), "{}", r.body);
            }
        }
    }

    // Nothing a refused caller sent changed anything: the only user the matrix created is the admin's.
    let users = send(
        b,
        "GET",
        "/api/v1/users",
        As::Bearer(&tokens["admin"]),
        &[],
        Body::None,
    )
    .json();
    let names: BTreeSet<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["ada", "admin", "newbie", "olga", "pagey", "rita"]
            .into_iter()
            .collect()
    );
}

#[test]
fn sessions_use_a_strict_http_only_cookie_and_end_at_sign_out_everywhere_or_when_idle() {
    let (_tmp, data, pw) = with_users(&[("rita", "reviewer")]);
    let srv = Server::start(&data, &[]);
    let b = srv.base.as_str();
    let (t1, _) = sign_in(b, "rita", &pw["rita"]);
    let r = send(
        b,
        "POST",
        "/api/v1/session",
        As::Anonymous,
        &[],
        Body::Json(json!({ "username": "rita", "password": OWN_PASSWORD })),
    );
    assert_eq!(r.status, 200);
    let cookie = r.header("set-cookie").unwrap().to_string();
    let t2 = r.json()["token"].as_str().unwrap().to_string();
    assert!(cookie.starts_with(&format!("lethe_session={t2}; ")), "{cookie}");
    for attr in ["Path=/", "HttpOnly", "SameSite=Strict", "Max-Age=43200"] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    assert!(
        !cookie.contains("Secure"),
        "plain-HTTP loopback cookies cannot be Secure: {cookie}"
    );
    assert_eq!(t2.len(), 64, "256 random bits in hex");

    // The cookie works like the bearer token; signing out ends only that session.
    let me = send(
        b,
        "GET",
        "/api/v1/session",
        As::Cookie(&t2, None),
        &[],
        Body::None,
    );
    assert_eq!(me.json()["user"], "rita");
    let out = send(b, "DELETE", "/api/v1/session", As::Bearer(&t2), &[], Body::None);
    assert_eq!(out.status, 200);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(
        send(b, "GET", "/api/v1/session", As::Bearer(&t2), &[], Body::None).status,
        401
    );
    assert_eq!(
        send(b, "GET", "/api/v1/session", As::Bearer(&t1), &[], Body::None).status,
        200
    );

    // Sign out everywhere ends every session of the account.
    let (t3, _) = sign_in(b, "rita", OWN_PASSWORD);
    let r = send(
        b,
        "POST",
        "/api/v1/session/revoke-all",
        As::Bearer(&t3),
        &[],
        Body::None,
    );
    assert_eq!(r.json()["sessions_ended"], 2);
    for t in [&t1, &t3] {
        assert_eq!(
            send(b, "GET", "/api/v1/session", As::Bearer(t), &[], Body::None).status,
            401
        );
    }

    // The database holds only hashes of tokens; a session idle past its limit is refused.
    let (t4, _) = sign_in(b, "rita", OWN_PASSWORD);
    let db = data.join("lethe.db");
    let rows = sqlite(&db, "SELECT token_sha256 FROM sessions");
    assert_eq!(rows.lines().count(), 1);
    assert!(!rows.contains(&t4));
    sqlite(
        &db,
        "UPDATE sessions SET last_seen_at = last_seen_at - 31 * 60 * 1000",
    );
    assert_eq!(
        send(b, "GET", "/api/v1/session", As::Bearer(&t4), &[], Body::None).status,
        401
    );
}

/// Sends `request` as it is over a fresh connection and returns the first line of the answer.
fn raw_request(base: &str, request: &str) -> String {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

/// Runs SQL on the appliance's SQLite database through the library (no sqlite3 binary needed).
fn sqlite(db: &Path, sql: &str) -> String {
    let url = lethe::store::sqlite_url(db);
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = lethe::store::Store::connect(&url).await.unwrap();
        let mut out = String::new();
        if sql.starts_with("SELECT") {
            use sqlx::Row;
            for row in sqlx::query(sql).fetch_all(store.pool()).await.unwrap() {
                let v: String = row.try_get(0).unwrap();
                out.push_str(&v);
                out.push('\n');
            }
        } else {
            sqlx::query(sql).execute(store.pool()).await.unwrap();
        }
        out
    })
}

#[test]
fn cookie_sessions_need_the_csrf_token_and_the_same_origin_and_refusals_change_nothing() {
    let (_tmp, data, pw) = with_users(&[]);
    let srv = Server::start(&data, &[]);
    let b = srv.base.as_str();
    let (token, csrf) = sign_in(b, "admin", &pw["admin"]);
    let new_user = |who: As, headers: &[(&str, &str)], name: &str| {
        send(
            b,
            "POST",
            "/api/v1/users",
            who,
            headers,
            Body::Json(json!({ "username": name, "role": "auditor" })),
        )
    };
    let r = new_user(As::Cookie(&token, None), &[], "m1");
    assert_eq!(
        (r.status, r.json()["error"].as_str().unwrap()),
        (403, "CSRF token missing or wrong; reload the page and try again")
    );
    assert_eq!(new_user(As::Cookie(&token, Some("0000")), &[], "m2").status, 403);
    let own = b.to_string();
    let r = new_user(
        As::Cookie(&token, Some(&csrf)),
        &[("Origin", "http://evil.example")],
        "m3",
    );
    assert_eq!(r.status, 403);
    assert!(r.body.contains("another origin"), "{}", r.body);
    let r = new_user(
        As::Cookie(&token, Some(&csrf)),
        &[("Sec-Fetch-Site", "cross-site")],
        "m4",
    );
    assert_eq!(r.status, 403);
    let r = new_user(
        As::Cookie(&token, Some(&csrf)),
        &[("Origin", "null"), ("Sec-Fetch-Site", "cross-site")],
        "m6",
    );
    assert_eq!(r.status, 403);
    // A console form carries the token as a field.
    let r = send(
        b,
        "POST",
        "/admin/users",
        As::Cookie(&token, None),
        &[("Origin", &own)],
        Body::Form(&[("_csrf", "wrong"), ("username", "m5"), ("role", "admin")]),
    );
    assert_eq!(r.status, 403);
    // The security review's low finding 13: the token was accepted in the query string on every
    // route (where it leaks into logs and the Referer). Only the file upload, whose body is not read
    // before the check, takes it there.
    let r = send(
        b,
        "POST",
        &format!("/admin/users?_csrf={csrf}"),
        As::Cookie(&token, None),
        &[("Origin", &own)],
        Body::Form(&[("username", "m7"), ("role", "admin")]),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    let users = send(b, "GET", "/api/v1/users", As::Bearer(&token), &[], Body::None).json();
    assert_eq!(
        users.as_array().unwrap().len(),
        1,
        "no refused request created a user: {users}"
    );

    // With the token, from this origin, as a header or a form field, it works; a bearer token needs none.
    assert_eq!(
        new_user(As::Cookie(&token, Some(&csrf)), &[("Origin", &own)], "ok1").status,
        201
    );
    let r = send(
        b,
        "POST",
        "/admin/users",
        As::Cookie(&token, None),
        &[("Origin", &own)],
        Body::Form(&[("_csrf", &csrf), ("username", "ok2"), ("role", "auditor")]),
    );
    assert_eq!(r.status, 200);
    assert!(r.body.contains("One-time password"), "{}", r.body);
    assert_eq!(new_user(As::Bearer(&token), &[], "ok3").status, 201);
}

#[test]
fn sign_in_is_throttled_per_account_and_a_one_time_password_must_be_changed_first() {
    let (_tmp, data, pw) = with_users(&[("rita", "reviewer")]);
    let srv = Server::start(&data, &[]);
    let b = srv.base.as_str();
    let try_pw = |p: &str| {
        send(
            b,
            "POST",
            "/api/v1/session",
            As::Anonymous,
            &[],
            Body::Json(json!({ "username": "rita", "password": p })),
        )
    };
    // A one-time password opens only the door to changing it.
    let r = try_pw(&pw["rita"]);
    assert_eq!(r.json()["must_change_password"], true);
    let t = r.json()["token"].as_str().unwrap().to_string();
    let r = send(b, "GET", "/api/v1/runs", As::Bearer(&t), &[], Body::None);
    assert_eq!(r.status, 403);
    assert!(
        r.body.contains("change your one-time password first"),
        "{}",
        r.body
    );
    let weak = send(
        b,
        "POST",
        "/api/v1/session/password",
        As::Bearer(&t),
        &[],
        Body::Json(json!({ "current": pw["rita"], "new": "short" })),
    );
    assert_eq!(weak.status, 400);
    assert!(weak.body.contains("at least 12"), "{}", weak.body);
    let wrong = send(
        b,
        "POST",
        "/api/v1/session/password",
        As::Bearer(&t),
        &[],
        Body::Json(json!({ "current": "nope", "new": "long enough password" })),
    );
    assert!(wrong.body.contains("current password is wrong"), "{}", wrong.body);

    for _ in 0..5 {
        assert_eq!(try_pw("guess").status, 401);
    }
    let r = try_pw(&pw["rita"]);
    assert_eq!(
        r.status, 429,
        "the right password is refused while throttled: {}",
        r.body
    );
    assert!(r.body.contains("too many failed sign-ins"), "{}", r.body);
    // Each failure is in the ledger.
    assert_eq!(failed_sign_ins(&data, "rita"), 5);

    // The security review's medium finding 3: 40 parallel wrong passwords were all checked against
    // the limit of 5. Attempts are reserved before the check now: at most 5 are ever checked.
    let guesses: Vec<_> = (0..40)
        .map(|_| {
            let base = b.to_string();
            std::thread::spawn(move || {
                send(
                    &base,
                    "POST",
                    "/api/v1/session",
                    As::Anonymous,
                    &[],
                    Body::Json(json!({ "username": "rose", "password": "guess" })),
                )
                .status
            })
        })
        .collect();
    let statuses: Vec<u16> = guesses.into_iter().map(|h| h.join().unwrap()).collect();
    let checked = statuses.iter().filter(|&&s| s == 401).count();
    assert!(
        (1..=5).contains(&checked) && statuses.iter().all(|&s| s == 401 || s == 429),
        "{statuses:?}"
    );
    assert_eq!(failed_sign_ins(&data, "rose"), checked);
}

/// Failed sign-ins of `user` in the ledger.
fn failed_sign_ins(data: &Path, user: &str) -> usize {
    let out = ok(lethe(data, &["--json", "ledger", "show"]));
    let entries: Value = serde_json::from_slice(&out.stdout).unwrap();
    entries
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "auth.sign_in_failed" && e["subject"] == user)
        .count()
}

#[test]
fn malformed_oversize_and_unknown_requests_get_clear_answers_and_every_answer_has_security_headers() {
    let (_tmp, data, pw) = with_users(&[]);
    let srv = Server::start(&data, &[]);
    let b = srv.base.as_str();
    let (token, _) = sign_in(b, "admin", &pw["admin"]);
    let post = |body: Body| send(b, "POST", "/api/v1/users", As::Bearer(&token), &[], body);
    let r = post(Body::Raw("application/json", b"{not json".to_vec()));
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .starts_with("malformed request body"),
        "{}",
        r.body
    );
    let r = post(Body::Json(json!({ "username": "x", "role": "emperor" })));
    assert_eq!(r.status, 422);
    assert!(r.body.contains("unknown variant `emperor`"), "{}", r.body);
    let r = post(Body::Json(
        json!({ "username": "x", "role": "admin", "extra": 1 }),
    ));
    assert_eq!(r.status, 422);
    let r = post(Body::Raw("text/plain", b"hello".to_vec()));
    assert_eq!(r.status, 415);
    // An oversize body is refused from its declared length, before it is sent (a client streaming it
    // would see the connection close), so this one only announces it.
    let head = raw_request(
        b,
        &format!(
            "POST /api/v1/users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            300 << 10
        ),
    );
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    let r = post(Body::Json(json!({ "username": "bad name!", "role": "admin" })));
    assert_eq!(r.status, 400);
    assert!(r.body.contains("must be 1 to 64 letters"), "{}", r.body);
    let users = send(b, "GET", "/api/v1/users", As::Bearer(&token), &[], Body::None).json();
    assert_eq!(users.as_array().unwrap().len(), 1);

    let r = send(
        b,
        "GET",
        "/api/v1/runs/run-nope",
        As::Bearer(&token),
        &[],
        Body::None,
    );
    assert_eq!(r.status, 404);
    assert!(r.body.contains("no training run"), "{}", r.body);
    let r = send(b, "GET", "/api/v1/nothing-here", As::Anonymous, &[], Body::None);
    assert_eq!(r.status, 404);

    for path in [
        "/api/v1/health",
        "/login",
        "/static/app.js",
        "/api/v1/nothing-here",
    ] {
        let r = send(b, "GET", path, As::Anonymous, &[], Body::None);
        let csp = r.header("content-security-policy").unwrap_or_default();
        assert!(
            csp.contains("default-src 'self'")
                && csp.contains("script-src 'self'")
                && !csp.contains("unsafe-inline"),
            "{path}: {csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{path}");
        assert_eq!(r.header("referrer-policy"), Some("same-origin"), "{path}");
    }
    // No page carries inline script.
    let login = send(b, "GET", "/login", As::Anonymous, &[], Body::None).body;
    assert!(!login.contains("<script>") && login.contains("<script src=\"/static/app.js\""));
}

#[test]
fn plain_http_is_refused_off_loopback_and_tls_needs_both_files() {
    let (_tmp, data, _) = with_users(&[]);
    let out = lethe(&data, &["serve", "--bind", "0.0.0.0:0"]);
    fails_with(&out, "refusing to serve plain HTTP on 0.0.0.0:0");
    let out = lethe(&data, &["serve", "--tls-cert", "/nonexistent.pem"]);
    fails_with(&out, "--tls-cert and --tls-key go together");
    let out = lethe(
        &data,
        &[
            "serve",
            "--tls-cert",
            "/nonexistent.pem",
            "--tls-key",
            "/nonexistent.key",
        ],
    );
    fails_with(&out, "/nonexistent.pem");
}

#[test]
fn the_release_flow_over_the_api_keeps_the_two_person_rule_and_the_bundle_downloads_and_verifies() {
    let (tmp, data, pw) = with_users(&[
        ("olga", "operator"),
        ("rita", "reviewer"),
        ("remy", "reviewer"),
        ("rose", "reviewer"),
    ]);
    let policy = write_policy(tmp.path(), "lax.toml", LAX);
    // Rita (a reviewer) trained it, so she may never review it.
    let run = gated_run(tmp.path(), &data, ("rita", &pw["rita"]), &policy);
    let srv = Server::start(&data, &["--policy", policy.to_str().unwrap()]);
    let b = srv.base.as_str();
    let tok: HashMap<&str, String> = ["olga", "rita", "remy", "admin"]
        .into_iter()
        .map(|u| (u, sign_in(b, u, &pw[u]).0))
        .collect();
    let call = |user: &str, method: &str, path: &str, body: Body| {
        send(b, method, path, As::Bearer(&tok[user]), &[], body)
    };

    let g = call("olga", "POST", &format!("/api/v1/runs/{run}/gate"), Body::None);
    assert_eq!(g.status, 200, "{}", g.body);
    assert_eq!(g.json()["passed"], true, "{}", g.body);
    let r = call(
        "olga",
        "POST",
        "/api/v1/releases",
        Body::Json(json!({ "run": run })),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["stage"], "requested");
    let approve = |user: &str| {
        call(
            user,
            "POST",
            &format!("/api/v1/releases/{run}/approve"),
            signed_approval(
                b,
                &tok[user],
                &data,
                user,
                &run,
                &format!("{user} checked the evidence"),
            ),
        )
    };
    // An approval without the approver's signature is refused.
    let r = call(
        "remy",
        "POST",
        &format!("/api/v1/releases/{run}/approve"),
        Body::Json(json!({ "comment": "unsigned" })),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        r.body.contains("signed with the approver's own key"),
        "{}",
        r.body
    );
    let r = approve("rita");
    assert_eq!(r.status, 403);
    assert!(r.body.contains("started the training"), "{}", r.body);
    let r = approve("remy");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["approvals_missing"], 1);
    let r = approve("remy");
    assert_eq!(r.status, 400);
    assert!(r.body.contains("already reviewed"), "{}", r.body);
    // The admin has no bypass; an empty comment is refused.
    assert_eq!(approve("admin").status, 403);
    let r = call(
        "olga",
        "POST",
        &format!("/api/v1/releases/{run}/export"),
        Body::None,
    );
    assert_eq!(r.status, 400, "not approved yet: {}", r.body);
    let r = call(
        "olga",
        "GET",
        &format!("/api/v1/releases/{run}/bundle"),
        Body::None,
    );
    assert_eq!(r.status, 409, "{}", r.body);

    // The security review's low finding 7: `%2F` in `/releases/{run}` made export create directories
    // outside the data directory before refusing, and verify ran on arbitrary directories. Only
    // well-formed ids of runs that exist get that far.
    let escape = data.parent().unwrap().join("escape");
    for bad in [
        "..%2F..%2Fescape",
        "%2Ftmp%2Flethe-escape",
        "run-0%2F..%2F..%2F..%2Fescape",
        "run-ffffffffffff",
    ] {
        for (method, what) in [("POST", "export"), ("GET", "verify"), ("GET", "bundle")] {
            let r = call(
                "olga",
                method,
                &format!("/api/v1/releases/{bad}/{what}"),
                Body::None,
            );
            assert_eq!(r.status, 404, "{method} {bad}/{what}: {}", r.body);
        }
    }
    assert!(!escape.exists() && !Path::new("/tmp/lethe-escape").exists());

    // A second reviewer makes it two; then it can be released and downloaded.
    // (Rose was made a reviewer before the request: one made after it may not approve it.)
    let (rose_t, _) = sign_in(b, "rose", &pw["rose"]);
    let r = send(
        b,
        "POST",
        &format!("/api/v1/releases/{run}/approve"),
        As::Bearer(&rose_t),
        &[],
        signed_approval(b, &rose_t, &data, "rose", &run, "fine"),
    );
    assert_eq!(r.json()["stage"], "approved", "{}", r.body);
    let r = call(
        "remy",
        "POST",
        &format!("/api/v1/releases/{run}/export"),
        Body::None,
    );
    assert_eq!(r.status, 200, "{} {}", r.body, srv.log());
    let tar_bytes = {
        let agent = ureq::AgentBuilder::new().build();
        let res = agent
            .get(&format!("{b}/api/v1/releases/{run}/bundle"))
            .set("Authorization", &format!("Bearer {}", tok["olga"]))
            .call()
            .unwrap();
        assert_eq!(res.header("content-type"), Some("application/x-tar"));
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut res.into_reader(), &mut v).unwrap();
        v
    };
    let verify_on_server = || {
        call(
            "olga",
            "GET",
            &format!("/api/v1/releases/{run}/verify"),
            Body::None,
        )
        .json()
    };
    let v = verify_on_server();
    assert_eq!(v["ok"], true, "{v}");
    let out_dir = tmp.path().join("downloaded");
    tar::Archive::new(&tar_bytes[..]).unpack(&out_dir).unwrap();
    let bundle: PathBuf = out_dir.join(format!("lethe-release-{run}"));
    let pk = send(
        b,
        "GET",
        "/api/v1/keys",
        As::Bearer(&tok["admin"]),
        &[],
        Body::None,
    )
    .json()["signing_public_key"]
        .as_str()
        .unwrap()
        .to_string();
    let nowhere = tmp.path().join("no-data-dir");
    ok(lethe(
        &nowhere,
        &["release", "verify", bundle.to_str().unwrap(), "--public-key", &pk],
    ));

    // The security review's low finding 12: every release page view re-hashed the bundle. The result
    // is kept by the bundle's fingerprint (manifest digest, each file's size and time), so a changed
    // file on the server is still caught at the next view.
    let again = verify_on_server();
    assert_eq!(again["ok"], true, "{again}");
    let card = data.join("bundles").join(&run).join("MODEL_CARD.md");
    let mut text = std::fs::read(&card).unwrap();
    text.extend_from_slice(b"\nedited on the server\n");
    std::fs::write(&card, &text).unwrap();
    let v = verify_on_server();
    assert_eq!(v["ok"], false, "{v}");
    assert!(v["message"].as_str().unwrap().contains("MODEL_CARD.md"), "{v}");

    // Every step is in the ledger, which still verifies.
    let v = call("admin", "GET", "/api/v1/ledger/verify", Body::None).json();
    assert_eq!(v["intact"], true, "{v}");
    // The console's check includes the heads anchored in the data directory, as the CLI's does.
    assert_eq!(
        v["report"]["anchored"][0]["anchors"].as_u64().map(|n| n > 0),
        Some(true),
        "{v}"
    );
    let entries = call("admin", "GET", "/api/v1/ledger?since=1h", Body::None).json();
    let actions: Vec<(&str, &str)> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["actor"].as_str().unwrap(), e["action"].as_str().unwrap()))
        .collect();
    for want in [
        ("olga", "gate.evaluate"),
        ("olga", "release.request"),
        ("remy", "release.approve"),
        ("rose", "release.approve"),
        ("remy", "release.export"),
    ] {
        assert!(actions.contains(&want), "{want:?} missing from {actions:?}");
    }
}

/// The part of `page` from the element marked `data-testid="{id}"` to the end of the table it opens.
/// The security review's high finding 1, the attacks it ran: an admin demoted itself to reviewer and
/// approved; reviewer accounts an admin made after the request approved it; an admin reset a reviewer's
/// password and approved as them. Each now needs a second admin (dual control), and even then the rules
/// on the account's history refuse the approval.
#[test]
fn a_former_admin_and_a_reviewer_made_for_the_request_may_not_approve() {
    let (tmp, data, pw) = with_users(&[
        ("olga", "operator"),
        ("ada", "admin"),
        ("remy", "reviewer"),
        ("rex", "reviewer"),
    ]);
    let policy = write_policy(tmp.path(), "lax.toml", LAX);
    let run = gated_run(tmp.path(), &data, ("olga", &pw["olga"]), &policy);
    let srv = Server::start(&data, &["--policy", policy.to_str().unwrap()]);
    let b = srv.base.as_str();
    let tok: HashMap<&str, String> = ["olga", "ada", "admin", "remy"]
        .into_iter()
        .map(|u| (u, sign_in(b, u, &pw[u]).0))
        .collect();
    let call =
        |t: &str, method: &str, path: &str, body: Body| send(b, method, path, As::Bearer(t), &[], body);
    let confirm = |t: &str, grant: &Value| {
        call(
            t,
            "POST",
            &format!("/api/v1/grants/{}/confirm", grant["id"].as_str().unwrap()),
            Body::None,
        )
    };
    // An admin demotes itself to reviewer before the request: that makes it an approver, so it waits
    // for the other admin, who confirms it.
    let r = call(
        &tok["ada"],
        "PATCH",
        "/api/v1/users/ada",
        Body::Json(json!({ "role": "reviewer" })),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["status"], "pending", "{}", r.body);
    assert_eq!(r.json()["role"], "admin", "not yet: {}", r.body);
    let r = confirm(&tok["ada"], &r.json()["grant"]);
    assert_eq!(r.status, 403, "ada may not confirm her own change: {}", r.body);
    let pending = call(&tok["admin"], "GET", "/api/v1/grants", Body::None).json();
    let r = confirm(&tok["admin"], &pending[0]);
    assert_eq!(r.status, 200, "{}", r.body);
    let r = call(
        &tok["olga"],
        "POST",
        "/api/v1/releases",
        Body::Json(json!({ "run": run })),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let approve = |t: &str, user: &str| {
        call(
            t,
            "POST",
            &format!("/api/v1/releases/{run}/approve"),
            signed_approval(b, t, &data, user, &run, "looks fine to me"),
        )
    };
    // The admin, now the only one, makes a fresh reviewer after the request: no account, no password,
    // a grant it may not confirm itself.
    let r = call(
        &tok["admin"],
        "POST",
        "/api/v1/users",
        Body::Json(json!({ "username": "ghost", "role": "reviewer" })),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    assert!(r.json()["one_time_password"].is_null(), "{}", r.body);
    let ghost_grant = r.json()["grant"].clone();
    let r = confirm(&tok["admin"], &ghost_grant);
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("another admin must confirm"), "{}", r.body);
    let r = send(
        b,
        "POST",
        "/api/v1/session",
        As::Anonymous,
        &[],
        Body::Json(json!({ "username": "ghost", "password": "x" })),
    );
    assert_eq!(r.status, 401, "no ghost account exists: {}", r.body);
    // The host's operator confirms it (one admin is left), and the ghost still may not approve a
    // request older than its role.
    let out = common::ok(common::lethe(
        &data,
        &[
            "--json",
            "users",
            "confirm",
            ghost_grant["id"].as_str().unwrap(),
            "--host",
        ],
    ));
    let otp: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (ghost, _) = sign_in(b, "ghost", otp["one_time_password"].as_str().unwrap());
    let r = approve(&ghost, "ghost");
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("after release"), "{}", r.body);
    // The demoted admin approves: refused within the cooling-off period.
    let r = approve(&tok["ada"], "ada");
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("held admin rights"), "{}", r.body);
    // The admin resets a reviewer's password: it waits for a second admin and hands over nothing.
    let r = call(
        &tok["admin"],
        "POST",
        "/api/v1/users/rex/reset-password",
        Body::None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["status"], "pending", "{}", r.body);
    assert!(r.json()["one_time_password"].is_null(), "{}", r.body);
    // Confirmed (by the host), the reset revokes rex's key and counts as a new grant of the role.
    let out = common::ok(common::lethe(
        &data,
        &[
            "--json",
            "users",
            "confirm",
            r.json()["grant"]["id"].as_str().unwrap(),
            "--host",
        ],
    ));
    let otp: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (rex, _) = sign_in(b, "rex", otp["one_time_password"].as_str().unwrap());
    let keys = call(&tok["admin"], "GET", "/api/v1/approver-keys", Body::None).json();
    let states: Vec<&str> = keys
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["state"].as_str().unwrap())
        .collect();
    assert_eq!(states.iter().filter(|s| **s == "revoked").count(), 1, "{keys}");
    let r = approve(&rex, "rex");
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("password reset"), "{}", r.body);
    // A reviewer who was one before the request, and never an admin, approves with its key.
    let r = approve(&tok["remy"], "remy");
    assert_eq!(r.status, 200, "{}", r.body);
    let st = call(
        &tok["olga"],
        "GET",
        &format!("/api/v1/releases/{run}"),
        Body::None,
    )
    .json();
    let approvers: Vec<&str> = st["reviews"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["username"].as_str().unwrap())
        .collect();
    assert_eq!(approvers, ["remy"], "{st}");
}

fn table<'a>(page: &'a str, id: &str) -> &'a str {
    let from = page
        .find(&format!("data-testid=\"{id}\""))
        .unwrap_or_else(|| panic!("no {id} on the page: {page}"));
    let len = page[from..].find("</table>").expect("the table ends");
    &page[from..from + len]
}

/// A share as the console writes it: 0.3125 → "31.2%".
fn pct(v: &Value) -> String {
    format!("{:.1}%", v.as_f64().unwrap() * 100.0)
}

#[test]
fn run_and_audit_pages_put_what_each_checkpoint_learned_beside_what_it_memorized() {
    let (tmp, data, pw) = with_users(&[("olga", "operator"), ("rita", "reviewer")]);
    let policy = write_policy(tmp.path(), "lax.toml", LAX);
    let run = gated_run(tmp.path(), &data, ("olga", &pw["olga"]), &policy);
    // An AR run on the same corpus, audited too: the frontier shows both objectives.
    let ar = common::micro_run(&data, &["--objective", "ar"]);
    ok(lethe(
        &data,
        &["audit", "--run", &ar, "--policy", policy.to_str().unwrap()],
    ));
    let srv = Server::start(&data, &["--policy", policy.to_str().unwrap()]);
    let b = srv.base.as_str();
    let olga = sign_in(b, "olga", &pw["olga"]).0;
    let rita = sign_in(b, "rita", &pw["rita"]).0;
    let get = |who: &str, path: &str| {
        let r = send(b, "GET", path, As::Bearer(who), &[], Body::None);
        assert_eq!(r.status, 200, "GET {path}: {} {}", r.body, srv.log());
        r
    };

    // The checkpoints table: one row per checkpoint of the history, with its figures and its audit.
    let details = get(&rita, &format!("/api/v1/runs/{run}")).json();
    let history = details["history"].as_array().unwrap();
    assert!(!history.is_empty(), "{details}");
    let audited = history
        .iter()
        .find(|c| !c["audit"].is_null())
        .unwrap_or_else(|| panic!("the gated checkpoint is audited: {details}"));
    let (step, audit) = (
        audited["step"].as_i64().unwrap(),
        audited["audit"]["id"].as_str().unwrap().to_string(),
    );
    // What a checkpoint learned: its own record's figures, or (a checkpoint saved by --max-steps is not
    // evaluated when saved) those its audit measured.
    let learned = |c: &Value| -> Value {
        match (&c["utility"], c["audit"]["id"].as_str()) {
            (Value::Null, Some(a)) => {
                get(&rita, &format!("/api/v1/audits/{a}")).json()["report"]["utility"].clone()
            }
            (u, _) => u.clone(),
        }
    };
    let page = get(&rita, &format!("/runs/{run}")).body;
    let rows = table(&page, "history");
    assert_eq!(rows.matches("<tr data-step=").count(), history.len(), "{rows}");
    for c in history {
        assert!(
            rows.contains(&format!("<tr data-step=\"{}\">", c["step"])),
            "{rows}"
        );
        let u = &learned(c);
        if let Some(bpb) = u["bits_per_byte"].as_f64() {
            // Diffusion's figure is an upper bound, and the table says so.
            assert!(rows.contains(&format!("≤ {bpb:.3}")), "{rows}");
        }
        if let Some(a) = u["choice_accuracy"].as_object() {
            let want = format!(
                "{} ({}–{}, n = {})",
                pct(&a["value"]),
                pct(&a["low"]),
                pct(&a["high"]),
                a["n"]
            );
            assert!(rows.contains(&want), "{want} in {rows}");
        }
    }
    assert!(
        rows.contains(&format!("<a href=\"/audits/{audit}\">{audit}</a>")),
        "{rows}"
    );
    let exposure = format!(
        "<td>{:.2}</td>",
        audited["audit"]["max_canary_exposure"].as_f64().unwrap()
    );
    assert!(rows.contains(&exposure), "{exposure} in {rows}");

    // The frontier: both objectives, each audited checkpoint with a choice accuracy a point, the policy's
    // limits and chance drawn.
    let measured = |id: &str| -> Vec<i64> {
        let d = get(&rita, &format!("/api/v1/runs/{id}")).json();
        d["history"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| !c["audit"].is_null() && !learned(c)["choice_accuracy"].is_null())
            .map(|c| c["step"].as_i64().unwrap())
            .collect()
    };
    let (own, other) = (measured(&run), measured(&ar));
    assert!(
        !own.is_empty() && !other.is_empty(),
        "choice accuracy measured: {own:?} {other:?}"
    );
    for (id, limit) in [
        ("frontier-extraction", ">policy limit 1</text>"),
        ("frontier-exposure", ">policy limit 64 bits</text>"),
    ] {
        let from = page.find(&format!("data-testid=\"{id}\"")).unwrap();
        let svg = &page[from..from + page[from..].find("</svg>").unwrap()];
        assert!(
            svg.contains("<svg ") && svg.contains(">chance 25%</text>"),
            "{svg}"
        );
        assert!(svg.contains(limit), "{limit} in {svg}");
        for s in &own {
            assert!(svg.contains(&format!("<title>{run} step {s} (")), "{svg}");
        }
        for s in &other {
            assert!(svg.contains(&format!("<title>{ar} step {s} (")), "{svg}");
        }
        // Legends name the groups in full: this run's diffusion, the other AR run, hollow.
        for line in [">diffusion, this</text>", ">AR, other runs</text>"] {
            assert!(svg.contains(line), "{line} in {svg}");
        }
        assert!(svg.contains("fill=\"#fff\" stroke=\"#d55e00\""), "{svg}");
    }

    // Only an operator may select or audit a checkpoint from the page.
    assert!(!page.contains("data-testid=\"select\"") && !page.contains("Audit this checkpoint"));
    let page = get(&olga, &format!("/runs/{run}")).body;
    assert!(page.contains("Select the best checkpoint"), "{page}");
    let post =
        |path: &str, form: &[(&str, &str)]| send(b, "POST", path, As::Bearer(&olga), &[], Body::Form(form));
    let r = post(&format!("/runs/{run}/select"), &[]);
    assert_eq!(r.status, 303, "{}", r.body);
    let to = r.header("location").unwrap().to_string();
    let job = to
        .strip_prefix(&format!("/runs/{run}?job="))
        .unwrap_or_else(|| panic!("back to the run page: {to}"))
        .to_string();
    let j = get(&olga, &format!("/api/v1/jobs/{job}")).json();
    assert_eq!(
        (j["kind"].as_str(), j["args"]["run"].as_str()),
        (Some("select"), Some(run.as_str())),
        "{j}"
    );
    assert_eq!(j["args"]["created_by"], "olga");
    let page = get(&olga, &to).body;
    assert!(
        page.contains(&format!(
            "Queued job {job} (selection of the best checkpoint); it is queued."
        )),
        "{page}"
    );
    assert!(table(&page, "selections").contains(&format!("<td>{job}</td>")));

    // A checkpoint's audit is queued for that step, from the console and from the API.
    let step_text = step.to_string();
    let r = post("/audits", &[("run", &run), ("step", &step_text)]);
    assert_eq!(r.status, 303, "{}", r.body);
    let to = r.header("location").unwrap().to_string();
    let job = to.rsplit_once("?job=").unwrap().1.to_string();
    assert_eq!(
        get(&olga, &format!("/api/v1/jobs/{job}")).json()["args"]["step"],
        step
    );
    assert!(get(&olga, &to)
        .body
        .contains(&format!("Queued job {job} (audit of step {step})")));
    let r = post("/audits", &[("run", &run), ("step", "last")]);
    assert_eq!(r.status, 400);
    assert!(r.body.contains("step must be a whole number"), "{}", r.body);
    let r = send(
        b,
        "POST",
        "/api/v1/audits",
        As::Bearer(&olga),
        &[],
        Body::Json(json!({ "run": run, "step": step, "quick": true })),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let job = r.json()["job_id"].as_str().unwrap().to_string();
    assert_eq!(
        get(&olga, &format!("/api/v1/jobs/{job}")).json()["args"]["step"],
        step
    );
    // A step the run never kept is refused when queued, naming the steps it has.
    let r = send(
        b,
        "POST",
        "/api/v1/audits",
        As::Bearer(&olga),
        &[],
        Body::Json(json!({ "run": run, "step": 987_654, "quick": true })),
    );
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(r.body.contains("has no checkpoint at step 987654"), "{}", r.body);

    // The audit page says what the checkpoint learned before what it memorized.
    let report = get(&rita, &format!("/api/v1/audits/{audit}")).json()["report"].clone();
    let u = &report["utility"];
    assert!(u.is_object(), "a new audit measures utility: {report}");
    let page = get(&rita, &format!("/audits/{audit}")).body;
    let section = page
        .find("<h2>What it learned</h2>")
        .expect("the utility section");
    assert!(section < page.find("data-testid=\"gate-rows\"").unwrap());
    assert!(section < page.find("data-testid=\"exposure-chart\"").unwrap());
    let bpb = u["bits_per_byte"].as_f64().expect("held-out bits per byte");
    assert_eq!(u["estimator"], "elbo_upper_bound");
    assert!(page.contains(&format!("≤ {bpb:.3} (")), "{page}");
    assert!(
        page.contains("an upper bound: the diffusion model's negative ELBO"),
        "{page}"
    );
    let a = &u["choice_accuracy"];
    let want = format!(
        "{} right, 95% interval {}–{}, {} held-out items",
        pct(&a["value"]),
        pct(&a["low"]),
        pct(&a["high"]),
        a["n"]
    );
    assert!(page.contains(&want), "{want} in {page}");
    // The warning appears exactly when the interval holds chance.
    let at_chance = a["low"].as_f64().unwrap() <= 0.25 && 0.25 <= a["high"].as_f64().unwrap();
    assert_eq!(page.contains("data-testid=\"chance-warning\""), at_chance, "{a}");
    if at_chance {
        assert!(page.contains("Indistinguishable from chance on held-out text."));
    }

    // An audit from before utility was measured says so.
    let mut old = report.clone();
    old.as_object_mut().unwrap().remove("utility");
    sqlite(
        &data.join("lethe.db"),
        &format!(
            "UPDATE audits SET report = '{}' WHERE id = '{audit}'",
            old.to_string().replace('\'', "''")
        ),
    );
    let page = get(&rita, &format!("/audits/{audit}")).body;
    assert!(
        page.contains("data-testid=\"utility-missing\">Not measured:"),
        "{page}"
    );
    assert!(!page.contains("data-testid=\"bits-per-byte\""));
}

#[test]
fn studies_list_and_show_both_objectives_by_epochs_in_a_table_and_charts() {
    let (tmp, data, pw) = with_users(&[("ada", "auditor")]);
    let input = tmp.path().join("in");
    common::synth_and_ingest(&data, &input, 20, 3, &["--vocab", "512"]);
    let srv = Server::start(&data, &[]);
    let b = srv.base.as_str();
    let ada = sign_in(b, "ada", &pw["ada"]).0;
    let get = |path: &str| send(b, "GET", path, As::Bearer(&ada), &[], Body::None);
    let corpus = get("/api/v1/corpora/kb").json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(get("/studies").body.contains("No studies yet."));

    // A study half way through: three of its four epoch budgets measured for both objectives.
    let point = |objective: &str, epochs: u64, acc: f64| {
        json!({
            "objective": objective, "epochs": epochs, "run": format!("run-{objective}{epochs}"), "step": 10 * epochs,
            "final_train_loss": 3.0 / epochs as f64, "bits_per_byte": 2.0 - 0.1 * epochs as f64,
            "nats_per_token": 1.0,
            "choice_accuracy": { "value": acc, "low": acc - 0.1, "high": acc + 0.1, "n": 100, "correct": (acc * 100.0) as usize, "mask_draws": 8 },
            "audit": format!("aud-{objective}{epochs}"), "exact_extraction": 0.01 * epochs as f64,
            "exact_extraction_high": 0.02 * epochs as f64, "infill_exact": null, "max_canary_exposure": 1.5 * epochs as f64,
            "membership_auc": 0.5, "train_seconds": 12.0,
        })
    };
    let points: Vec<Value> = [1u64, 2, 4]
        .iter()
        .flat_map(|&e| [point("diffusion", e, 0.3 + 0.05 * e as f64), point("ar", e, 0.6)])
        .collect();
    let id = "study-0123456789ab";
    let row = lethe::store::StudyRow {
        id: id.into(),
        kind: "repetition".into(),
        corpus_id: corpus,
        spec: json!({ "corpus": "kb", "epochs": [1, 2, 4, 8], "objectives": ["diffusion", "ar"], "unique_tokens": 4096 }),
        state: "running".into(),
        result: Some(json!({ "points": points })),
        error: None,
        created_by: Some("olga".into()),
        created_at: 1_700_000_000_000,
        finished_at: None,
        job_id: None,
    };
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let url = lethe::store::sqlite_url(&data.join("lethe.db"));
        let store = lethe::store::Store::connect(&url).await.unwrap();
        store.studies().create(&row).await.unwrap();
    });

    let list = get("/api/v1/studies").json();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(
        (list[0]["id"].as_str(), list[0]["corpus"].as_str()),
        (Some(id), Some("kb"))
    );
    let one = get(&format!("/api/v1/studies/{id}")).json();
    assert_eq!(one["points"].as_array().unwrap().len(), 6, "{one}");
    assert_eq!(one["state"], "running");
    let r = get("/api/v1/studies/study-nope");
    assert_eq!(r.status, 404, "{}", r.body);

    let page = get("/studies").body;
    assert!(
        page.contains("<a href=\"/studies\">Studies</a>"),
        "the nav links the studies"
    );
    let rows = table(&page, "studies");
    assert!(
        rows.contains(&format!("<a href=\"/studies/{id}\">{id}</a>")),
        "{rows}"
    );
    assert!(rows.contains("<td>running</td><td>6 of 8</td>"), "{rows}");

    let page = get(&format!("/studies/{id}")).body;
    let rows = table(&page, "study-points");
    // Ordered by epochs, diffusion first; diffusion's bits per byte an upper bound.
    let runs: Vec<&str> = rows
        .split("<a href=\"/runs/")
        .skip(1)
        .map(|r| r.split('"').next().unwrap())
        .collect();
    assert_eq!(
        runs,
        [
            "run-diffusion1",
            "run-ar1",
            "run-diffusion2",
            "run-ar2",
            "run-diffusion4",
            "run-ar4"
        ]
    );
    assert!(
        rows.contains("<td>≤ 1.900</td>") && rows.contains("<td>1.900</td>"),
        "{rows}"
    );
    assert!(
        rows.contains("35.0% (25.0%–45.0%, n = 100) <span class=\"chance\""),
        "{rows}"
    );
    assert!(rows.contains("60.0% (50.0%–70.0%, n = 100)</td>"), "{rows}");
    for (chart, legend) in [
        ("study-bpb", ">diffusion (upper</text>"),
        ("study-choice", ">chance 25%</text>"),
        ("study-extraction", ">AR</text>"),
        ("study-exposure", ">diffusion</text>"),
    ] {
        let from = page
            .find(&format!("data-testid=\"{chart}\""))
            .unwrap_or_else(|| panic!("no {chart}"));
        let svg = &page[from..from + page[from..].find("</svg>").unwrap()];
        assert_eq!(svg.matches("<polyline").count(), 2, "{chart}: {svg}");
        assert!(svg.contains(legend), "{legend} in {chart}: {svg}");
        // x is log₂ epochs: 1, 2 and 4 are ticks.
        for tick in [">1</text>", ">2</text>", ">4</text>"] {
            assert!(svg.contains(tick), "{tick} in {chart}");
        }
    }
    let r = get("/studies/study-nope");
    assert_eq!(r.status, 404);
}

/// A multipart/form-data body: text fields, then files.
fn multipart(fields: &[(&str, &str)], files: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "lethe-test-boundary-7d1c";
    let mut body = Vec::new();
    for (k, v) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n").as_bytes(),
        );
    }
    for (name, bytes) in files {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[test]
fn an_operator_uploads_a_corpus_held_in_memory_and_bad_uploads_are_refused() {
    let (_tmp, data, pw) = with_users(&[("olga", "operator"), ("rita", "reviewer")]);
    let srv = Server::start(&data, &[]);
    let b = srv.base.as_str();
    let olga = sign_in(b, "olga", &pw["olga"]).0;
    let rita = sign_in(b, "rita", &pw["rita"]).0;
    let marker = "zebra-quartz-4471 never leaves memory";
    let mut text = String::new();
    for i in 0..200 {
        text.push_str(&format!(
            "Ticket {i}: the printer on floor {} is jammed again. {marker}\n",
            i % 7
        ));
    }
    let jsonl: String = (0..30)
        .map(|i| {
            format!(
                "{}\n",
                json!({ "text": format!("Runbook step {i}: restart the queue and check the lag.") })
            )
        })
        .collect();
    let upload = |who: &str, fields: &[(&str, &str)], files: &[(&str, &[u8])]| {
        let (ct, body) = multipart(fields, files);
        send(
            b,
            "POST",
            "/api/v1/corpora",
            As::Bearer(who),
            &[],
            Body::Raw(&ct, body),
        )
    };
    let fields = [("name", "tickets"), ("vocab", "512"), ("holdout", "0.1")];
    let files: [(&str, &[u8]); 2] = [
        ("notes/tickets.txt", text.as_bytes()),
        ("runbook.jsonl", jsonl.as_bytes()),
    ];

    let r = upload(&rita, &fields, &files);
    assert_eq!(r.status, 403, "{}", r.body);
    let r = upload(&olga, &[("vocab", "512")], &files);
    assert_eq!(r.status, 400);
    assert!(r.body.contains("needs a corpus name"), "{}", r.body);
    let r = upload(&olga, &[("name", "empty")], &[]);
    assert_eq!(r.status, 400);
    assert!(r.body.contains("no files uploaded"), "{}", r.body);
    let r = upload(&olga, &[("name", "x"), ("vocab", "many")], &files);
    assert_eq!(r.status, 400);
    assert!(r.body.contains("vocab must be a whole number"), "{}", r.body);
    let head = raw_request(
        b,
        &format!(
            "POST /api/v1/corpora HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {olga}\r\n\
             Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {}\r\n\r\n",
            65 << 20
        ),
    );
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");

    let r = upload(&olga, &fields, &files);
    assert_eq!(r.status, 201, "{} {}", r.body, srv.log());
    let report = r.json();
    assert_eq!(report["name"], "tickets");
    // One document for the text file and one per JSONL line.
    assert_eq!(report["stats"]["documents"], 31, "{report}");
    let listed = send(
        b,
        "GET",
        "/api/v1/corpora/tickets",
        As::Bearer(&rita),
        &[],
        Body::None,
    );
    assert_eq!(listed.status, 200);
    let r = upload(&olga, &fields, &files);
    assert_eq!(r.status, 400);
    assert!(r.body.contains("already exists"), "{}", r.body);

    // The plaintext never reached a file: not in the data directory, and no upload links are left.
    let mut stack = vec![data.clone()];
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().flatten().map(|e| e.path()));
        } else if let Ok(bytes) = std::fs::read(&p) {
            assert!(
                !bytes.windows(marker.len()).any(|w| w == marker.as_bytes()),
                "{} holds uploaded text",
                p.display()
            );
        }
    }
    let left: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("lethe-upload-"))
        .collect();
    assert!(left.is_empty(), "upload links left behind: {left:?}");
    // The ingest is olga's, in the ledger.
    let out = ok(lethe(&data, &["--json", "ledger", "show"]));
    let entries: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(entries
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "corpus.ingest" && e["actor"] == "olga"));
}

#[test]
fn over_tls_the_session_cookie_is_host_prefixed_and_secure() {
    use std::io::{Read, Write};
    use std::sync::Arc;
    let (tmp, data, pw) = with_users(&[]);
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert, key) = (tmp.path().join("c.pem"), tmp.path().join("k.pem"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    let srv = Server::start(
        &data,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let addr = srv
        .base
        .strip_prefix("https://")
        .unwrap_or_else(|| panic!("{} is not https", srv.base))
        .to_string();

    let mut roots = rustls::RootCertStore::empty();
    roots.add(made.cert.der().clone()).unwrap();
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, std::net::TcpStream::connect(&addr).unwrap());
    let body = json!({ "username": "admin", "password": pw["admin"] }).to_string();
    write!(
        tls,
        "POST /api/v1/session HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    let _ = tls.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let cookie = answer
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("no cookie: {answer}"));
    assert!(cookie.contains("__Host-lethe_session="), "{cookie}");
    assert!(
        cookie.contains("; Secure") && cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains("Domain="), "{cookie}");
}

#[test]
fn behind_a_tls_proxy_the_public_origin_is_the_one_checked_and_cookies_are_secure() {
    let (_tmp, data, pw) = with_users(&[]);
    fails_with(
        &lethe(&data, &["serve", "--public-origin", "lethe.example"]),
        "must start with https://",
    );
    let srv = Server::start(&data, &["--public-origin", "https://Lethe.example/"]);
    let b = srv.base.as_str();
    let r = send(
        b,
        "POST",
        "/api/v1/session",
        As::Anonymous,
        &[("Origin", "https://lethe.example")],
        Body::Json(json!({ "username": "admin", "password": pw["admin"] })),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let cookie = r.header("set-cookie").unwrap().to_string();
    assert!(
        cookie.starts_with("__Host-lethe_session=") && cookie.contains("; Secure"),
        "{cookie}"
    );
    let (token, csrf) = (
        r.json()["token"].as_str().unwrap().to_string(),
        r.json()["csrf"].as_str().unwrap().to_string(),
    );
    // The proxy's public origin passes; the listener's own address is now another origin.
    let revoke = |origin: &str| {
        let agent = ureq::AgentBuilder::new().redirects(0).build();
        match agent
            .post(&format!("{b}/api/v1/session/revoke-all"))
            .set("Cookie", &format!("__Host-lethe_session={token}"))
            .set("X-CSRF-Token", &csrf)
            .set("Origin", origin)
            .call()
        {
            Ok(r) => r.status(),
            Err(ureq::Error::Status(code, _)) => code,
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(revoke(b), 403);
    assert_eq!(revoke("https://lethe.example"), 200);
}
