//! The command line: clap definitions and the printing of results. Each command parses, calls `app`, and
//! prints either human text or one JSON document (`--json`); nothing here decides anything.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use serde::Serialize;

use crate::app::{self, App, Globals};
use crate::corpus::reader::{InputFormat, ReadOptions};
use crate::corpus::IngestOptions;
use crate::model::{ModelOverrides, Remasking, SampleOptions};
use crate::train::schedule::ScheduleKind;
use crate::train::{Event, Objective, TrainSpec};

#[derive(Debug, Parser)]
#[command(
    name = "lethe",
    version,
    about = "Train a language model on a private corpus, audit it for memorization, and gate its release.",
    propagate_version = true
)]
pub struct Cli {
    /// Data directory holding the config, keys, sealed data and the embedded database.
    #[arg(
        long,
        global = true,
        env = "LETHE_DATA_DIR",
        default_value = "./lethe-data",
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,
    /// Database URL: postgres://USER@HOST/DB for a shared server (default: SQLite in the data directory).
    #[arg(long, global = true, env = "LETHE_DATABASE_URL", value_name = "URL")]
    pub database_url: Option<String>,
    /// Print one JSON document on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a data directory: config, master key, signing key, database and the first admin.
    Init {
        /// Name of the first admin account.
        #[arg(long, default_value = "admin")]
        admin: String,
    },
    /// Check libtorch, devices, the database and the keys.
    Doctor,
    /// Ingest, inspect, verify and remove sealed corpora.
    #[command(subcommand)]
    Corpus(CorpusCommand),
    /// Master key versions: rotate, retire, list.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Train a masked diffusion model (or the matched autoregressive baseline) on a corpus, or resume a run.
    Train(TrainArgs),
    /// Generate from a run's latest checkpoint, or fill [MASK] spans in a text.
    Sample(SampleArgs),
    /// List and inspect training runs.
    #[command(subcommand)]
    Runs(RunsCommand),
    /// Studies the appliance runs itself: the repetition study (diffusion against AR over epoch budgets).
    #[command(subcommand)]
    Study(StudyCommand),
    /// Model shapes.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Audit a run for memorization (`lethe audit --run RUN`), or show, list and scan.
    Audit(AuditArgs),
    /// Release policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Accounts: add, list, reset and change users (admins), and the grants a second admin confirms.
    #[command(subcommand)]
    Users(UsersCommand),
    /// An approver's own Ed25519 key: make one, enrol it, list and revoke keys.
    #[command(subcommand)]
    Approver(ApproverCommand),
    /// The release workflow: request, approve, reject, status, export, verify.
    #[command(subcommand)]
    Release(ReleaseCommand),
    /// The tamper-evident ledger of security-relevant events.
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// Evaluate a run's audit against a release policy and record the decision; or, with --select,
    /// audit the run's kept checkpoints and pick the most useful one that passes.
    Gate {
        #[arg(long)]
        run: String,
        /// Policy file (default: the built-in policies/default.toml).
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// Gate the audit of this checkpoint step (default: the newest checkpoint).
        #[arg(long, conflicts_with = "select")]
        step: Option<i64>,
        /// Audit the kept checkpoints that lack an audit (newest first, as the policy's [select] says)
        /// and choose the most useful one that passes; release requests then name that step.
        #[arg(long)]
        select: bool,
        /// With --select: audit as this user (the audits record who asked).
        #[arg(long)]
        user: Option<String>,
    },
    /// What a checkpoint learned: held-out bits per byte and continuation choice, with more windows,
    /// items and mask draws than the trainer spends (recorded on the checkpoint).
    Eval {
        #[arg(long)]
        run: String,
        /// Checkpoint step (default: the newest).
        #[arg(long)]
        step: Option<i64>,
        /// A multiple-choice file of your own (JSONL: context, choices, answer).
        #[arg(long = "eval", value_name = "FILE.jsonl")]
        eval_file: Option<PathBuf>,
        /// The trainer's cheaper settings instead of the full ones (nothing is recorded).
        #[arg(long)]
        quick: bool,
    },
    /// Run queued jobs (training started with `lethe train --queue` or from the console).
    Worker {
        /// Exit once the queue is empty instead of waiting for more work.
        #[arg(long)]
        once: bool,
        /// Seconds between polls of an empty queue.
        #[arg(long, default_value_t = 2)]
        poll_s: u64,
        /// Seconds without a heartbeat after which another worker's running job is handed back (at least 10).
        #[arg(long, default_value_t = 60)]
        lease_s: u64,
        /// Memory this worker offers, in GiB (default: the host's, or its cgroup limit): jobs estimated
        /// to need more are left for bigger workers.
        #[arg(long, value_name = "GIB")]
        memory_gb: Option<f64>,
    },
    /// Workers that registered with the queue, and what each can run.
    Workers {
        /// Every worker ever registered, not only live ones.
        #[arg(long)]
        all: bool,
    },
    /// The job queue.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Serve the review console and the JSON API (and run queued jobs, unless --no-worker).
    Serve {
        /// Address to listen on. Anything but loopback needs TLS (or --insecure-http).
        #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR:PORT")]
        bind: std::net::SocketAddr,
        /// PEM certificate chain for HTTPS.
        #[arg(long, value_name = "FILE")]
        tls_cert: Option<PathBuf>,
        /// PEM private key for HTTPS.
        #[arg(long, value_name = "FILE")]
        tls_key: Option<PathBuf>,
        /// Serve plain HTTP on a non-loopback address (only behind a TLS-terminating proxy).
        #[arg(long)]
        insecure_http: bool,
        /// The origin browsers use when a proxy in front terminates TLS, e.g. https://lethe.example.
        #[arg(long, value_name = "URL")]
        public_origin: Option<String>,
        /// Do not run a job worker inside the server (run `lethe worker` processes instead).
        #[arg(long)]
        no_worker: bool,
        /// Policy in force for gates and reviews (default: the built-in policies/default.toml).
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: Option<AuditCommand>,
    /// Run whose checkpoint is audited.
    #[arg(long)]
    run: Option<String>,
    /// The checkpoint step to audit (a kept one; `lethe runs show RUN` lists them); default the newest.
    #[arg(long)]
    step: Option<i64>,
    /// A multiple-choice file of your own (JSONL: context, choices, answer) scored beside the held-out
    /// utility.
    #[arg(long = "eval", value_name = "FILE.jsonl")]
    eval_file: Option<PathBuf>,
    /// A smaller audit (fewer samples everywhere) for smoke checks.
    #[arg(long)]
    quick: bool,
    /// Audit parameters as JSON (every field of the report's `params`; missing fields take defaults).
    #[arg(long, value_name = "FILE", conflicts_with = "policy")]
    params: Option<PathBuf>,
    /// Run the audit a release policy asks for: its [audit] parameters, secret packs and deny-list.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Extra secret rule pack (TOML, see docs/secret-rules.md); repeatable. The built-in pack always applies.
    #[arg(long = "rules", value_name = "FILE")]
    rules: Vec<PathBuf>,
    /// Deny-list of literal strings (names, code names), one per line.
    #[arg(long, value_name = "FILE")]
    deny_list: Option<PathBuf>,
    /// Queue the audit for a `lethe worker` instead of running it here.
    #[arg(long)]
    queue: bool,
    /// Cut the extraction and regurgitation work into this many corpus shards; queued, each is a job
    /// any worker may take, and a final job merges them (the report is the same as one worker's).
    #[arg(long, value_name = "N")]
    shards: Option<usize>,
    /// Queued: only a worker with a GPU may run it.
    #[arg(long)]
    gpu: bool,
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create an account with a one-time password (printed once). An account with the approving role or
    /// admin waits for a second admin (`lethe users confirm`), who then receives the password.
    Add {
        name: String,
        #[arg(long, value_parser = ["admin", "operator", "reviewer", "auditor"])]
        role: String,
        /// The admin doing it (password from LETHE_PASSWORD or a prompt).
        #[arg(long)]
        user: String,
    },
    /// Accounts and their roles.
    List,
    /// Change NAME's role, or disable or enable it. Promotion to the approving role or admin waits for a
    /// second admin.
    Set {
        name: String,
        #[arg(long, value_parser = ["admin", "operator", "reviewer", "auditor"])]
        role: Option<String>,
        /// Disable the account (its sessions end at once).
        #[arg(long, conflicts_with = "enable")]
        disable: bool,
        /// Enable a disabled account.
        #[arg(long)]
        enable: bool,
        /// The admin doing it.
        #[arg(long)]
        user: String,
    },
    /// A new one-time password for NAME; its approver keys are revoked. For an approver or an admin it
    /// waits for a second admin, who then receives the password.
    Reset {
        name: String,
        /// The admin doing it.
        #[arg(long)]
        user: String,
    },
    /// Grants waiting for a second admin.
    Pending,
    /// Confirm a pending grant as an admin other than the one who asked; it takes effect now.
    Confirm {
        grant: String,
        /// The confirming admin.
        #[arg(long, required_unless_present = "host", conflicts_with = "host")]
        user: Option<String>,
        /// Confirm as the host's operator (needs the data directory and the master key), allowed only
        /// while the appliance has fewer than two enabled admins.
        #[arg(long)]
        host: bool,
    },
    /// Withdraw (the one who asked) or refuse (another admin) a pending grant.
    Cancel {
        grant: String,
        #[arg(long)]
        user: String,
    },
    /// Ask that ROLE become the approving role in force (policies must name it); waits for a second
    /// admin.
    ApproverRole {
        #[arg(value_parser = ["admin", "operator", "reviewer"])]
        role: String,
        #[arg(long)]
        user: String,
    },
    /// For the host's operator when no enabled admin is left (two admins disabled each other, say):
    /// makes NAME an enabled admin, creating it if needed, with a one-time password (printed once).
    /// Needs the data directory and its master key; refused while any enabled admin exists; recorded
    /// in the ledger.
    Recover { name: String },
}

#[derive(Debug, Subcommand)]
pub enum ApproverCommand {
    /// Make a new Ed25519 approver key in FILE (mode 0600; never overwritten) and print its public key.
    /// Run it where you keep your keys; the appliance never sees the private half.
    Keygen {
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Enrol the key in FILE for USER (signed in as that user); it is pending until an admin other than
    /// whoever received USER's one-time password confirms it.
    Enrol {
        #[arg(long, value_name = "FILE", env = "LETHE_APPROVER_KEY")]
        key: PathBuf,
        /// What holds the key (shown to the confirming admin).
        #[arg(long, default_value = "command-line key")]
        label: String,
        #[arg(long)]
        user: String,
    },
    /// Approver keys and passkeys, every account's.
    List,
    /// Revoke key ID (its owner or an admin).
    Revoke {
        id: String,
        #[arg(long)]
        user: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct ReleaseTarget {
    #[arg(long)]
    run: String,
    /// Acting user (password from LETHE_PASSWORD or a prompt).
    #[arg(long)]
    user: String,
    /// The policy in force (default: the built-in one). It must be the one the gate used.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ReleaseCommand {
    /// Ask for the release of a gated run (operators and admins).
    Request {
        #[command(flatten)]
        target: ReleaseTarget,
        /// For a failed gate, where the policy allows it: the written justification (needs one approval more).
        #[arg(long)]
        waiver: Option<String>,
        /// The checkpoint step to release (default: the one gated last under this policy, which
        /// `lethe gate --select` chooses).
        #[arg(long)]
        step: Option<i64>,
    },
    /// Approve the run's open release request (the policy's approving role; not its trainer or requester).
    Approve {
        #[command(flatten)]
        target: ReleaseTarget,
        #[arg(long)]
        comment: String,
        /// Your enrolled approver key (`lethe approver keygen`/`enrol`), which signs the approval.
        #[arg(long, value_name = "FILE", env = "LETHE_APPROVER_KEY")]
        key: Option<PathBuf>,
    },
    /// Reject the run's open release request.
    Reject {
        #[command(flatten)]
        target: ReleaseTarget,
        #[arg(long)]
        comment: String,
    },
    /// Where the run stands: audit, gate, request, approvals.
    Status {
        #[arg(long)]
        run: String,
    },
    /// Release an approved run and write its signed bundle into a new directory.
    Export {
        #[command(flatten)]
        target: ReleaseTarget,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Check a bundle with only the public key: every file's hash and the signature.
    Verify {
        dir: PathBuf,
        /// The appliance's public key (`lethe keys public`); default: this data directory's.
        #[arg(long, value_name = "HEX")]
        public_key: Option<String>,
        /// A file of approvers' public keys you trust (hex, one per line; `#` comments): every approval
        /// must be signed by one of them, not only by a key the bundle names.
        #[arg(long, value_name = "FILE")]
        approver_keys: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Walk the chain, its signed checkpoints and their Merkle tree roots, require the checkpoint
    /// cadence, and prove the ledger extends every head anchored outside the database (the data
    /// directory's `ledger/anchors.jsonl`, and each --against); report the first break.
    Verify {
        /// A file of signed heads (an anchor file copied off the host, a syslog extract of JSON lines,
        /// one checkpoint) or a release bundle directory; repeatable.
        #[arg(long, value_name = "FILE|BUNDLE")]
        against: Vec<PathBuf>,
    },
    /// A signed head now and the RFC 9162 consistency proof from the newest head in FILE|BUNDLE to it,
    /// as JSON: a witness holding the old head checks it with `lethe ledger witness`, without the log.
    Prove {
        #[arg(long, value_name = "FILE|BUNDLE")]
        from: PathBuf,
    },
    /// Check a consistency statement from `lethe ledger prove` offline: both heads signed by the
    /// appliance key, the new tree extending the old one. Needs no data directory.
    Witness {
        /// The statement (JSON) `lethe ledger prove` wrote.
        statement: PathBuf,
        /// The appliance's public key (hex, `lethe keys public`); default: this data directory's.
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Entries, oldest first.
    Show {
        /// Only entries at or after this time: RFC 3339 (`2026-11-28T10:00:00Z`), a date, or an age
        /// (`30m`, `24h`, `7d`).
        #[arg(long)]
        since: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy file; errors name the line.
    Check { file: PathBuf },
    /// Print the built-in policy (a starting point for your own).
    Default,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// One audit: its report (and with --evidence the reviewer's evidence, secrets masked).
    Show {
        audit: String,
        #[arg(long)]
        evidence: bool,
        /// Show secret values in the clear: admins only, recorded in the ledger (password from
        /// LETHE_PASSWORD or a prompt).
        #[arg(long, value_name = "ADMIN", requires = "evidence")]
        unmask_as: Option<String>,
    },
    /// Audits, oldest first.
    List {
        #[arg(long)]
        run: Option<String>,
    },
    /// Find verbatim corpus spans in generations from any model (no trained run needed).
    Regurgitation {
        /// Corpus to search.
        #[arg(long)]
        corpus: String,
        /// JSONL file, one generation per line.
        #[arg(long, value_name = "FILE.jsonl")]
        generations: PathBuf,
        /// Field of each JSON object holding the text.
        #[arg(long, default_value = "text")]
        field: String,
        /// Shortest span reported, in corpus tokens (default 50).
        #[arg(long, conflicts_with = "min_chars")]
        min_tokens: Option<usize>,
        /// Shortest span reported, in characters (matching the decoded corpus text).
        #[arg(long)]
        min_chars: Option<usize>,
    },
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Jobs, newest first.
    List {
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// One job with its arguments, progress, result or error.
    Show { id: String },
}

#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Train as this user (password from LETHE_PASSWORD or a prompt): the run records who started it,
    /// and that user may never approve its release.
    #[arg(long)]
    user: Option<String>,
    /// Corpus to train on.
    #[arg(long, required_unless_present = "resume", conflicts_with = "resume")]
    corpus: Option<String>,
    /// Continue an interrupted run from its latest checkpoint.
    #[arg(long, value_name = "RUN")]
    resume: Option<String>,
    #[arg(long, value_enum, default_value_t = Objective::Diffusion)]
    objective: Objective,
    /// Model preset: tiny, small, base, 1b (see `lethe model presets`).
    #[arg(long, default_value = "tiny")]
    preset: String,
    #[arg(long)]
    layers: Option<i64>,
    #[arg(long)]
    width: Option<i64>,
    #[arg(long)]
    heads: Option<i64>,
    #[arg(long)]
    mlp: Option<i64>,
    /// Context length (tokens per training window).
    #[arg(long)]
    context: Option<i64>,
    /// Passes over the training data.
    #[arg(long, default_value_t = 1)]
    epochs: u64,
    /// Windows per micro-batch.
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Micro-batches per optimizer step.
    #[arg(long, default_value_t = 1)]
    grad_accum: usize,
    /// Peak learning rate (default: by preset).
    #[arg(long)]
    lr: Option<f64>,
    #[arg(long, value_enum, default_value_t = ScheduleKind::Cosine)]
    schedule: ScheduleKind,
    #[arg(long)]
    warmup_steps: Option<u64>,
    #[arg(long, default_value_t = 0.1)]
    weight_decay: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Steps between sealed checkpoints (default: a tenth of the run).
    #[arg(long)]
    checkpoint_every: Option<u64>,
    /// Train on about this many unique tokens only (whole training documents chosen by a keyed hash
    /// of --seed), to study repetition; the documents left out serve the audits as non-members.
    #[arg(long)]
    unique_tokens: Option<u64>,
    /// Which epoch-end checkpoints the run keeps, each evaluated when saved: log (epochs 1, 2, 4, 8, …
    /// and the last), all, or a number N (N epochs evenly spaced).
    #[arg(long, default_value = "log", value_name = "log|all|N")]
    keep_checkpoints: String,
    /// Held-out windows scored at each kept checkpoint (drawn once for the run).
    #[arg(long, default_value_t = 256)]
    val_windows: usize,
    /// Diffusion: mask draws per held-out window.
    #[arg(long, default_value_t = 4)]
    val_mask_draws: usize,
    /// Held-out continuation-choice items scored at each kept checkpoint.
    #[arg(long, default_value_t = 200)]
    val_choice_items: usize,
    /// Stop after this many steps in this invocation (the run stays resumable).
    #[arg(long)]
    max_steps: Option<u64>,
    /// Queue the run for a `lethe worker` instead of training in the foreground.
    #[arg(long, conflicts_with = "resume")]
    queue: bool,
    /// Queued: only a worker with a GPU may run it.
    #[arg(long)]
    gpu: bool,
}

#[derive(Debug, clap::Args)]
pub struct SampleArgs {
    #[arg(long)]
    run: String,
    /// Text to continue.
    #[arg(long, conflicts_with = "infill")]
    prompt: Option<String>,
    /// Text with [MASK] markers to fill (diffusion only); each marker stands for --span tokens.
    #[arg(long)]
    infill: Option<String>,
    #[arg(long, default_value_t = 8)]
    span: usize,
    /// Tokens to generate.
    #[arg(long, default_value_t = 64)]
    length: i64,
    /// Denoising steps (diffusion; default: one per token).
    #[arg(long)]
    steps: Option<i64>,
    /// Diffusion block length (must divide --length; default: --length).
    #[arg(long)]
    block_length: Option<i64>,
    /// 0 decodes deterministically.
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    #[arg(long, value_enum, default_value_t = RemaskingArg::LowConfidence)]
    remasking: RemaskingArg,
    /// AR nucleus sampling threshold.
    #[arg(long, default_value_t = 1.0)]
    top_p: f64,
    /// Number of samples.
    #[arg(long, default_value_t = 1)]
    num: usize,
    #[arg(long)]
    seed: Option<u64>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum RemaskingArg {
    LowConfidence,
    Random,
}

#[derive(Debug, Subcommand)]
pub enum StudyCommand {
    /// Train each objective for each epoch budget on the same unique tokens, evaluate and audit each
    /// final checkpoint, and store the table (see docs/study.md).
    Repetition {
        #[arg(long)]
        corpus: String,
        /// Unique training tokens (whole documents chosen by a keyed hash of --seed).
        #[arg(long)]
        unique_tokens: u64,
        /// Epoch budgets, ascending; each is its own run with a full schedule.
        #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16,32,64")]
        epochs: Vec<u64>,
        #[arg(long, value_delimiter = ',', value_enum, default_value = "diffusion,ar")]
        objectives: Vec<Objective>,
        #[arg(long, default_value = "tiny")]
        preset: String,
        #[arg(long)]
        context: Option<i64>,
        #[arg(long, default_value_t = 16)]
        batch_size: usize,
        #[arg(long)]
        lr: Option<f64>,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Audit parameters as JSON (default: the study's small audit).
        #[arg(long, value_name = "FILE")]
        audit_params: Option<PathBuf>,
        /// Run as this user (password from LETHE_PASSWORD or a prompt); the runs record who started them.
        #[arg(long)]
        user: Option<String>,
        /// Queue the study for a `lethe worker` instead of running it here.
        #[arg(long)]
        queue: bool,
        /// Queued: only a worker with a GPU may run it.
        #[arg(long)]
        gpu: bool,
    },
    /// A study's table and charts.
    Show { id: String },
    /// Studies, newest first.
    List,
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// Training runs, newest first.
    List,
    /// Configuration, per-epoch losses and checkpoints of a run.
    Show { run: String },
}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// The presets with their shapes and parameter counts.
    Presets {
        /// Vocabulary size to count embedding parameters for.
        #[arg(long, default_value_t = 8192)]
        vocab: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum CorpusCommand {
    /// Read files, directories (recursively), JSONL or stdin (-) once, and keep them only sealed.
    Ingest {
        /// Name to refer to the corpus by.
        #[arg(long)]
        name: String,
        /// Files or directories to read; - reads standard input.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// How to read inputs: auto (.jsonl/.ndjson as JSONL, the rest as one document per file), text, jsonl.
        #[arg(long, value_enum, default_value_t = InputFormat::Auto)]
        format: InputFormat,
        /// JSONL field holding the document text.
        #[arg(long, default_value = "text")]
        field: String,
        /// Replace invalid UTF-8 with U+FFFD instead of failing.
        #[arg(long)]
        lossy: bool,
        /// Drop exact duplicate documents (they are counted either way).
        #[arg(long)]
        dedup: bool,
        /// Tokenizer vocabulary size (byte-level BPE trained on this corpus).
        #[arg(long, default_value_t = 8192)]
        vocab: usize,
        /// Share of documents held out for validation and membership inference, chosen by document hash.
        #[arg(long, default_value_t = 0.02)]
        holdout: f64,
        /// Number of canaries (random secrets) to plant into training documents.
        #[arg(long, default_value_t = 0)]
        canaries: usize,
        /// How many times each canary is planted, cycled over the canaries.
        #[arg(long, default_value = "1,4,16,64")]
        canary_repeats: String,
        /// Largest document (file or JSONL line) accepted, in bytes.
        #[arg(long, default_value_t = 64 << 20)]
        max_doc_bytes: usize,
        /// Tokens per shard.
        #[arg(long, default_value_t = 4 << 20)]
        shard_tokens: usize,
    },
    /// Write a synthetic internal knowledge base (tickets, runbooks, notes, code) with planted secrets.
    Synth {
        /// Output directory (created; must be empty).
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 2000)]
        docs: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// List corpora.
    List,
    /// Counts, sizes, splits, canaries and key ids of a corpus (never its text).
    Show { name: String },
    /// Authenticate every segment of every file of a corpus against its manifest.
    Verify { name: String },
    /// Remove a corpus: its data key is destroyed, then its files.
    Rm { name: String },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a new master key version and re-wrap every data key and the signing key under it.
    Rotate,
    /// Retire an old master key version (refused while it still wraps a key).
    Retire {
        #[arg(long)]
        version: u32,
    },
    /// Master key versions and how many keys each wraps.
    List,
    /// The appliance's Ed25519 public key (hex), which verifies release bundles and ledger checkpoints.
    Public,
}

impl Cli {
    fn globals(&self) -> Globals {
        Globals {
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone().filter(|u| !u.is_empty()),
        }
    }
}

/// Runs the parsed command. `Err` is printed by `main` as one line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let globals = cli.globals();
    match &cli.command {
        Command::Init { admin } => {
            let report = app::init::run(
                &globals,
                &app::init::InitOptions {
                    admin_username: admin.clone(),
                },
            )
            .await?;
            emit(cli.json, &report, || {
                format!(
                    "Initialised Lethe in {dir}\n\
                     \x20 config        {config}\n\
                     \x20 database      {db}\n\
                     \x20 master key    {mk} ({mkf}, mode 0600)\n\
                     \x20 signing key   ed25519:{pk}\n\
                     \n\
                     First admin account: {user}\n\
                     One-time password:   {pw}\n\
                     It is shown only now and must be changed at first sign-in.\n",
                    dir = report.data_dir.display(),
                    config = report.config_file.display(),
                    db = report.database,
                    mk = report.master_key_id,
                    mkf = report.master_key_file.display(),
                    pk = report.signing_public_key,
                    user = report.admin_username,
                    pw = report.one_time_password,
                )
            })
        }
        Command::Doctor => {
            let report = app::doctor::run(&globals).await?;
            emit(cli.json, &report, || report.to_text())?;
            match report.problems.as_slice() {
                [] => Ok(()),
                [one] => anyhow::bail!("doctor found a problem: {one}"),
                [first, rest @ ..] => {
                    anyhow::bail!("doctor found {} problems; first: {first}", rest.len() + 1)
                }
            }
        }
        Command::Corpus(cmd) => corpus(&cli, &globals, cmd).await,
        Command::Keys(cmd) => keys(&cli, &globals, cmd).await,
        Command::Train(args) => train(&cli, &globals, args).await,
        Command::Sample(args) => sample(&cli, &globals, args).await,
        Command::Audit(args) => audit(&cli, &globals, args).await,
        Command::Policy(PolicyCommand::Check { file }) => {
            let p = crate::policy::Policy::load(file)?;
            emit(cli.json, &p, || {
                format!(
                    "{}: policy {:?} is valid (sha256 {}); {} approvals by {}s{}\n",
                    file.display(),
                    p.name,
                    p.sha256,
                    p.approvals.required,
                    p.approvals.role,
                    if p.approvals.allow_waiver {
                        ", waivers allowed"
                    } else {
                        ""
                    }
                )
            })
        }
        Command::Policy(PolicyCommand::Default) => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            match out.write_all(crate::policy::DEFAULT_POLICY.as_bytes()) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    Err(anyhow::Error::new(e).context("cannot write to stdout"))
                }
                _ => Ok(()),
            }
        }
        Command::Users(cmd) => users(&cli, &globals, cmd).await,
        Command::Approver(cmd) => approver(&cli, &globals, cmd).await,
        Command::Release(cmd) => release_cmd(&cli, &globals, cmd).await,
        Command::Ledger(LedgerCommand::Verify { against }) => {
            let app = App::open(&globals).await?;
            match app.ledger_check(against).await? {
                Ok(c) => emit(cli.json, &c, || {
                    let r = &c.report;
                    let mut out = format!(
                        "ledger intact: {} entries, head {} ({}), tree root {}, {} signed checkpoints verified \
                         ({} with tree roots; last at {}, cadence {}); {} entries after the last checkpoint\n",
                        r.entries,
                        r.head_seq,
                        &r.head_hash.get(..16).unwrap_or(""),
                        &r.merkle_root.get(..16).unwrap_or(""),
                        r.checkpoints_verified,
                        r.roots_verified,
                        r.last_checkpoint_seq.map_or("none".into(), |s| s.to_string()),
                        crate::ledger::DEFAULT_CHECKPOINT_EVERY,
                        r.unprotected_tail
                    );
                    if c.anchored.is_empty() {
                        out.push_str("no head anchored outside the database yet\n");
                    }
                    for a in &c.anchored {
                        out.push_str(&format!(
                            "extends {} signed heads in {} (newest: seq {}, {}); {} entries since\n",
                            a.report.anchors,
                            a.source,
                            a.report.newest_seq,
                            crate::ledger::format_time(a.report.newest_at_ms),
                            a.report.entries_since
                        ));
                    }
                    out
                }),
                Err(b) => anyhow::bail!("ledger verification failed: {b}"),
            }
        }
        Command::Ledger(LedgerCommand::Prove { from }) => {
            let app = App::open(&globals).await?;
            let c = app.ledger_prove(from).await?;
            // The statement is JSON either way: it is meant to be handed to a witness.
            let text = serde_json::to_string_pretty(&c).context("cannot encode the statement")?;
            println!("{text}");
            Ok(())
        }
        Command::Ledger(LedgerCommand::Witness {
            statement,
            public_key,
        }) => {
            let text = std::fs::read_to_string(statement)
                .with_context(|| format!("cannot read {}", statement.display()))?;
            let c: crate::ledger::Consistency = serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} is not a statement from `lethe ledger prove`",
                    statement.display()
                )
            })?;
            let pk = match public_key {
                Some(k) => k.clone(),
                None => App::open(&globals)
                    .await
                    .map_err(|e| e.context("no --public-key given and no data directory to read it from"))?
                    .signing_public_key()?,
            };
            c.verify(&pk)
                .map_err(|e| anyhow::anyhow!("witness check failed: {e}"))?;
            let out = serde_json::json!({
                "old_seq": c.old.seq, "old_root": c.old.root, "new_seq": c.new.seq, "new_root": c.new.root,
                "consistent": true,
            });
            emit(cli.json, &out, || {
                format!(
                    "consistent: the head at seq {} (signed {}) extends the head at seq {} (signed {})\n",
                    c.new.seq,
                    crate::ledger::format_time(c.new.at_ms),
                    c.old.seq,
                    crate::ledger::format_time(c.old.at_ms)
                )
            })
        }
        Command::Ledger(LedgerCommand::Show { since }) => {
            let since = since
                .as_deref()
                .map(|s| crate::ledger::parse_since(s, crate::store::now_ms()))
                .transpose()?;
            let app = App::open(&globals).await?;
            let entries = app.store.ledger().entries(since).await?;
            emit(cli.json, &entries, || {
                let mut out = String::new();
                for e in &entries {
                    out.push_str(&format!(
                        "{:>6}  {}  {:<22} {:<20} {:<24} {}\n",
                        e.seq,
                        crate::ledger::format_time(e.at_ms),
                        printable(&e.actor),
                        printable(&e.action),
                        printable(&e.subject),
                        printable(&crate::ledger::canonical_json(&e.details))
                    ));
                }
                out
            })
        }
        Command::Eval {
            run,
            step,
            eval_file,
            quick,
        } => {
            let app = App::open(&globals).await?;
            let out = app.evaluate(run, *step, eval_file.as_deref(), !*quick).await?;
            emit(cli.json, &out, || {
                format!(
                    "run {} step {} ({:.2} epochs):\n{}",
                    out.run,
                    out.step,
                    out.epochs,
                    utility_text(&out.utility)
                )
            })
        }
        Command::Gate {
            run,
            policy,
            step,
            select,
            user,
        } => {
            let policy = app::gate::load_policy(policy.as_deref())?;
            let app = App::open(&globals).await?;
            if *select {
                let by = match user {
                    Some(u) => Some(signed_in(&app, u).await?.username),
                    None => None,
                };
                let json = cli.json;
                let mut last = (0i64, String::new());
                let mut progress = |step: i64, stage: crate::audit::Stage, _d: usize, _t: usize| {
                    if !json && (step, stage.as_str().to_string()) != last {
                        eprintln!("auditing step {step}: {}", stage.as_str());
                        last = (step, stage.as_str().to_string());
                    }
                };
                let sel = app
                    .gate_select(run, &policy, by.as_deref(), &mut progress)
                    .await?;
                emit(cli.json, &sel, || select_text(&sel))?;
                return if sel.step.is_some() {
                    Ok(())
                } else {
                    Err(GateFailed.into())
                };
            }
            let g = app.gate_step(run, &policy, *step, None).await?;
            emit(cli.json, &g, || {
                format!(
                    "gate {} for run {} step {} (audit {}) under policy {:?} ({}, sha256 {}):\n{}decision: {}\n",
                    g.decision,
                    g.run,
                    g.checkpoint_step,
                    g.audit,
                    g.result.policy,
                    g.policy_origin,
                    &g.result.policy_sha256[..16],
                    g.result.table(),
                    if g.result.passed { "PASSED" } else { "FAILED" }
                )
            })?;
            if g.result.passed {
                Ok(())
            } else {
                Err(GateFailed.into())
            }
        }
        Command::Runs(cmd) => runs(&cli, &globals, cmd).await,
        Command::Study(cmd) => study(&cli, &globals, cmd).await,
        Command::Worker {
            once,
            poll_s,
            lease_s,
            memory_gb,
        } => {
            if let Some(g) = memory_gb {
                if !(g.is_finite() && *g > 0.0) {
                    anyhow::bail!("--memory-gb must be a positive number of GiB, not {g}");
                }
            }
            let app = App::open(&globals).await?;
            let opts = app::worker::WorkerOptions::detect(
                *once,
                std::time::Duration::from_secs((*poll_s).max(1)),
                (*lease_s).max(10) as i64 * 1000,
                memory_gb.map(|g| (g * (1u64 << 30) as f64) as i64),
            )?;
            let mut r = app::worker::WorkerReport::default();
            let mut training_left = false;
            // On SIGTERM or Ctrl-C the job in hand goes back to the queue at once, for another worker
            // to resume from its last checkpoint, instead of waiting out the lease.
            tokio::select! {
                done = app.work(&opts, &mut r) => done?,
                _ = crate::server::shutdown_signal() => {
                    r.handed_back = app.stop_worker(&opts.name).await?;
                    eprintln!("worker {}: stopping on a signal; handed back {} job(s)", opts.name, r.handed_back.len());
                    training_left = !app::train::wait_for_training_stop(&opts.name).await;
                }
            };
            let written = emit(cli.json, &r, || {
                format!(
                    "worker {}: {} job(s) succeeded, {} failed\n",
                    r.worker,
                    r.succeeded.len(),
                    r.failed.len()
                )
            });
            if training_left && written.is_ok() {
                app::train::exit_skipping_destructors(0);
            }
            written
        }
        Command::Workers { all } => {
            let app = App::open(&globals).await?;
            let rows = if *all {
                app.store.workers().list(1000).await?
            } else {
                app.live_workers().await?
            };
            emit(cli.json, &rows, || {
                let mut out = format!(
                    "{:<36} {:>5} {:>9}  {:<8} {}\n",
                    "WORKER", "GPUS", "MEMORY", "STATE", "SEEN"
                );
                for w in &rows {
                    let state = if w.stopped_at.is_some() {
                        "stopped"
                    } else {
                        "running"
                    };
                    let ago = (crate::store::now_ms() - w.seen_at).max(0) / 1000;
                    out += &format!(
                        "{:<36} {:>5} {:>7.1}Gi  {:<8} {ago}s ago\n",
                        w.name,
                        w.gpus,
                        w.memory_bytes as f64 / (1u64 << 30) as f64,
                        state
                    );
                }
                if rows.is_empty() {
                    out += "(no worker)\n";
                }
                out
            })
        }
        Command::Serve {
            bind,
            tls_cert,
            tls_key,
            insecure_http,
            public_origin,
            no_worker,
            policy,
        } => {
            let opts = crate::server::ServeOptions {
                bind: *bind,
                tls_cert: tls_cert.clone(),
                tls_key: tls_key.clone(),
                insecure_http: *insecure_http,
                public_origin: public_origin.clone(),
                worker: !*no_worker,
                policy: policy.clone(),
            };
            crate::server::serve(&globals, &opts).await
        }
        Command::Jobs(cmd) => {
            let app = App::open(&globals).await?;
            match cmd {
                JobsCommand::List { limit } => {
                    let jobs = app.store.jobs().list(*limit).await?;
                    emit(cli.json, &jobs, || {
                        let mut out = format!(
                            "{:<38} {:<8} {:<10} {:>8}  {}\n",
                            "JOB", "KIND", "STATE", "PROGRESS", "MESSAGE"
                        );
                        for j in &jobs {
                            out.push_str(&format!(
                                "{:<38} {:<8} {:<10} {:>7.0}%  {}\n",
                                j.id,
                                j.kind,
                                j.state.as_str(),
                                j.progress * 100.0,
                                j.error.as_deref().or(j.message.as_deref()).unwrap_or("")
                            ));
                        }
                        out
                    })
                }
                JobsCommand::Show { id } => {
                    let job = app.store.jobs().get(id).await?;
                    let waiting = app.waiting_reason(&job).await?;
                    emit(cli.json, &job, || {
                        let mut out = serde_json::to_string_pretty(&job).unwrap_or_default() + "\n";
                        if let Some(why) = &waiting {
                            out += &format!("waiting: {why}\n");
                        }
                        out
                    })
                }
            }
        }
        Command::Model(ModelCommand::Presets { vocab }) => {
            let rows: Vec<serde_json::Value> = crate::model::config::presets(*vocab)?
                .into_iter()
                .map(|p| {
                    let c = &p.config;
                    serde_json::json!({
                        "name": p.name, "layers": c.layers, "width": c.width, "heads": c.heads, "mlp": c.mlp,
                        "context": c.context, "vocab": c.vocab, "parameters": p.params,
                    })
                })
                .collect();
            emit(cli.json, &rows, || {
                let mut out = format!(
                    "{:<6} {:>6} {:>6} {:>6} {:>6} {:>8} {:>14} {:>14}\n",
                    "PRESET", "LAYERS", "WIDTH", "HEADS", "MLP", "CONTEXT", "PARAMS", "NON-EMBEDDING"
                );
                for r in &rows {
                    let f = |v: &serde_json::Value| v.to_string();
                    out.push_str(&format!(
                        "{:<6} {:>6} {:>6} {:>6} {:>6} {:>8} {:>14} {:>14}\n",
                        r["name"].as_str().unwrap_or(""),
                        f(&r["layers"]),
                        f(&r["width"]),
                        f(&r["heads"]),
                        f(&r["mlp"]),
                        f(&r["context"]),
                        f(&r["parameters"]["total"]),
                        f(&r["parameters"]["non_embedding"])
                    ));
                }
                out.push_str(&format!("(parameters counted for a vocabulary of {vocab})\n"));
                out
            })
        }
    }
}

async fn corpus(cli: &Cli, globals: &Globals, cmd: &CorpusCommand) -> anyhow::Result<()> {
    if let CorpusCommand::Synth { out, docs, seed } = cmd {
        let summary = app::corpus::synth(out, *docs, *seed)?;
        return emit(cli.json, &summary, || {
            format!(
                "Wrote {} documents ({} bytes) to {}, with {} planted secrets and PII recorded in {}\n",
                summary.docs,
                summary.bytes,
                out.display(),
                summary.planted,
                out.join(crate::corpus::synth::SYNTH_DIR).display()
            )
        });
    }
    let app = App::open(globals).await?;
    match cmd {
        CorpusCommand::Synth { .. } => unreachable!("handled above"),
        CorpusCommand::Ingest {
            name,
            paths,
            format,
            field,
            lossy,
            dedup,
            vocab,
            holdout,
            canaries,
            canary_repeats,
            max_doc_bytes,
            shard_tokens,
        } => {
            let opts = IngestOptions {
                name: name.clone(),
                inputs: paths.clone(),
                read: ReadOptions {
                    format: *format,
                    field: field.clone(),
                    lossy: *lossy,
                    max_doc_bytes: *max_doc_bytes,
                },
                vocab: *vocab,
                holdout: *holdout,
                canaries: *canaries,
                canary_repeats: crate::corpus::canary::parse_repeats(canary_repeats)?,
                dedup: *dedup,
                shard_tokens: *shard_tokens,
            };
            let r = app.ingest(opts).await?;
            emit(cli.json, &r, || {
                let s = &r.stats;
                format!(
                    "Ingested corpus {name} ({id})\n\
                     \x20 documents   {docs} from {files} file(s) ({skipped} skipped), {bytes} bytes\n\
                     \x20 duplicates  {dups} in {groups} group(s){dedup}\n\
                     \x20 tokens      {tokens} (vocabulary {vocab})\n\
                     \x20 holdout     {hd} documents, {ht} tokens\n\
                     \x20 canaries    {canaries} (repeats {repeats:?})\n\
                     \x20 sealed      {shards} shard(s), {sealed} bytes, data key {dk} under {mk}\n\
                     \x20 time        {total:.2}s (read {read:.2}s, tokenizer {tok:.2}s, encode {enc:.2}s, seal {seal:.2}s)\n",
                    name = r.name,
                    id = r.corpus_id,
                    docs = s.documents,
                    files = s.input_files,
                    skipped = s.skipped_files,
                    bytes = s.input_bytes,
                    dups = s.duplicates,
                    groups = s.duplicate_groups,
                    dedup = if s.dedup_removed > 0 { format!(", {} removed (--dedup)", s.dedup_removed) } else { String::new() },
                    tokens = s.tokens,
                    vocab = s.vocab,
                    hd = s.holdout_documents,
                    ht = s.holdout_tokens,
                    canaries = s.canaries,
                    repeats = s.canary_repeats,
                    shards = s.shards,
                    sealed = s.sealed_bytes,
                    dk = r.data_key_id,
                    mk = r.master_key,
                    total = r.timings.total_s,
                    read = r.timings.read_and_stage_s,
                    tok = r.timings.tokenizer_training_s,
                    enc = r.timings.tokenization_s,
                    seal = r.timings.sealing_s,
                )
            })
        }
        CorpusCommand::List => {
            let list = app.corpus_list().await?;
            emit(cli.json, &list, || {
                if list.is_empty() {
                    return "No corpora yet; create one with `lethe corpus ingest --name NAME PATH...`\n"
                        .into();
                }
                let mut out = format!(
                    "{:<24} {:>10} {:>12} {:>8} {:>12}\n",
                    "NAME", "DOCUMENTS", "TOKENS", "SHARDS", "ON DISK"
                );
                for c in &list {
                    out.push_str(&format!(
                        "{:<24} {:>10} {:>12} {:>8} {:>12}\n",
                        c.name, c.stats.documents, c.stats.tokens, c.stats.shards, c.size_on_disk
                    ));
                }
                out
            })
        }
        CorpusCommand::Show { name } => {
            let c = app.corpus_show(name).await?;
            emit(cli.json, &c, || {
                let s = &c.stats;
                format!(
                    "corpus          {name} ({id})\n\
                     documents       {docs} ({train} train, {hd} holdout)\n\
                     tokens          {tokens} ({tt} train, {ht} holdout), vocabulary {vocab}\n\
                     duplicates      {dups} in {groups} group(s), {removed} removed\n\
                     canaries        {canaries} planted, repeats {repeats:?}\n\
                     input           {bytes} bytes from {files} file(s), {skipped} skipped\n\
                     on disk         {disk} bytes in {shards} shard(s) + manifest, tokenizer, canaries ({dir})\n\
                     data key        {dk}, wrapped by master key {mk}\n",
                    name = c.name,
                    id = c.id,
                    docs = s.documents,
                    train = s.train_documents,
                    hd = s.holdout_documents,
                    tokens = s.tokens,
                    tt = s.train_tokens,
                    ht = s.holdout_tokens,
                    vocab = s.vocab,
                    dups = s.duplicates,
                    groups = s.duplicate_groups,
                    removed = s.dedup_removed,
                    canaries = s.canaries,
                    repeats = s.canary_repeats,
                    bytes = s.input_bytes,
                    files = s.input_files,
                    skipped = s.skipped_files,
                    disk = c.size_on_disk,
                    shards = s.shards,
                    dir = c.directory.display(),
                    dk = c.data_key_id,
                    mk = c.master_key.as_deref().unwrap_or("?"),
                )
            })
        }
        CorpusCommand::Verify { name } => {
            let r = app.corpus_verify(name).await?;
            emit(cli.json, &r, || {
                format!(
                    "corpus {name}: OK ({} files, {} documents, {} sealed bytes authenticated)\n",
                    r.files, r.documents, r.sealed_bytes
                )
            })
        }
        CorpusCommand::Rm { name } => {
            let row = app.corpus_rm(name).await?;
            emit(
                cli.json,
                &serde_json::json!({ "removed": row.name, "id": row.id, "data_key_destroyed": row.data_key_id }),
                || {
                    format!(
                        "Removed corpus {} ({}); its data key {} is destroyed\n",
                        row.name, row.id, row.data_key_id
                    )
                },
            )
        }
    }
}

async fn keys(cli: &Cli, globals: &Globals, cmd: &KeysCommand) -> anyhow::Result<()> {
    let app = App::open(globals).await?;
    let list_text = |r: &app::keys::KeysReport| {
        let mut out = format!("master key {} ({})\n", r.master_key_id, r.source);
        for v in &r.versions {
            out.push_str(&format!(
                "  v{:<4} {:<8} wraps {} key(s)\n",
                v.version,
                if v.current {
                    "current"
                } else if v.retired {
                    "retired"
                } else {
                    "old"
                },
                v.wraps
            ));
        }
        out
    };
    match cmd {
        KeysCommand::Rotate => {
            let r = app.keys_rotate().await?;
            emit(cli.json, &r, || {
                format!(
                    "Rotated master key {}: v{} -> v{}; re-wrapped {} data key(s){}; no sealed file was rewritten.\n\
                     Retire the old version with `lethe keys retire --version {}` once backups no longer need it.\n",
                    r.master_key_id,
                    r.previous_version,
                    r.new_version,
                    r.data_keys_rewrapped,
                    if r.signing_key_rewrapped { " and the signing key" } else { "" },
                    r.previous_version
                )
            })
        }
        KeysCommand::Retire { version } => {
            let r = app.keys_retire(*version).await?;
            emit(cli.json, &r, || list_text(&r))
        }
        KeysCommand::List => {
            let r = app.keys_list().await?;
            emit(cli.json, &r, || list_text(&r))
        }
        KeysCommand::Public => {
            let signer = crate::vault::signing::Signer::load(&app.config.signing_key_file, &app.keys())?;
            let pk = signer.public_key_hex();
            emit(cli.json, &serde_json::json!({ "public_key": pk }), || {
                format!("{pk}\n")
            })
        }
    }
}

/// A progress line on stderr: redrawn in place on a terminal, every tenth of the run otherwise.
fn progress_printer(json: bool) -> impl FnMut(&Event) + Send {
    use std::io::IsTerminal;
    let tty = std::io::stderr().is_terminal() && !json;
    let mut total = 0u64;
    let mut last_pct = u64::MAX;
    move |ev: &Event| match ev {
        Event::Started {
            step,
            total_steps,
            device,
            parameters,
        } => {
            total = *total_steps;
            eprintln!(
                "training on {device}: {parameters} parameters, {total_steps} steps{}",
                if *step > 0 {
                    format!(", resuming at step {step}")
                } else {
                    String::new()
                }
            );
        }
        Event::Step {
            step,
            epoch,
            loss,
            tokens_per_s,
            eta_s,
            ..
        } => {
            let width = 30usize;
            let filled = (width as u64 * step / total.max(1)) as usize;
            let line = format!(
                "[{}{}] step {step}/{total} epoch {epoch} loss {loss:.4} {tokens_per_s:.0} tok/s ETA {}",
                "=".repeat(filled),
                " ".repeat(width - filled),
                fmt_duration(*eta_s)
            );
            if tty {
                eprint!("\r{line}\x1b[K");
            } else {
                let pct = step * 10 / total.max(1);
                if pct != last_pct {
                    last_pct = pct;
                    eprintln!("{line}");
                }
            }
        }
        Event::Epoch {
            epoch,
            train_loss,
            val_loss,
            ..
        } => {
            if tty {
                eprintln!();
            }
            match val_loss {
                Some(v) => {
                    eprintln!("epoch {epoch}: train loss {train_loss:.4}, held-out loss {v:.4} nats/token")
                }
                None => eprintln!("epoch {epoch}: train loss {train_loss:.4}"),
            }
        }
        Event::Checkpoint {
            step,
            kept: true,
            utility: Some(u),
            ..
        } => {
            eprint!("kept checkpoint at step {step}:\n{}", utility_text(u));
        }
        Event::Checkpoint { .. } => {}
    }
}

fn fmt_duration(s: f64) -> String {
    let s = s.max(0.0) as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

async fn train(cli: &Cli, globals: &Globals, a: &TrainArgs) -> anyhow::Result<()> {
    let app = App::open(globals).await?;
    let created_by = match &a.user {
        Some(u) => Some(signed_in(&app, u).await?.username),
        None => None,
    };
    let mut progress = progress_printer(cli.json);
    let summary = if let Some(run) = &a.resume {
        app.resume(run, a.max_steps, &mut progress).await?
    } else {
        let spec = TrainSpec {
            objective: a.objective,
            preset: a.preset.clone(),
            overrides: ModelOverrides {
                layers: a.layers,
                width: a.width,
                heads: a.heads,
                mlp: a.mlp,
                context: a.context,
                ..Default::default()
            },
            epochs: a.epochs,
            batch_size: a.batch_size,
            grad_accum: a.grad_accum,
            lr: a.lr,
            schedule: a.schedule,
            warmup_steps: a.warmup_steps,
            weight_decay: a.weight_decay,
            seed: a.seed,
            checkpoint_every: a.checkpoint_every,
            unique_tokens: a.unique_tokens,
            keep: crate::train::KeepRule::parse(&a.keep_checkpoints).map_err(|e| anyhow::anyhow!(e))?,
            val_windows: a.val_windows,
            val_mask_draws: a.val_mask_draws,
            val_choice_items: a.val_choice_items,
        };
        if a.gpu && !a.queue {
            anyhow::bail!("--gpu chooses which workers may run queued work: add --queue (training in the foreground uses the GPU when there is one)");
        }
        let req = app::train::TrainRequest {
            corpus: a.corpus.clone().unwrap_or_default(),
            spec,
            max_steps: a.max_steps,
            // The trainer is always recorded: the account signed in with --user, else the host's login
            // as `cli:<login>` (whose namesake account may then not approve the release); a queued
            // run's trainer is whoever queued it, even when a worker runs it.
            created_by: created_by.or_else(|| Some(app::cli_actor())),
            job_id: None,
            gpu: a.gpu,
        };
        if a.queue {
            let id = app.enqueue_train(&req).await?;
            return emit(cli.json, &serde_json::json!({ "job_id": id }), || {
                format!("Queued training job {id}; a `lethe worker` will run it (`lethe jobs show {id}`)\n")
            });
        }
        app.train(req, &mut progress).await?
    };
    emit(cli.json, &summary, || {
        format!(
            "\nrun {id}: {state} at step {step}/{total} ({secs:.1}s), final loss {loss}, validation loss {val}\n\
             weights sha256 {sha}\n{hint}",
            id = summary.run_id,
            state = if summary.finished { "finished" } else { "stopped" },
            step = summary.step,
            total = summary.total_steps,
            secs = summary.seconds,
            loss = summary.final_loss.map(|l| format!("{l:.4}")).unwrap_or_else(|| "n/a".into()),
            val = summary.val_loss.map(|l| format!("{l:.4}")).unwrap_or_else(|| "n/a".into()),
            sha = summary.weights_sha256,
            hint = if summary.finished {
                format!("sample with `lethe sample --run {} --prompt ...`\n", summary.run_id)
            } else {
                format!("continue with `lethe train --resume {}`\n", summary.run_id)
            }
        )
    })
}

async fn audit(cli: &Cli, globals: &Globals, a: &AuditArgs) -> anyhow::Result<()> {
    match &a.command {
        Some(AuditCommand::Show {
            audit,
            evidence,
            unmask_as,
        }) => {
            let app = App::open(globals).await?;
            let admin = match unmask_as {
                Some(u) => Some(signed_in(&app, u).await?),
                None => None,
            };
            let d = app.audit_details(audit, *evidence, admin.as_ref()).await?;
            emit(cli.json, &d, || {
                let mut out = format!(
                    "audit {} of run {} (checkpoint step {}, {}{})\n",
                    d.row.id,
                    d.row.run_id,
                    d.row.checkpoint_step,
                    d.row.state,
                    if d.row.quick { ", quick" } else { "" }
                );
                if let Some(e) = &d.row.error {
                    out.push_str(&format!("error: {e}\n"));
                }
                if let Some(r) = d
                    .row
                    .report
                    .clone()
                    .and_then(|r| serde_json::from_value::<crate::audit::AuditReport>(r).ok())
                {
                    out.push_str(&r.summary());
                }
                if let Some(ev) = &d.evidence {
                    out.push_str(&serde_json::to_string_pretty(ev).unwrap_or_default());
                    out.push('\n');
                }
                out
            })
        }
        Some(AuditCommand::List { run }) => {
            let app = App::open(globals).await?;
            let rows = app.audit_list(run.as_deref()).await?;
            emit(cli.json, &rows, || {
                let mut out = format!(
                    "{:<18} {:<18} {:>8} {:<10} {}\n",
                    "AUDIT", "RUN", "STEP", "STATE", "KIND"
                );
                for r in &rows {
                    out.push_str(&format!(
                        "{:<18} {:<18} {:>8} {:<10} {}\n",
                        r.id,
                        r.run_id,
                        r.checkpoint_step,
                        r.state,
                        if r.quick { "quick" } else { "full" }
                    ));
                }
                out
            })
        }
        Some(AuditCommand::Regurgitation {
            corpus,
            generations,
            field,
            min_tokens,
            min_chars,
        }) => {
            let (min_len, chars) = match (min_tokens, min_chars) {
                (_, Some(0)) | (Some(0), _) => anyhow::bail!("the minimum span length must be at least 1"),
                (_, Some(c)) => (*c, true),
                (t, None) => (t.unwrap_or(50), false),
            };
            let texts = app::audit::read_generations(generations, field)?;
            let app = App::open(globals).await?;
            let (report, results) = app.scan_generations(corpus, texts, min_len, chars).await?;
            let out = serde_json::json!({ "corpus": corpus, "summary": report, "generations": results });
            emit(cli.json, &out, || {
                let mut s = format!(
                    "{} of {} generations hold a span of at least {} {} from corpus {corpus}; longest {}, mean covered {:.1}%\n",
                    report.with_span.hits,
                    report.samples,
                    report.min_length,
                    report.unit,
                    report.longest_span,
                    100.0 * report.mean_covered_share
                );
                for r in results.iter().filter(|r| !r.spans.is_empty()) {
                    let first = &r.spans[0];
                    s.push_str(&format!(
                        "line {}: {} span(s), longest {} {}, {:.1}% covered; first from document {} at {}\n",
                        r.line,
                        r.spans.len(),
                        r.longest,
                        report.unit,
                        100.0 * r.covered_share,
                        first.doc,
                        first.doc_offset
                    ));
                }
                s
            })
        }
        None => {
            let Some(run) = &a.run else {
                anyhow::bail!("`lethe audit` needs --run RUN (or a subcommand: show, list, regurgitation)");
            };
            let params = match &a.params {
                Some(p) => {
                    let text = std::fs::read_to_string(p)
                        .map_err(|e| anyhow::anyhow!("cannot read audit parameters {}: {e}", p.display()))?;
                    let base = if a.quick {
                        crate::audit::AuditParams::quick()
                    } else {
                        crate::audit::AuditParams::default()
                    };
                    let mut v = serde_json::to_value(base)?;
                    let patch: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                        anyhow::anyhow!("audit parameters {} are not valid JSON: {e}", p.display())
                    })?;
                    let Some(patch) = patch.as_object() else {
                        anyhow::bail!("audit parameters {} must be a JSON object", p.display());
                    };
                    for (k, val) in patch {
                        v[k] = val.clone();
                    }
                    Some(
                        serde_json::from_value(v)
                            .map_err(|e| anyhow::anyhow!("audit parameters {}: {e}", p.display()))?,
                    )
                }
                None => None,
            };
            let mut rules = a.rules.clone();
            let mut deny_list = a.deny_list.clone();
            let params = match &a.policy {
                Some(file) => {
                    let p = crate::policy::Policy::load(file)?;
                    rules.extend(p.secret_packs.iter().cloned());
                    deny_list = deny_list.or(p.deny_list.clone());
                    Some(p.audit)
                }
                None => params,
            };
            if a.gpu && !a.queue {
                anyhow::bail!("--gpu chooses which workers may run queued work: add --queue");
            }
            let mut req = app::audit::AuditRequest {
                run: run.clone(),
                step: a.step,
                eval_file: a.eval_file.clone(),
                quick: a.quick,
                params,
                rules,
                deny_list,
                created_by: Some(app::cli_actor()),
                job_id: None,
                gpu: a.gpu,
            };
            if let Some(n) = a.shards {
                let mut p = app::audit_shards::request_params(&req);
                p.shards = n;
                req.params = Some(p);
            }
            let app = App::open(globals).await?;
            if a.queue {
                let id = app.enqueue_audit(&req).await?;
                return emit(cli.json, &serde_json::json!({ "job_id": id }), || {
                    format!("Queued audit job {id}; a `lethe worker` will run it (`lethe jobs show {id}`)\n")
                });
            }
            let quiet = cli.json;
            let mut last = (None, usize::MAX);
            let mut progress = |stage: crate::audit::Stage, done: usize, total: usize| {
                if quiet {
                    return;
                }
                let pct = (done * 100).checked_div(total).unwrap_or(100);
                if last != (Some(stage), pct) {
                    last = (Some(stage), pct);
                    eprint!("\r  {:<14} {:>3}% ({done}/{total})   ", stage.as_str(), pct);
                    if done >= total {
                        eprintln!();
                    }
                }
            };
            let outcome = app.audit(req, &mut progress).await?;
            emit(cli.json, &outcome, || {
                format!(
                    "audit {} of run {} (checkpoint step {}):\n{}show the evidence with `lethe audit show {} --evidence`\n",
                    outcome.audit,
                    outcome.run,
                    outcome.checkpoint_step,
                    outcome.report.summary(),
                    outcome.audit
                )
            })
        }
    }
}

async fn sample(cli: &Cli, globals: &Globals, a: &SampleArgs) -> anyhow::Result<()> {
    if a.num == 0 || a.num > 1024 {
        anyhow::bail!("--num must be between 1 and 1024");
    }
    let app = App::open(globals).await?;
    let mut opts = SampleOptions::new(a.length, 0);
    opts.steps = a.steps.unwrap_or(a.length);
    opts.block_length = a.block_length.unwrap_or(a.length);
    opts.temperature = a.temperature;
    opts.top_p = a.top_p;
    opts.seed = a.seed;
    opts.remasking = match a.remasking {
        RemaskingArg::LowConfidence => Remasking::LowConfidence,
        RemaskingArg::Random => Remasking::Random,
    };
    let texts = app
        .sample(app::train::SampleRequest {
            run: a.run.clone(),
            prompt: a.prompt.clone(),
            infill: a.infill.clone(),
            infill_span: a.span,
            opts,
            count: a.num,
        })
        .await?;
    emit(cli.json, &texts, || {
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| format!("--- sample {} ---\n{t}\n", i + 1))
            .collect()
    })
}

async fn runs(cli: &Cli, globals: &Globals, cmd: &RunsCommand) -> anyhow::Result<()> {
    let app = App::open(globals).await?;
    match cmd {
        RunsCommand::List => {
            let list = app.runs_list().await?;
            emit(cli.json, &list, || {
                if list.is_empty() {
                    return "No training runs yet; start one with `lethe train --corpus NAME`\n".into();
                }
                let mut out = format!(
                    "{:<18} {:<10} {:<6} {:<12} {:>12}\n",
                    "RUN", "OBJECTIVE", "PRESET", "STATE", "STEP"
                );
                for r in &list {
                    out.push_str(&format!(
                        "{:<18} {:<10} {:<6} {:<12} {:>12}\n",
                        r.id,
                        r.objective,
                        r.preset,
                        r.state,
                        format!("{}/{}", r.step, r.total_steps)
                    ));
                }
                out
            })
        }
        RunsCommand::Show { run } => {
            let d = app.run_details(run).await?;
            emit(cli.json, &d, || {
                let mut out = format!(
                    "run          {} ({} on corpus {}, preset {})\nstate        {} at step {}/{}{}\n",
                    d.run.id,
                    d.run.objective,
                    d.corpus,
                    d.run.preset,
                    d.run.state,
                    d.run.step,
                    d.run.total_steps,
                    d.run
                        .error
                        .as_ref()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                );
                let m = &d.run.config["model"];
                out.push_str(&format!(
                    "model        {} layers, width {}, {} heads, mlp {}, context {}, vocab {}\n",
                    m["layers"], m["width"], m["heads"], m["mlp"], m["context"], m["vocab"]
                ));
                let c = &d.run.config;
                out.push_str(&format!(
                    "training     {} epochs x {} steps, batch {} x {} accum, peak lr {}, seed {}\n",
                    c["epochs"],
                    c["steps_per_epoch"],
                    c["batch_size"],
                    c["grad_accum"],
                    c["schedule"]["peak"],
                    c["seed"]
                ));
                out.push_str("epochs       train loss   validation loss\n");
                for e in &d.epochs {
                    out.push_str(&format!(
                        "  {:<10} {:>10} {:>17}\n",
                        e.epoch,
                        e.train_loss.map(|v| format!("{v:.4}")).unwrap_or_default(),
                        e.val_loss
                            .map(|v| format!("{v:.4}"))
                            .unwrap_or_else(|| "n/a".into())
                    ));
                }
                out.push_str(&format!(
                    "data         {} unique tokens in {} training documents{}\n",
                    c["train_tokens"],
                    c["train_docs"],
                    if c["unique_tokens"].is_null() {
                        String::new()
                    } else {
                        format!(" (capped at {}, chosen by {})", c["unique_tokens"], c["subset"])
                    }
                ));
                if !c["unique_tokens"].is_null() {
                    let parts: Vec<String> = d
                        .subset_folders
                        .iter()
                        .map(|f| format!("{} {}/{}", f.folder, f.chosen, f.documents))
                        .collect();
                    out.push_str(&format!("subset       by folder: {}\n", parts.join(", ")));
                }
                out.push_str(
                    "checkpoints  (held-out bits per byte and continuation choice; memorization where audited)\n\
                     \x20 step     epochs  kept   bits/byte  choice             audit        exact   canary  MIA AUC\n",
                );
                for k in &d.history {
                    let u = k.utility.as_ref();
                    let a = k.audit.as_ref();
                    out.push_str(&format!(
                        "  {:<8} {:>6} {:>5} {:>11} {:<18} {:<12} {:>6} {:>8} {:>8}\n",
                        k.step,
                        k.epochs.map_or("-".into(), |e| format!("{e:.1}")),
                        if k.kept { "yes" } else { "no" },
                        u.and_then(|u| u.bits_per_byte)
                            .map_or("-".into(), |b| format!("{b:.4}")),
                        u.and_then(|u| u.choice_accuracy).map_or("-".into(), |c| format!(
                            "{:.1}% (n={})",
                            100.0 * c.value,
                            c.n
                        )),
                        a.map_or("-".into(), |a| a.id.clone()),
                        a.map_or("-".into(), |a| format!("{:.1}%", 100.0 * a.extraction_exact)),
                        a.map_or("-".into(), |a| format!("{:.1}", a.max_canary_exposure)),
                        a.map_or("-".into(), |a| format!("{:.3}", a.membership_max_auc)),
                    ));
                }
                out
            })
        }
    }
}

/// Prints `value` as JSON or `text()` as text.
/// Reads `user`'s password from `LETHE_PASSWORD`, or asks for it on the terminal without echo, and signs
/// the user in.
async fn signed_in(app: &App, user: &str) -> anyhow::Result<crate::store::User> {
    let password = match std::env::var("LETHE_PASSWORD") {
        Ok(p) => p,
        Err(_) => read_password(user)?,
    };
    app.authenticate(user, &password, "cli").await
}

fn read_password(user: &str) -> anyhow::Result<String> {
    use std::io::{BufRead, IsTerminal, Write};
    let tty = std::io::stdin().is_terminal();
    if tty {
        eprint!("password for {user}: ");
        let _ = std::io::stderr().flush();
        let _ = std::process::Command::new("stty").arg("-echo").status();
    }
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    if tty {
        let _ = std::process::Command::new("stty").arg("echo").status();
        eprintln!();
    }
    read.map_err(|e| anyhow::anyhow!("cannot read the password: {e}"))?;
    let p = line.trim_end_matches(['\n', '\r']).to_string();
    if p.is_empty() {
        anyhow::bail!("no password given for {user} (set LETHE_PASSWORD or type it when asked)");
    }
    Ok(p)
}

fn granted_text(what: &str, g: &app::grants::Granted) -> String {
    match g {
        app::grants::Granted::Done {
            one_time_password: Some(p),
        } => format!("{what}; one-time password (shown once): {p}\n"),
        app::grants::Granted::Done {
            one_time_password: None,
        } => format!("{what}\n"),
        app::grants::Granted::Pending { grant } => format!(
            "{what}: waits for a second admin (dual control): grant {}\n  another admin confirms it with \
             `lethe users confirm {} --user ADMIN`\n",
            grant.id, grant.id
        ),
    }
}

fn grant_line(g: &crate::store::GrantRow) -> String {
    let detail = match g.kind.as_str() {
        "create" | "role" => format!(
            "role {}",
            g.details.get("role").and_then(|v| v.as_str()).unwrap_or("?")
        ),
        "credential" => format!(
            "{} key {}",
            g.details.get("key_kind").and_then(|v| v.as_str()).unwrap_or("?"),
            g.details.get("key").and_then(|v| v.as_str()).unwrap_or("?")
        ),
        _ => String::new(),
    };
    format!(
        "{:<26} {:<13} {:<20} {:<28} asked by {} at {}{}\n",
        g.id,
        g.kind,
        printable(&g.target),
        detail,
        printable(&g.requested_by),
        crate::ledger::format_time(g.requested_at),
        if g.state == "pending" {
            String::new()
        } else {
            format!(
                " ({} by {})",
                g.state,
                printable(g.decided_by.as_deref().unwrap_or("?"))
            )
        }
    )
}

async fn users(cli: &Cli, globals: &Globals, cmd: &UsersCommand) -> anyhow::Result<()> {
    let app = App::open(globals).await?;
    let parse_role = |role: &str| -> anyhow::Result<crate::store::Role> {
        role.parse().map_err(|e: String| anyhow::anyhow!(e))
    };
    match cmd {
        UsersCommand::Add { name, role, user } => {
            let admin = signed_in(&app, user).await?;
            let role = parse_role(role)?;
            let g = app.add_user(&admin, name, role).await?;
            let mut v = serde_json::json!({ "user": name, "role": role });
            if let (Some(o), Ok(serde_json::Value::Object(m))) = (v.as_object_mut(), serde_json::to_value(&g))
            {
                o.extend(m);
            }
            emit(cli.json, &v, || granted_text(&format!("{role} {name}"), &g))
        }
        UsersCommand::Set {
            name,
            role,
            disable,
            enable,
            user,
        } => {
            let admin = signed_in(&app, user).await?;
            let target = app.user(name).await?;
            let role = match role {
                Some(r) => parse_role(r)?,
                None => target.role,
            };
            let disabled = if *disable {
                true
            } else if *enable {
                false
            } else {
                target.disabled
            };
            let g = app.set_user(&admin, name, role, disabled).await?;
            emit(cli.json, &g, || {
                granted_text(
                    &format!("{name}: {role}{}", if disabled { ", disabled" } else { "" }),
                    &g,
                )
            })
        }
        UsersCommand::Reset { name, user } => {
            let admin = signed_in(&app, user).await?;
            let g = app.reset_password(&admin, name).await?;
            emit(cli.json, &g, || {
                granted_text(&format!("password of {name} reset"), &g)
            })
        }
        UsersCommand::Pending => {
            let list = app.pending_grants().await?;
            emit(cli.json, &list, || {
                if list.is_empty() {
                    return "no grant waits for a second admin\n".to_string();
                }
                list.iter().map(grant_line).collect()
            })
        }
        UsersCommand::Confirm { grant, user, host } => {
            let c = if *host {
                app.confirm_grant(app::grants::Confirmer::Host, grant).await?
            } else {
                let name = user
                    .as_deref()
                    .ok_or_else(|| anyhow::anyhow!("--user ADMIN or --host is needed"))?;
                let admin = signed_in(&app, name).await?;
                app.confirm_grant(app::grants::Confirmer::Admin(&admin), grant)
                    .await?
            };
            emit(cli.json, &c, || {
                let mut out = format!(
                    "confirmed {} ({} of {}, asked by {}); it took effect\n",
                    c.grant.id,
                    c.grant.kind,
                    printable(&c.grant.target),
                    printable(&c.grant.requested_by)
                );
                if let Some(p) = &c.one_time_password {
                    out.push_str(&format!(
                        "one-time password of {} (shown once; hand it over): {p}\n",
                        printable(&c.grant.target)
                    ));
                }
                out
            })
        }
        UsersCommand::Cancel { grant, user } => {
            let by = signed_in(&app, user).await?;
            let g = app.cancel_grant(&by, grant).await?;
            emit(cli.json, &g, || format!("{} cancelled\n", g.id))
        }
        UsersCommand::ApproverRole { role, user } => {
            let admin = signed_in(&app, user).await?;
            let g = app.request_approver_role(&admin, parse_role(role)?).await?;
            emit(cli.json, &g, || {
                granted_text(
                    &format!("approving role {role}"),
                    &app::grants::Granted::Pending { grant: g.clone() },
                )
            })
        }
        UsersCommand::List => {
            let list = app.store.users().list().await?;
            emit(cli.json, &list, || {
                let mut out = format!("{:<24} {:<10} {}\n", "USER", "ROLE", "STATE");
                for u in &list {
                    let state = if u.disabled {
                        "disabled"
                    } else if u.must_change_password {
                        "one-time password"
                    } else {
                        "active"
                    };
                    out.push_str(&format!("{:<24} {:<10} {state}\n", u.username, u.role.as_str()));
                }
                out
            })
        }
        UsersCommand::Recover { name } => {
            let password = app.recover_admin(name).await?;
            emit(
                cli.json,
                &serde_json::json!({ "username": name, "role": "admin", "one_time_password": password }),
                || format!("{name} is an enabled admin again; one-time password (shown once): {password}\n"),
            )
        }
    }
}

async fn approver(cli: &Cli, globals: &Globals, cmd: &ApproverCommand) -> anyhow::Result<()> {
    use crate::vault::approver::ApproverKey;
    if let ApproverCommand::Keygen { out } = cmd {
        let pk = ApproverKey::generate(out)?;
        return emit(
            cli.json,
            &serde_json::json!({ "file": out, "public_key": pk }),
            || {
                format!(
                    "wrote {} (keep it private); public key {pk}\nenrol it: lethe approver enrol --key {} --user NAME\n",
                    out.display(),
                    out.display()
                )
            },
        );
    }
    let app = App::open(globals).await?;
    match cmd {
        ApproverCommand::Keygen { .. } => unreachable!("handled above"),
        ApproverCommand::Enrol { key, label, user } => {
            let u = signed_in(&app, user).await?;
            let k = ApproverKey::load(key)?;
            let pk = k.public_key_hex();
            let proof = k.sign(&app::grants::enrolment_message(&u.username, &pk));
            let g = app.enrol_ed25519(&u, &pk, &proof, label).await?;
            emit(cli.json, &g, || {
                granted_text(
                    &format!("key {} of {}", &pk[..16], u.username),
                    &app::grants::Granted::Pending { grant: g.clone() },
                )
            })
        }
        ApproverCommand::List => {
            let keys = app.approver_keys(None).await?;
            let users = app.store.users().list().await?;
            let name = |id: &str| {
                users
                    .iter()
                    .find(|u| u.id == id)
                    .map(|u| u.username.clone())
                    .unwrap_or_else(|| id.to_string())
            };
            emit(cli.json, &keys, || {
                let mut out = format!(
                    "{:<37} {:<16} {:<9} {:<8} {:<17} {}\n",
                    "KEY", "USER", "KIND", "STATE", "PUBLIC KEY", "LABEL"
                );
                for k in &keys {
                    out.push_str(&format!(
                        "{:<37} {:<16} {:<9} {:<8} {:<17} {}\n",
                        k.id,
                        name(&k.user_id),
                        k.kind,
                        k.state,
                        &k.public_key[..16.min(k.public_key.len())],
                        printable(&k.label)
                    ));
                }
                out
            })
        }
        ApproverCommand::Revoke { id, user } => {
            let u = signed_in(&app, user).await?;
            app.revoke_approver_key(&u, id).await?;
            emit(cli.json, &serde_json::json!({ "revoked": id }), || {
                format!("{id} revoked\n")
            })
        }
    }
}

fn status_text(s: &app::release::ReleaseStatus) -> String {
    let mut out = format!("run {}: {}\n", s.run, s.stage);
    if let Some(a) = &s.audit {
        out.push_str(&format!(
            "  audit     {a} (checkpoint step {})\n",
            s.checkpoint_step.map_or("?".into(), |x| x.to_string())
        ));
    }
    if let Some(g) = &s.gate {
        out.push_str(&format!(
            "  gate      {} {} under policy {:?}\n",
            g.id,
            if g.passed { "passed" } else { "FAILED" },
            g.policy_name
        ));
    }
    if let Some(r) = &s.release {
        out.push_str(&format!(
            "  release   {} {} (requested by {}; {} approvals of {} by {}s needed{}){}\n",
            r.id,
            r.state,
            r.requested_by,
            s.reviews.iter().filter(|x| x.decision == "approve").count(),
            r.required_approvals,
            r.approver_role,
            if r.waiver.is_some() {
                ", under a waiver"
            } else {
                ""
            },
            r.reason.as_deref().map(|x| format!(": {x}")).unwrap_or_default()
        ));
        review_lines(&mut out, &s.reviews);
    }
    for p in &s.history {
        out.push_str(&format!(
            "  earlier   {} {} (audit {}, requested by {}){}\n",
            p.release.id,
            p.release.state,
            p.release.audit_id,
            printable(&p.release.requested_by),
            p.release
                .reason
                .as_deref()
                .map(|x| format!(": {}", printable(x)))
                .unwrap_or_default()
        ));
        review_lines(&mut out, &p.reviews);
    }
    out
}

fn review_lines(out: &mut String, reviews: &[crate::store::ReviewRow]) {
    for v in reviews {
        out.push_str(&format!(
            "    {} {} ({}): {}\n",
            v.decision,
            printable(&v.username),
            v.role,
            printable(&v.comment)
        ));
    }
}

/// `text` safe to print on a terminal: control characters (C0, DEL, C1: newlines, escape sequences,
/// carriage returns) are written as `\u{..}` escapes, so text a user supplied (a user name tried at
/// sign-in, a comment) cannot forge a line or drive the terminal.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

async fn release_cmd(cli: &Cli, globals: &Globals, cmd: &ReleaseCommand) -> anyhow::Result<()> {
    if let ReleaseCommand::Verify {
        dir,
        public_key,
        approver_keys,
    } = cmd
    {
        let trusted = match approver_keys {
            Some(f) => Some(
                std::fs::read_to_string(f)
                    .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", f.display()))?
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(str::to_string)
                    .collect::<Vec<_>>(),
            ),
            None => None,
        };
        let pk = match public_key {
            Some(k) => k.clone(),
            None => {
                let app = App::open(globals).await.map_err(|e| {
                    e.context("no --public-key given and no data directory to read the appliance's key from")
                })?;
                crate::vault::signing::Signer::load(&app.config.signing_key_file, &app.keys())?
                    .public_key_hex()
            }
        };
        let v = app::release::verify_bundle_with(dir, &pk, trusted.as_deref())?;
        return emit(cli.json, &v.manifest, || {
            format!(
                "{}: bundle verified: {} files, signed by key {} (run {}, audit {}, policy sha256 {})\n",
                dir.display(),
                v.manifest.files.len(),
                v.key_fingerprint,
                v.manifest.run_id,
                v.manifest.audit_id,
                v.manifest.policy_sha256
            )
        });
    }
    let app = App::open(globals).await?;
    if let ReleaseCommand::Status { run } = cmd {
        let s = app.release_status(run).await?;
        return emit(cli.json, &s, || status_text(&s));
    }
    let target = match cmd {
        ReleaseCommand::Request { target, .. }
        | ReleaseCommand::Approve { target, .. }
        | ReleaseCommand::Reject { target, .. }
        | ReleaseCommand::Export { target, .. } => target,
        ReleaseCommand::Status { .. } | ReleaseCommand::Verify { .. } => unreachable!("handled above"),
    };
    let policy = app::gate::load_policy(target.policy.as_deref())?;
    let user = signed_in(&app, &target.user).await?;
    match cmd {
        ReleaseCommand::Request { waiver, step, .. } => {
            let r = app
                .request_release(&user, &target.run, &policy, waiver.as_deref(), *step)
                .await?;
            emit(cli.json, &r, || {
                format!(
                    "release {} of run {} requested by {}; needs {} approvals by {}s\n",
                    r.id, r.run_id, r.requested_by, r.required_approvals, r.approver_role
                )
            })
        }
        ReleaseCommand::Approve { comment, key, .. } => {
            // Without --key the rules still answer first (who may approve), then the missing signature.
            let proof = match key {
                Some(key) => {
                    let key = crate::vault::approver::ApproverKey::load(key)?;
                    let statement = app
                        .approval_statement(&user, &target.run, &policy, comment)
                        .await?;
                    Some(app::release::ApprovalProof {
                        credential: key.public_key_hex(),
                        signature: key.sign(statement.as_bytes()),
                        authenticator_data: None,
                        client_data: None,
                    })
                }
                None => None,
            };
            let s = app
                .review_release(&user, &target.run, &policy, true, comment, proof)
                .await?;
            emit(cli.json, &s, || status_text(&s))
        }
        ReleaseCommand::Reject { comment, .. } => {
            let s = app
                .review_release(&user, &target.run, &policy, false, comment, None)
                .await?;
            emit(cli.json, &s, || status_text(&s))
        }
        ReleaseCommand::Export { out, .. } => {
            let e = app.export_release(&user, &target.run, &policy, out).await?;
            emit(cli.json, &e, || {
                format!(
                    "release {} exported to {} ({} files, manifest signed by key {}); check it with `lethe release verify {} --public-key $(lethe keys public)`\n",
                    e.release,
                    e.dir,
                    e.manifest.files.len(),
                    e.manifest.key_id,
                    e.dir
                )
            })
        }
        ReleaseCommand::Status { .. } | ReleaseCommand::Verify { .. } => unreachable!("handled above"),
    }
}

/// A gate that evaluated to "failed": the decision is printed already; the process exits with
/// [`GateFailed::EXIT_CODE`] and no error line, so scripts can tell a failed gate from a broken command.
#[derive(Debug)]
pub struct GateFailed;

impl GateFailed {
    pub const EXIT_CODE: u8 = 3;
}

impl std::fmt::Display for GateFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the gate failed")
    }
}

impl std::error::Error for GateFailed {}

fn emit<T: Serialize>(json: bool, value: &T, text: impl FnOnce() -> String) -> anyhow::Result<()> {
    use std::io::Write;
    let out = if json {
        serde_json::to_string_pretty(value)? + "\n"
    } else {
        text()
    };
    // `println!` panics when stdout is closed early (`lethe … | head`); a reader that stopped reading is
    // not an error worth more than a quiet exit.
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(out.as_bytes()).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(e).context("cannot write to stdout"))
        }
        _ => Ok(()),
    }
}

/// What a checkpoint learned, in a few lines.
fn utility_text(u: &crate::eval::Utility) -> String {
    let mut s = format!(
        "  held-out bits per byte  {}  ({} nats/token; {} windows, {} tokens, {})\n",
        u.bits_per_byte.map_or("n/a".into(), |b| format!("{b:.4}")),
        u.nats_per_token.map_or("n/a".into(), |b| format!("{b:.4}")),
        u.windows,
        u.tokens,
        if u.mask_draws > 0 {
            format!("ELBO upper bound, {} mask draws each", u.mask_draws)
        } else {
            "exact".to_string()
        }
    );
    match &u.choice_accuracy {
        Some(a) => s.push_str(&format!(
            "  continuation choice     {:.1}%  (95% interval {:.1}–{:.1}%, {} held-out items, chance 25%)\n",
            100.0 * a.value,
            100.0 * a.low,
            100.0 * a.high,
            a.n
        )),
        None => s.push_str("  continuation choice     n/a (no held-out document long enough)\n"),
    }
    if let Some(c) = &u.custom {
        s.push_str(&format!(
            "  your items ({})  {:.1}%  (95% interval {:.1}–{:.1}%, {} items)\n",
            c.file,
            100.0 * c.accuracy.value,
            100.0 * c.accuracy.low,
            100.0 * c.accuracy.high,
            c.accuracy.n
        ));
    }
    s
}

/// `lethe gate --select`'s table.
fn select_text(sel: &app::gate::Selected) -> String {
    let f = |v: Option<f64>, p: usize| v.map_or("-".to_string(), |x| format!("{x:.p$}"));
    let mut s = format!(
        "checkpoints of run {} under policy {:?}, most useful by {:?} (newest first):\n\
         {:>8} {:>7} {:>8} {:>7} {:>8} {:>8}  verdict\n",
        sel.run, sel.policy, sel.rank_by, "step", "epochs", "choice", "bpb", "exact", "canary"
    );
    for c in &sel.candidates {
        s.push_str(&format!(
            "{:>8} {:>7} {:>8} {:>7} {:>8} {:>8}  {}\n",
            c.step,
            f(c.epochs, 1),
            f(c.choice_accuracy, 3),
            f(c.bits_per_byte, 3),
            f(c.exact_extraction, 4),
            f(c.max_canary_exposure, 1),
            c.verdict
        ));
    }
    match (&sel.step, &sel.gate) {
        (Some(step), Some(g)) => s.push_str(&format!(
            "selected step {step}: gate {} PASSED (audit {}); `lethe release request --run {}` names it\n",
            g.decision, g.audit, sel.run
        )),
        _ => s.push_str("no audited checkpoint passes the policy: nothing selected\n"),
    }
    s
}

async fn study(cli: &Cli, globals: &Globals, cmd: &StudyCommand) -> anyhow::Result<()> {
    let app = App::open(globals).await?;
    match cmd {
        StudyCommand::Repetition {
            corpus,
            unique_tokens,
            epochs,
            objectives,
            preset,
            context,
            batch_size,
            lr,
            seed,
            audit_params,
            user,
            queue,
            gpu,
        } => {
            if *gpu && !*queue {
                anyhow::bail!("--gpu chooses which workers may run queued work: add --queue");
            }
            let created_by = match user {
                Some(u) => Some(signed_in(&app, u).await?.username),
                None if *queue => Some(app::cli_actor()),
                None => None,
            };
            let audit = match audit_params {
                Some(p) => {
                    let text = std::fs::read_to_string(p)
                        .map_err(|e| anyhow::anyhow!("cannot read audit parameters {}: {e}", p.display()))?;
                    serde_json::from_str(&text)
                        .map_err(|e| anyhow::anyhow!("{} is not valid audit parameters: {e}", p.display()))?
                }
                None => app::study::RepetitionSpec::study_audit(),
            };
            let spec = app::study::RepetitionSpec {
                corpus: corpus.clone(),
                unique_tokens: *unique_tokens,
                epochs: epochs.clone(),
                objectives: objectives.clone(),
                preset: preset.clone(),
                context: *context,
                batch_size: *batch_size,
                lr: *lr,
                seed: *seed,
                audit,
                created_by,
                gpu: *gpu,
            };
            if *queue {
                let id = app.enqueue_study(&spec).await?;
                return emit(cli.json, &serde_json::json!({ "job_id": id }), || {
                    format!("Queued study job {id}; a `lethe worker` will run it (`lethe jobs show {id}`)\n")
                });
            }
            let quiet = cli.json;
            let mut progress = |line: String| {
                if !quiet {
                    eprintln!("{line}");
                }
            };
            let d = app.study_repetition(spec, None, &mut progress).await?;
            emit(cli.json, &d, || study_text(&d))
        }
        StudyCommand::Show { id } => {
            let d = app.study_details(id).await?;
            emit(cli.json, &d, || study_text(&d))
        }
        StudyCommand::List => {
            let list = app.studies_list().await?;
            emit(cli.json, &list, || {
                if list.is_empty() {
                    return "No studies yet; run `lethe study repetition --corpus NAME --unique-tokens N`\n"
                        .into();
                }
                let mut out = format!(
                    "{:<20} {:<11} {:<12} {:<10} {:>6}\n",
                    "STUDY", "KIND", "CORPUS", "STATE", "RUNS"
                );
                for d in &list {
                    out.push_str(&format!(
                        "{:<20} {:<11} {:<12} {:<10} {:>6}\n",
                        d.row.id,
                        d.row.kind,
                        d.corpus,
                        d.row.state,
                        d.points.len()
                    ));
                }
                out
            })
        }
    }
}

/// A study's table, then one text chart per figure against epochs.
fn study_text(d: &app::study::StudyDetails) -> String {
    let spec = &d.row.spec;
    let mut s = format!(
        "study {} ({}, {}) on corpus {}: preset {}, {} unique tokens, epochs {}, seed {}\n",
        d.row.id,
        d.row.kind,
        d.row.state,
        d.corpus,
        spec["preset"],
        spec["unique_tokens"],
        spec["epochs"],
        spec["seed"]
    );
    if let Some(e) = &d.row.error {
        s.push_str(&format!("error: {e}\n"));
    }
    s.push_str(&format!(
        "{:<10} {:>6} {:>10} {:>9} {:>17} {:>10} {:>10} {:>7} {:>7} {:>8}  {}\n",
        "objective",
        "epochs",
        "train loss",
        "bits/byte",
        "choice (95% CI)",
        "exact",
        "exact hi",
        "canary",
        "MIA",
        "seconds",
        "run"
    ));
    for p in &d.points {
        s.push_str(&format!(
            "{:<10} {:>6} {:>10} {:>9} {:>17} {:>10} {:>10} {:>7.1} {:>7.3} {:>8.0}  {}\n",
            p.objective.as_str(),
            p.epochs,
            p.final_train_loss.map_or("-".into(), |v| format!("{v:.3}")),
            p.bits_per_byte.map_or("-".into(), |v| format!("{v:.3}")),
            p.choice_accuracy.map_or("-".into(), |a| format!(
                "{:.1}% ({:.0}-{:.0})",
                100.0 * a.value,
                100.0 * a.low,
                100.0 * a.high
            )),
            format!("{:.1}%", 100.0 * p.exact_extraction),
            format!("{:.1}%", 100.0 * p.exact_extraction_high),
            p.max_canary_exposure,
            p.membership_auc,
            p.train_seconds,
            p.run
        ));
    }
    s
}

#[cfg(test)]
mod printable_tests {
    use super::printable;

    /// The security review's low finding 10: a crafted user name put a fake line and terminal escapes
    /// into `lethe ledger show`.
    #[test]
    fn control_characters_are_escaped_and_plain_text_is_untouched() {
        assert!(matches!(printable("rita"), std::borrow::Cow::Borrowed("rita")));
        let crafted = "x\n    99  2026-01-01T00:00:00Z  rose  release.approve\u{1b}[2J\r\u{9b}31m\u{7f}";
        let shown = printable(crafted);
        assert!(!shown.chars().any(char::is_control), "{shown}");
        assert!(
            shown.contains("\\u{a}") && shown.contains("\\u{1b}") && shown.contains("\\u{9b}"),
            "{shown}"
        );
        assert!(printable("Zoë, 東京").eq("Zoë, 東京"));
    }
}
