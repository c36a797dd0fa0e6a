"""What a stage is, and where its files go.

A stage script describes what is special to it in a `Stage`: the network, the losses, what it
restores from the previous stage, whether it mines hard negatives, and optional hooks. The
trainer (utils/training/trainer.py) does the rest.
"""
import os
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from utils.config import resolve_path
from utils.errors import CheckpointError
from utils.session import checkpoints as ckpt


@dataclass
class StageLosses:
    """What a stage's losses function returns.

    terms: scalar tensors, all logged; terms["loss"] is minimised.
    auxiliary: other tensors the stage's own hooks feed or fetch (placeholders, per-sample values);
    the trainer hands them to `prepare` and `extra_feed` and does nothing else with them.
    """
    terms: dict
    auxiliary: dict = field(default_factory=dict)


@dataclass
class Stage:
    name: str
    network: Callable            # (inputs, cfg) -> dict of tensors with sat_global, grd_global
    losses: Callable             # (net, inputs, cfg) -> StageLosses, or a dict of terms
    with_semi: bool = True       # batches carry a semi-positive tile per panorama
    mining: bool = True          # VIGOR's global hard-negative mining
    restore_include: Optional[list] = None   # variable-name prefixes restored from init_from
    restore_exclude: Optional[list] = None   # name substrings left out of the restore
    inherit_mining: bool = False  # start from the previous stage's mining pool (E_1b)
    continue_epochs: bool = False  # number epochs after the previous stage's (E_1b: 31, 32, ...)
    # (trainer, auxiliary) -> prepared: once, after restoring and before training
    prepare: Optional[Callable] = None
    # (session, auxiliary, prepared, item, feed) -> None: adds the stage's own values to each step's feed
    extra_feed: Optional[Callable] = None
    heatmaps: tuple = ()  # names of the network's tensors shown as TensorBoard images (the tags)
    refuses_covering: Optional[str] = None  # why the stage cannot train with data.positives covering


def as_stage_losses(returned):
    return returned if isinstance(returned, StageLosses) else StageLosses(terms=dict(returned))


def batch_sizes(nominal, with_semi):
    """The original's arithmetic: continuous loaders turn 14 into 10 panoramas (+10 semi tiles; FAITHFULNESS T8)."""
    return int(np.ceil(nominal / 1.5) // 2 * 2) if with_semi else nominal


def stage_dir(cfg, stage_name):
    return os.path.join(resolve_path(cfg.runs_dir), cfg.experiment, stage_name)


def previous_checkpoint(cfg, init_from):
    """Resolve `init_from: {stage: E_1a, epoch: last}` or `{path: ...}` to (epoch, checkpoint dir)."""
    if init_from.get("path"):
        return None, ckpt.checkpoint_prefix(resolve_path(init_from["path"]))
    run_dir = stage_dir(cfg, init_from["stage"])
    epochs = ckpt.epoch_dirs(run_dir)
    if not epochs:
        raise CheckpointError(
            f"stage {init_from['stage']} has no checkpoint in {run_dir}: run it first "
            f"(or set init_from.path to a checkpoint written by the original code)")
    wanted = init_from.get("epoch", "last")
    if wanted in (None, "last"):
        return epochs[-1]
    for epoch, path in epochs:
        if epoch == int(wanted):
            return epoch, path
    raise CheckpointError(f"{run_dir} has no epoch {wanted} (it has {[e for e, _ in epochs]})")
