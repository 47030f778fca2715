//! Parity with the PyTorch reference (`bench/reference.py`): the same random weights (saved as
//! safetensors with the checkpoint names) and the same fixed masks go through both implementations;
//! logits, both losses, their gradients and a deterministic generation must agree.
//!
//! The Python interpreter is `$LETHE_PYTHON`, else `.venv/bin/python` in the repository (what `make
//! setup` creates). The test fails, never skips, when neither exists: parity is the model's proof of
//! correctness.

use std::path::PathBuf;
use std::process::Command;

use tch::{Device, Kind, Tensor};

use super::config::{ModelConfig, ModelOverrides};
use super::objective::{ar_loss, diffusion_loss, MaskPlan, MaskRng, MaskSchedule};
use super::sampler::SampleOptions;
use super::transformer::Transformer;

/// Tolerances, float32 on the CPU. Both sides run the same libtorch kernels, but not always the same
/// ones: Lethe runs the head on masked rows only and its own AR window, so sums are ordered
/// differently. Observed differences are around 1e-7 (see the assertion messages).
const LOGITS_ATOL: f64 = 1e-5;
const LOSS_RTOL: f64 = 1e-5;
const GRAD_ATOL: f64 = 1e-6;
const GRAD_RTOL: f64 = 1e-4;

fn python() -> PathBuf {
    let candidate = std::env::var_os("LETHE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    assert!(
        candidate.exists(),
        "no Python for the parity test at {}: run `make setup`, or set LETHE_PYTHON to a python with torch",
        candidate.display()
    );
    candidate
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn forward_losses_gradients_and_generation_match_the_pytorch_reference() {
    let dir = tempfile::tempdir().unwrap();
    let o = ModelOverrides {
        layers: Some(2),
        width: Some(48),
        heads: Some(4),
        mlp: Some(80),
        context: Some(24),
        ..Default::default()
    };
    let config = ModelConfig::tiny(61).unwrap().with_overrides(&o).unwrap();
    let mask_id = 60;
    tch::manual_seed(42);
    let model = Transformer::new(&config, Device::Cpu).unwrap();
    // Norm gains start at 1, which would hide a gain applied to the wrong tensor; randomise them.
    tch::no_grad(|| {
        for (name, mut var) in model.var_store().variables() {
            if name.contains("norm") {
                var.copy_(&(Tensor::randn_like(&var) * 0.2 + 1.0));
            }
        }
    });
    let mut causal = Transformer::new(&config.clone().with_causal(true), Device::Cpu).unwrap();
    causal.var_store_mut().copy(model.var_store()).unwrap();
    model
        .var_store()
        .save(dir.path().join("weights.safetensors"))
        .unwrap();

    let tokens = Tensor::randint(mask_id, [3, 16], (Kind::Int64, Device::Cpu));
    let sched = MaskSchedule {
        eps: 1e-3,
        random_length_prob: 0.0,
    };
    let plan = MaskPlan::sample(3, 16, &sched, &mut MaskRng::new(5), Device::Cpu);
    let prompt = tokens.narrow(1, 0, 6).copy();
    let (gen_length, steps, block_length) = (8i64, 4i64, 4i64);
    let scalar = |v: i64| Tensor::from_slice(&[v]);
    let inputs = [
        ("tokens", tokens.copy()),
        ("masked", plan.masked.copy()),
        ("t", plan.t.copy()),
        ("mask_id", scalar(mask_id)),
        ("prompt", prompt.copy()),
        ("gen_length", scalar(gen_length)),
        ("steps", scalar(steps)),
        ("block_length", scalar(block_length)),
    ];
    Tensor::write_safetensors(&inputs, dir.path().join("inputs.safetensors")).unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::to_string(&config).unwrap(),
    )
    .unwrap();

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench/reference.py");
    let run = Command::new(python())
        .arg(&script)
        .arg("parity")
        .args(["--config", "config.json", "--weights", "weights.safetensors"])
        .args(["--inputs", "inputs.safetensors", "--out", "out.safetensors"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "reference failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let reference: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(dir.path().join("out.safetensors"))
            .unwrap()
            .into_iter()
            .collect();

    // Zeroes the gradients, backpropagates `loss`, and compares the gradients the reference sent under
    // `prefix` with ours.
    let check_grads = |m: &Transformer, loss: &Tensor, prefix: &str| {
        for var in m.var_store().trainable_variables() {
            let mut g = var.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
        loss.backward();
        let vars = m.var_store().variables();
        let mut checked = 0;
        for (key, theirs) in &reference {
            let Some(name) = key.strip_prefix(prefix) else {
                continue;
            };
            let ours = vars[name].grad();
            let d = max_abs_diff(&ours, theirs);
            eprintln!("parity: {prefix}{name} max |diff| {d:e}");
            assert!(
                ours.allclose(theirs, GRAD_RTOL, GRAD_ATOL, false),
                "{prefix}{name}: max |diff| {d:e}"
            );
            checked += 1;
        }
        assert_eq!(checked, 5, "the reference sends five gradients under {prefix}");
    };
    let check_loss = |what: &str, ours: &Tensor, theirs: &Tensor| {
        let (ours, theirs) = (ours.double_value(&[]), theirs.double_value(&[0]));
        eprintln!("parity: {what} {ours} vs {theirs}");
        assert!(
            (ours - theirs).abs() <= LOSS_RTOL * theirs.abs(),
            "{what} {ours} vs {theirs}"
        );
    };
    let check_logits = |what: &str, ours: &Tensor, theirs: &Tensor| {
        let d = max_abs_diff(ours, theirs);
        eprintln!("parity: {what} max |diff| {d:e}");
        assert!(d < LOGITS_ATOL, "{what} differ by {d:e}");
    };

    // Diffusion model: logits, loss with the fixed masks, gradients.
    check_logits(
        "bidirectional logits",
        &tch::no_grad(|| model.forward(&tokens)),
        &reference["logits_bidir"],
    );
    let loss = diffusion_loss(&model, &tokens, mask_id, &plan);
    check_loss("diffusion loss", &loss, &reference["diffusion_loss"]);
    check_grads(&model, &loss, "diffusion_grad.");

    // LLaDA generation at temperature 0 (the reference is LLaDA's own algorithm).
    let mut opts = SampleOptions::new(gen_length, mask_id);
    opts.steps = steps;
    opts.block_length = block_length;
    let prompts = Vec::<Vec<i64>>::try_from(&prompt).unwrap();
    let generated = model.generate(&prompts, &opts).unwrap();
    assert_eq!(
        generated,
        Vec::<Vec<i64>>::try_from(&reference["generated"]).unwrap()
    );

    // AR baseline: the same weights under causal attention.
    check_logits(
        "causal logits",
        &tch::no_grad(|| causal.forward(&tokens)),
        &reference["logits_causal"],
    );
    let loss = ar_loss(&causal, &tokens);
    check_loss("ar loss", &loss, &reference["ar_loss"]);
    check_grads(&causal, &loss, "ar_grad.");
}
