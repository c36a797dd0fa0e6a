"""The one training loop shared by every stage.

A stage script describes what is special to it in a `Stage` (utils/training/stage.py). The
trainer does the rest: data, schedule, Adam, TensorBoard, tqdm, validation, atomic checkpoints,
resume, NaN stop. It knows no stage by name.
"""
import json
import os
import signal
import time
from dataclasses import dataclass, field

import numpy as np
import tensorflow.compat.v1 as tf
from tqdm import tqdm

from utils.data.prefetch import Prefetcher
from utils.data.sampler import MiningPool, TrainSampler, steps_per_epoch
from utils.data.splits import build_loader, load_splits
from utils.errors import ConfigError, TrainingStopped
from utils.evaluation.finite import count_non_finite
from utils.evaluation.retrieval import search, validate_top_blocked
from utils.evaluation.scan import Scanner, ScanNetwork, descriptor_pass
from utils.evaluation.summaries import ONE_TO_ONE, is_one_to_one, one_to_one_recalls
from utils.metrics import distance_score
from utils.session import checkpoints as ckpt
from utils.training import records, run_folder
from utils.session.distribute import PEER_ERRORS, Distribution, ShardedSession
from utils.training.graph import build_training_graph
from utils.training.stage import batch_sizes, previous_checkpoint, stage_dir


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


@dataclass
class StartPoint:
    """Where a run starts: its first and last epoch, the step inside the first, the meters' state."""
    epoch: int
    step: int
    last_epoch: int
    meters: dict = field(default_factory=dict)


class Trainer:
    def __init__(self, cfg, stage, resume=False, overwrite=False, stop_after_steps=None, show_progress=True):
        self.cfg = cfg
        self.stage = stage
        self.schedule = cfg.stages[stage.name]
        self.resume = resume
        self.overwrite = overwrite  # a fresh run may empty a stage folder that holds checkpoints
        self.stop_after_steps = stop_after_steps  # tests: simulate an interrupt after N steps
        self.show_progress = show_progress
        if cfg.data.positives == "covering" and stage.refuses_covering:
            raise ConfigError(f"{stage.name} cannot train with data.positives covering: {stage.refuses_covering}; "
                              "set data.positives central for this stage")
        self.run_dir = stage_dir(cfg, stage.name)
        if stage.with_semi and cfg.data.positives == "centred":
            raise ConfigError(f"{stage.name} learns offsets from semi-positives, and data.positives=centred has "
                              f"none (every offset 0): train it with data.positives=central")
        self.dist = Distribution(cfg)
        if self.dist.is_chief:  # the run folder is the chief's: the other workers write nothing
            os.makedirs(self.run_dir, exist_ok=True)
        self.train_index, self.test_index = load_splits(cfg)
        self.loader = build_loader(cfg, (self.train_index, self.test_index))
        self.batch_size = batch_sizes(self.schedule.batch_size, stage.with_semi)
        self.dist.check_batch(self.batch_size, f"stages.{stage.name}.batch_size {self.schedule.batch_size} "
                                               f"({self.batch_size} panoramas per step)")
        self.steps_per_epoch = steps_per_epoch(len(self.train_index.grd_paths), self.schedule.batch_size,
                                               self.schedule.steps_per_epoch)
        self.rng = np.random.default_rng(cfg.seed)
        self.parts = None          # TrainingGraph, from build_graph()
        self.sess = None           # the session stage hooks run (ShardedSession under a strategy)
        self.tf_session = None     # the tf.Session itself (checkpoints)
        self.writer = None
        self.sampler = None
        self.mining = None
        self.prepared = None       # what the stage's prepare hook returned
        self.interrupted = False   # set by SIGINT / SIGTERM; the loop saves and stops after the current step
        self.last_feed = None      # the last step's batch: the weights after it are run on it before a save

    # ------------------------------------------------------------------ graph
    def build_graph(self):
        self.parts = build_training_graph(self.stage, self.cfg, self.batch_size, self._learning_rate, self.dist,
                                          total_steps=self.schedule.epochs * self.steps_per_epoch)
        self.parts.graph.finalize()
        return self.parts

    def _learning_rate(self, global_step):
        s = self.schedule
        if s.decay_steps in (None, 0):
            return tf.constant(s.lr)
        decay_steps = self.steps_per_epoch if s.decay_steps == "epoch" else s.decay_steps
        return tf.train.exponential_decay(s.lr, global_step, decay_steps, s.decay_rate)

    # ------------------------------------------------------------------ state
    def _make_sampler(self):
        if self.stage.mining:
            dim = int(self.parts.net["sat_global"].shape[-1])
            self.mining = MiningPool(len(self.train_index.sat_paths), len(self.train_index.grd_paths), dim,
                                     pool_size=self.cfg.mining.pool_size, keep=self.cfg.mining.keep)
        self.sampler = TrainSampler(self.train_index, self.batch_size, with_semi=self.stage.with_semi,
                                    mining=self.mining, seed=self.cfg.seed,
                                    covering=self.cfg.data.positives == "covering")

    def _state_arrays(self, sampler_state):
        arrays = {f"sampler/{k}": np.asarray(v) for k, v in sampler_state.items()}
        if self.mining is not None:
            arrays.update({f"mining/{k}": np.asarray(v) for k, v in self.mining.state_dict().items()})
        return arrays

    def _load_state_arrays(self, arrays):
        self.sampler.load_state_dict(_with_prefix(arrays, "sampler/"))
        mining = _with_prefix(arrays, "mining/")
        if self.mining is not None and mining:
            self.mining.load_state_dict(mining)

    def _save(self, name, next_epoch, next_step, sampler_state, meters):
        state = {"stage": self.stage.name, "network": self.stage.network.__name__,
                 "next_epoch": next_epoch, "next_step": next_step,
                 "rng": self.rng.bit_generator.state,
                 "meters": {k: m.state() for k, m in meters.items()}, "time": time.time()}
        if not self.dist.is_chief:
            return os.path.join(self.run_dir, name)  # the chief writes it
        return ckpt.save_point(self.tf_session, self.parts.saver, self.run_dir, name, state,
                               self._state_arrays(sampler_state))

    def _start(self):
        """Initialise, then restore: our own resume point, or the previous stage's weights."""
        self.sess.run(self.parts.init_op)
        init_from = self.schedule.get("init_from")
        first_epoch = 1
        if init_from and self.stage.continue_epochs:
            prev_epoch, _ = previous_checkpoint(self.cfg, init_from)
            first_epoch = (prev_epoch or 0) + 1
        last_epoch = first_epoch + self.schedule.epochs - 1
        point, damaged = ckpt.choose_resume_point(self.run_dir) if self.resume else (None, [])
        for problem in damaged:
            self.log(f"{self.stage.name}: passing over a damaged save: {problem}")
        if point is not None:
            ckpt.restore_by_name(self.tf_session, self.parts.graph.get_collection("variables"), point,
                                 saver=self.parts.saver)
            state, arrays = ckpt.load_point(point)
            self._load_state_arrays(arrays)
            self.rng.bit_generator.state = state["rng"]
            self.log(f"resumed {self.stage.name} from {point}: epoch {state['next_epoch']}, "
                     f"step {state['next_step']}")
            return StartPoint(state["next_epoch"], state["next_step"], last_epoch, state["meters"])
        if init_from:
            _, prev_dir = previous_checkpoint(self.cfg, init_from)
            count = ckpt.restore_by_name(self.tf_session, self.parts.restored_variables, prev_dir,
                                         saver=self.parts.restore_saver)
            self.log(f"{self.stage.name}: restored {count} variables from {prev_dir}")
            if self.stage.inherit_mining and self.mining is not None:
                self._inherit_mining(prev_dir)
        return StartPoint(first_epoch, 0, last_epoch)

    def _inherit_mining(self, prev_dir):
        """The previous stage's mining pool: ours (sampler.npz) or the original's three .npy files."""
        original = os.path.dirname(os.path.normpath(prev_dir))  # the original saves them beside <epoch>/
        if os.path.exists(os.path.join(prev_dir, "sampler.npz")):
            _, arrays = ckpt.load_point(prev_dir)
            self.mining.load_state_dict(_with_prefix(arrays, "mining/"))
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
        if self.dist.is_chief:
            with open(os.path.join(self.run_dir, "train.log"), "a") as f:
                f.write(text + "\n")

    def run(self):
        if not self.dist.is_chief:  # the chief's folder: it locks and tidies it
            return self._run()
        with run_folder.FolderLock(self.run_dir):  # a second run into the folder: an error naming this one
            self._tidy_folder()
            return self._run()

    def _tidy_folder(self):
        """What a killed save left goes; a fresh run into a folder with checkpoints is refused, or with
        --overwrite starts from an empty folder."""
        removed = run_folder.remove_leftovers(self.run_dir)
        if removed:
            self.log(f"{self.stage.name}: removed what an interrupted save left: {', '.join(removed)}")
        removed = run_folder.check_fresh_start(self.run_dir, self.resume, self.overwrite)
        if removed:
            self.log(f"{self.stage.name}: --overwrite: removed {', '.join(removed)}")

    def _run(self):
        if self.dist.is_chief:
            records.write_record(self.run_dir, self.cfg)
        self.build_graph()
        self.writer = (tf.summary.FileWriter(os.path.join(self.run_dir, "logs"), self.parts.graph)
                       if self.dist.is_chief else NoWriter())
        previous_handlers = self._catch_signals()
        try:
            with self.dist.session(self.parts.graph) as sess:
                self.tf_session = sess
                self.sess = (ShardedSession(sess, self.dist, self.batch_size, self.parts.replica_placeholders)
                             if self.dist.enabled else sess)
                self._make_sampler()
                self._train_all()
        except PEER_ERRORS as error:
            if self.dist.name != "multi_worker":
                raise
            raise TrainingStopped(self.dist.lost_worker_message(error, self.stage.name, self.run_dir),
                                  reason="worker_lost") from None
        finally:
            self.writer.close()
            for signum, handler in previous_handlers.items():
                signal.signal(signum, handler)
        return self.metrics()

    def _train_all(self):
        start = self._start()
        if self.stage.prepare is not None:
            self.prepared = self.stage.prepare(self, self.parts.auxiliary)
        for epoch in range(start.epoch, start.last_epoch + 1):
            first_step, meters = (start.step, start.meters) if epoch == start.epoch else (0, {})
            meters, sampler_state = self._train_epoch(epoch, first_step, meters)
            self._end_epoch(epoch, start.last_epoch, meters, sampler_state)

    def _catch_signals(self):
        """Ctrl-C (SIGINT) and SIGTERM alike: the current step finishes, then the run saves and stops.
        A second Ctrl-C stops at once, keeping only what was saved before."""
        def on_signal(signum, frame):
            if self.interrupted and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.interrupted = True  # no printing here: the handler may interrupt a write to the terminal
        previous = {}
        try:
            for signum in (signal.SIGINT, signal.SIGTERM):
                previous[signum] = signal.signal(signum, on_signal)
        except ValueError:  # not the main thread
            pass
        return previous

    def _feed(self, item):
        inputs = self.parts.inputs
        feed = {inputs.sat: item["sat"], inputs.grd: item["grd"], inputs.delta: item["delta"]}
        if self.stage.with_semi:
            feed[inputs.sat_semi] = item["sat_semi"]
            feed[inputs.delta_semi] = item["delta_semi"]
            feed[inputs.ratio] = distance_score(item["delta"], item["delta_semi"])
        if self.stage.extra_feed is not None:
            self.stage.extra_feed(self.sess, self.parts.auxiliary, self.prepared, item, feed)
        return feed

    def _epoch_batches(self, first_step, states):
        for _ in range(first_step, self.steps_per_epoch):
            batch = self.sampler.next_batch()
            states.append(self.sampler.state_dict())
            yield batch

    def _check_finite(self, values, epoch, step, global_step):
        # the parts first, so that the message names the term that broke rather than the total
        for name in sorted(values, key=lambda n: n == "loss"):
            value = values[name]
            if not np.all(np.isfinite(value)):
                raise TrainingStopped(
                    f"{self.stage.name}: loss term '{name}' is {value} at epoch {epoch}, step {step} "
                    f"(global step {global_step}); stopped. The last good checkpoint is "
                    f"kept in {self.run_dir}; lower the learning rate or check the data, then --resume.",
                    reason="non_finite")

    def _train_epoch(self, epoch, first_step, meter_state):
        """Train one epoch from `first_step`; returns its loss meters and the sampler state after it."""
        meters = {name: LossMeter() for name in self.parts.losses}
        for name, state in meter_state.items():
            if name in meters:
                meters[name].load(state)
        states = []
        prefetch = Prefetcher(self.loader, self.train_index, self._epoch_batches(first_step, states),
                              workers=self.cfg.data.workers, depth=self.cfg.data.prefetch_depth,
                              on_bad_sample=self.cfg.data.on_bad_sample, sampler=self.sampler, seed=self.cfg.seed)
        bar = tqdm(total=self.steps_per_epoch, initial=first_step, disable=not self.show_progress,
                   desc=f"{self.stage.name} epoch {epoch}", unit="step", dynamic_ncols=True, leave=False)
        step = first_step
        try:
            for item in prefetch:
                self._train_step(item, epoch, step, meters)
                step += 1
                bar.update(1)
                bar.set_postfix({k: f"{m.avg:.4g}" for k, m in meters.items()})
                if self.interrupted or (self.stop_after_steps is not None and self._count_step()):
                    self._save_interrupted(epoch, first_step, step, states, meters)
        finally:
            bar.close()
            prefetch.close()
        return meters, (states[-1] if states else self.sampler.state_dict())

    def _train_step(self, item, epoch, step, meters):
        parts = self.parts
        global_step = int(self.sess.run(parts.global_step))
        fetches = {"train": parts.train_op, "losses": parts.losses, "sat_global": parts.net["sat_global"],
                   "grd_global": parts.net["grd_global"], "summary": parts.scalar_summary}
        if step == 0 and parts.image_summary is not None:
            fetches["images"] = parts.image_summary
        self.last_feed = self._feed(item)
        out = self.sess.run(fetches, feed_dict=self.last_feed)
        self._check_finite(out["losses"], epoch, step, global_step)
        batch = item["batch"]
        if self.mining is not None:
            self.mining.update(batch.grd, batch.sat, out["grd_global"], out["sat_global"])
        self.writer.add_summary(out["summary"], global_step)
        if "images" in out:
            self.writer.add_summary(out["images"], global_step)
        for name, value in out["losses"].items():
            meters[name].update(float(value), len(batch.grd))

    def _save_interrupted(self, epoch, first_step, step, states, meters):
        if step == first_step:
            raise TrainingStopped(f"{self.stage.name}: interrupted before the first step of epoch "
                                  f"{epoch}; nothing new to save, --resume continues from the last save",
                                  reason="interrupted")
        self._check_weights(f"at epoch {epoch}, step {step}")
        path = self._save(ckpt.INTERRUPTED, epoch, step, states[step - first_step - 1], meters)
        raise TrainingStopped(f"{self.stage.name}: interrupted at epoch {epoch}, step {step}; "
                              f"saved to {path}. Continue with --resume.", reason="interrupted") from None

    def _count_step(self):
        self.stop_after_steps -= 1
        return self.stop_after_steps <= 0

    def _end_epoch(self, epoch, last_epoch, meters, sampler_state):
        """Refresh the mining pool; save the epoch (its weights checked first); record it; validate.
        Saved before validating, so a stop there loses nothing; metrics.json never lists an epoch
        without its checkpoint."""
        record = {"epoch": epoch, "global_step": int(self.sess.run(self.parts.global_step)),
                  "learning_rate": float(self.sess.run(self.parts.learning_rate)),
                  **{k: m.avg for k, m in meters.items()}}
        if self.mining is not None:
            self.mining.refresh(self.rng)
            mining_start = self.schedule.get("mining_start")
            if mining_start is not None and epoch >= mining_start - 1:
                self.mining.ready = True
        self._check_weights(f"after epoch {epoch}")
        path = self._save(str(epoch), epoch + 1, 0, sampler_state, {})
        if self.dist.is_chief:
            ckpt.discard_interrupted(self.run_dir)  # this epoch's save is newer
            ckpt.prune_epochs(self.run_dir, self.cfg.checkpoints.keep)
        self._append_metrics(record)
        self._stop_if_interrupted(epoch, path)
        if epoch % (self.schedule.validate_every or 1) == 0 or epoch == last_epoch:
            record.update(self.validate(epoch))
            self._append_metrics(record)
        summary = tf.Summary(value=[tf.Summary.Value(tag=f"epoch/{k}", simple_value=float(v))
                                    for k, v in record.items() if isinstance(v, (int, float))])
        self.writer.add_summary(summary, record["global_step"])
        self.writer.flush()
        self.log(f"{self.stage.name} epoch {epoch}: {_epoch_line(record, meters)}")
        self._stop_if_interrupted(epoch, path)

    def _stop_if_interrupted(self, epoch, path):
        if self.interrupted:
            raise TrainingStopped(f"{self.stage.name}: interrupted after epoch {epoch}, which is saved in {path}; "
                                  f"--resume continues with epoch {epoch + 1}.", reason="interrupted")

    def _check_weights(self, moment):
        """Nothing non-finite is ever saved. The loss check cannot see an update that breaks the
        weights (the loss is fetched before the update), so the weights are checked, and run once
        more on the last step's batch: finite but diverged weights give NaN descriptors there."""
        bad = {name: int(n) for name, n in self.sess.run(self.parts.non_finite_weights).items() if n}
        problem = (f"{sum(bad.values())} of them are not finite (in {len(bad)} variables, e.g. "
                   f"{sorted(bad)[:3]})") if bad else self._broken_outputs()
        if problem:
            raise TrainingStopped(
                f"{self.stage.name}: the weights {moment} (global step {int(self.sess.run(self.parts.global_step))}) "
                f"are diverged: {problem}; nothing was saved. The last good checkpoint is kept in "
                f"{self.run_dir}; lower stages.{self.stage.name}.lr or check the data, then --resume.",
                reason="non_finite")

    def _broken_outputs(self):
        if self.last_feed is None:
            return None
        net = self.parts.net
        out = self.sess.run({"tile descriptors": net["sat_global"], "panorama descriptors": net["grd_global"],
                             **{f"loss term '{k}'": v for k, v in self.parts.losses.items()}}, self.last_feed)
        broken = [f"{count_non_finite(v)} of {max(1, len(np.atleast_1d(v)))} {name}" for name, v in out.items()
                  if count_non_finite(v)]
        return f"run on the last batch they give non-finite values ({', '.join(broken)})" if broken else None

    # ------------------------------------------------------------------ validation
    def scanner(self, index, batch_size=None):
        """The one scan (utils/evaluation/scan.py) of a split through the training graph."""
        network = ScanNetwork(self.sess, self.parts.inputs, self.parts.net, name=self.stage.name)
        return Scanner(network, self.loader, index, int(batch_size or self.cfg.validation.scan_batch),
                       workers=int(self.cfg.data.workers), on_bad_sample=self.cfg.data.on_bad_sample,
                       progress=self.show_progress)

    def descriptors(self, index):
        """Global descriptors of every tile and panorama of a split (a scan.Descriptors)."""
        return descriptor_pass(self.scanner(index))

    def validate(self, epoch):
        scan = self.descriptors(self.test_index)
        self.save_array("sat_global_descriptor.npy", scan.sat)
        self.save_array("grd_global_descriptor.npy", scan.grd)
        top1_percent, top1, top5, hit = validate_top_blocked(scan.readable_grd, scan.readable_sat,
                                                             scan.readable.labels)
        record = {"top1_percent": top1_percent, "top1": top1, "top5": top5, "hit_rate": hit}
        labels = scan.readable.labels
        if is_one_to_one(labels, len(scan.readable_sat)):  # CVUSA: SAFA's r@1, r@5, r@10, r@1% as well
            ranks = search(scan.readable_grd, scan.readable_sat, labels[:, :1]).ranks[:, 0]
            recalls = one_to_one_recalls(ranks, len(scan.readable_sat))
            record.update({name: recalls[name] for name in ONE_TO_ONE})
        if any(scan.skips.values()):
            record.update(scan.skips)
            self.log(f"{self.stage.name} epoch {epoch} validation: unreadable images left out {scan.skips}")
        return record

    def save_array(self, name, array):
        """<run_dir>/<name> from the chief alone (every worker computed the same array), written whole
        or not at all; returns its path."""
        path = os.path.join(self.run_dir, name)
        if self.dist.is_chief:
            with open(path + ".tmp", "wb") as f:  # a killed write leaves a .tmp, which the next run removes
                np.save(f, array)
            os.replace(path + ".tmp", path)
        return path

    def _append_metrics(self, record):
        if not self.dist.is_chief:
            return
        path = os.path.join(self.run_dir, "metrics.json")
        records = [r for r in self.metrics() if r["epoch"] != record["epoch"]] + [record]
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


class NoWriter:
    """The summary writer of a worker that is not the chief: TensorBoard is the chief's."""

    def add_summary(self, *args, **kwargs):
        pass

    def flush(self):
        pass

    def close(self):
        pass


def _with_prefix(arrays, prefix):
    return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}


def _epoch_line(record, meters):
    losses = ", ".join(f"{k} {v:.4g}" for k, v in record.items() if k in meters)
    if "top1" not in record:
        return losses
    if ONE_TO_ONE[0] in record:
        return f"{losses} | " + "  ".join(f"{name} {100 * record[name]:.1f}%" for name in ONE_TO_ONE)
    return (f"{losses} | top1 {100 * record['top1']:.1f}%  top5 {100 * record['top5']:.1f}%  "
            f"top1% {100 * record['top1_percent']:.1f}%  hit {100 * record['hit_rate']:.1f}%")


def run_stage(stage, cfg, resume=False, **kwargs):
    return Trainer(cfg, stage, resume=resume, **kwargs).run()
