"""The quickstart report: tables, comparisons and conclusions computed from the measured numbers, PNG figures
and ``results.json`` with every number. Nothing here is a measured value; every sentence is derived from the runs."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

from vidprior import __version__
from vidprior.engine.logger import read_metrics
from vidprior.quickstart.results import (
    MODELS,
    SETTINGS,
    TASKS,
    Result,
    Stat,
    aggregate,
    compare,
    paired_gain,
    stat,
    to_json,
)

# the comparisons the report makes: (first, second, what the difference measures)
COMPARISONS = [
    ("b", "a", "image pre-training vs from scratch at equal budget"),
    ("b'", "b", "random side taps vs centre init"),
    ("c", "b", "STS (pre-trained with STS) vs plain 3D convs"),
    ("d", "c", "mean inflation vs centre init (with STS)"),
]
PRETRAIN_TARGET = 95.0  # top-1 (%) the design asks of image pre-training on held-out digits
COLORS = {"a": "#dd8452", "b": "#4c72b0", "b'": "#64b5cd", "c": "#55a868", "d": "#8172b3"}


def _matplotlib():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _cell(s: Stat | None) -> str:
    if s is None:
        return ""
    return f"{s.mean:.1f} ± {s.std:.1f} (n={s.n})" if s.n > 1 else f"{s.mean:.1f} (n=1)"


def table(agg: dict[tuple[str, str, str], Stat]) -> str:
    """Markdown table: top-1 mean ± std over seeds, one row per model and task."""
    settings = [s for s in SETTINGS if any(k[2] == s for k in agg)]
    lines = ["| model | task | " + " | ".join(f"({k}) {SETTINGS[k]}" for k in settings) + " |"]
    lines.append("| --- | --- |" + " ---: |" * len(settings))
    for model in MODELS:
        for task in TASKS:
            if not any(k[:2] == (model, task) for k in agg):
                continue
            cells = [_cell(agg.get((model, task, s))) for s in settings]
            lines.append(f"| {MODELS[model]} | {TASKS[task]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def findings(results: list[Result]) -> list[str]:
    """Sentences computed from the numbers: each comparison with its verdict against the seed spread, and the
    contrast between the even-digit task and its control."""
    runs = [r for r in results if r.task in TASKS]
    agg = aggregate(runs)
    out = []
    for model in MODELS:
        for task in TASKS:
            for first, second, what in COMPARISONS:
                c = compare(agg, model, task, first, second)
                if c is None:
                    continue
                spread = f"seed spread {c.spread:.1f}, " if c.n > 1 else ""
                out.append(
                    f"- {MODELS[model]}, {TASKS[task]}: ({first}) − ({second}) = {c.diff:+.1f} points "
                    f"({spread}{c.verdict()}): {what}."
                )
        even = paired_gain(runs, model, "even", "b", "a")
        control = paired_gain(runs, model, "control", "b", "a")
        seeds = sorted(set(even) & set(control))
        if seeds:
            contrast = stat([even[s] - control[s] for s in seeds])
            g_even, g_ctrl = stat([even[s] for s in seeds]), stat([control[s] for s in seeds])
            if contrast.n < 2:
                verdict = "one seed, spread unknown"
            elif abs(contrast.mean) > contrast.std:
                larger = "the even-digit task" if contrast.mean > 0 else "the control"
                verdict = f"larger on {larger}, beyond the seed spread"
            else:
                verdict = "no difference beyond the seed spread"
            out.append(
                f"- **{MODELS[model]}: the gain of pre-training (b) − (a)** is {g_even.mean:+.1f} ± {g_even.std:.1f} "
                f"on the even-digit task and {g_ctrl.mean:+.1f} ± {g_ctrl.std:.1f} on the control; per-seed difference "
                f"{contrast.mean:+.1f} ± {contrast.std:.1f} over {contrast.n} seed(s): {verdict}."
            )
    return out


def _accuracy_figure(agg, path: Path) -> None:
    plt = _matplotlib()
    tasks = [t for t in TASKS if any(k[1] == t for k in agg)]
    settings = [s for s in SETTINGS if any(k[2] == s for k in agg)]
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        models = [m for m in MODELS if any(k[:2] == (m, task) for k in agg)]
        width = 0.8 / len(settings)
        for j, s in enumerate(settings):
            xs = [i + (j - (len(settings) - 1) / 2) * width for i in range(len(models))]
            stats = [agg.get((m, task, s), Stat(0.0, 0.0, 0, ())) for m in models]
            ax.bar(
                xs,
                [x.mean for x in stats],
                width,
                yerr=[x.std for x in stats],
                capsize=3,
                color=COLORS[s],
                label=f"({s}) {SETTINGS[s]}",
            )
        ax.set_xticks(range(len(models)), [MODELS[m] for m in models], fontsize=8)
        ax.set_ylabel("top-1 (%), mean ± std over seeds")
        ax.set_ylim(0, 100)
        ax.set_title(TASKS[task], fontsize=10)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle("Quickstart: accuracy per setting under a fixed budget (cf. paper Table 6)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _budget_figure(budget: dict[str, Any], path: Path) -> None:
    plt = _matplotlib()
    pre, fine = budget.get("pretrain_images", 0.0), budget.get("finetune_images", 0.0)
    scratch = fine / max(1, budget.get("finetune_epochs", 1)) * budget.get("scratch_epochs", 1)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.bar([0], [pre / 1e3], 0.5, color="#4c72b0", label="image pre-training")
    ax.bar([0], [fine / 1e3], 0.5, bottom=[pre / 1e3], color="#e5c34b", label="video fine-tuning")
    ax.bar([1], [scratch / 1e3], 0.5, color="#dd8452", label="from scratch")
    ax.set_xticks([0, 1], ["(b)-(d)", "(a)"])
    ax.set_ylabel("images seen (thousands)")
    ax.set_title(f"budget x{(pre + fine) / max(scratch, 1):.2f} (cf. paper Fig. 3)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _curves_figure(results: list[Result], path: Path) -> None:
    plt = _matplotlib()
    first = min((r.seed for r in results), default=0)
    pairs = sorted(
        {(r.model, r.task) for r in results if r.task in TASKS},
        key=lambda p: (list(MODELS).index(p[0]), list(TASKS).index(p[1])),
    )
    fig, axes = plt.subplots(1, max(1, len(pairs)), figsize=(4.5 * max(1, len(pairs)), 3.4), squeeze=False)
    for ax, (model, task) in zip(axes[0], pairs, strict=False):
        for r in results:
            if r.seed != first or r.model != model or r.task != task:
                continue
            train = [x for x in read_metrics(Path(r.run_dir) / "metrics.jsonl") if x["kind"] == "train"]
            if train:
                ax.plot(
                    [x["images_seen"] / 1e3 for x in train],
                    [x["loss"] for x in train],
                    lw=1,
                    color=COLORS[r.setting],
                    label=f"({r.setting})",
                )
        ax.set_title(f"{MODELS[model]}\n{TASKS[task]}", fontsize=8)
        ax.set_xlabel("video images seen (thousands)")
        ax.set_ylabel("training loss")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _timing_lines(timing: dict[str, Any], results: list[Result]) -> list[str]:
    wall, cpu = timing["seconds"], timing["cpu_seconds"]
    runs_wall = sum(r.seconds for r in results)
    lines = [
        f"Wall time {wall / 60:.1f} min (data {timing['build_seconds'] / 60:.1f} min, runs {runs_wall / 60:.1f} min); "
        f"CPU time {cpu / 60:.1f} min with {timing['threads']} torch threads.",
        f"On {timing['threads']} idle cores the same work takes between CPU time / {timing['threads']} "
        f"({cpu / timing['threads'] / 60:.1f} min, both threads always busy) and the CPU time ({cpu / 60:.1f} min, one "
        "busy); wall time above that bound means other processes shared the cores.",
    ]
    if timing.get("skipped_units"):
        lines.append(
            f"The time budget ({timing['time_budget_min']} min) left out: {', '.join(timing['skipped_units'])} "
            "(run with more minutes or `--full` for them)."
        )
    return lines


def write_report(
    out: Path, results: list[Result], *, plan: dict[str, Any], budget: dict[str, Any], timing: dict[str, Any]
) -> dict[str, Any]:
    report = out / "report"
    report.mkdir(parents=True, exist_ok=True)
    runs = [r for r in results if r.task in TASKS]
    agg = aggregate(runs)
    pre = aggregate([r for r in results if r.task == "images"])
    budget = {**budget, "finetune_epochs": plan["finetune_epochs"], "pretrain_epochs": plan["pretrain_epochs"]}
    seeds = sorted({r.seed for r in results})
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    summary: dict[str, Any] = {
        "date": date,
        "version": __version__,
        **timing,
        "seeds": seeds,
        "plan": plan,
        "budget": budget,
        "table": {f"{m}/{t}/{s}": {"mean": v.mean, "std": v.std, "n": v.n} for (m, t, s), v in agg.items()},
        "pretrain_top1": {f"{m}/{s}": {"mean": v.mean, "std": v.std, "n": v.n} for (m, _, s), v in pre.items()},
        "results": to_json(results),
    }
    (report / "results.json").write_text(json.dumps(summary, indent=2))
    _accuracy_figure(agg, report / "accuracy.png")
    _budget_figure(budget, report / "budget.png")
    _curves_figure(results, report / "curves.png")
    pre_line = ", ".join(
        f"{MODELS[m]} {'with STS' if s == 'pretrain_sts' else 'plain'} {_cell(v)}" for (m, _, s), v in pre.items()
    )
    below = [
        f"{MODELS[m]}{' with STS' if s == 'pretrain_sts' else ''}"
        for (m, _, s), v in pre.items()
        if v.mean < PRETRAIN_TARGET
    ]
    pre_verdict = f"not reached by {', '.join(below)}" if below else "reached by every pre-training"
    md = [
        "# vidprior quickstart report",
        "",
        f"vidprior {__version__}, {date}. The paper's comparison (Table 6) in miniature on data built from "
        "scikit-learn's handwritten digits: tiny models whose STS layers see 8x8 maps, the same number of images "
        "seen in every setting. See docs/quickstart.md for the design.",
        "",
        f"Seeds {seeds}. Top-1 (%) on held-out clips (2 clips per video), mean ± std over seeds (n = seeds).",
        "",
        table(agg),
        "",
        f"Image pre-training top-1 on held-out digit images: {pre_line or 'not run'}"
        + (f" (the design asks for at least {PRETRAIN_TARGET:.0f}%: {pre_verdict})." if pre else "."),
        f"Budget per model: pre-training {budget.get('pretrain_images', 0):,.0f} images + fine-tuning "
        f"{budget.get('finetune_images', 0):,.0f} video frames vs from scratch for {budget.get('scratch_epochs')} "
        "epochs of video (the same images seen, to the nearest epoch).",
        "",
        *_timing_lines(timing, results),
        "",
        "## Comparisons",
        "",
        "A difference exceeds the seed spread when it is larger than the sum of the two settings' standard "
        "deviations over seeds.",
        "",
        *findings(results),
        "",
        "![accuracy](accuracy.png)",
        "",
        "![budget](budget.png)",
        "",
        "![learning curves](curves.png)",
        "",
    ]
    (report / "report.md").write_text("\n".join(md))
    summary["markdown"] = "\n".join(md)
    summary["table_markdown"] = table(agg)
    return summary


__all__ = ["COMPARISONS", "findings", "table", "write_report"]
