#!/usr/bin/env python3
"""Draws a repetition study as one SVG (no dependencies): held-out bits per byte, continuation-choice
accuracy, and memorization (exact-extraction upper bound, max canary exposure) against epochs, one line
per objective. The figures are the study's own (`lethe --json study show ID`), never edited.

    bin/lethe --json study show STUDY > study.json
    python3 bench/study_chart.py study.json docs/study-cpu.svg
"""
import json
import math
import sys

COLORS = {"diffusion": "#1f6feb", "ar": "#d1242f"}
W, H = 300, 210  # one panel
PAD_L, PAD_R, PAD_T, PAD_B = 52, 12, 30, 40


def panel(x0, title, points, key, ylabel, fmt, lower=None, upper=None):
    out = [f'<g transform="translate({x0},0)">']
    out.append(f'<text x="{W / 2}" y="16" text-anchor="middle" font-size="13" font-weight="bold">{title}</text>')
    xs = sorted({p["epochs"] for p in points})
    vals = [key(p) for p in points if key(p) is not None]
    los = [lower(p) for p in points if lower and lower(p) is not None]
    his = [upper(p) for p in points if upper and upper(p) is not None]
    if not xs or not vals:
        out.append('<text x="20" y="60">no data</text></g>')
        return out
    ymin, ymax = min(vals + los), max(vals + his)
    if ymax - ymin < 1e-9:
        ymax = ymin + 1
    span = ymax - ymin
    ymin, ymax = ymin - 0.05 * span, ymax + 0.05 * span
    lx0, lx1 = math.log2(xs[0]), math.log2(xs[-1])
    if lx1 - lx0 < 1e-9:
        lx1 = lx0 + 1

    def px(e):
        return PAD_L + (math.log2(e) - lx0) / (lx1 - lx0) * (W - PAD_L - PAD_R)

    def py(v):
        return PAD_T + (ymax - v) / (ymax - ymin) * (H - PAD_T - PAD_B)

    out.append(f'<rect x="{PAD_L}" y="{PAD_T}" width="{W - PAD_L - PAD_R}" height="{H - PAD_T - PAD_B}" '
               'fill="none" stroke="#888"/>')
    for e in xs:
        out.append(f'<text x="{px(e):.1f}" y="{H - PAD_B + 14}" text-anchor="middle" font-size="10">{e}</text>')
    out.append(f'<text x="{(PAD_L + W - PAD_R) / 2}" y="{H - 8}" text-anchor="middle" font-size="11">'
               'epochs (log scale)</text>')
    for k in range(5):
        v = ymin + k * (ymax - ymin) / 4
        out.append(f'<text x="{PAD_L - 4}" y="{py(v) + 3:.1f}" text-anchor="end" font-size="10">{fmt(v)}</text>')
    out.append(f'<text x="12" y="{(PAD_T + H - PAD_B) / 2}" font-size="11" text-anchor="middle" '
               f'transform="rotate(-90 12 {(PAD_T + H - PAD_B) / 2})">{ylabel}</text>')
    for obj, color in COLORS.items():
        pts = sorted((p for p in points if p["objective"] == obj and key(p) is not None), key=lambda p: p["epochs"])
        if not pts:
            continue
        if lower and upper:
            for p in pts:
                lo, hi = lower(p), upper(p)
                if lo is not None and hi is not None:
                    out.append(f'<line x1="{px(p["epochs"]):.1f}" x2="{px(p["epochs"]):.1f}" y1="{py(lo):.1f}" '
                               f'y2="{py(hi):.1f}" stroke="{color}" stroke-opacity="0.45"/>')
        path = " ".join(f'{"M" if i == 0 else "L"}{px(p["epochs"]):.1f},{py(key(p)):.1f}' for i, p in enumerate(pts))
        out.append(f'<path d="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for p in pts:
            out.append(f'<circle cx="{px(p["epochs"]):.1f}" cy="{py(key(p)):.1f}" r="3" fill="{color}"/>')
    out.append("</g>")
    return out


def main():
    study = json.load(open(sys.argv[1]))
    pts = study["points"]
    acc = lambda k: (lambda p: p["choice_accuracy"][k] if p.get("choice_accuracy") else None)  # noqa: E731
    panels = [
        ("Held-out bits per byte", lambda p: p["bits_per_byte"], "bits/byte (lower is better)",
         lambda v: f"{v:.2f}", None, None),
        ("Continuation choice (chance 25%)", acc("value"), "accuracy, 95% CI",
         lambda v: f"{100 * v:.0f}%", acc("low"), acc("high")),
        ("Exact extraction, upper 95%", lambda p: p["exact_extraction_high"], "share of probed sequences",
         lambda v: f"{100 * v:.0f}%", None, None),
        ("Max canary exposure", lambda p: p["max_canary_exposure"], "bits (19.9 = memorized)",
         lambda v: f"{v:.1f}", None, None),
    ]
    width = W * len(panels)
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{H + 24}" '
           f'font-family="sans-serif" viewBox="0 0 {width} {H + 24}">',
           f'<rect width="{width}" height="{H + 24}" fill="white"/>']
    for i, (title, key, ylabel, fmt, lo, hi) in enumerate(panels):
        svg += panel(i * W, title, pts, key, ylabel, fmt, lo, hi)
    lx = 10
    for obj, color in COLORS.items():
        svg.append(f'<line x1="{lx}" x2="{lx + 18}" y1="{H + 14}" y2="{H + 14}" stroke="{color}" stroke-width="2"/>')
        svg.append(f'<text x="{lx + 22}" y="{H + 18}" font-size="11">{"masked diffusion" if obj == "diffusion" else "autoregressive"}</text>')
        lx += 150
    spec = study.get("spec", {})
    svg.append(f'<text x="{width - 8}" y="{H + 18}" text-anchor="end" font-size="10" fill="#555">study {study["id"]}: '
               f'{spec.get("preset")} preset, {spec.get("unique_tokens")} unique tokens, seed {spec.get("seed")}</text>')
    svg.append("</svg>")
    open(sys.argv[2], "w").write("\n".join(svg) + "\n")


if __name__ == "__main__":
    main()
