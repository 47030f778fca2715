//! The train module owns the training loop: the packed data, the learning-rate schedule, AdamW with
//! saveable state, sealed checkpoints and resume, validation, and the events a face turns into progress
//! bars and database rows. It knows no database itself.

pub mod checkpoint;
pub mod data;
pub mod optim;
pub mod schedule;

use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::corpus::tokenizer::MASK_ID;
use crate::eval::{EvalSet, Utility};
use crate::model::{
    ar_loss, autocast_bf16, diffusion_loss, MaskPlan, MaskRng, MaskSchedule, ModelConfig, ModelOverrides,
    Transformer,
};
use crate::vault::stream::DataKey;
use checkpoint::TrainState;
use data::{SubsetRule, TokenWindows};
use optim::AdamW;
use schedule::{LrSchedule, ScheduleKind};

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("invalid training configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Model(#[from] crate::model::ConfigError),
    #[error(transparent)]
    Corpus(#[from] crate::corpus::CorpusError),
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    #[error("cannot write checkpoint {path}: {source} (earlier checkpoints are intact)")]
    CheckpointWrite { path: String, source: std::io::Error },
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    #[error("training stopped: {0}")]
    Stopped(String),
}

impl TrainError {
    fn json(e: serde_json::Error) -> TrainError {
        TrainError::Checkpoint(e.to_string())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    Diffusion,
    Ar,
}

impl Objective {
    pub fn as_str(self) -> &'static str {
        match self {
            Objective::Diffusion => "diffusion",
            Objective::Ar => "ar",
        }
    }
}

/// What the user asks for (`lethe train` flags); every field has a default or is resolved against the
/// preset and the corpus in [`TrainSpec::resolve`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainSpec {
    pub objective: Objective,
    pub preset: String,
    pub overrides: ModelOverrides,
    pub epochs: u64,
    /// Windows per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    /// Peak learning rate; by default one that suits the preset.
    pub lr: Option<f64>,
    pub schedule: ScheduleKind,
    /// Warmup steps; by default 5% of the run, at most 200.
    pub warmup_steps: Option<u64>,
    pub weight_decay: f64,
    pub seed: u64,
    /// Steps between checkpoints; by default a tenth of the run.
    pub checkpoint_every: Option<u64>,
    /// Cap on the training tokens used (the rest of the corpus is left out), to study repetition: whole
    /// documents chosen by a keyed hash of the seed (see [`data::Subset`]).
    pub unique_tokens: Option<u64>,
    /// Holdout windows scored at every kept checkpoint (drawn once for the run).
    pub val_windows: usize,
    /// Diffusion: mask draws per validation window.
    #[serde(default = "four")]
    pub val_mask_draws: usize,
    /// Held-out continuation-choice items scored at every kept checkpoint.
    #[serde(default = "choice_items")]
    pub val_choice_items: usize,
    /// Which checkpoints stay in the run's history.
    #[serde(default)]
    pub keep: KeepRule,
}

fn choice_items() -> usize {
    crate::eval::EvalSettings::checkpoint(0).choice_items
}

fn four() -> usize {
    4
}

/// Which epoch-end checkpoints a run keeps for good (the others are for resuming only and are pruned):
/// `log` keeps epochs 1, 2, 4, 8, … and the last; `all` every epoch; `N` N epochs evenly spaced, the
/// last among them. Each kept checkpoint is evaluated (held-out bits per byte, continuation choice) when
/// it is saved, and any of them can be audited and released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum KeepRule {
    #[default]
    Log,
    All,
    Spaced(u64),
}

impl KeepRule {
    pub fn parse(s: &str) -> Result<KeepRule, String> {
        match s {
            "log" => Ok(KeepRule::Log),
            "all" => Ok(KeepRule::All),
            n => match n.parse::<u64>() {
                Ok(k) if k >= 1 => Ok(KeepRule::Spaced(k)),
                _ => Err(format!(
                    "--keep-checkpoints {s:?} must be log, all, or a number of checkpoints (at least 1)"
                )),
            },
        }
    }

    /// Whether the checkpoint after `epoch` epochs (1-based) of `epochs` is kept.
    pub fn keeps(self, epoch: u64, epochs: u64) -> bool {
        if epoch == epochs {
            return true;
        }
        match self {
            KeepRule::Log => epoch.is_power_of_two(),
            KeepRule::All => true,
            KeepRule::Spaced(n) => epoch * n / epochs > (epoch - 1) * n / epochs,
        }
    }
}

impl Default for TrainSpec {
    fn default() -> Self {
        Self {
            objective: Objective::Diffusion,
            preset: "tiny".into(),
            overrides: ModelOverrides::default(),
            epochs: 1,
            batch_size: 16,
            grad_accum: 1,
            lr: None,
            schedule: ScheduleKind::Cosine,
            warmup_steps: None,
            weight_decay: 0.1,
            seed: 1,
            checkpoint_every: None,
            unique_tokens: None,
            val_windows: 256,
            val_mask_draws: 4,
            val_choice_items: choice_items(),
            keep: KeepRule::Log,
        }
    }
}

/// The resolved configuration saved in every checkpoint: no options left.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainConfig {
    pub objective: Objective,
    pub preset: String,
    pub model: ModelConfig,
    pub epochs: u64,
    pub batch_size: usize,
    pub grad_accum: usize,
    pub steps_per_epoch: u64,
    pub total_steps: u64,
    pub schedule: LrSchedule,
    pub weight_decay: f64,
    pub betas: (f64, f64),
    pub grad_clip: f64,
    pub seed: u64,
    pub checkpoint_every: u64,
    pub unique_tokens: Option<u64>,
    /// How the `unique_tokens` documents were chosen (runs from before the keyed selection: `prefix`).
    #[serde(default)]
    pub subset: SubsetRule,
    /// Tokens of the packed training stream, and the training documents in it.
    #[serde(default)]
    pub train_tokens: u64,
    #[serde(default)]
    pub train_docs: usize,
    pub train_windows: usize,
    pub val_windows: usize,
    #[serde(default = "one")]
    pub val_mask_draws: usize,
    #[serde(default = "choice_items")]
    pub val_choice_items: usize,
    #[serde(default)]
    pub keep: KeepRule,
    pub mask_eps: f64,
    pub random_length_prob: f64,
}

fn one() -> usize {
    1
}

impl TrainConfig {
    /// Epochs done after `step` steps.
    pub fn epochs_at(&self, step: u64) -> f64 {
        step as f64 / self.steps_per_epoch.max(1) as f64
    }

    /// What a kept checkpoint is evaluated with.
    pub fn eval_settings(&self) -> crate::eval::EvalSettings {
        crate::eval::EvalSettings {
            windows: self.val_windows,
            mask_draws: self.val_mask_draws,
            choice_items: self.val_choice_items,
            ..crate::eval::EvalSettings::checkpoint(self.seed)
        }
    }
}

/// Learning rates that train each preset stably (smaller models tolerate larger steps).
fn default_lr(preset: &str) -> f64 {
    match preset {
        "tiny" => 2e-3,
        "small" => 1e-3,
        "base" => 6e-4,
        _ => 3e-4,
    }
}

impl TrainSpec {
    /// Checks the spec against the corpus before any training starts.
    pub fn resolve(
        &self,
        vocab: i64,
        train: &TokenWindows,
        subset: &data::Subset,
        train_docs: usize,
    ) -> Result<TrainConfig, TrainError> {
        let train_windows = train.count();
        let model = ModelConfig::preset(&self.preset, vocab)?
            .with_overrides(&self.overrides)?
            .with_causal(self.objective == Objective::Ar);
        model.validate()?;
        if self.epochs == 0 {
            return Err(TrainError::Config("--epochs must be at least 1".into()));
        }
        if self.val_windows == 0 || self.val_mask_draws == 0 {
            return Err(TrainError::Config(
                "--val-windows and --val-mask-draws must be at least 1".into(),
            ));
        }
        if self.batch_size == 0 || self.grad_accum == 0 {
            return Err(TrainError::Config(
                "--batch-size and --grad-accum must be at least 1".into(),
            ));
        }
        let per_step = self.batch_size * self.grad_accum;
        if train_windows < per_step {
            return Err(TrainError::Config(format!(
                "the training data holds {train_windows} window(s) of {} tokens, fewer than one step needs \
                 ({} × {}); lower --batch-size, --grad-accum or --context",
                model.context, self.batch_size, self.grad_accum
            )));
        }
        if let Some(lr) = self.lr {
            if !(lr > 0.0 && lr < 1.0) {
                return Err(TrainError::Config(format!("--lr {lr} must be in (0, 1)")));
            }
        }
        if !(0.0..1.0).contains(&self.weight_decay) {
            return Err(TrainError::Config("--weight-decay must be in [0, 1)".into()));
        }
        let steps_per_epoch = (train_windows / per_step) as u64;
        let total_steps = steps_per_epoch * self.epochs;
        let warmup = self
            .warmup_steps
            .unwrap_or_else(|| (total_steps / 20).clamp(1, 200));
        if warmup >= total_steps && total_steps > 1 {
            return Err(TrainError::Config(format!(
                "--warmup-steps {warmup} must be below the run's {total_steps} steps"
            )));
        }
        let checkpoint_every = self.checkpoint_every.unwrap_or((total_steps / 10).max(1));
        if checkpoint_every == 0 {
            return Err(TrainError::Config("--checkpoint-every must be at least 1".into()));
        }
        Ok(TrainConfig {
            objective: self.objective,
            preset: self.preset.clone(),
            model,
            epochs: self.epochs,
            batch_size: self.batch_size,
            grad_accum: self.grad_accum,
            steps_per_epoch,
            total_steps,
            schedule: LrSchedule {
                kind: self.schedule,
                peak: self.lr.unwrap_or_else(|| default_lr(&self.preset)),
                min_ratio: 0.1,
                warmup_steps: warmup,
                total_steps,
                decay_fraction: 0.2,
            },
            weight_decay: self.weight_decay,
            betas: (0.9, 0.95),
            grad_clip: 1.0,
            seed: self.seed,
            checkpoint_every,
            unique_tokens: self.unique_tokens,
            subset: SubsetRule::Hash,
            train_tokens: subset.packed_tokens,
            train_docs,
            train_windows,
            val_windows: self.val_windows,
            val_mask_draws: self.val_mask_draws,
            val_choice_items: self.val_choice_items,
            keep: self.keep,
            mask_eps: 1e-3,
            random_length_prob: 0.01,
        })
    }
}

/// What the loop reports as it goes.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Started {
        step: u64,
        total_steps: u64,
        device: String,
        parameters: i64,
    },
    Step {
        step: u64,
        epoch: u64,
        loss: f64,
        lr: f64,
        grad_norm: f64,
        tokens_per_s: f64,
        eta_s: f64,
    },
    Epoch {
        step: u64,
        epoch: u64,
        train_loss: f64,
        /// Held-out nats per token, at kept checkpoints only (see [`KeepRule`]).
        val_loss: Option<f64>,
    },
    Checkpoint {
        step: u64,
        file: String,
        sha256: String,
        weights_sha256: String,
        bytes: u64,
        /// Kept for good (an epoch the [`KeepRule`] keeps), with what it learned; otherwise a checkpoint
        /// for resuming only, pruned as newer ones land.
        kept: bool,
        /// Epochs done (fractional for a checkpoint inside an epoch).
        epochs: f64,
        utility: Option<Box<Utility>>,
    },
}

/// Everything a training run needs besides its configuration.
pub struct RunContext<'a> {
    pub run_id: String,
    pub dir: PathBuf,
    pub key: &'a DataKey,
    pub key_id: String,
    pub device: Device,
    /// Checkpoint bytes to resume from.
    pub resume: Option<Vec<u8>>,
    /// Steps to run in this call before returning (tests and benchmarks); `None` to the end.
    pub max_steps: Option<u64>,
    /// Names this session's checkpoint files apart from any other session's (see
    /// [`checkpoint::file_name`]).
    pub file_tag: String,
}

/// The outcome of [`train`].
#[derive(Debug, Clone, Serialize)]
pub struct TrainOutcome {
    pub step: u64,
    pub finished: bool,
    pub final_loss: Option<f64>,
    pub val_loss: Option<f64>,
    pub weights_sha256: String,
    pub tokens_seen: u64,
}

fn model_vars(model: &Transformer) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = model.var_store().variables().into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Loads `model.*` tensors into `model`.
pub fn load_weights(
    model: &Transformer,
    tensors: &std::collections::HashMap<String, Tensor>,
) -> Result<(), TrainError> {
    tch::no_grad(|| {
        for (name, mut var) in model.var_store().variables() {
            let t = tensors
                .get(&format!("model.{name}"))
                .ok_or_else(|| TrainError::Checkpoint(format!("checkpoint lacks weight {name}")))?;
            if t.size() != var.size() {
                return Err(TrainError::Checkpoint(format!(
                    "weight {name} has shape {:?}, the model expects {:?}",
                    t.size(),
                    var.size()
                )));
            }
            var.copy_(&t.to_device(var.device()));
        }
        Ok(())
    })
}

/// Runs (or resumes) training. `on_event` sees every step, epoch end and checkpoint; an error it returns
/// stops the run.
pub fn train(
    cfg: &TrainConfig,
    train_data: &TokenWindows,
    eval: &EvalSet,
    ctx: &RunContext,
    on_event: &mut dyn FnMut(Event) -> Result<(), TrainError>,
) -> Result<TrainOutcome, TrainError> {
    let device = ctx.device;
    let bf16 = device.is_cuda();
    tch::manual_seed(cfg.seed as i64);
    let model = Transformer::new(&cfg.model, device)?;
    let mut opt = AdamW::new(model.var_store(), cfg.betas.0, cfg.betas.1, cfg.weight_decay);
    let config_json = serde_json::to_value(cfg).map_err(TrainError::json)?;
    let mut state = TrainState {
        step: 0,
        epoch: 0,
        step_in_epoch: 0,
        mask_rng: cfg.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        tokens_seen: 0,
        epoch_loss_sum: 0.0,
        epoch_loss_steps: 0,
    };
    if let Some(bytes) = &ctx.resume {
        let decoded = checkpoint::decode(bytes)?;
        let saved: TrainConfig = serde_json::from_value(decoded.config.clone())
            .map_err(|e| TrainError::Checkpoint(format!("checkpoint configuration is unreadable: {e}")))?;
        if saved != *cfg {
            return Err(TrainError::Checkpoint(
                "the checkpoint was made with another configuration; resume takes the run's own".into(),
            ));
        }
        load_weights(&model, &decoded.tensors)?;
        let mut lookup = |name: &str| {
            decoded
                .tensors
                .get(&format!("optim.{name}"))
                .map(Tensor::shallow_clone)
        };
        opt.load_state(decoded.state.step as i64, &mut lookup)
            .map_err(TrainError::Checkpoint)?;
        state = decoded.state;
    }
    on_event(Event::Started {
        step: state.step,
        total_steps: cfg.total_steps,
        device: format!("{device:?}"),
        parameters: model.num_parameters(),
    })?;

    let schedule = MaskSchedule {
        eps: cfg.mask_eps,
        random_length_prob: cfg.random_length_prob,
    };
    let per_step = cfg.batch_size * cfg.grad_accum;
    let tokens_per_step = (per_step as i64 * cfg.model.context) as u64;
    let mut order = data::epoch_order(train_data.count(), cfg.seed, state.epoch);
    let mut last_loss = None;
    let mut last_val = None;
    let started = Instant::now();
    let start_step = state.step;
    let stop_at = ctx.max_steps.map(|m| state.step + m).unwrap_or(u64::MAX);
    let mut mask_rng = MaskRng::new(state.mask_rng);
    let mut window = Instant::now();

    while state.step < cfg.total_steps && state.step < stop_at {
        let lr = cfg.schedule.lr(state.step);
        opt.zero_grad();
        // The micro-batches' losses stay on the device until the step is queued: reading a loss waits
        // for the device, and a wait before the optimizer would leave a GPU idle while it is launched.
        let mut step_loss = Tensor::zeros([], (Kind::Float, device));
        for micro in 0..cfg.grad_accum {
            let from = (state.step_in_epoch as usize) * per_step + micro * cfg.batch_size;
            let idx = &order[from..from + cfg.batch_size];
            let tokens = train_data.batch(idx, device);
            let loss = autocast_bf16(bf16, || match cfg.objective {
                Objective::Diffusion => {
                    let plan = MaskPlan::sample(
                        cfg.batch_size as i64,
                        cfg.model.context,
                        &schedule,
                        &mut mask_rng,
                        device,
                    );
                    let tokens = if plan.len < cfg.model.context {
                        tokens.narrow(1, 0, plan.len)
                    } else {
                        tokens
                    };
                    diffusion_loss(&model, &tokens, i64::from(MASK_ID), &plan)
                }
                Objective::Ar => ar_loss(&model, &tokens),
            });
            let scaled = &loss / cfg.grad_accum as f64;
            scaled.backward();
            step_loss += scaled.detach().to_kind(Kind::Float);
        }
        let grad_norm = opt.step(lr, Some(cfg.grad_clip));
        let (step_loss, grad_norm) = (step_loss.double_value(&[]), grad_norm.double_value(&[]));
        // A non-finite loss also poisoned this step's update; nothing of it is checkpointed, so the run
        // stops here and its last checkpoint stays the last good state.
        if !step_loss.is_finite() {
            return Err(TrainError::Stopped(format!(
                "loss became {step_loss} at step {}; lower --lr",
                state.step
            )));
        }
        state.step += 1;
        state.step_in_epoch += 1;
        state.tokens_seen += tokens_per_step;
        state.epoch_loss_sum += step_loss;
        state.epoch_loss_steps += 1;
        state.mask_rng = mask_rng.state();
        last_loss = Some(step_loss);
        let elapsed = window.elapsed().as_secs_f64().max(1e-9);
        window = Instant::now();
        let done_here = (state.step - start_step) as f64;
        let eta = started.elapsed().as_secs_f64() / done_here * (cfg.total_steps - state.step) as f64;
        on_event(Event::Step {
            step: state.step,
            epoch: state.epoch,
            loss: step_loss,
            lr,
            grad_norm,
            tokens_per_s: tokens_per_step as f64 / elapsed,
            eta_s: eta,
        })?;

        let mut kept = None;
        if state.step_in_epoch == cfg.steps_per_epoch {
            let done = state.epoch + 1;
            let val = if cfg.keep.keeps(done, cfg.epochs) {
                let u = eval
                    .evaluate(&model)
                    .map_err(|e| TrainError::Stopped(e.to_string()))?;
                let val = u.nats_per_token;
                kept = Some(u);
                val
            } else {
                None
            };
            if val.is_some() {
                last_val = val;
            }
            on_event(Event::Epoch {
                step: state.step,
                epoch: state.epoch,
                train_loss: state.epoch_loss_sum / state.epoch_loss_steps.max(1) as f64,
                val_loss: val,
            })?;
            state.epoch += 1;
            state.step_in_epoch = 0;
            state.epoch_loss_sum = 0.0;
            state.epoch_loss_steps = 0;
            order = data::epoch_order(train_data.count(), cfg.seed, state.epoch);
        }
        // A run stopped by `--max-steps` checkpoints where it stops, so nothing it did is lost.
        if kept.is_some()
            || state.step % cfg.checkpoint_every == 0
            || state.step == cfg.total_steps
            || state.step == stop_at
        {
            let weights = model_vars(&model);
            let bytes = checkpoint::encode(&weights, &opt.state(), &state, &config_json)?;
            let written = checkpoint::write_sealed(
                &ctx.dir,
                &ctx.run_id,
                state.step,
                ctx.key,
                &ctx.key_id,
                &ctx.file_tag,
                &bytes,
            )?;
            on_event(Event::Checkpoint {
                step: state.step,
                file: written.file,
                sha256: written.sha256,
                weights_sha256: checkpoint::weights_sha256(&weights),
                bytes: written.bytes,
                kept: kept.is_some(),
                epochs: cfg.epochs_at(state.step),
                utility: kept.map(Box::new),
            })?;
        }
    }
    Ok(TrainOutcome {
        step: state.step,
        finished: state.step >= cfg.total_steps,
        final_loss: last_loss,
        val_loss: last_val,
        weights_sha256: checkpoint::weights_sha256(&model_vars(&model)),
        tokens_seen: state.tokens_seen,
    })
}

/// Rebuilds a model from checkpoint bytes, for sampling and audits.
pub fn load_model(bytes: &[u8], device: Device) -> Result<(Transformer, TrainConfig), TrainError> {
    let decoded = checkpoint::decode(bytes)?;
    let cfg: TrainConfig = serde_json::from_value(decoded.config)
        .map_err(|e| TrainError::Checkpoint(format!("checkpoint configuration is unreadable: {e}")))?;
    let model = Transformer::new(&cfg.model, device)?;
    load_weights(&model, &decoded.tensors)?;
    Ok((model, cfg))
}
