"""Data-parallel training and scans on tf.distribute, with exactly the single-device numbers.

The `distribute:` config section picks the strategy:
    none          one device, the graph of the original code
    mirrored      `replicas` devices of this machine: its GPUs, or logical CPU devices
    multi_worker  every worker of TF_CONFIG (or of a Slurm job) runs the same command; each
                  contributes its GPUs (up to `replicas`), or its CPU as one replica

What stays identical to one device:
  * the global batch is the stage's batch, split in equal consecutive slices over the replicas
    (replica r takes rows r*n .. (r+1)*n - 1), so the sampler does not know about replicas;
  * every network output is gathered over the replicas before the stage's losses see it, so a
    loss that looks across the batch (in-batch negatives, IOU ratios, E_3's W_z) sees the whole
    global batch, and every replica computes the same, global, loss;
  * the gather's gradient flows to each replica's own slice only (see `gather`), so the sum of
    the replicas' gradients, which the compat.v1 optimizer applies under a strategy, is the
    single-device gradient of the global loss: no 1/replicas scaling;
  * variables keep their names (a MirroredVariable saves under its primary's name), so a
    checkpoint moves between a distributed run, a single-device run and the original code.
"""
import contextlib
import json
import os

import numpy as np
import tensorflow as tf2
import tensorflow.compat.v1 as tf

from utils.config import ConfigError

STRATEGIES = ("none", "mirrored", "multi_worker")
# What a collective op raises on the surviving workers when a peer has gone away.
PEER_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError,
               tf.errors.CancelledError, tf.errors.InternalError)

_process = {}  # one strategy and one gRPC server per process (a server binds its port for life)


def settings(cfg):
    """(strategy name, replicas) of a config, checked."""
    section = cfg.get("distribute") or {}
    name = str(section.get("strategy") or "none")
    if name not in STRATEGIES:
        raise ConfigError(f"distribute.strategy is '{name}': use one of {', '.join(STRATEGIES)}")
    replicas = int(section.get("replicas") or 1)
    if replicas < 1:
        raise ConfigError(f"distribute.replicas is {replicas}: it must be 1 or more")
    return name, replicas


def local_devices(replicas):
    """The first `replicas` GPUs, or as many logical CPU devices (made here if TF allows it)."""
    gpus = tf2.config.list_physical_devices("GPU")
    if gpus:
        if len(gpus) < replicas:
            raise ConfigError(f"distribute.replicas is {replicas} but this machine has {len(gpus)} GPUs")
        return [f"/gpu:{i}" for i in range(replicas)]
    cpu = tf2.config.list_physical_devices("CPU")[0]
    present = tf2.config.get_logical_device_configuration(cpu) or [None]
    if len(present) != replicas:
        try:
            tf2.config.set_logical_device_configuration(
                cpu, [tf2.config.LogicalDeviceConfiguration() for _ in range(replicas)])
        except RuntimeError:
            raise ConfigError(f"TensorFlow already runs on {len(present)} CPU device(s) in this process, so "
                              f"{replicas} logical CPU devices cannot be made: start a new process for "
                              f"distribute.replicas={replicas}") from None
    return [f"/cpu:{i}" for i in range(replicas)]


def cluster_resolver():
    """TF_CONFIG when set, else a Slurm allocation, through TensorFlow's own resolvers."""
    resolvers = tf2.distribute.cluster_resolver
    if os.environ.get("TF_CONFIG"):
        resolver = resolvers.TFConfigClusterResolver()
    elif os.environ.get("SLURM_JOB_ID"):
        resolver = resolvers.SlurmClusterResolver(port_base=int(os.environ.get("SAMP_PORT_BASE", 8888)))
    else:
        raise ConfigError("distribute.strategy is multi_worker but neither TF_CONFIG nor a Slurm job "
                          "describes the cluster: set TF_CONFIG on every worker (see README, "
                          "'Training on several devices or machines')")
    if not resolver.cluster_spec().as_dict().get("worker"):
        raise ConfigError(f"the cluster {resolver.cluster_spec().as_dict()} has no 'worker' job: "
                          "list every machine under cluster.worker in TF_CONFIG")
    return resolver


def _multi_worker(replicas):
    resolver = cluster_resolver()
    gpus = tf2.config.list_physical_devices("GPU")
    if gpus:
        tf2.config.set_visible_devices(gpus[:replicas], "GPU")
    strategy = tf.distribute.experimental.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    config = strategy.update_config_proto(tf.ConfigProto(allow_soft_placement=True))
    server = tf.distribute.Server(resolver.cluster_spec(), job_name=resolver.task_type,
                                  task_index=resolver.task_id, config=config, start=True)
    return strategy, server.target, config, resolver.task_id == 0, server


class Distribution:
    """The strategy of a run and what the trainer and the scans need from it."""

    def __init__(self, cfg):
        self.name, wanted = settings(cfg)
        self.strategy, self.target, self.is_chief = None, "", True
        self.session_config = tf.ConfigProto(allow_soft_placement=True)
        self.worker = "this process"
        if self.name == "none":
            self.replicas = 1
            return
        key = (self.name, wanted)
        if key not in _process:
            if _process:
                raise ConfigError(f"this process already trains with distribute {next(iter(_process))}; "
                                  f"start a new process for {key}")
            if self.name == "mirrored":
                strategy = tf.distribute.MirroredStrategy(local_devices(wanted))
                _process[key] = (strategy, "", self.session_config, True, None)
            else:
                _process[key] = _multi_worker(wanted)
        self.strategy, self.target, self.session_config, self.is_chief, _ = _process[key]
        self.replicas = int(self.strategy.num_replicas_in_sync)
        if self.name == "multi_worker":
            resolver = self.strategy.cluster_resolver
            self.worker = f"worker {resolver.task_id} of {len(resolver.cluster_spec().as_dict()['worker'])}"

    @property
    def enabled(self):
        return self.strategy is not None

    def scope(self):
        return self.strategy.scope() if self.enabled else contextlib.nullcontext()

    def session(self, graph):
        return tf.Session(self.target, graph=graph, config=self.session_config)

    def check_batch(self, batch_size, what):
        """Raise a ConfigError unless `batch_size` splits evenly over the replicas."""
        if batch_size % self.replicas:
            raise ConfigError(f"{what}: a global batch of {batch_size} does not split evenly over "
                              f"{self.replicas} replicas ({self.name}); choose a batch size that is a multiple "
                              f"of {self.replicas} or another distribute.replicas")

    def replicate(self, step_fn):
        """Call step_fn() once per replica (in replica context); return replica 0's results and
        the per-replica results (for grouping ops)."""
        if not self.enabled:
            result = step_fn()
            return result, [result]
        per_replica = self.strategy.extended.call_for_each_replica(step_fn)
        flat = tf.nest.flatten(per_replica, expand_composites=False)
        local = [self.strategy.experimental_local_results(v) for v in flat]
        by_replica = [tf.nest.pack_sequence_as(per_replica, [values[r] for values in local])
                      for r in range(len(local[0]))] if local else [per_replica]
        return by_replica[0], by_replica

    def group(self, ops):
        return tf.group(*ops)

    # ---------------------------------------------------------------- inside a replica
    def shard(self, tensor):
        """This replica's consecutive slice of a global batch (the whole batch on one device)."""
        if not self.enabled or tensor is None:
            return tensor
        context = tf.distribute.get_replica_context()
        size = tf.shape(tensor)[0] // self.replicas
        start = context.replica_id_in_sync_group * size
        return tensor[start:start + size]

    def gather(self, tensor):
        """The global batch of a per-replica tensor, in replica order, with gradients to our slice.

        Forward: TensorFlow's all_gather. Backward: d loss / d gathered, restricted to this
        replica's rows. Every replica computes the same global loss L, so replica r's gradient
        is dL/dx_r dx_r/dw and the replicas' sum is dL/dw, the single-device gradient. (With
        all_gather's own gradient, a sum over replicas of the incoming gradients, every replica
        would receive R dL/dx_r and the sum would have to be divided by R; in graph mode under
        MirroredStrategy that gradient also fails to find the other replicas' variables.)
        """
        if not self.enabled:
            return tensor
        context = tf.distribute.get_replica_context()
        gathered = tf.stop_gradient(context.all_gather(tf.stop_gradient(tensor), axis=0))
        rows = tf.shape(tensor)[0]
        before = context.replica_id_in_sync_group * rows
        after = tf.shape(gathered)[0] - before - rows
        padding = [[before, after]] + [[0, 0]] * (tensor.shape.ndims - 1)
        return gathered + tf.pad(tensor - tf.stop_gradient(tensor), padding)  # exactly `gathered`

    # ---------------------------------------------------------------- scans
    def padded_feed(self, feed):
        """Pad every fed batch to a multiple of the replicas (repeating its last row);
        returns the feed and the true batch length."""
        lengths = {len(v) for v in feed.values() if isinstance(v, np.ndarray) and v.ndim}
        if len(lengths) != 1 or self.replicas == 1:
            return feed, (lengths.pop() if len(lengths) == 1 else None)
        length = lengths.pop()
        extra = -length % self.replicas
        if extra == 0:
            return feed, length
        padded = {k: np.concatenate([v, np.repeat(v[-1:], extra, axis=0)]) if isinstance(v, np.ndarray) and v.ndim
                  else v for k, v in feed.items()}
        return padded, length

    def run_scan(self, sess, fetches, feed):
        """sess.run of a forward pass over any batch length, sharded over the replicas."""
        padded, length = self.padded_feed(feed)
        out = sess.run(fetches, padded)
        if length is None:
            return out
        return tf.nest.map_structure(lambda a: a[:length] if isinstance(a, np.ndarray) and a.ndim else a, out)

    # ---------------------------------------------------------------- faults
    def lost_worker_message(self, error, stage_name, run_dir):
        return (f"{stage_name}: {self.worker} lost contact with another worker "
                f"({type(error).__name__}: {str(error).splitlines()[0][:200]}); stopped. A worker has died "
                f"or the network failed. Nothing after the last checkpoint in {run_dir} is kept: restart "
                f"every worker with the same command and --resume to continue from it.")


def describe(dist):
    return json.dumps({"strategy": dist.name, "replicas": dist.replicas, "chief": dist.is_chief})
