//! Training throughput of Lethe's model on random tokens: the Lethe half of `bench/train_speed.sh`, which
//! runs `bench/reference.py bench` (PyTorch eager) on the same shapes and compares the two.
//!
//! Prints one JSON line with the same keys as the reference's. Each step is what the trainer does: draw a
//! mask plan, forward and loss (under bf16 autocast on CUDA), backward, gradient clipping at norm 1.0 and
//! the trainer's own AdamW (`lethe::train::optim`, β 0.9/0.95, weight decay 0.1 on matrices), then read
//! the loss and the gradient norm back. Warmup steps are not timed.
//!
//! `cargo build --release --example train_speed` builds `target/release/examples/train_speed`.

use std::time::Instant;

use clap::Parser;
use lethe::model::{
    ar_loss, autocast_bf16, diffusion_loss, MaskPlan, MaskRng, MaskSchedule, ModelConfig, ModelOverrides,
    Transformer,
};
use lethe::train::optim::AdamW;
use tch::{Device, Kind, Tensor};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "small")]
    preset: String,
    #[arg(long, default_value_t = 8192)]
    vocab: i64,
    #[arg(long, default_value = "diffusion", value_parser = ["diffusion", "ar"])]
    objective: String,
    #[arg(long, default_value_t = 8)]
    batch: i64,
    #[arg(long, default_value_t = 256)]
    seq: i64,
    #[arg(long, default_value_t = 10)]
    steps: usize,
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    #[arg(long, default_value_t = 3e-4)]
    lr: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// auto (CUDA when available), cpu or cuda.
    #[arg(long, default_value = "auto")]
    device: String,
    #[arg(long)]
    layers: Option<i64>,
    #[arg(long)]
    width: Option<i64>,
    #[arg(long)]
    heads: Option<i64>,
    #[arg(long)]
    mlp: Option<i64>,
    #[arg(long)]
    context: Option<i64>,
    /// Print the resolved model config as JSON (the reference reads it) and exit.
    #[arg(long)]
    print_config: bool,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let overrides = ModelOverrides {
        layers: a.layers,
        width: a.width,
        heads: a.heads,
        mlp: a.mlp,
        context: a.context,
        ..Default::default()
    };
    let ar = a.objective == "ar";
    let config = ModelConfig::preset(&a.preset, a.vocab)?
        .with_overrides(&overrides)?
        .with_causal(ar);
    if a.print_config {
        println!("{}", serde_json::to_string(&config)?);
        return Ok(());
    }
    anyhow::ensure!(
        a.seq <= config.context,
        "--seq {} exceeds the context {}",
        a.seq,
        config.context
    );
    let device = match a.device.as_str() {
        "auto" => Device::cuda_if_available(),
        "cpu" => Device::Cpu,
        "cuda" => Device::Cuda(0),
        other => anyhow::bail!("unknown --device {other} (auto, cpu, cuda)"),
    };
    let cuda = device.is_cuda();
    tch::manual_seed(a.seed as i64);
    let model = Transformer::new(&config, device)?;
    let mut opt = AdamW::new(model.var_store(), 0.9, 0.95, 0.1);
    let mask_id = config.vocab - 1;
    // AR reads seq + 1 tokens to train on seq positions, so both objectives push batch × seq positions.
    let width = a.seq + i64::from(ar);
    let data = Tensor::randint(mask_id, [a.batch, width], (Kind::Int64, device));
    let schedule = MaskSchedule {
        eps: 1e-3,
        random_length_prob: 0.0,
    };
    let mut rng = MaskRng::new(a.seed);
    let (mut losses, mut norms, mut times) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..a.warmup + a.steps {
        if cuda {
            tch::Cuda::synchronize(0);
        }
        let start = Instant::now();
        let loss = autocast_bf16(cuda, || {
            if ar {
                ar_loss(&model, &data)
            } else {
                let plan = MaskPlan::sample(a.batch, a.seq, &schedule, &mut rng, device);
                diffusion_loss(&model, &data, mask_id, &plan)
            }
        });
        opt.zero_grad();
        loss.backward();
        let norm = opt.step(a.lr, Some(1.0));
        // Device syncs, as the reference's loss.item() and norm.item().
        losses.push(loss.double_value(&[]));
        norms.push(norm.double_value(&[]));
        times.push(start.elapsed().as_secs_f64());
    }
    let timed: f64 = times[a.warmup..].iter().sum();
    let steps = (times.len() - a.warmup) as f64;
    let report = serde_json::json!({
        "impl": "lethe",
        "device": if cuda { "cuda:0" } else { "cpu" },
        "threads": tch::get_num_threads(),
        "objective": a.objective,
        "batch": a.batch,
        "seq": a.seq,
        "steps": a.steps,
        "warmup": a.warmup,
        "params": model.num_parameters(),
        "tokens_per_s": (a.batch * a.seq) as f64 * steps / timed,
        "step_ms": 1000.0 * timed / steps,
        "step_times_ms": times[a.warmup..].iter().map(|t| 1000.0 * t).collect::<Vec<_>>(),
        "loss_first": losses.first(),
        "loss_last": losses.last(),
        "grad_norm_last": norms.last(),
    });
    println!("{report}");
    Ok(())
}
