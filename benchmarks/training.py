"""The training section: where a training step's time goes for the text's plant CNN.

Measured in one run on the default leaf dataset: this machine's fp32 sgemm rate and the FLOP
limit it implies for a training step, Lightning's throughput with the pipeline's own
`fit_plant_cnn` (in a fresh process, whose peak RSS is the training memory), the same model and
batches in a plain PyTorch loop (the two take turns, one epoch at a time, and each Lightning
epoch is set against the plain epochs either side of it), data loading alone, and a few
settings tried for speed (channels_last on/off, thread count, OMP_WAIT_POLICY, glibc's malloc
defaults instead of `dlrepro.allocator`'s); on a machine with a CUDA GPU, also each recipe of
ACCELERATOR_RUNS fitted under accelerator="auto". The loops themselves are in
`benchmarks.loops`.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import (
    QUICK_TEST_IMAGES,
    QUICK_TRAIN_IMAGES,
    Scale,
    best_step_rate,
    generate_and_prepare,
    load_average,
    load_row,
    physical_cores,
    print_table,
    ratio_row,
    steady_rate,
)
from benchmarks.loops import (
    BENCH_RECIPE,
    SGEMM_SIZE,
    build_datamodule,
    load_training_data,
    loading_stamps,
    plain_loop_stamps,
    run_worker,
    sgemm_gflops,
    training_step_flops,
)
from dlrepro import paths
from dlrepro.config import Config, load_config
from dlrepro.errors import DataError
from dlrepro.plant.runs import trainer_options

# With a CUDA GPU, the training section also fits these (recipe, precision; None: the recipe's
# own) under accelerator="auto": the text recipe as configured and in bf16, the tuned recipe.
ACCELERATOR_RUNS = (("text", None), ("text", "bf16-mixed"), ("tuned", None))
LIGHTNING_VS_PLAIN_TARGET = 0.95
TRAINING_VS_FLOP_LIMIT_TARGET = 0.80
LOADING_VS_TRAINING_TARGET = 5.0
PEAK_RSS_TARGET_GB = 1.5
# The default dataset: the text's 800 train / 200 test images.
TRAIN_IMAGES, TEST_IMAGES = 800, 200


def find_or_build_cache(tmp: Path, cfg: Config, scale: Scale) -> tuple[Path, dict[str, Any]]:
    """The repository's data/cache when it exists; else a freshly generated and ingested one."""
    existing = paths.repo_root() / paths.CACHE
    if (existing / "classes.json").is_file() and (existing / "train" / "images.npy").is_file():
        return existing, {"dataset": f"{paths.CACHE.as_posix()} (reused)"}
    train, test = (
        (QUICK_TRAIN_IMAGES, QUICK_TEST_IMAGES) if scale.quick else (TRAIN_IMAGES, TEST_IMAGES)
    )
    generate_s, ingest_s = generate_and_prepare(
        tmp / "leaves", tmp / "cache", cfg.data, train, test
    )
    return tmp / "cache", {
        "dataset": f"generated {train}/{test} leaves in a temp folder",
        "generate_img_s": round((train + test) / generate_s, 1),
        "ingest_img_s": round((train + test) / ingest_s, 1),
    }


def tuning_variants(
    cfg: Config, default_threads: int
) -> list[tuple[str, bool, int | None, dict[str, str], bool]]:
    """(label, channels_last, threads or None for torch's default, extra environment,
    keep_freed_memory).

    The configured setting comes first; the others change one thing each.
    """
    configured = cfg.recipes[BENCH_RECIPE].model.channels_last
    variants = [
        (f"configured (channels_last={configured})", configured, None, {}, True),
        (f"channels_last={not configured}", not configured, None, {}, True),
    ]
    for threads in dict.fromkeys((physical_cores(), 1)):
        if threads != default_threads:
            variants.append((f"torch.set_num_threads({threads})", configured, threads, {}, True))
    # libgomp's worker threads spin while they wait; on a CPU shared with other processes a
    # spinning thread holds a core another thread of the same step is waiting for.
    variants.append(
        ("OMP_WAIT_POLICY=PASSIVE", configured, None, {"OMP_WAIT_POLICY": "PASSIVE"}, True)
    )
    # What dlrepro.allocator buys: glibc's default, every large block a fresh mmap.
    variants.append(("glibc malloc defaults", configured, None, {}, False))
    return variants


def bench_tuning(
    tmp: Path, cache: Path, cfg: Config, scale: Scale, step_flops: int
) -> list[dict[str, Any]]:
    """Plain-loop throughput of each variant against the configured setting (listed first).

    The variants take turns for `tuning_rounds` rounds of `tuning_steps` steps, each in a fresh
    process; a variant's ratio is the median of its ratios to the configured run of the same
    round. Each variant is also set against its own FLOP limit (sgemm under the same setting).
    """
    import torch

    variants = tuning_variants(cfg, torch.get_num_threads())[: scale.tuning_variants]
    spec = {
        "params": str(paths.repo_root() / "params.yaml"),
        "cache": str(cache),
        "limit": scale.image_limit,
        "max_steps": scale.tuning_steps,
        "sgemm_repeats": scale.sgemm_repeats,
    }
    rates: dict[str, list[float]] = {label: [] for label, *_ in variants}
    limits: dict[str, list[float]] = {label: [] for label, *_ in variants}
    threads_used: dict[str, int] = {}
    for _ in range(scale.tuning_rounds):
        for label, channels_last, threads, env, keep_freed in variants:
            variant = {**spec, "channels_last": channels_last, "threads": threads}
            variant["keep_freed_memory"] = keep_freed
            result = run_worker(tmp, "plain_worker", variant, env)
            rates[label].append(steady_rate(result["stamps"], scale.warmup_steps))
            limits[label].append(result["sgemm_gflops"] * 1e9 / step_flops)
            threads_used[label] = result["threads"]
    baseline = rates[variants[0][0]]
    return [
        {
            "variant": label,
            "threads": threads_used[label],
            "img_s": round(statistics.median(rates[label]), 1),
            "img_s_rounds": [round(rate, 1) for rate in rates[label]],
            "vs_configured": round(
                statistics.median(r / b for r, b in zip(rates[label], baseline, strict=True)), 3
            ),
            "vs_flop_limit": round(
                statistics.median(r / f for r, f in zip(rates[label], limits[label], strict=True)),
                3,
            ),
        }
        for label, *_ in variants
    ]


def bench_accelerator(
    tmp: Path, cache: Path, cfg: Config, scale: Scale, cpu_img_s: float
) -> list[dict[str, Any]]:
    """On a machine with a CUDA GPU: each of ACCELERATOR_RUNS under `accelerator="auto"` (what
    the train stage uses by default) for the recipe's own epochs, in a fresh process each, set
    against `cpu_img_s` (the CPU Lightning rate measured in the same bench).

    A run that fails is a row with its error, not the end of the bench: a GPU finding to read.
    """
    rows = []
    for recipe, precision in ACCELERATOR_RUNS:
        options = trainer_options(cfg, recipe)
        precision = precision or options["precision"]
        epochs = 2 if scale.quick else options["max_epochs"]
        spec = {
            "params": str(paths.repo_root() / "params.yaml"),
            "cache": str(cache),
            "limit": scale.image_limit,
            "out": str(tmp / f"accelerator-{recipe}-{precision}"),
            "recipe": recipe,
            "accelerator": "auto",
            "precision": precision,
            "epochs": epochs,
        }
        row: dict[str, Any] = {"recipe": recipe, "precision": precision, "epochs": epochs}
        try:
            result = run_worker(tmp, "lightning_worker", spec)
        except DataError as err:
            rows.append({**row, "error": str(err)})
            continue
        peak = result["peak_device_memory_bytes"]
        rate = steady_rate(result["stamps"], scale.warmup_steps)
        rows.append(
            {
                **row,
                "device": result["device"],
                "img_s": round(rate, 1),
                "vs_cpu_lightning": round(rate / cpu_img_s, 2),
                "best_step_img_s": round(best_step_rate(result["stamps"], scale.warmup_steps), 1),
                "fit_s": round(result["fit_s"], 2),
                "peak_device_memory_gb": None if peak is None else round(peak / 1e9, 3),
                "peak_rss_gb": round(result["peak_rss_bytes"] / 1e9, 3),
            }
        )
    return rows


def bench_training(scale: Scale) -> dict[str, Any]:
    import torch

    load_start = load_average()
    cfg = load_config(paths.repo_root() / "params.yaml")
    configured = cfg.recipes[BENCH_RECIPE].model.channels_last
    warmup = scale.warmup_steps
    with tempfile.TemporaryDirectory(prefix="dlrepro-bench-") as tmp_name:
        tmp = Path(tmp_name)
        cache, dataset = find_or_build_cache(tmp, cfg, scale)
        data = load_training_data(cache, scale.image_limit)

        forward_flops, step_flops = training_step_flops(cfg, data["classes"])

        loader = loading_stamps(build_datamodule(cfg, data), scale.loading_epochs)
        loading = steady_rate(loader, 1)

        # plain, (sgemm, lightning, plain) × rounds: each Lightning epoch is compared with the
        # plain epochs either side of it and with the sgemm rate measured just before it.
        lightning_spec = {
            "params": str(paths.repo_root() / "params.yaml"),
            "cache": str(cache),
            "limit": scale.image_limit,
            "out": str(tmp / "lightning"),
            "recipe": BENCH_RECIPE,
            "accelerator": "cpu",
            "precision": trainer_options(cfg, BENCH_RECIPE)["precision"],
            "epochs": 1,
        }
        plain_stamps = plain_loop_stamps(cfg, data, configured)
        plain_runs = [steady_rate(plain_stamps, warmup)]
        plain_best = [best_step_rate(plain_stamps, warmup)]
        lightning_runs, lightning_best, pair_ratios, workers = [], [], [], []
        sgemm_rounds: list[list[float]] = []
        for _ in range(scale.rounds):
            sgemm_rounds.append(sgemm_gflops(scale.sgemm_repeats))
            workers.append(run_worker(tmp, "lightning_worker", lightning_spec))
            lightning_runs.append(steady_rate(workers[-1]["stamps"], warmup))
            lightning_best.append(best_step_rate(workers[-1]["stamps"], warmup))
            plain_stamps = plain_loop_stamps(cfg, data, configured)
            plain_runs.append(steady_rate(plain_stamps, warmup))
            plain_best.append(best_step_rate(plain_stamps, warmup))
            pair_ratios.append(lightning_runs[-1] / statistics.mean(plain_runs[-2:]))
        tuning = bench_tuning(tmp, cache, cfg, scale, step_flops)
        lightning = statistics.median(lightning_runs)
        # one row per ACCELERATOR_RUNS entry where CUDA is available; none on a CPU machine
        accelerated = (
            bench_accelerator(tmp, cache, cfg, scale, lightning)
            if torch.cuda.is_available()
            else []
        )

    plain = statistics.median(plain_runs)
    gflops = statistics.median(statistics.median(rates) for rates in sgemm_rounds)
    best_gflops = max(max(rates) for rates in sgemm_rounds)
    flop_limits = [statistics.median(rates) * 1e9 / step_flops for rates in sgemm_rounds]
    peak_rss_gb = max(worker["peak_rss_bytes"] for worker in workers) / 1e9
    ratios = {
        "lightning_vs_plain": ratio_row(
            statistics.median(pair_ratios), LIGHTNING_VS_PLAIN_TARGET, True
        ),
        "training_vs_flop_limit": ratio_row(
            statistics.median(
                rate / limit for rate, limit in zip(lightning_runs, flop_limits, strict=True)
            ),
            TRAINING_VS_FLOP_LIMIT_TARGET,
            True,
        ),
        "loading_vs_training": ratio_row(loading / lightning, LOADING_VS_TRAINING_TARGET, True),
        "peak_rss_gb": ratio_row(peak_rss_gb, PEAK_RSS_TARGET_GB, False),
    }
    load_end = load_average()
    figures = {
        "quick": scale.quick,
        **dataset,
        "train_images": len(data["train"][1]),
        "batch_size": cfg.data.batch_size,
        "channels_last": configured,
        "torch_threads": torch.get_num_threads(),
        "physical_cores": physical_cores(),
        "sgemm_gflops": round(gflops, 1),
        "sgemm_gflops_rounds": [round(statistics.median(r), 1) for r in sgemm_rounds],
        "sgemm_gflops_best": round(best_gflops, 1),
        "forward_gflop_per_image": round(forward_flops / 1e9, 4),
        "train_step_gflop_per_image": round(step_flops / 1e9, 4),
        "flop_limit_img_s": round(gflops * 1e9 / step_flops, 1),
        "lightning_img_s": round(lightning, 1),
        "lightning_img_s_rounds": [round(rate, 1) for rate in lightning_runs],
        "lightning_fit_s": round(statistics.median(w["fit_s"] for w in workers), 2),
        "plain_loop_img_s": round(plain, 1),
        "plain_loop_img_s_rounds": [round(rate, 1) for rate in plain_runs],
        # Fastest single steps against the best sgemm: the machine without its neighbours.
        "lightning_best_step_img_s": round(max(lightning_best), 1),
        "plain_loop_best_step_img_s": round(max(plain_best), 1),
        "best_step_vs_best_flop_limit": round(
            max(lightning_best) / (best_gflops * 1e9 / step_flops), 3
        ),
        "loading_img_s": round(loading, 1),
        "peak_rss_gb": round(peak_rss_gb, 3),
        "imports_rss_gb": round(workers[0]["imports_rss_bytes"] / 1e9, 3),
        "ratios": ratios,
        "tuning": tuning,
        "accelerator_auto": accelerated,
        "load_average": {"start": load_start, "end": load_end},
    }
    print_training(figures)
    return figures


def spread(rates: list[float]) -> str:
    return " / ".join(f"{rate:.1f}" for rate in rates)


def print_training(figures: dict[str, Any]) -> None:
    layout = "channels_last" if figures["channels_last"] else "NCHW"
    setting = f"batch {figures['batch_size']}, {layout}, {figures['torch_threads']} threads"
    rows = [
        ("dataset", str(figures["train_images"]), f"train images; {figures['dataset']}"),
    ]
    for key, label, note in (
        ("generate_img_s", "leaf generation", "render and write JPEGs"),
        ("ingest_img_s", "ingest", "decode, validate, cache"),
    ):
        if key in figures:
            rows.append((label, f"{figures[key]:.0f} img/s", note))
    rows += [
        (
            "sgemm fp32",
            f"{figures['sgemm_gflops']:.1f} GFLOP/s",
            f"{SGEMM_SIZE}² matmul; median of each round's median: "
            + spread(figures["sgemm_gflops_rounds"]),
        ),
        ("forward", f"{figures['forward_gflop_per_image']:.3f} GFLOP", "per image"),
        ("training step", f"{figures['train_step_gflop_per_image']:.3f} GFLOP", "per image"),
        (
            "FLOP limit",
            f"{figures['flop_limit_img_s']:.1f} img/s",
            "sgemm rate / step FLOPs (the ratio below uses each round's own)",
        ),
        (
            "lightning",
            f"{figures['lightning_img_s']:.1f} img/s",
            f"fit_plant_cnn, {setting}; median of {spread(figures['lightning_img_s_rounds'])}",
        ),
        ("lightning fit", f"{figures['lightning_fit_s']:.1f} s", "one epoch incl. validation"),
        (
            "plain loop",
            f"{figures['plain_loop_img_s']:.1f} img/s",
            f"same batches, Adam; median of {spread(figures['plain_loop_img_s_rounds'])}",
        ),
        (
            "lightning best step",
            f"{figures['lightning_best_step_img_s']:.1f} img/s",
            f"{figures['best_step_vs_best_flop_limit']:.2f} of the best-sgemm FLOP limit "
            f"({figures['sgemm_gflops_best']:.1f} GFLOP/s); plain loop best "
            f"{figures['plain_loop_best_step_img_s']:.1f}",
        ),
        ("loading", f"{figures['loading_img_s']:.0f} img/s", "train dataloader alone"),
        ("peak RSS", f"{figures['peak_rss_gb']:.2f} GB", "training process (VmHWM)"),
        ("RSS after imports", f"{figures['imports_rss_gb']:.2f} GB", "torch + Lightning, no data"),
    ]
    for name, ratio in figures["ratios"].items():
        verdict = "met" if ratio["met"] else "not met"
        rows.append((name, f"{ratio['value']:.3f}", f"target {ratio['target']}: {verdict}"))
    for row in figures["tuning"]:
        rows.append(
            (
                f"tuning: {row['variant']}",
                f"{row['img_s']:.1f} img/s",
                f"× {row['vs_configured']:.2f} of configured, "
                f"{row['vs_flop_limit']:.2f} of its FLOP limit; {row['threads']} threads; "
                f"rounds {spread(row['img_s_rounds'])}",
            )
        )
    for row in figures["accelerator_auto"]:
        label = f"accelerator=auto: {row['recipe']}, {row['precision']}"
        if "error" in row:
            rows.append((label, "failed", row["error"]))
            continue
        memory = row["peak_device_memory_gb"]
        rows.append(
            (
                label,
                f"{row['img_s']:.1f} img/s",
                f"{row['device']}; × {row['vs_cpu_lightning']:.2f} of lightning on CPU above; "
                f"fit {row['fit_s']:.1f} s ({row['epochs']} epochs, validation included); "
                f"best step {row['best_step_img_s']:.0f} img/s; peak "
                + (f"device memory {memory:.2f} GB, " if memory is not None else "")
                + f"RSS {row['peak_rss_gb']:.2f} GB",
            )
        )
    load = figures["load_average"]
    rows.append(load_row(load["start"], load["end"]))
    print_table("training: the plant CNN", rows)
