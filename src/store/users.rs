//! Accounts: the `users` table. Passwords arrive here already hashed (see `vault::password`).

use std::fmt;
use std::str::FromStr;

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{new_id, now_ms, Store, StoreError};

/// What an account may do. The rules that use roles live in `release` and `server`; this is the closed
/// set the database also enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Users, roles, keys, settings.
    Admin,
    /// Ingest, train, audit.
    Operator,
    /// Read evidence, approve, reject.
    Reviewer,
    /// Read-only, including the ledger.
    Auditor,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Operator, Role::Reviewer, Role::Auditor];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Reviewer => "reviewer",
            Role::Auditor => "auditor",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?} (expected admin, operator, reviewer or auditor)"))
    }
}

#[derive(Clone, serde::Serialize)]
pub struct User {
    pub id: String,
    pub username: String,
    pub role: Role,
    #[serde(skip)]
    pub password_hash: String,
    pub must_change_password: bool,
    pub disabled: bool,
    pub created_at: i64,
    /// When the account got its current role (ms; 0: before the appliance kept track).
    pub role_since: i64,
    /// When the account last stopped being an admin (ms; 0: never, as far as the appliance knows).
    pub admin_until: i64,
    /// Who received the account's last one-time password (an admin's name or `host:<login>`); that
    /// person may not confirm the account's approver credential.
    pub password_issued_to: Option<String>,
}

/// Everything but the password hash, which no log line should carry.
impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("role", &self.role)
            .field("password_hash", &"<redacted>")
            .field("must_change_password", &self.must_change_password)
            .field("disabled", &self.disabled)
            .field("created_at", &self.created_at)
            .field("role_since", &self.role_since)
            .field("admin_until", &self.admin_until)
            .field("password_issued_to", &self.password_issued_to)
            .finish()
    }
}

impl User {
    pub(super) fn from_row(row: &AnyRow) -> Result<User, StoreError> {
        let get = StoreError::query("reading a user");
        let role: String = row.try_get("role").map_err(get)?;
        Ok(User {
            id: row.try_get("id").map_err(StoreError::query("reading a user"))?,
            username: row
                .try_get("username")
                .map_err(StoreError::query("reading a user"))?,
            role: role.parse().map_err(|reason| StoreError::Corrupt {
                table: "users",
                reason,
            })?,
            password_hash: row
                .try_get("password_hash")
                .map_err(StoreError::query("reading a user"))?,
            must_change_password: row
                .try_get::<i64, _>("must_change_password")
                .map_err(StoreError::query("reading a user"))?
                != 0,
            disabled: row
                .try_get::<i64, _>("disabled")
                .map_err(StoreError::query("reading a user"))?
                != 0,
            created_at: row
                .try_get("created_at")
                .map_err(StoreError::query("reading a user"))?,
            role_since: row
                .try_get("role_since")
                .map_err(StoreError::query("reading a user"))?,
            admin_until: row
                .try_get("admin_until")
                .map_err(StoreError::query("reading a user"))?,
            password_issued_to: row
                .try_get("password_issued_to")
                .map_err(StoreError::query("reading a user"))?,
        })
    }
}

pub(super) const COLUMNS: &str =
    "id, username, role, password_hash, must_change_password, disabled, created_at, \
                                  role_since, admin_until, password_issued_to";

/// The statement that sets a role and the disabled flag, keeping the role's history: `role_since`
/// moves when the role changes, `admin_until` when an admin stops being one.
fn role_update<'q>(
    user_id: &'q str,
    role: Role,
    disabled: bool,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    sqlx::query(
        "UPDATE users SET role = $1, disabled = $2, updated_at = $3, \
         role_since = CASE WHEN role = $1 THEN role_since ELSE $3 END, \
         admin_until = CASE WHEN role = 'admin' AND $1 <> 'admin' THEN $3 ELSE admin_until END \
         WHERE id = $4",
    )
    .bind(role.as_str())
    .bind(i64::from(disabled))
    .bind(now_ms())
    .bind(user_id)
}

/// Repository over `users`.
pub struct Users<'a> {
    store: &'a Store,
}

impl<'a> Users<'a> {
    pub(super) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    /// Creates an account; `UserExists` if the name is taken.
    pub async fn create(
        &self,
        username: &str,
        role: Role,
        password_hash: &str,
        must_change_password: bool,
    ) -> Result<User, StoreError> {
        let now = now_ms();
        let id = new_id("u");
        let result = sqlx::query(
            "INSERT INTO users (id, username, role, password_hash, must_change_password, disabled, created_at, updated_at, role_since) \
             VALUES ($1, $2, $3, $4, $5, 0, $6, $6, $6)",
        )
        .bind(&id)
        .bind(username)
        .bind(role.as_str())
        .bind(password_hash)
        .bind(i64::from(must_change_password))
        .bind(now)
        .execute(self.store.pool())
        .await;
        match result {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(StoreError::UserExists(username.to_string()))
            }
            Err(source) => {
                return Err(StoreError::Query {
                    context: "creating a user",
                    source,
                })
            }
        }
        Ok(User {
            id,
            username: username.to_string(),
            role,
            password_hash: password_hash.to_string(),
            must_change_password,
            disabled: false,
            created_at: now,
            role_since: now,
            admin_until: 0,
            password_issued_to: None,
        })
    }

    pub async fn by_username(&self, username: &str) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM users WHERE username = $1"))
            .bind(username)
            .fetch_optional(self.store.pool())
            .await
            .map_err(StoreError::query("looking up a user"))?;
        row.as_ref().map(User::from_row).transpose()
    }

    /// Replaces a password hash; `must_change` marks a one-time password (an admin's reset).
    pub async fn set_password(
        &self,
        user_id: &str,
        password_hash: &str,
        must_change: bool,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE users SET password_hash = $1, must_change_password = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(password_hash)
        .bind(i64::from(must_change))
        .bind(now_ms())
        .bind(user_id)
        .execute(self.store.pool())
        .await
        .map_err(StoreError::query("changing a password"))?;
        Ok(())
    }

    /// An admin's reset of `user_id`'s password: the new (one-time) hash, and the account counts as
    /// given its role now (`role_since`), since whoever holds the one-time password holds the account:
    /// it may not approve a release requested before the reset.
    pub async fn reset_password(
        &self,
        user_id: &str,
        password_hash: &str,
        issued_to: &str,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        sqlx::query(
            "UPDATE users SET password_hash = $1, must_change_password = 1, updated_at = $2, role_since = $2, \
             password_issued_to = $3 WHERE id = $4",
        )
        .bind(password_hash)
        .bind(now)
        .bind(issued_to)
        .bind(user_id)
        .execute(self.store.pool())
        .await
        .map_err(StoreError::query("resetting a password"))?;
        Ok(())
    }

    /// Records who received the account's one-time password (see [`User::password_issued_to`]).
    pub async fn set_password_issued_to(&self, user_id: &str, issued_to: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE users SET password_issued_to = $1 WHERE id = $2")
            .bind(issued_to)
            .bind(user_id)
            .execute(self.store.pool())
            .await
            .map_err(StoreError::query("recording who holds a one-time password"))?;
        Ok(())
    }

    /// Changes a role and the disabled flag together; the change a console admin makes in one form.
    pub async fn set_role(&self, user_id: &str, role: Role, disabled: bool) -> Result<(), StoreError> {
        role_update(user_id, role, disabled)
            .execute(self.store.pool())
            .await
            .map_err(StoreError::query("changing a role"))?;
        Ok(())
    }

    /// Changes a role and the disabled flag, unless that would leave no enabled admin: `Ok(false)`
    /// then, and nothing changed. Atomic against a concurrent change of another admin (the review
    /// found two admins disabling each other at once left none): on PostgreSQL the enabled admins' rows
    /// are locked first, on SQLite the write lock is taken at the start.
    pub async fn set_role_keeping_an_admin(
        &self,
        user_id: &str,
        role: Role,
        disabled: bool,
    ) -> Result<bool, StoreError> {
        let q = || StoreError::query("changing a role");
        let mut tx = match self.store.engine() {
            super::Engine::Sqlite => self.store.pool().begin_with("BEGIN IMMEDIATE").await,
            super::Engine::Postgres => self.store.pool().begin().await,
        }
        .map_err(q())?;
        let lock = match self.store.engine() {
            super::Engine::Sqlite => "SELECT id FROM users WHERE role = 'admin' AND disabled = 0",
            super::Engine::Postgres => {
                "SELECT id FROM users WHERE role = 'admin' AND disabled = 0 ORDER BY id FOR UPDATE"
            }
        };
        let admins: Vec<String> = sqlx::query(lock)
            .fetch_all(&mut *tx)
            .await
            .map_err(q())?
            .iter()
            .map(|r| r.try_get("id"))
            .collect::<Result<_, _>>()
            .map_err(q())?;
        let stays = role == Role::Admin && !disabled;
        let others = admins.iter().filter(|id| id.as_str() != user_id).count();
        if !stays && admins.iter().any(|id| id == user_id) && others == 0 {
            return Ok(false);
        }
        role_update(user_id, role, disabled)
            .execute(&mut *tx)
            .await
            .map_err(q())?;
        tx.commit().await.map_err(q())?;
        Ok(true)
    }

    /// Enabled admins: the last one may not be demoted or disabled.
    pub async fn active_admins(&self) -> Result<i64, StoreError> {
        sqlx::query("SELECT COUNT(*) AS n FROM users WHERE role = 'admin' AND disabled = 0")
            .fetch_one(self.store.pool())
            .await
            .and_then(|row| row.try_get("n"))
            .map_err(StoreError::query("counting admins"))
    }

    pub async fn list(&self) -> Result<Vec<User>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM users ORDER BY username"))
            .fetch_all(self.store.pool())
            .await
            .map_err(StoreError::query("listing users"))?;
        rows.iter().map(User::from_row).collect()
    }

    pub async fn count(&self) -> Result<i64, StoreError> {
        sqlx::query("SELECT COUNT(*) AS n FROM users")
            .fetch_one(self.store.pool())
            .await
            .and_then(|row| row.try_get("n"))
            .map_err(StoreError::query("counting users"))
    }
}
