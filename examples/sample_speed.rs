//! Sampling throughput of Lethe's batched sampler on random prompts: the Lethe half of
//! `bench/sample_speed.sh`, which runs `bench/reference.py sample-bench` (PyTorch eager) on the same shapes
//! and compares the two.
//!
//! Each timed call is what the extraction audit makes: [`Transformer::generate`] on one chunk of `--batch`
//! prompts with `SampleOptions::new(gen_length, mask_id)` (greedy, one block; `--steps` forward passes,
//! one token committed per step by default), `batch_size` set to the chunk, prompts in and generations out
//! as host `Vec`s. A diffusion model samples LLaDA-style, the AR baseline (`--objective ar`, causal) left to
//! right, greedily, without a KV cache. On CUDA `generate` runs under bf16 autocast itself. One short
//! warmup call (2 tokens in 2 steps, full batch) is not timed.
//!
//! Besides the generation time, one bare model forward of a step's shape is timed (`forward_ms`): the full
//! row through the body and the output head on the generated block only (AR: the last position, at the
//! window's mean width). `steps × forward_ms` against the chunk time says how much of the sampler's time
//! is not the model.
//!
//! Prints one JSON line with the same keys as the reference's.
//!
//! `cargo build --release --example sample_speed` builds `target/release/examples/sample_speed`.

use std::time::Instant;

use clap::Parser;
use lethe::model::runtime::TorchRuntime;
use lethe::model::{autocast_bf16, ModelConfig, ModelOverrides, SampleOptions, Transformer};
use tch::{Device, Kind, Tensor};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "small")]
    preset: String,
    #[arg(long, default_value_t = 8192)]
    vocab: i64,
    #[arg(long, default_value = "diffusion", value_parser = ["diffusion", "ar"])]
    objective: String,
    /// Prompts in all; they are generated for in chunks of --batch.
    #[arg(long, default_value_t = 64)]
    prompts: usize,
    /// Tokens per prompt (all prompts have this length, as in the extraction audit).
    #[arg(long, default_value_t = 50)]
    prompt_len: usize,
    /// Tokens generated after each prompt.
    #[arg(long, default_value_t = 50)]
    gen_length: i64,
    /// Diffusion denoising steps (forward passes); 0 means one per generated token.
    #[arg(long, default_value_t = 0)]
    steps: i64,
    /// Rows per generate call and per forward (the audit's: 32 on a CPU, 256 on a GPU).
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Bare forwards timed for `forward_ms` (0: none).
    #[arg(long, default_value_t = 1)]
    forward_reps: usize,
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

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

fn median(xs: &[f64]) -> Option<f64> {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => None,
        n if n % 2 == 1 => Some(v[n / 2]),
        n => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
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
        a.prompts >= 1 && a.batch >= 1,
        "--prompts and --batch must be at least 1"
    );
    anyhow::ensure!(
        a.prompt_len >= 1 && a.gen_length >= 2,
        "--prompt-len must be at least 1 and --gen-length at least 2"
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
    let mask_id = config.vocab - 1;
    let steps = if a.steps == 0 { a.gen_length } else { a.steps };
    let mut opts = SampleOptions::new(a.gen_length, mask_id);
    opts.steps = steps;
    opts.batch_size = a.batch;

    // Prompts live on the host, as the audit's do: generate() uploads each chunk and brings the tokens back.
    let prompts: Vec<Vec<i64>> = Vec::try_from(Tensor::randint(
        mask_id,
        [a.prompts as i64, a.prompt_len as i64],
        (Kind::Int64, Device::Cpu),
    ))?;

    let warm = Instant::now();
    let mut warm_opts = SampleOptions::new(2, mask_id);
    warm_opts.batch_size = a.batch;
    let chunk0 = &prompts[..a.batch.min(prompts.len())];
    model.generate(chunk0, &warm_opts)?;
    let warmup_ms = 1000.0 * warm.elapsed().as_secs_f64();

    let (mut rows, mut times, mut checksum) = (Vec::new(), Vec::new(), 0i64);
    for chunk in prompts.chunks(a.batch) {
        sync(device);
        let start = Instant::now();
        let out = model.generate(chunk, &opts)?;
        times.push(1000.0 * start.elapsed().as_secs_f64());
        rows.push(chunk.len());
        anyhow::ensure!(
            out.iter().all(|r| r.len() == a.gen_length as usize),
            "generate returned a row of the wrong length"
        );
        checksum += out.iter().flatten().sum::<i64>();
    }

    // One step's model work alone: what generate's loop runs per step, without the sampling around it.
    let (width, head_cols) = if ar {
        (a.prompt_len as i64 + a.gen_length / 2, 1)
    } else {
        (a.prompt_len as i64 + a.gen_length, a.gen_length)
    };
    let x = Tensor::randint(mask_id, [a.batch as i64, width], (Kind::Int64, device));
    let mut fwd = Vec::new();
    for _ in 0..a.forward_reps {
        sync(device);
        let start = Instant::now();
        tch::no_grad(|| {
            autocast_bf16(cuda, || {
                let h = model.hidden(&x, None).narrow(1, width - head_cols, head_cols);
                let _ = model.head(&h).to_kind(Kind::Float);
            })
        });
        sync(device);
        fwd.push(1000.0 * start.elapsed().as_secs_f64());
    }

    let total_rows: usize = rows.iter().sum();
    let total_s: f64 = times.iter().sum::<f64>() / 1000.0;
    let report = serde_json::json!({
        "impl": "lethe",
        "torch": TorchRuntime::probe().libtorch_version,
        "device": if cuda { "cuda:0" } else { "cpu" },
        "threads": tch::get_num_threads(),
        "objective": a.objective,
        "params": model.num_parameters(),
        "prompts": a.prompts,
        "prompt_len": a.prompt_len,
        "gen_length": a.gen_length,
        "steps": if ar { a.gen_length } else { steps },
        "batch": a.batch,
        "chunk_rows": rows,
        "chunk_times_ms": times,
        "prefixes_per_s": total_rows as f64 / total_s,
        "tokens_per_s": total_rows as f64 * a.gen_length as f64 / total_s,
        "warmup_ms": warmup_ms,
        "forward_ms": median(&fwd),
        "checksum": checksum,
        // The reference's self-check of its batched sampler; nothing to check here.
        "check": null,
    });
    println!("{report}");
    Ok(())
}
