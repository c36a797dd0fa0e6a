"""The one training loop shared by every stage.

A stage script describes what is special to it in a `Stage`: the network, the losses, what it
restores from the previous stage, whether it mines hard negatives. The trainer does the rest:
data, schedule, Adam, TensorBoard, tqdm, validation, atomic checkpoints, resume, NaN stop.
"""
import json
import os
import signal
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import tensorflow.compat.v1 as tf

from tqdm import tqdm

from model.inputs import Inputs
from utils.training import checkpoints as ckpt
from utils.config import resolve_path
from utils.data.splits import build_loader, load_splits
from utils.metrics import distance_score
from utils.evaluation.retrieval import validate_top_blocked
from utils.data.sampler import MiningPool, TrainSampler
from utils.data.prefetch import Prefetcher
from utils.evaluation.scan import ScanNetwork, Scanner, descriptor_pass

tf.get_logger().setLevel("ERROR")
tf.disable_v2_behavior()  # graph mode: placeholders, Session, Saver


class LossMeter:
    """Running mean of one loss term over an epoch (its state is saved with interrupted runs)."""

    def __init__(self):
        self.total, self.count = 0.0, 0

    def update(self, value, n=1):
        self.total += value * n
        self.count += n

    @property
    def avg(self):
        return self.total / max(self.count, 1)

    def state(self):
        return [self.total, self.count]

    def load(self, state):
        self.total, self.count = float(state[0]), int(state[1])


class TrainingStopped(RuntimeError):
    """Training stopped on purpose (NaN loss, interrupt); the message says why and what was kept."""


@dataclass
class Stage:
    name: str
    network: Callable            # (inputs, cfg) -> dict of tensors with sat_global, grd_global
    losses: Callable             # (net, inputs, cfg) -> dict of scalar tensors; "loss" is minimised
    with_semi: bool = True       # batches carry a semi-positive tile per panorama
    mining: bool = True          # VIGOR's global hard-negative mining
    restore_include: Optional[list] = None   # variable-name prefixes restored from init_from
    restore_exclude: Optional[list] = None   # name substrings left out of the restore
    inherit_mining: bool = False  # start from the previous stage's mining pool (E_1b)
    continue_epochs: bool = False  # number epochs after the previous stage's (E_1b: 31, 32, ...)
    prepare: Optional[Callable] = None      # (trainer) -> None, after restoring, before training
    extra_feed: Optional[Callable] = None   # (trainer, item, feed) -> None, per step
    heatmaps: Callable = field(default=lambda net: [])  # tensors shown as TensorBoard images


def batch_sizes(nominal, with_semi):
    """The original's arithmetic: continuous loaders turn 14 into 10 panoramas (+10 semi tiles)."""
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
        raise ckpt.CheckpointError(
            f"stage {init_from['stage']} has no checkpoint in {run_dir}: run it first "
            f"(or set init_from.path to a checkpoint written by the original code)")
    wanted = init_from.get("epoch", "last")
    if wanted in (None, "last"):
        return epochs[-1]
    for epoch, path in epochs:
        if epoch == int(wanted):
            return epoch, path
    raise ckpt.CheckpointError(f"{run_dir} has no epoch {wanted} (it has {[e for e, _ in epochs]})")


class Trainer:
    def __init__(self, cfg, stage, resume=False, stop_after_steps=None, show_progress=True):
        self.cfg = cfg
        self.stage = stage
        self.schedule = cfg.stages[stage.name]
        self.resume = resume
        self.stop_after_steps = stop_after_steps  # tests: simulate an interrupt after N steps
        self.show_progress = show_progress
        self.run_dir = stage_dir(cfg, stage.name)
        os.makedirs(self.run_dir, exist_ok=True)
        self.train_index, self.test_index = load_splits(cfg)
        self.loader = build_loader(cfg)
        self.nominal_batch = int(self.schedule.batch_size)
        self.batch_size = batch_sizes(self.nominal_batch, stage.with_semi)
        steps = self.schedule.get("steps_per_epoch")
        self.steps_per_epoch = int(steps) if steps else int(len(self.train_index.grd_paths) / self.nominal_batch)
        if self.steps_per_epoch < 1:
            raise ValueError(f"{len(self.train_index.grd_paths)} training panoramas give no full batch of "
                             f"{self.nominal_batch}: lower stages.{stage.name}.batch_size")
        self.rng = np.random.default_rng(cfg.seed)

    # ------------------------------------------------------------------ graph
    def build_graph(self):
        cfg, stage = self.cfg, self.stage
        self.graph = tf.Graph()
        with self.graph.as_default():
            tf.set_random_seed(cfg.seed)
            self.global_step = tf.Variable(0, trainable=False)  # 'Variable:0', as in the original graphs
            self.inputs = Inputs(cfg.data.sat_size, cfg.data.grd_size, self.batch_size, stage.with_semi)
            self.net = stage.network(self.inputs, cfg)
            with tf.name_scope("loss"):
                self.losses = dict(stage.losses(self.net, self.inputs, cfg))
            self.learning_rate = self._learning_rate()
            with tf.name_scope("train"):
                optimizer = tf.train.AdamOptimizer(self.learning_rate, 0.9, 0.999)
                self.train_op = optimizer.minimize(self.losses["loss"], global_step=self.global_step)
            scalars = [tf.summary.scalar(name, value) for name, value in self.losses.items()]
            scalars.append(tf.summary.scalar("learning_rate", self.learning_rate))
            self.scalar_summary = tf.summary.merge(scalars)
            images = [tf.summary.image(t.op.name.replace("/", "_"), self._normalised(t), max_outputs=2)
                      for t in stage.heatmaps(self.net)]
            self.image_summary = tf.summary.merge(images) if images else None
            self.saver = tf.train.Saver(tf.global_variables(), max_to_keep=None)
            self.restored_variables = ckpt.select_variables(tf.global_variables(), stage.restore_include,
                                                            stage.restore_exclude)
            self.restore_saver = tf.train.Saver(self.restored_variables) if self.restored_variables else None
            self.init_op = tf.global_variables_initializer()
        self.graph.finalize()

    def _learning_rate(self):
        s = self.schedule
        if s.decay_steps in (None, 0):
            return tf.constant(float(s.lr))
        decay_steps = self.steps_per_epoch if s.decay_steps == "epoch" else int(s.decay_steps)
        return tf.train.exponential_decay(float(s.lr), self.global_step, decay_steps, float(s.decay_rate))

    @staticmethod
    def _normalised(heatmap):
        peak = tf.reduce_max(heatmap, axis=[1, 2, 3], keepdims=True)
        return heatmap / (peak + 1e-12)

    # ------------------------------------------------------------------ state
    def _make_sampler(self):
        mining = None
        if self.stage.mining:
            dim = int(self.net["sat_global"].shape[-1])
            mining = MiningPool(len(self.train_index.sat_paths), len(self.train_index.grd_paths), dim,
                                pool_size=int(self.cfg.mining.pool_size), keep=int(self.cfg.mining.keep))
        self.mining = mining
        self.sampler = TrainSampler(self.train_index, self.batch_size, with_semi=self.stage.with_semi,
                                    mining=mining, seed=int(self.cfg.seed))

    def _state_arrays(self, sampler_state):
        arrays = {f"sampler/{k}": np.asarray(v) for k, v in sampler_state.items()}
        if self.mining is not None:
            arrays.update({f"mining/{k}": np.asarray(v) for k, v in self.mining.state_dict().items()})
        return arrays

    def _load_state_arrays(self, arrays):
        sampler = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("sampler/")}
        self.sampler.load_state_dict(sampler)
        if self.mining is not None:
            mining = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("mining/")}
            if mining:
                self.mining.load_state_dict(mining)

    def _save(self, name, next_epoch, next_step, sampler_state, meters):
        state = {"stage": self.stage.name, "next_epoch": next_epoch, "next_step": next_step,
                 "rng": self.rng.bit_generator.state,
                 "meters": {k: m.state() for k, m in meters.items()}, "time": time.time()}
        path = ckpt.save_point(self.sess, self.saver, self.run_dir, name, state,
                               self._state_arrays(sampler_state))
        return path

    def _start(self):
        """Initialise, then restore: our own resume point, or the previous stage's weights."""
        self.sess.run(self.init_op)
        self.first_epoch = 1
        self.start = (1, 0)
        self.meter_state = {}
        init_from = self.schedule.get("init_from")
        if init_from and self.stage.continue_epochs:
            prev_epoch, _ = previous_checkpoint(self.cfg, init_from)
            self.first_epoch = (prev_epoch or 0) + 1
        point = ckpt.resume_point(self.run_dir) if self.resume else None
        if point is not None:
            ckpt.restore_by_name(self.sess, self.graph.get_collection("variables"), point, saver=self.saver)
            state, arrays = ckpt.load_point(point)
            self._load_state_arrays(arrays)
            self.rng.bit_generator.state = state["rng"]
            self.meter_state = state["meters"]
            self.start = (state["next_epoch"], state["next_step"])
            self.log(f"resumed {self.stage.name} from {point}: epoch {self.start[0]}, step {self.start[1]}")
            return
        self.start = (self.first_epoch, 0)
        if init_from:
            prev_epoch, prev_dir = previous_checkpoint(self.cfg, init_from)
            count = ckpt.restore_by_name(self.sess, self.restored_variables, prev_dir, saver=self.restore_saver)
            self.log(f"{self.stage.name}: restored {count} variables from {prev_dir}")
            if self.stage.inherit_mining and self.mining is not None:
                self._inherit_mining(prev_dir)

    def _inherit_mining(self, prev_dir):
        """The previous stage's mining pool: ours (sampler.npz) or the original's three .npy files."""
        ours = os.path.join(prev_dir, "sampler.npz")
        original = os.path.dirname(os.path.normpath(prev_dir))  # the original saves them beside <epoch>/
        if os.path.exists(ours):
            _, arrays = ckpt.load_point(prev_dir)
            self.mining.load_state_dict({k.split("/", 1)[1]: v for k, v in arrays.items()
                                         if k.startswith("mining/")})
        elif os.path.exists(os.path.join(original, "mining_save.npy")):
            self.mining.load_original_files(original, ready=True)
        else:
            self.log(f"{self.stage.name}: no mining pool next to {prev_dir}; mining starts empty")
            return
        self.mining.refresh(self.rng)

    # ------------------------------------------------------------------ loop
    def log(self, text):
        if self.show_progress:
            tqdm.write(text)
        with open(os.path.join(self.run_dir, "train.log"), "a") as f:
            f.write(text + "\n")

    def _feed(self, item):
        inputs = self.inputs
        feed = {inputs.sat: item["sat"], inputs.grd: item["grd"], inputs.delta: item["delta"]}
        if self.stage.with_semi:
            feed[inputs.sat_semi] = item["sat_semi"]
            feed[inputs.delta_semi] = item["delta_semi"]
            feed[inputs.ratio] = distance_score(item["delta"], item["delta_semi"])
        if self.stage.extra_feed is not None:
            self.stage.extra_feed(self, item, feed)
        return feed

    def _epoch_batches(self, first_step, states):
        for _ in range(first_step, self.steps_per_epoch):
            batch = self.sampler.next_batch()
            states.append(self.sampler.state_dict())
            yield batch

    def _check_finite(self, values, epoch, step):
        # the parts first, so that the message names the term that broke rather than the total
        for name in sorted(values, key=lambda n: n == "loss"):
            value = values[name]
            if not np.all(np.isfinite(value)):
                raise TrainingStopped(
                    f"{self.stage.name}: loss term '{name}' is {value} at epoch {epoch}, step {step} "
                    f"(global step {self.global_step_value}); stopped. The last good checkpoint is "
                    f"kept in {self.run_dir}; lower the learning rate or check the data, then --resume.")

    def run(self):
        self.build_graph()
        self.writer = tf.summary.FileWriter(os.path.join(self.run_dir, "logs"), self.graph)
        config = tf.ConfigProto(allow_soft_placement=True)
        interrupted = {"flag": False}
        previous_handler = signal.getsignal(signal.SIGTERM)

        def on_sigterm(signum, frame):
            interrupted["flag"] = True

        try:
            signal.signal(signal.SIGTERM, on_sigterm)
        except ValueError:  # not the main thread
            previous_handler = None
        with tf.Session(graph=self.graph, config=config) as sess:
            self.sess = sess
            self._make_sampler()
            self._start()
            if self.stage.prepare is not None:
                self.stage.prepare(self)
            last_epoch = self.first_epoch + int(self.schedule.epochs) - 1
            try:
                for epoch in range(self.start[0], last_epoch + 1):
                    first_step = self.start[1] if epoch == self.start[0] else 0
                    self._train_epoch(epoch, first_step, interrupted)
                    self._end_epoch(epoch, last_epoch)
            finally:
                self.writer.close()
                if previous_handler is not None:
                    signal.signal(signal.SIGTERM, previous_handler)
        return self.metrics()

    def _train_epoch(self, epoch, first_step, interrupted):
        meters = {name: LossMeter() for name in self.losses}
        for name, state in self.meter_state.items():
            if name in meters:
                meters[name].load(state)
        self.meter_state = {}
        states = []
        batches = self._epoch_batches(first_step, states)
        prefetch = Prefetcher(self.loader, self.train_index, batches, workers=int(self.cfg.data.workers),
                              depth=int(self.cfg.data.prefetch_depth), on_bad_sample=self.cfg.data.on_bad_sample,
                              sampler=self.sampler, seed=int(self.cfg.seed))
        bar = tqdm(total=self.steps_per_epoch, initial=first_step, disable=not self.show_progress,
                   desc=f"{self.stage.name} epoch {epoch}", unit="step", dynamic_ncols=True, leave=False)
        fetches = {"train": self.train_op, "losses": self.losses, "sat_global": self.net["sat_global"],
                   "grd_global": self.net["grd_global"], "summary": self.scalar_summary}
        step = first_step
        try:
            for item in prefetch:
                self.global_step_value = int(self.sess.run(self.global_step))
                feed = self._feed(item)
                extra = dict(fetches)
                if step == 0 and self.image_summary is not None:
                    extra["images"] = self.image_summary
                out = self.sess.run(extra, feed_dict=feed)
                self._check_finite(out["losses"], epoch, step)
                batch = item["batch"]
                if self.mining is not None:
                    self.mining.update(batch.grd, batch.sat, out["grd_global"], out["sat_global"])
                self.writer.add_summary(out["summary"], self.global_step_value)
                if "images" in out:
                    self.writer.add_summary(out["images"], self.global_step_value)
                for name, value in out["losses"].items():
                    meters[name].update(float(value), len(batch.grd))
                step += 1
                bar.update(1)
                bar.set_postfix({k: f"{m.avg:.4g}" for k, m in meters.items()})
                if interrupted["flag"] or (self.stop_after_steps is not None and self._count_step()):
                    raise KeyboardInterrupt
        except KeyboardInterrupt:
            sampler_state = states[step - first_step - 1] if step > first_step else None
            if sampler_state is None:
                raise TrainingStopped(f"{self.stage.name}: interrupted before the first step of epoch "
                                      f"{epoch}; nothing new to save, --resume continues from the last save")
            path = self._save(ckpt.INTERRUPTED, epoch, step, sampler_state, meters)
            raise TrainingStopped(f"{self.stage.name}: interrupted at epoch {epoch}, step {step}; "
                                  f"saved to {path}. Continue with --resume.") from None
        finally:
            bar.close()
            prefetch.close()
        self.epoch_meters = meters
        self.last_sampler_state = states[-1] if states else self.sampler.state_dict()

    def _count_step(self):
        self.stop_after_steps -= 1
        return self.stop_after_steps <= 0

    def _end_epoch(self, epoch, last_epoch):
        record = {"epoch": epoch, "global_step": int(self.sess.run(self.global_step)),
                  "learning_rate": float(self.sess.run(self.learning_rate)),
                  **{k: m.avg for k, m in self.epoch_meters.items()}}
        if self.mining is not None:
            self.mining.refresh(self.rng)
            mining_start = self.schedule.get("mining_start")
            if mining_start is not None and epoch >= int(mining_start) - 1:
                self.mining.ready = True
        every = int(self.schedule.validate_every or 1)
        if epoch % every == 0 or epoch == last_epoch:
            record.update(self.validate(epoch))
        self._append_metrics(record)
        summary = tf.Summary(value=[tf.Summary.Value(tag=f"epoch/{k}", simple_value=float(v))
                                    for k, v in record.items() if isinstance(v, (int, float))])
        self.writer.add_summary(summary, record["global_step"])
        self.writer.flush()
        self._save(str(epoch), epoch + 1, 0, self.last_sampler_state, {})
        ckpt.discard_interrupted(self.run_dir)  # this epoch's save is newer
        ckpt.prune_epochs(self.run_dir, int(self.cfg.checkpoints.keep))
        losses = ", ".join(f"{k} {v:.4g}" for k, v in record.items() if k in self.losses)
        retrieval = ""
        if "top1" in record:
            retrieval = (f" | top1 {100 * record['top1']:.1f}%  top5 {100 * record['top5']:.1f}%  "
                         f"top1% {100 * record['top1_percent']:.1f}%  hit {100 * record['hit_rate']:.1f}%")
        self.log(f"{self.stage.name} epoch {epoch}: {losses}{retrieval}")

    # ------------------------------------------------------------------ validation
    def scanner(self, index, batch_size=None):
        """The one scan (utils/evaluation/scan.py) of a split through the training graph."""
        network = ScanNetwork(self.sess, self.inputs, self.net)
        return Scanner(network, self.loader, index, int(batch_size or self.cfg.validation.scan_batch),
                       workers=int(self.cfg.data.workers), on_bad_sample=self.cfg.data.on_bad_sample,
                       progress=self.show_progress)

    def descriptors(self, index):
        """Global descriptors of every tile and panorama of a split (a scan.Descriptors)."""
        return descriptor_pass(self.scanner(index))

    def validate(self, epoch):
        scan = self.descriptors(self.test_index)
        np.save(os.path.join(self.run_dir, "sat_global_descriptor.npy"), scan.sat)
        np.save(os.path.join(self.run_dir, "grd_global_descriptor.npy"), scan.grd)
        top1_percent, top1, top5, hit = validate_top_blocked(scan.readable_grd, scan.readable_sat,
                                                             scan.readable.labels)
        record = {"top1_percent": top1_percent, "top1": top1, "top5": top5, "hit_rate": hit}
        if any(scan.skips.values()):
            record.update(scan.skips)
            self.log(f"{self.stage.name} epoch {epoch} validation: unreadable images left out {scan.skips}")
        return record

    def _append_metrics(self, record):
        path = os.path.join(self.run_dir, "metrics.json")
        records = []
        if os.path.exists(path):
            with open(path) as f:
                records = json.load(f)
        records = [r for r in records if r["epoch"] != record["epoch"]] + [record]
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(records, f, indent=1)
        os.replace(tmp, path)

    def metrics(self):
        path = os.path.join(self.run_dir, "metrics.json")
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return json.load(f)


def run_stage(stage, cfg, resume=False, **kwargs):
    return Trainer(cfg, stage, resume=resume, **kwargs).run()
