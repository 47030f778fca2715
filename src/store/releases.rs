//! Release requests and reviews: the `releases` and `release_reviews` tables. State moves are conditional
//! updates from the expected state, and a review is added under a lock on its release row, so concurrent
//! reviewers can neither lose a transition nor make one twice.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{now_ms, Store, StoreError};

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ReleaseRow {
    pub id: String,
    pub run_id: String,
    pub audit_id: String,
    pub gate_id: String,
    pub gate_passed: bool,
    pub policy_sha256: String,
    pub required_approvals: i64,
    pub approver_role: String,
    pub waiver: Option<String>,
    pub state: String,
    pub reason: Option<String>,
    pub requested_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub released_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ReviewRow {
    pub username: String,
    pub role: String,
    pub decision: String,
    pub comment: String,
    pub created_at: i64,
    /// An approval's proof (absent for a rejection, and for approvals from before signed approvals).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proof: Option<ReviewProof>,
}

const COLUMNS: &str =
    "id, run_id, audit_id, gate_id, gate_passed, policy_sha256, required_approvals, approver_role, \
                       waiver, state, reason, requested_by, created_at, updated_at, released_at";

impl ReleaseRow {
    fn from_row(row: &AnyRow) -> Result<ReleaseRow, StoreError> {
        let q = || StoreError::query("reading a release");
        let passed: i64 = row.try_get("gate_passed").map_err(q())?;
        Ok(ReleaseRow {
            id: row.try_get("id").map_err(q())?,
            run_id: row.try_get("run_id").map_err(q())?,
            audit_id: row.try_get("audit_id").map_err(q())?,
            gate_id: row.try_get("gate_id").map_err(q())?,
            gate_passed: passed != 0,
            policy_sha256: row.try_get("policy_sha256").map_err(q())?,
            required_approvals: row.try_get("required_approvals").map_err(q())?,
            approver_role: row.try_get("approver_role").map_err(q())?,
            waiver: row.try_get("waiver").map_err(q())?,
            state: row.try_get("state").map_err(q())?,
            reason: row.try_get("reason").map_err(q())?,
            requested_by: row.try_get("requested_by").map_err(q())?,
            created_at: row.try_get("created_at").map_err(q())?,
            updated_at: row.try_get("updated_at").map_err(q())?,
            released_at: row.try_get("released_at").map_err(q())?,
        })
    }
}

/// What adding a review did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReviewOutcome {
    /// Recorded; the request is now in this state.
    Recorded { state: String, approvals: i64 },
    /// The request is no longer open (its state given).
    NotOpen(String),
    /// This user has already reviewed it.
    AlreadyReviewed,
}

/// What an approver signed, with what, and the signature (see `release::approval_statement`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReviewProof {
    pub key_id: String,
    pub statement: String,
    pub signature: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authenticator_data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_data: Option<String>,
}

/// Repository over releases and reviews.
pub struct Releases<'a> {
    store: &'a Store,
}

impl<'a> Releases<'a> {
    pub(super) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    /// Records a new request; `Ok(false)` when the run already has one open or released.
    pub async fn create(&self, r: &ReleaseRow) -> Result<bool, StoreError> {
        let res = sqlx::query(&format!(
            "INSERT INTO releases ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
        ))
        .bind(&r.id)
        .bind(&r.run_id)
        .bind(&r.audit_id)
        .bind(&r.gate_id)
        .bind(i64::from(r.gate_passed))
        .bind(&r.policy_sha256)
        .bind(r.required_approvals)
        .bind(&r.approver_role)
        .bind(&r.waiver)
        .bind(&r.state)
        .bind(&r.reason)
        .bind(&r.requested_by)
        .bind(r.created_at)
        .bind(r.updated_at)
        .bind(r.released_at)
        .execute(self.store.pool())
        .await;
        match res {
            Ok(_) => Ok(true),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
            Err(source) => Err(StoreError::Query {
                context: "recording a release request",
                source,
            }),
        }
    }

    /// The run's newest request, whatever its state.
    pub async fn latest(&self, run_id: &str) -> Result<Option<ReleaseRow>, StoreError> {
        Ok(self.for_run(run_id).await?.pop())
    }

    /// Every request of the run, oldest first: its release history.
    pub async fn for_run(&self, run_id: &str) -> Result<Vec<ReleaseRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM releases WHERE run_id = $1 ORDER BY created_at, id"
        ))
        .bind(run_id)
        .fetch_all(self.store.pool())
        .await
        .map_err(StoreError::query("reading a run's releases"))?;
        rows.iter().map(ReleaseRow::from_row).collect()
    }

    pub async fn reviews(&self, release_id: &str) -> Result<Vec<ReviewRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT username, role, decision, comment, created_at, key_id, statement, signature, \
             authenticator_data, client_data FROM release_reviews WHERE release_id = $1 \
             ORDER BY created_at, username",
        )
        .bind(release_id)
        .fetch_all(self.store.pool())
        .await
        .map_err(StoreError::query("reading reviews"))?;
        rows.iter()
            .map(|r| {
                let q = || StoreError::query("reading a review");
                Ok(ReviewRow {
                    username: r.try_get("username").map_err(q())?,
                    role: r.try_get("role").map_err(q())?,
                    decision: r.try_get("decision").map_err(q())?,
                    comment: r.try_get("comment").map_err(q())?,
                    created_at: r.try_get("created_at").map_err(q())?,
                    proof: match (
                        r.try_get::<Option<String>, _>("key_id").map_err(q())?,
                        r.try_get::<Option<String>, _>("statement").map_err(q())?,
                        r.try_get::<Option<String>, _>("signature").map_err(q())?,
                    ) {
                        (Some(key_id), Some(statement), Some(signature)) => Some(ReviewProof {
                            key_id,
                            statement,
                            signature,
                            authenticator_data: r.try_get("authenticator_data").map_err(q())?,
                            client_data: r.try_get("client_data").map_err(q())?,
                        }),
                        _ => None,
                    },
                })
            })
            .collect()
    }

    /// Moves a release from `from` to `to` (with a reason); `false` when it was not in `from`.
    pub async fn transition(
        &self,
        id: &str,
        from: &str,
        to: &str,
        reason: Option<&str>,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let released = (to == "released").then_some(now);
        let r = sqlx::query(
            "UPDATE releases SET state = $1, reason = COALESCE($2, reason), updated_at = $3, \
             released_at = COALESCE($4, released_at) WHERE id = $5 AND state = $6",
        )
        .bind(to)
        .bind(reason)
        .bind(now)
        .bind(released)
        .bind(id)
        .bind(from)
        .execute(self.store.pool())
        .await
        .map_err(StoreError::query("changing a release's state"))?;
        Ok(r.rows_affected() == 1)
    }

    /// Adds a review in one transaction that first locks the release row (an UPDATE of an open request,
    /// which serializes concurrent reviewers on both engines), then records the review and, for an
    /// approval that reaches the required count, moves the request to `approved`; a rejection moves it to
    /// `rejected`.
    pub async fn review(
        &self,
        release_id: &str,
        username: &str,
        role: &str,
        approve: bool,
        comment: &str,
        proof: Option<&ReviewProof>,
    ) -> Result<ReviewOutcome, StoreError> {
        let mut tx = self
            .store
            .pool()
            .begin()
            .await
            .map_err(StoreError::query("starting a transaction"))?;
        let now = now_ms();
        let locked = sqlx::query("UPDATE releases SET updated_at = $1 WHERE id = $2 AND state = 'requested'")
            .bind(now)
            .bind(release_id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("locking a release"))?;
        if locked.rows_affected() != 1 {
            let state: Option<String> = sqlx::query("SELECT state FROM releases WHERE id = $1")
                .bind(release_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(StoreError::query("reading a release"))?
                .map(|r| r.try_get("state"))
                .transpose()
                .map_err(StoreError::query("reading a release"))?;
            return Ok(ReviewOutcome::NotOpen(state.unwrap_or_else(|| "missing".into())));
        }
        let inserted = sqlx::query(
            "INSERT INTO release_reviews (release_id, username, role, decision, comment, created_at, key_id, \
             statement, signature, authenticator_data, client_data) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(release_id)
        .bind(username)
        .bind(role)
        .bind(if approve { "approve" } else { "reject" })
        .bind(comment)
        .bind(now)
        .bind(proof.map(|p| p.key_id.clone()))
        .bind(proof.map(|p| p.statement.clone()))
        .bind(proof.map(|p| p.signature.clone()))
        .bind(proof.and_then(|p| p.authenticator_data.clone()))
        .bind(proof.and_then(|p| p.client_data.clone()))
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Ok(ReviewOutcome::AlreadyReviewed)
            }
            Err(source) => {
                return Err(StoreError::Query {
                    context: "recording a review",
                    source,
                })
            }
        }
        let approvals: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM release_reviews WHERE release_id = $1 AND decision = 'approve'",
        )
        .bind(release_id)
        .fetch_one(&mut *tx)
        .await
        .and_then(|r| r.try_get("n"))
        .map_err(StoreError::query("counting approvals"))?;
        let required: i64 = sqlx::query("SELECT required_approvals FROM releases WHERE id = $1")
            .bind(release_id)
            .fetch_one(&mut *tx)
            .await
            .and_then(|r| r.try_get("required_approvals"))
            .map_err(StoreError::query("reading a release"))?;
        let state = if !approve {
            "rejected"
        } else if approvals >= required {
            "approved"
        } else {
            "requested"
        };
        if state != "requested" {
            sqlx::query(
                "UPDATE releases SET state = $1, updated_at = $2 WHERE id = $3 AND state = 'requested'",
            )
            .bind(state)
            .bind(now)
            .bind(release_id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("changing a release's state"))?;
        }
        tx.commit()
            .await
            .map_err(StoreError::query("committing a review"))?;
        Ok(ReviewOutcome::Recorded {
            state: state.to_string(),
            approvals,
        })
    }
}
