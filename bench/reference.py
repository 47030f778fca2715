#!/usr/bin/env python3
"""PyTorch eager reference of Lethe's model (src/model): the same transformer, objectives and sampler,
written the plain nanoGPT way, for three jobs:

  parity  load weights and inputs (fixed masks) from safetensors files written by the Rust parity test,
          and write back logits, losses, gradients and generations for it to compare;
  bench   train for some steps on random tokens and print tokens/s as one JSON line, the peer figure of
          `examples/train_speed.rs` (bench/train_speed.sh runs both).
  sample-bench
          generate with the batched sampler (`generate_batched`, or greedy AR) on random prompts and print
          prefixes/s and tokens/s as one JSON line, the peer figure of `examples/sample_speed.rs`
          (bench/sample_speed.sh runs both).

Parameter names equal Lethe's checkpoint tensor names, so `Transformer(cfg).load_state_dict(tensors)`
loads a Lethe checkpoint. Only torch is needed: the .venv has no numpy or safetensors package, so the
safetensors format (8-byte little-endian header length, JSON header, raw little-endian data) is read and
written here.
"""

import argparse
import ctypes
import json
import math
import struct
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# --------------------------------------------------------------------------------------------- safetensors

DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
NAMES = {v: k for k, v in DTYPES.items()}


def load_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        dtype = DTYPES[info["dtype"]]
        raw = bytearray(data[8 + n + start:8 + n + end])
        if dtype == torch.bool:  # read as bytes: frombuffer's bool support varies between versions
            t = torch.frombuffer(raw, dtype=torch.uint8).bool() if raw else torch.empty(0, dtype=dtype)
        else:
            t = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        out[name] = t.reshape(info["shape"]).clone()
    return out


def save_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        size = t.numel() * t.element_size()
        blobs.append(ctypes.string_at(t.data_ptr(), size) if size else b"")
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


# --------------------------------------------------------------------------------------------- model


class RMSNorm(nn.Module):
    def __init__(self, dim, eps, feeds_matmul=False):
        super().__init__()
        self.dim, self.eps, self.feeds_matmul = dim, eps, feeds_matmul
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        # Same as Lethe's RmsNorm: under bf16 autocast the gain is cast to the input's dtype so the fused
        # kernel is used (mixed dtypes fall back to the slow composite path).
        y = F.rms_norm(x, (self.dim,), self.weight.to(x.dtype), self.eps)
        # Same as Lethe's RmsNorm::before_matmul: a norm read only by projections hands them its output
        # in the autocast dtype once, instead of autocast casting it once per projection.
        if (self.feeds_matmul and y.dtype == torch.float32 and y.is_cuda
                and torch.is_autocast_enabled("cuda")):
            y = y.to(torch.get_autocast_dtype("cuda"))
        return y


def rope_tables(cfg, device):
    hd = cfg["width"] // cfg["heads"]
    inv_freq = torch.exp(
        torch.arange(0, hd, 2, dtype=torch.float64, device=device) / hd * -math.log(cfg["rope_theta"]))
    angles = torch.outer(torch.arange(cfg["context"], dtype=torch.float64, device=device), inv_freq)
    return angles.cos().float(), angles.sin().float()


def apply_rope(x, cos, sin):  # x: [B, T, H, hd] (before the heads move to the front), rotate-half layout
    t, half = x.shape[1], x.shape[3] // 2
    cos, sin = cos[:t, None].to(x.dtype), sin[:t, None].to(x.dtype)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, self.heads = cfg["width"], cfg["heads"]
        self.hd = d // self.heads
        self.causal = cfg["causal"]
        self.wq = nn.Linear(d, d, bias=False)
        self.wk = nn.Linear(d, d, bias=False)
        self.wv = nn.Linear(d, d, bias=False)
        self.wo = nn.Linear(d, d, bias=False)
        self.q_norm = RMSNorm(self.hd, cfg["norm_eps"])
        self.k_norm = RMSNorm(self.hd, cfg["norm_eps"])

    def forward(self, x, cos, sin, attn_mask=None):
        b, t, d = x.shape
        q = apply_rope(self.q_norm(self.wq(x).view(b, t, self.heads, self.hd)), cos, sin).transpose(1, 2)
        k = apply_rope(self.k_norm(self.wk(x).view(b, t, self.heads, self.hd)), cos, sin).transpose(1, 2)
        v = self.wv(x).view(b, t, self.heads, self.hd).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                           is_causal=self.causal and attn_mask is None)
        return self.wo(y.transpose(1, 2).reshape(b, t, d))


class Mlp(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, m = cfg["width"], cfg["mlp"]
        self.w_gate = nn.Linear(d, m, bias=False)
        self.w_up = nn.Linear(d, m, bias=False)
        self.w_down = nn.Linear(m, d, bias=False)

    def forward(self, x):
        return self.w_down(F.silu(self.w_gate(x)) * self.w_up(x))


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.attn_norm = RMSNorm(cfg["width"], cfg["norm_eps"], feeds_matmul=True)
        self.attn = Attention(cfg)
        self.mlp_norm = RMSNorm(cfg["width"], cfg["norm_eps"], feeds_matmul=True)
        self.mlp = Mlp(cfg)

    def forward(self, x, cos, sin):
        x = x + self.attn(self.attn_norm(x), cos, sin)
        return x + self.mlp(self.mlp_norm(x))


class Transformer(nn.Module):
    def __init__(self, cfg, device="cpu"):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg["vocab"], cfg["width"])
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg["layers"]))
        self.norm = RMSNorm(cfg["width"], cfg["norm_eps"], feeds_matmul=True)
        self.head = nn.Linear(cfg["width"], cfg["vocab"], bias=False)
        cos, sin = rope_tables(cfg, device)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self.apply(self._init)

    @staticmethod
    def _init(m):  # GPT-2 style; parity runs overwrite it, the bench trains from it
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)

    def set_causal(self, causal):
        for b in self.blocks:
            b.attn.causal = causal

    def forward(self, tokens):
        x = self.tok_emb(tokens)
        for block in self.blocks:
            x = block(x, self.cos, self.sin)
        return self.head(self.norm(x))

    def hidden(self, tokens):
        """The final-normed hidden states (forward without the head), as Lethe's `Transformer::hidden`."""
        x = self.tok_emb(tokens)
        for block in self.blocks:
            x = block(x, self.cos, self.sin)
        return self.norm(x)


# --------------------------------------------------------------------------------------------- objectives


def diffusion_loss(model, tokens, mask_id, masked, t):
    """MDLM / LLaDA: CE on masked positions / t, summed, divided by batch x length."""
    logits = model(tokens.masked_fill(masked, mask_id))
    nll = F.cross_entropy(logits.float().flatten(0, 1), tokens.flatten(), reduction="none").view_as(tokens)
    return (nll * masked / t[:, None]).sum() / tokens.numel()


def ar_loss(model, tokens):
    logits = model(tokens[:, :-1])
    return F.cross_entropy(logits.float().flatten(0, 1), tokens[:, 1:].flatten())


def sample_plan(batch, length, eps, device):
    """Training masks drawn on the device: stratified t, Bernoulli(t) masks, at least one a row."""
    u = torch.rand((), device=device)
    t = eps + (1 - eps) * ((u + torch.arange(batch, device=device) / batch) % 1)
    masked = torch.rand(batch, length, device=device) < t[:, None]
    none = ~masked.any(1)
    masked[none, torch.randint(length, (batch,), device=device)[none]] = True
    return masked, t


@torch.no_grad()
def generate(model, prompt, mask_id, gen_length, steps, block_length):
    """LLaDA's `generate` (github.com/ML-GSAI/LLaDA, generate.py) at temperature 0 with low-confidence
    remasking, for equal-length prompts, except that the mask token is never proposed."""
    b, p = prompt.shape
    x = torch.full((b, p + gen_length), mask_id, dtype=torch.long)
    x[:, :p] = prompt
    blocks = gen_length // block_length
    steps = steps // blocks
    for nb in range(blocks):
        lo, hi = p + nb * block_length, p + (nb + 1) * block_length
        count = (x[:, lo:hi] == mask_id).sum(1, keepdim=True)
        ntt = (count // steps).repeat(1, steps)
        for r in range(b):
            ntt[r, :count[r, 0] % steps] += 1
        for i in range(steps):
            mask_index = x == mask_id
            logits = model(x)
            logits[..., mask_id] = -math.inf  # Lethe's one change: the mask token is never a candidate
            x0 = logits.argmax(-1)
            p_ = F.softmax(logits.double(), dim=-1)
            conf = torch.gather(p_, -1, x0.unsqueeze(-1)).squeeze(-1)
            conf[:, hi:] = -math.inf
            x0 = torch.where(mask_index, x0, x)
            conf = torch.where(mask_index, conf, torch.tensor(-math.inf, dtype=conf.dtype))
            transfer = torch.zeros_like(x0, dtype=torch.bool)
            for r in range(b):
                _, idx = torch.topk(conf[r], k=int(ntt[r, i]))
                transfer[r, idx] = True
            x[transfer] = x0[transfer]
    return x[:, p:]


@torch.no_grad()
def generate_batched(model, prompt, mask_id, gen_length, steps, block_length):
    """The same sampler as `generate` (equal-length prompts, temperature 0, low-confidence remasking, the
    mask token never proposed), written to run well: every row of the batch moves together and the step
    loop never waits for the host (the per-row number of commits and the top-k of varying size are tensors,
    as in Lethe's sampler), and the output head only sees the block being filled, since confidences
    outside it are discarded anyway. The confidence is the candidate's log-probability in float32 (the
    same order as LLaDA's float64 probability). `prompt`: [rows, p] int64 on the model's device."""
    b, p = prompt.shape
    dev = prompt.device
    x = torch.cat([prompt, torch.full((b, gen_length), mask_id, dtype=torch.long, device=dev)], 1)
    blocks = gen_length // block_length
    steps = steps // blocks
    ranks = torch.arange(block_length, device=dev)
    for nb in range(blocks):
        lo, hi = p + nb * block_length, p + (nb + 1) * block_length
        count = (x[:, lo:hi] == mask_id).sum(1)
        base, rem = count // steps, count % steps  # get_num_transfer_tokens: remainder to the first steps
        for i in range(steps):
            k = base + (rem > i)
            blk = x[:, lo:hi]
            masked = blk == mask_id
            logits = model.head(model.hidden(x)[:, lo:hi]).float()
            logits[..., mask_id] = -math.inf
            x0 = logits.argmax(-1)
            conf = logits.log_softmax(-1).gather(-1, x0.unsqueeze(-1)).squeeze(-1)
            conf = conf.masked_fill(~masked, -math.inf)
            order = conf.argsort(1, descending=True)
            commit = torch.zeros_like(masked).scatter(1, order, ranks < k[:, None]) & masked
            x[:, lo:hi] = torch.where(commit, x0, blk)
    return x[:, p:]


@torch.no_grad()
def generate_ar(model, prompt, gen_length):
    """Greedy left-to-right generation without a KV cache (each token reruns the window, as Lethe's AR
    sampler does); the head only sees the last position. `prompt`: [rows, p] int64 on the device."""
    b, p = prompt.shape
    x = torch.empty((b, p + gen_length), dtype=torch.long, device=prompt.device)
    x[:, :p] = prompt
    for i in range(p, p + gen_length):
        x[:, i] = model.head(model.hidden(x[:, :i])[:, -1]).float().argmax(-1)
    return x[:, p:]


# --------------------------------------------------------------------------------------------- commands


def cmd_parity(a):
    cfg = json.load(open(a.config))
    torch.manual_seed(0)
    model = Transformer(cfg)
    weights = load_safetensors(a.weights)
    model.load_state_dict(weights, strict=True)
    inp = load_safetensors(a.inputs)
    tokens, masked, t = inp["tokens"], inp["masked"], inp["t"]
    mask_id = int(inp["mask_id"].item())
    out = {}
    names = ["tok_emb.weight", "blocks.0.attn.wq.weight", "blocks.1.attn.q_norm.weight",
             "blocks.0.mlp.w_down.weight", "head.weight"]
    params = dict(model.named_parameters())

    model.set_causal(False)
    with torch.no_grad():
        out["logits_bidir"] = model(tokens)
    model.zero_grad()
    loss = diffusion_loss(model, tokens, mask_id, masked, t)
    loss.backward()
    out["diffusion_loss"] = loss.detach().reshape(1)
    for n in names:
        out["diffusion_grad." + n] = params[n].grad
    out["generated"] = generate(model, inp["prompt"], mask_id, int(inp["gen_length"].item()),
                                int(inp["steps"].item()), int(inp["block_length"].item()))

    model.set_causal(True)
    with torch.no_grad():
        out["logits_causal"] = model(tokens)
    model.zero_grad()
    loss = ar_loss(model, tokens)
    loss.backward()
    out["ar_loss"] = loss.detach().reshape(1)
    for n in names:
        out["ar_grad." + n] = params[n].grad
    save_safetensors(a.out, {k: v.clone() for k, v in out.items()})


def train_step(a, model, opt, data, mask_id, dev, use_amp):
    """One step as Lethe's trainer takes it: forward and loss under bf16 autocast (CUDA), backward,
    clipping at norm 1.0, AdamW. Returns the loss and the norm before clipping, on the device."""
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
        if a.objective == "ar":
            loss = ar_loss(model, data)
        else:
            masked, t = sample_plan(a.batch, a.seq, 1e-3, dev)
            loss = diffusion_loss(model, data, mask_id, masked, t)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss, norm


def cmd_bench(a):
    cfg = json.load(open(a.config))
    cfg["causal"] = a.objective == "ar"
    dev = torch.device("cuda" if a.device == "auto" and torch.cuda.is_available() else
                       ("cpu" if a.device == "auto" else a.device))
    torch.manual_seed(a.seed)
    model = Transformer(cfg, device=dev).to(dev)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    # --compile: the same model under torch.compile with the fused AdamW, as a measure of what kernel
    # fusion buys on this card (a peer Lethe does not claim to match: libtorch has no compiler).
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), **({"fused": True} if a.compile else {}))
    if a.compile:
        model = torch.compile(model)
    mask_id = cfg["vocab"] - 1
    # AR reads seq+1 tokens to train on seq positions, so both objectives push batch x seq positions.
    width = a.seq + (1 if a.objective == "ar" else 0)
    data = torch.randint(mask_id, (a.batch, width), device=dev)
    use_amp = dev.type == "cuda"
    losses, norms, times = [], [], []
    for step in range(a.warmup + a.steps):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        loss, norm = train_step(a, model, opt, data, mask_id, dev, use_amp)
        losses.append(loss.item())
        norms.append(norm.item())
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    timed = times[a.warmup:]
    tok_s = a.batch * a.seq * len(timed) / sum(timed)
    if a.profile:
        profile_steps(a, model, opt, data, mask_id, dev, use_amp)
    print(json.dumps({
        "impl": "pytorch-compile" if a.compile else "pytorch-eager", "torch": torch.__version__, "device": str(dev),
        "device_name": torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(), "objective": a.objective, "batch": a.batch, "seq": a.seq,
        "steps": a.steps, "warmup": a.warmup, "params": sum(p.numel() for p in model.parameters()),
        "tokens_per_s": tok_s, "step_ms": 1000 * sum(timed) / len(timed),
        "step_times_ms": [1000 * t for t in timed],
        "loss_first": losses[0], "loss_last": losses[-1], "grad_norm_last": norms[-1],
    }))


# Where a GPU step's time goes, by kind of kernel. Lethe issues the same libtorch kernels for the same
# model (bench/gpu.sh checks the two run at the same speed), so this breakdown stands for both.
KERNEL_KINDS = [
    ("optimizer", r"multi_tensor_apply|adam|foreach"),
    ("attention", r"flash|fmha|attention|_efficient_attention"),
    ("matmul", r"gemm|nvjet|cutlass|xmma|cublas|splitk|sm90_|sm80_"),
    ("norm", r"rms|norm"),
    ("softmax and loss", r"softmax|nll|cross_entropy|log_softmax"),
    ("reduction", r"reduce"),
    ("index and embedding", r"index|gather|scatter|embedding|masked|nonzero"),
    # Not "cast": libtorch's strided elementwise kernels are named gpu_kernel_impl_nocast.
    ("copy and cast", r"copy|CatArray"),
    ("elementwise", r"elementwise|vectorized|unrolled"),
]


def profile_steps(a, model, opt, data, mask_id, dev, use_amp):
    """Profiles a.steps more training steps with torch.profiler and writes a.profile (JSON): the wall time,
    the summed kernel time (the rest is the GPU waiting for the host), the time per kind of kernel and the
    40 kernels that took longest. Prints the breakdown to stderr."""
    import re
    from torch.profiler import ProfilerActivity, profile
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    sync()
    with profile(activities=acts) as prof:
        start = time.perf_counter()
        for _ in range(a.steps):
            loss, norm = train_step(a, model, opt, data, mask_id, dev, use_amp)
            loss.item()
            norm.item()
        sync()
        wall = time.perf_counter() - start
    kernels = []
    for ev in prof.events():
        if ev.device_type == torch.autograd.DeviceType.CUDA:
            kernels.append((ev.name, ev.time_range.elapsed_us() / 1e6))
    total = sum(t for _, t in kernels)
    kinds, top = {}, {}
    for name, t in kernels:
        kind = next((k for k, pat in KERNEL_KINDS if re.search(pat, name, re.I)), "other")
        kinds[kind] = kinds.get(kind, 0.0) + t
        entry = top.setdefault(name, [0.0, 0, kind])
        entry[0] += t
        entry[1] += 1
    report = {
        "objective": a.objective, "batch": a.batch, "seq": a.seq, "steps": a.steps,
        "wall_s": wall, "kernel_s": total, "kernel_launches": len(kernels),
        "gpu_idle_share": max(0.0, 1 - total / wall) if wall > 0 else None,
        "kinds": {k: {"s": v, "share_of_kernel_time": v / total if total else None}
                  for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])},
        "top_kernels": [{"name": n[:160], "kind": k, "s": t, "calls": c}
                        for n, (t, c, k) in sorted(top.items(), key=lambda kv: -kv[1][0])[:40]],
    }
    json.dump(report, open(a.profile, "w"), indent=2)
    print(f"profile: {a.steps} steps, wall {wall * 1000 / a.steps:.1f} ms/step, kernels "
          f"{total * 1000 / a.steps:.1f} ms/step ({len(kernels) // max(a.steps, 1)} launches/step)", file=sys.stderr)
    for k, v in report["kinds"].items():
        print(f"profile: {k:<22}{v['s'] * 1000 / a.steps:>9.2f} ms/step {100 * (v['share_of_kernel_time'] or 0):>6.1f}%",
              file=sys.stderr)


def cmd_sample_bench(a):
    cfg = json.load(open(a.config))
    ar = a.objective == "ar"
    cfg["causal"] = ar
    dev = torch.device("cuda" if a.device == "auto" and torch.cuda.is_available() else
                       ("cpu" if a.device == "auto" else a.device))
    cuda = dev.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    torch.manual_seed(a.seed)
    model = Transformer(cfg, device=dev).to(dev).eval()
    mask_id = cfg["vocab"] - 1
    steps = a.steps or a.gen_length
    # Prompts live on the host, as an audit's do: each chunk is uploaded and its tokens brought back as
    # Python lists, which is what Lethe's generate() takes and returns.
    prompts = torch.randint(mask_id, (a.prompts, a.prompt_len))

    def run(chunk, gen_length, steps):
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            x = chunk.to(dev)
            if ar:
                out = generate_ar(model, x, gen_length)
            else:
                out = generate_batched(model, x, mask_id, gen_length, steps, gen_length)
            return out.cpu().tolist()

    start = time.perf_counter()
    run(prompts[:a.batch], 2, 2)
    warmup_ms = 1000 * (time.perf_counter() - start)

    rows, times, checksum = [], [], 0
    for lo in range(0, a.prompts, a.batch):
        chunk = prompts[lo:lo + a.batch]
        sync()
        start = time.perf_counter()
        out = run(chunk, a.gen_length, steps)
        times.append(1000 * (time.perf_counter() - start))
        rows.append(len(chunk))
        checksum += sum(map(sum, out))

    # One step's model work alone (AR: at the window's mean width), as examples/sample_speed.rs times it.
    if ar:
        width, head_cols = a.prompt_len + a.gen_length // 2, 1
    else:
        width, head_cols = a.prompt_len + a.gen_length, a.gen_length
    x = torch.randint(mask_id, (a.batch, width), device=dev)
    fwd = []
    for _ in range(a.forward_reps):
        sync()
        start = time.perf_counter()
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            model.head(model.hidden(x)[:, width - head_cols:]).float()
        sync()
        fwd.append(1000 * (time.perf_counter() - start))
    # After the timing, so the peer gets no more warmup than Lethe: the batched sampler must give what
    # `generate` (held to Lethe's sampler by the parity test) gives.
    check = "skipped"
    if a.check and not ar and not cuda:
        few = prompts[:2]
        with torch.inference_mode():
            want = generate(model, few.clone(), mask_id, 8, 8, 8).tolist()
        check = "ok" if run(few, 8, 8) == want else "MISMATCH"
        if check != "ok":
            print("warning: generate_batched differs from generate", file=sys.stderr)

    fwd.sort()
    n = len(fwd)
    total_s = sum(times) / 1000
    print(json.dumps({
        "impl": "pytorch-eager", "torch": torch.__version__, "device": "cuda:0" if cuda else "cpu",
        "threads": torch.get_num_threads(), "objective": a.objective,
        "params": sum(p.numel() for p in model.parameters()), "prompts": a.prompts,
        "prompt_len": a.prompt_len, "gen_length": a.gen_length, "steps": a.gen_length if ar else steps, "batch": a.batch,
        "chunk_rows": rows, "chunk_times_ms": times,
        "prefixes_per_s": sum(rows) / total_s, "tokens_per_s": sum(rows) * a.gen_length / total_s,
        "warmup_ms": warmup_ms, "forward_ms": (fwd[n // 2] + fwd[(n - 1) // 2]) / 2 if n else None,
        "checksum": checksum, "check": check,
    }))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("parity")
    q.add_argument("--config", required=True)
    q.add_argument("--weights", required=True)
    q.add_argument("--inputs", required=True)
    q.add_argument("--out", required=True)
    q.add_argument("--threads", type=int, default=1)
    b = sub.add_parser("bench")
    b.add_argument("--config", required=True, help="resolved ModelConfig JSON (train_speed --print-config)")
    b.add_argument("--objective", choices=["diffusion", "ar"], default="diffusion")
    b.add_argument("--batch", type=int, default=8)
    b.add_argument("--seq", type=int, default=256)
    b.add_argument("--steps", type=int, default=10)
    b.add_argument("--warmup", type=int, default=2)
    b.add_argument("--lr", type=float, default=3e-4)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--device", default="auto")
    b.add_argument("--compile", action="store_true",
                   help="torch.compile the model and use the fused AdamW (a peer for what fusion buys)")
    b.add_argument("--profile", metavar="FILE",
                   help="afterwards profile --steps more steps and write the kernel-time breakdown here (JSON)")
    g = sub.add_parser("sample-bench")
    g.add_argument("--config", required=True, help="resolved ModelConfig JSON (sample_speed --print-config)")
    g.add_argument("--objective", choices=["diffusion", "ar"], default="diffusion")
    g.add_argument("--prompts", type=int, default=64)
    g.add_argument("--prompt-len", type=int, default=50)
    g.add_argument("--gen-length", type=int, default=50)
    g.add_argument("--steps", type=int, default=0, help="diffusion steps; 0: one per generated token")
    g.add_argument("--batch", type=int, default=32)
    g.add_argument("--forward-reps", type=int, default=1)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", default="auto")
    g.add_argument("--check", action="store_true",
                   help="first compare generate_batched with generate on two prompts (CPU, diffusion)")
    a = p.parse_args()
    if a.cmd == "parity":
        torch.set_num_threads(a.threads)
        cmd_parity(a)
    elif a.cmd == "sample-bench":
        cmd_sample_bench(a)
    else:
        cmd_bench(a)


if __name__ == "__main__":
    sys.exit(main())
