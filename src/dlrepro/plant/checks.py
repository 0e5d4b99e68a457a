"""Config checks for the Trainer and every instantiable node, made before a fit touches anything:
a value this machine cannot run, or that the class does not take, is one line naming the key
(Lightning raises some of these only once `fit` has started, and lets others pass)."""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, get_args

import torch
from hydra.errors import InstantiationException
from hydra.utils import get_class
from lightning_fabric.connector import _PRECISION_INPUT_STR
from lightning_fabric.plugins.environments import (
    LSFEnvironment,
    MPIEnvironment,
    SLURMEnvironment,
    TorchElasticEnvironment,
)
from lightning_fabric.utilities.exceptions import MisconfigurationException
from pytorch_lightning.accelerators import AcceleratorRegistry
from pytorch_lightning.strategies import StrategyRegistry

from dlrepro.errors import ConfigError


@contextmanager
def config_errors(key: str) -> Iterator[None]:
    """A class that rejects its config node says why in one line naming the node."""
    try:
        yield
    except ConfigError:
        raise
    except InstantiationException as err:
        cause = err.__cause__ or err
        raise ConfigError(f"{key}: {_first_line(cause)}") from None
    except (MisconfigurationException, ValueError, TypeError) as err:
        raise ConfigError(f"{key}: {_first_line(err)}") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def check_arguments(key: str, node: Mapping[str, Any]) -> None:
    """Every key of an instantiable node must be an argument of its `_target_`."""
    with config_errors(f"{key}._target_"):
        target = get_class(node["_target_"])
    accepted = inspect.signature(target).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
        return
    for name in node:
        if not name.startswith("_") and name not in accepted:
            raise ConfigError(f"{key}.{name}: not an argument of {node['_target_']}")


def visible_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1  # None where the platform cannot tell


def launched_on_several_nodes() -> bool:
    """A launcher that starts and connects the nodes: torchrun, SLURM, LSF or MPI."""
    environments = (TorchElasticEnvironment, SLURMEnvironment, LSFEnvironment, MPIEnvironment)
    return any(env.detect() for env in environments)


def check_trainer(options: Mapping[str, Any]) -> None:
    """Refuse, in one line naming the key, a Trainer setting that is not a known choice or that
    this machine cannot run (Lightning raises some of these only once `fit` has started, and lets
    others pass: fp16 on a CPU silently becomes bf16, 5 CPU processes on 2 cores just start)."""
    check_arguments("trainer", options)
    accelerator = options.get("accelerator", "auto")
    known = sorted({"auto", "gpu", *AcceleratorRegistry.available_accelerators()})
    if accelerator not in known:
        raise ConfigError(
            f"trainer.accelerator={accelerator!r}: unknown; allowed: {', '.join(known)}"
        )
    has_gpu = torch.cuda.is_available()
    if accelerator in ("gpu", "cuda") and not has_gpu:
        raise ConfigError(
            f"trainer.accelerator={accelerator!r}: this machine has no CUDA GPU; use auto or cpu"
        )
    if accelerator == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(
            "trainer.accelerator='mps': this machine has no Apple GPU; use auto or cpu"
        )
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and has_gpu)

    strategy = options.get("strategy", "auto")
    strategies = ["auto", *StrategyRegistry.available_strategies()]
    if strategy not in strategies:
        raise ConfigError(
            f"trainer.strategy={strategy!r}: unknown; allowed: auto, ddp, ddp_spawn, fsdp, "
            "deepspeed (and the other names of Lightning's StrategyRegistry)"
        )

    precision = str(options.get("precision", "32-true"))
    precisions = [p for p in get_args(_PRECISION_INPUT_STR) if not p.startswith("transformer")]
    if precision not in precisions:
        raise ConfigError(
            f"trainer.precision={precision!r}: unknown; allowed: {', '.join(precisions)}"
        )
    if precision == "16-mixed" and not on_gpu:
        raise ConfigError(
            "trainer.precision='16-mixed': float16 autocast needs a CUDA GPU (Lightning would "
            "run bf16-mixed instead); on this machine use bf16-mixed or 32-true"
        )

    devices = options.get("devices", "auto")
    available, unit = (
        (torch.cuda.device_count(), "CUDA GPU(s)") if on_gpu else (visible_cpus(), "CPU cores")
    )
    count = len(devices) if isinstance(devices, list) else devices
    if isinstance(count, str) and count.strip().lstrip("-").isdigit():
        count = int(count)
    if count not in ("auto", -1) and not (isinstance(count, int) and 1 <= count <= available):
        raise ConfigError(
            f"trainer.devices={devices!r}: this machine has {available} {unit}; "
            f"allowed: 1..{available}, -1 (all) or auto"
        )

    num_nodes = options.get("num_nodes", 1)
    if not isinstance(num_nodes, int) or num_nodes < 1:
        raise ConfigError(f"trainer.num_nodes={num_nodes!r}: must be an integer >= 1")
    if num_nodes > 1 and not launched_on_several_nodes():
        raise ConfigError(
            f"trainer.num_nodes={num_nodes}: needs a launcher that starts every node "
            f"(torchrun --nnodes {num_nodes} ..., SLURM); alone, this run would wait for the others"
        )
