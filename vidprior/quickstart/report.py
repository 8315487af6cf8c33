"""The quickstart report: a table, a Markdown page, PNG figures and a JSON file with every number."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vidprior.engine.logger import read_metrics
from vidprior.quickstart.run import MODELS, SETTINGS, TASKS, Result, aggregate, to_json

# What we found when (b) did not beat (a) on the temporal task (issue: "find out why"). Measured once (seed 0) on
# 2 CPU cores, 2026-12-02, with the quickstart's data and recipes unless stated; top-1 on the temporal task.
INVESTIGATION = """\
## Why the temporal task does not follow the paper here

On the appearance task image pre-training wins by a wide margin, as on Kinetics. On the temporal task (the
direction of a digit among look-alike distractors) it does not: from scratch wins at equal budget. We varied one
thing at a time (seed 0, top-1 %):

| what was varied | SlowOnly-style (b) | (a) | CSN-style (b) | (a) |
| --- | ---: | ---: | ---: | ---: |
| the quickstart as shipped (fine-tune 4 epochs, scratch 8), run 1 | 33.0 | 87.0 | 53.5 | 80.0 |
| the same, run 2 (another machine load; (a)'s unstable start makes it vary) | 32.5 | 69.0 | 54.5 | 73.5 |
| schedule: fine-tune 6 epochs (over budget) | 44.0 | | 62.0 | |
| schedule: fine-tune 8 epochs, the same video epochs as (a) | | | 65.0 | 73.5 |
| learning rate 0.02 / 0.1 / 0.2 for (b), 4 epochs | | | 37.5 / 62.0 / 61.0 | |
| learning rate 0.1 for both, (b) 6 epochs, (a) 8 | | | 70.0 | 75.5 |
| frames and crops 64 px instead of 32 (pre-training too) | 62.5 | 82.5 | | |
| pre-training images cluttered with the distractors | | | 38.5 | |
| other temporal tasks: digit then next/previous digit | | | 48.0 | 45.5 |
| other temporal tasks: digit put together from / taken apart into its pieces | 66.5 | 87.0 | 68.5 | 97.5 |
| direction of a 3 among 2 / 1 other digits | 26.0 / 31.0 | 26.0 / 30.0 | 34.0 / 46.0 | 36.5 / 54.0 |

Rows below "run 2" change one thing against run 2. What this says:

* **Not the schedule or the budget split.** Even with as many video epochs as (a), the image-initialised model
  is behind (65.0 vs 73.5): on these tasks the image prior is a worse starting point for learning motion than a
  random one, so no division of the budget lets (b) win.
* **Learning rate matters but does not close the gap**: 0.05 -> 0.1 lifts (b) by 8 points; (a) gains too.
* **Model size / resolution matters most for the 3x1x1 family.** SlowOnly's temporal convolutions sit in res4 and
  res5, which see 2x2 and 1x1 maps of a 32 px frame (14x14 and 7x7 at the paper's 224 px). Image pre-training
  makes the early features translation-invariant (digits anywhere in the image); the motion has to be read from
  them at 2x2. At 64 px (b) doubles (32.5 -> 62.5), but (a) improves too.
* **Task difficulty.** The temporal cues here (a bright blob's displacement, a digit vs its scrambled tiles) are
  low-level and learnable from 400 clips from scratch; SS-V2's classes need hands, objects and scenes that 169k
  clips do not teach from scratch, which is where the paper's gain comes from. Tasks whose temporal label needs
  digit identity (next vs previous digit; the direction of a 3 among other digits) were at or near chance for
  both settings at this budget, with (a) still ahead where either learned.

So the quickstart reproduces the paper's direction where appearance carries the label (Kinetics-like) and shows,
honestly, that image pre-training does not replace learning low-level motion when the video data suffices for it.
STS's effect is reported as measured.
"""


def _matplotlib():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _accuracy_figure(agg, path: Path) -> None:
    plt = _matplotlib()
    fig, axes = plt.subplots(1, len(TASKS), figsize=(6 * len(TASKS), 4), squeeze=False)
    colors = {"a": "#dd8452", "b": "#4c72b0", "c": "#55a868", "d": "#8172b3"}
    for ax, task in zip(axes[0], TASKS, strict=True):
        models = [m for m in MODELS if (m, task, "a") in agg]
        width = 0.8 / len(SETTINGS)
        for j, s in enumerate(SETTINGS):
            xs = [i + (j - 1.5) * width for i in range(len(models))]
            means = [agg[(m, task, s)][0] for m in models]
            stds = [agg[(m, task, s)][1] for m in models]
            ax.bar(xs, means, width, yerr=stds, capsize=3, label=f"({s}) {SETTINGS[s]}", color=colors[s])
        ax.set_xticks(range(len(models)), [MODELS[m] for m in models], fontsize=8)
        ax.set_ylabel("top-1 (%)")
        ax.set_ylim(0, 100)
        ax.set_title(TASKS[task])
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle("Quickstart: accuracy per setting under a fixed budget (cf. paper Table 6)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _budget_figure(results: list[Result], path: Path) -> None:
    plt = _matplotlib()
    seed0 = [r for r in results if r.seed == 0]
    pre = next(r.images_seen for r in seed0 if r.setting == "pretrain")
    scratch = next(r.images_seen for r in seed0 if r.setting == "a")
    fine = next(r.images_seen for r in seed0 if r.setting == "b") - pre
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.bar([0], [pre / 1e3], 0.5, color="#4c72b0", label="image pre-training")
    ax.bar([0], [fine / 1e3], 0.5, bottom=[pre / 1e3], color="#e5c34b", label="video fine-tuning")
    ax.bar([1], [scratch / 1e3], 0.5, color="#dd8452", label="from scratch")
    ax.set_xticks([0, 1], ["(b)-(d)", "(a)"])
    ax.set_ylabel("images seen (thousands)")
    ax.set_title(f"budget x{(pre + fine) / scratch:.2f} (cf. paper Fig. 3)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _curves_figure(results: list[Result], path: Path) -> None:
    plt = _matplotlib()
    models = [m for m in MODELS if any(r.model == m and r.task in TASKS for r in results)]
    fig, axes = plt.subplots(len(models), len(TASKS), figsize=(6 * len(TASKS), 3.2 * len(models)), squeeze=False)
    for i, model in enumerate(models):
        for j, task in enumerate(TASKS):
            ax = axes[i][j]
            for r in results:
                if r.seed != 0 or r.model != model or r.task != task:
                    continue
                train = [x for x in read_metrics(Path(r.run_dir) / "metrics.jsonl") if x["kind"] == "train"]
                if train:
                    ax.plot(
                        [x["images_seen"] / 1e3 for x in train],
                        [x["loss"] for x in train],
                        lw=1,
                        label=f"({r.setting})",
                    )
            ax.set_title(f"{MODELS[model]}, {TASKS[task]}", fontsize=9)
            ax.set_xlabel("video images seen (thousands)")
            ax.set_ylabel("training loss")
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(agg) -> str:
    lines = ["| model | task | " + " | ".join(f"({k}) {v}" for k, v in SETTINGS.items()) + " |"]
    lines.append("| --- | --- |" + " ---: |" * len(SETTINGS))
    for model in MODELS:
        for task in TASKS:
            if (model, task, "a") not in agg:
                continue
            cells = []
            for s in SETTINGS:
                mean, std, n = agg[(model, task, s)]
                cells.append(f"{mean:.1f} ± {std:.1f}" if n > 1 else f"{mean:.1f}")
            lines.append(f"| {MODELS[model]} | {TASKS[task]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(out: Path, results: list[Result], *, budget: dict, seconds: float, seeds: int) -> dict[str, Any]:
    report = out / "report"
    report.mkdir(parents=True, exist_ok=True)
    agg = aggregate([r for r in results if r.setting != "pretrain"])
    pre = aggregate([r for r in results if r.setting == "pretrain"])
    findings = []
    for model in MODELS:
        for task in TASKS:
            if (model, task, "a") not in agg:
                continue
            a, b, c = agg[(model, task, "a")][0], agg[(model, task, "b")][0], agg[(model, task, "c")][0]
            verdict = "beats" if b > a else "does NOT beat"
            findings.append(
                f"- {MODELS[model]}, {TASKS[task]}: pre-train + fine-tune (b) {b:.1f}% {verdict} from scratch (a) "
                f"{a:.1f}% at equal budget; STS (c) vs (b): {c - b:+.1f} points."
            )
    pre_images = budget.get("pretrain_images", 0)
    summary = {
        "seconds": seconds,
        "seeds": seeds,
        "budget": budget,
        "table": {f"{m}/{t}/{s}": {"mean": v[0], "std": v[1], "n": v[2]} for (m, t, s), v in agg.items()},
        "pretrain_top1": {m: v[0] for (m, _, _), v in pre.items()},
        "results": to_json(results),
    }
    (report / "results.json").write_text(json.dumps(summary, indent=2))
    _accuracy_figure(agg, report / "accuracy.png")
    _budget_figure(results, report / "budget.png")
    _curves_figure(results, report / "curves.png")
    md = [
        "# vidprior quickstart report",
        "",
        "The paper's comparison (Table 6) in miniature on built-in data made from scikit-learn's handwritten digits:",
        "tiny models, two tasks, four settings, the same number of images seen in every setting.",
        "",
        f"Seeds: {seeds}; wall time {seconds / 60:.1f} min. Top-1 (%) on held-out clips (2 clips per video), "
        "mean ± std over seeds.",
        "",
        table(agg),
        "",
        "Image pre-training top-1 on held-out digits: "
        + ", ".join(f"{MODELS[m]} {v[0]:.1f}%" for (m, _, _), v in pre.items()),
        f"Budget: pre-training {pre_images / 1e3:.0f}k images + fine-tuning vs from scratch for "
        f"{budget.get('scratch_epochs')} epochs (same images seen).",
        "",
        "## Findings",
        "",
        *findings,
        "",
        INVESTIGATION,
        "![accuracy](accuracy.png)",
        "",
        "![budget](budget.png)",
        "",
        "![learning curves](curves.png)",
        "",
    ]
    (report / "report.md").write_text("\n".join(md))
    summary["markdown"] = "\n".join(md)
    return summary
