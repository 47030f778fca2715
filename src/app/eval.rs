//! Evaluation use case: what one checkpoint of a run learned (`lethe eval`), with more held-out windows,
//! items and mask draws than the trainer spends when it saves a kept checkpoint, and a customer's own
//! multiple-choice file. The estimators are [`crate::eval`]'s.

use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

use super::audit::eval_set;
use super::App;
use crate::corpus::Split;
use crate::eval::{EvalSettings, Utility};

/// A finished evaluation.
#[derive(Debug, Serialize)]
pub struct EvalOutcome {
    pub run: String,
    pub step: i64,
    pub epochs: f64,
    pub utility: Utility,
}

impl App {
    /// Evaluates checkpoint `step` of a run (the newest when `None`). `full` uses
    /// [`EvalSettings::full`], otherwise the run's own checkpoint settings. A full evaluation is recorded
    /// on the checkpoint (as `utility_full`, beside the figures it got when saved).
    pub async fn evaluate(
        &self,
        run_id: &str,
        step: Option<i64>,
        eval_file: Option<&Path>,
        full: bool,
    ) -> anyhow::Result<EvalOutcome> {
        let run = self.run_row(run_id).await?;
        let (model, cfg, tokenizer, checkpoint) = self.load_run_model_at(&run.id, step).await?;
        let custom = self.custom_items(eval_file, &tokenizer, &cfg)?;
        let (_, sealed) = self.run_corpus(&run).await?;
        let cfg2 = cfg.clone();
        let utility = tokio::task::spawn_blocking(move || -> anyhow::Result<Utility> {
            let mut holdout = Vec::new();
            for d in sealed.documents(Split::Holdout, 2) {
                let d = d?;
                holdout.push((d.index, d.tokens));
            }
            let settings = if full {
                EvalSettings::full(cfg2.seed)
            } else {
                cfg2.eval_settings()
            };
            let set = eval_set(&holdout, &tokenizer, &cfg2, settings, custom);
            Ok(set.evaluate(&model)?)
        })
        .await
        .context("the evaluation was interrupted")??;
        if full {
            let mut info = checkpoint.info.clone().unwrap_or_else(|| serde_json::json!({}));
            info["utility_full"] = serde_json::to_value(&utility)?;
            self.store
                .runs()
                .set_checkpoint_info(&run.id, checkpoint.step, &info)
                .await?;
        }
        Ok(EvalOutcome {
            run: run.id,
            step: checkpoint.step,
            epochs: cfg.epochs_at(checkpoint.step as u64),
            utility,
        })
    }
}
