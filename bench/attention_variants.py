"""Times one attention block's forward and backward (projections, QK-norm, RoPE, SDPA, output projection)
on the GPU at the `base` shapes in bf16 autocast, written several ways that compute the same function, to
choose how Lethe's model (and bench/reference.py with it) writes it. Prints ms per block and the largest
difference from variant A's output.

    python bench/attention_variants.py [--batch 32] [--seq 1024] [--width 768] [--heads 12] [--iters 20]
"""
import argparse
import json
import math
import time

import torch
import torch.nn.functional as F


def tables(t, hd, device):
    inv = torch.exp(torch.arange(0, hd, 2, dtype=torch.float64, device=device) / hd * -math.log(10000.0))
    ang = torch.outer(torch.arange(t, dtype=torch.float64, device=device), inv)
    return ang.cos().float(), ang.sin().float()


def rope_bhtd(x, cos, sin):  # as now: x [b, h, t, hd] (a transposed view)
    half = x.shape[-1] // 2
    c, s = cos.to(x.dtype), sin.to(x.dtype)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1)


def rope_bthd(x, cos, sin):  # same formula on x [b, t, h, hd], tables [t, 1, hd/2]
    half = x.shape[-1] // 2
    c, s = cos[:, None, :].to(x.dtype), sin[:, None, :].to(x.dtype)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1)


def rope_roll(x, cos2, sin2):  # x [b, t, h, hd]; cos2 = [cos, cos], sin2 = [-sin, sin], [t, 1, hd]
    half = x.shape[-1] // 2
    return torch.addcmul(x * cos2.to(x.dtype), x.roll(half, -1), sin2.to(x.dtype))


def qk_norm_manual(x, w, eps):
    rstd = torch.rsqrt(x.float().square().mean(-1, keepdim=True) + eps)
    return x * (rstd.to(x.dtype)) * w.to(x.dtype)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=1024)
    p.add_argument("--width", type=int, default=768)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--iters", type=int, default=20)
    a = p.parse_args()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # CPU: a smoke test only
    b, t, d, h = a.batch, a.seq, a.width, a.heads
    hd, eps = d // h, 1e-5
    torch.manual_seed(0)
    ws = {n: (torch.randn(d, d, device=dev) * 0.02).requires_grad_() for n in ("q", "k", "v", "o")}
    gq = torch.ones(hd, device=dev, requires_grad=True)
    gk = torch.ones(hd, device=dev, requires_grad=True)
    cos, sin = tables(t, hd, dev)
    cos2 = torch.cat([cos, cos], -1)[:, None, :]
    sin2 = torch.cat([-sin, sin], -1)[:, None, :]
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    x0 = torch.randn(b, t, d, device=dev, dtype=dtype)

    def split(y):
        return y.view(b, t, h, hd)

    def attend(q, k, v):  # q, k, v: [b, t, h, hd]
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return F.linear(y.transpose(1, 2).reshape(b, t, d), ws["o"])

    def a_now(x):  # how Lethe wrote it until B measured faster
        q = F.rms_norm(split(F.linear(x, ws["q"])), (hd,), gq.to(x.dtype), eps).transpose(1, 2)
        k = F.rms_norm(split(F.linear(x, ws["k"])), (hd,), gk.to(x.dtype), eps).transpose(1, 2)
        v = split(F.linear(x, ws["v"])).transpose(1, 2)
        q, k = rope_bhtd(q, cos, sin), rope_bhtd(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v)
        return F.linear(y.transpose(1, 2).reshape(b, t, d), ws["o"])

    def b_layout(x):  # how Lethe writes it now
        q = rope_bthd(F.rms_norm(split(F.linear(x, ws["q"])), (hd,), gq.to(x.dtype), eps), cos, sin)
        k = rope_bthd(F.rms_norm(split(F.linear(x, ws["k"])), (hd,), gk.to(x.dtype), eps), cos, sin)
        v = split(F.linear(x, ws["v"]))
        return attend(q, k, v)

    def c_roll(x):
        q = rope_roll(F.rms_norm(split(F.linear(x, ws["q"])), (hd,), gq.to(x.dtype), eps), cos2, sin2)
        k = rope_roll(F.rms_norm(split(F.linear(x, ws["k"])), (hd,), gk.to(x.dtype), eps), cos2, sin2)
        v = split(F.linear(x, ws["v"]))
        return attend(q, k, v)

    def d_manual_norm(x):
        q = rope_roll(qk_norm_manual(split(F.linear(x, ws["q"])), gq, eps), cos2, sin2)
        k = rope_roll(qk_norm_manual(split(F.linear(x, ws["k"])), gk, eps), cos2, sin2)
        v = split(F.linear(x, ws["v"]))
        return attend(q, k, v)

    def e_fused_qkv(x):
        qkv = F.linear(x, torch.cat([ws["q"], ws["k"], ws["v"]])).view(b, t, 3, h, hd)
        q = rope_bthd(F.rms_norm(qkv[:, :, 0], (hd,), gq.to(x.dtype), eps), cos, sin)
        k = rope_bthd(F.rms_norm(qkv[:, :, 1], (hd,), gk.to(x.dtype), eps), cos, sin)
        return attend(q, k, qkv[:, :, 2])

    def f_norm_float(x):  # QK-norm on a float32 copy: the float kernel, then back to bf16
        q = rope_bthd(F.rms_norm(split(F.linear(x, ws["q"])).float(), (hd,), gq, eps).to(x.dtype), cos, sin)
        k = rope_bthd(F.rms_norm(split(F.linear(x, ws["k"])).float(), (hd,), gk, eps).to(x.dtype), cos, sin)
        v = split(F.linear(x, ws["v"]))
        return attend(q, k, v)

    variants = {"A rope on heads-first views": a_now, "B rope before transpose": b_layout, "C rope roll+addcmul": c_roll,
                "D C + manual qk-norm": d_manual_norm, "E B + fused qkv": e_fused_qkv,
                "F B + qk-norm in f32": f_norm_float}
    grad_out = torch.randn(b, t, d, device=dev, dtype=dtype)
    ref = None
    results = {}
    for name, fn in variants.items():
        def once():
            x = x0.clone().requires_grad_()
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                y = fn(x)
            y.backward(grad_out)
            return y
        for _ in range(3):
            y = once()
        sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
        sync()
        t0 = time.perf_counter()
        for _ in range(a.iters):
            once()
        sync()
        ms = 1000 * (time.perf_counter() - t0) / a.iters
        y = y.detach().float()
        if ref is None:
            ref = y
        diff = (y - ref).abs().max().item()
        results[name] = {"ms": ms, "max_abs_diff_from_A": diff}
        print(f"{name:<28}{ms:8.3f} ms/block (fwd+bwd)  max |diff| from A {diff:.3g}", flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
