"""Data-parallel training and scans on tf.distribute, with exactly the single-device numbers.

The `distribute:` config section picks the strategy:
    none          one device, the graph of the original code
    mirrored      `replicas` devices of this machine: its GPUs, or logical CPU devices
    multi_worker  every worker of TF_CONFIG (or of a Slurm job) runs the same command; each
                  contributes its GPUs (up to `replicas`), or its CPU as one replica

What stays identical to one device:
  * the global batch is the stage's batch, split in equal consecutive slices over the replicas
    (replica r takes rows r*n .. (r+1)*n - 1), so the sampler does not know about replicas;
    every worker feeds the whole global batch and its replicas take their slices;
  * every network output is gathered over the replicas before the stage's losses see it, so a
    loss that looks across the batch (in-batch negatives, IOU ratios, E_3's W_z) sees the whole
    global batch, and every replica computes the same, global, loss;
  * the gather's gradient flows to each replica's own slice only (see `gather`), so the sum of
    the replicas' gradients, which the compat.v1 optimizer applies under a strategy, is the
    single-device gradient of the global loss: no 1/replicas scaling;
  * variables keep their names (a MirroredVariable saves under its first copy's name), so a
    checkpoint moves between a distributed run, a single-device run and the original code.
"""
import contextlib
import copy
import os

import numpy as np
import tensorflow as tf2
import tensorflow.compat.v1 as tf

from utils.errors import ConfigError

STRATEGIES = ("none", "mirrored", "multi_worker")
# What the surviving workers' collective ops raise when a peer has gone away.
PEER_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError,
               tf.errors.CancelledError, tf.errors.InternalError)
PER_SAMPLE_INPUTS = ("sat", "grd", "sat_semi", "delta", "delta_semi", "ratio")

_process = {}  # one strategy (and gRPC server) per process: a server keeps its port for life


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
                          "describes the cluster: set TF_CONFIG on every worker (README, 'Training on "
                          "several devices or machines')")
    if not resolver.cluster_spec().as_dict().get("worker"):
        raise ConfigError(f"the cluster {resolver.cluster_spec().as_dict()} has no 'worker' job: "
                          "list every machine under cluster.worker in TF_CONFIG")
    return resolver


def _multi_worker(replicas, timeout_s):
    resolver = cluster_resolver()
    gpus = tf2.config.list_physical_devices("GPU")
    if gpus:
        tf2.config.set_visible_devices(gpus[:replicas], "GPU")
    strategy = tf.distribute.experimental.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    config = strategy.update_config_proto(tf.ConfigProto(allow_soft_placement=True))
    config.operation_timeout_in_ms = int(timeout_s * 1000)
    server = tf.distribute.Server(resolver.cluster_spec(), job_name=resolver.task_type,
                                  task_index=resolver.task_id, config=config, start=True)
    return strategy, server.target, config, resolver.task_id == 0, server


class Distribution:
    """The strategy of a run and what the trainer and the scans need from it."""

    def __init__(self, cfg):
        if tf.executing_eagerly():  # a strategy made in eager mode picks other reductions and variables
            raise RuntimeError("Distribution needs graph mode: call utils.cli.graph_mode() before making it")
        section = cfg.get("distribute") or {}
        self.name = section.get("strategy", "none")
        self.strategy, self.target, self.is_chief = None, "", True
        self.session_config = tf.ConfigProto(allow_soft_placement=True)
        self.worker = "this process"
        self.replicas = 1
        if self.name == "none":
            return
        wanted = int(section.get("replicas", 1))
        if wanted < 1:
            raise ConfigError(f"distribute.replicas is {wanted}: it must be 1 or more")
        key = (self.name, wanted)
        if key not in _process:
            if _process:
                raise ConfigError(f"this process already runs distribute {next(iter(_process))}; "
                                  f"start a new process for {key}")
            if self.name == "mirrored":
                _process[key] = (tf.distribute.MirroredStrategy(local_devices(wanted)), "",
                                 self.session_config, True, None)
            else:
                _process[key] = _multi_worker(wanted, float(section.get("timeout_s", 600)))
        self.strategy, self.target, self.session_config, self.is_chief, _ = _process[key]
        self.replicas = int(self.strategy.num_replicas_in_sync)
        if self.name == "multi_worker":
            resolver = self.strategy.cluster_resolver
            self.worker = f"worker {resolver.task_id} of {len(resolver.cluster_spec().as_dict()['worker'])}"

    @classmethod
    def single_device(cls):
        return cls({})

    @property
    def enabled(self):
        return self.strategy is not None

    def scope(self):
        return self.strategy.scope() if self.enabled else contextlib.nullcontext()

    def session(self, graph):
        return tf.Session(self.target, graph=graph, config=self.session_config)

    def check_batch(self, batch_size, what):
        """A ConfigError unless a global batch of `batch_size` splits evenly over the replicas."""
        if batch_size % self.replicas:
            raise ConfigError(f"{what}: a global batch of {batch_size} does not split evenly over "
                              f"{self.replicas} replicas ({self.name}); make it a multiple of {self.replicas} "
                              f"or change distribute.replicas")

    def replicate(self, step_fn):
        """step_fn() once per local replica, in replica context; its results in replica order.

        (The replicas run one after another, each up to its next cross-replica call, so the
        order in which they enter step_fn is the replica order.)"""
        if not self.enabled:
            return [step_fn()]
        results = []

        def in_replica():
            slot = len(results)
            results.append(None)
            results[slot] = step_fn()

        self.strategy.extended.call_for_each_replica(in_replica)
        return results

    @staticmethod
    def first_replica(per_replica):
        """The first replica's values, each tied to every local replica's twin: a collective
        (gather, all-reduce) runs only when every replica runs it, so fetching one replica's
        tensor alone would wait for ever."""
        if len(per_replica) == 1:
            return per_replica[0]

        def tie(first, *others):
            if not isinstance(first, tf.Tensor) or first.op.type == "Placeholder":
                return first
            with tf.control_dependencies(others):
                return tf.identity(first)
        return tf.nest.map_structure(tie, *per_replica)

    # ---------------------------------------------------------------- inside a replica
    def shard_inputs(self, inputs):
        """A copy of `inputs` whose per-sample placeholders are this replica's slice."""
        if not self.enabled:
            return inputs
        local = copy.copy(inputs)
        for name in PER_SAMPLE_INPUTS:
            setattr(local, name, self._slice(getattr(inputs, name, None)))
        local.batch_size = inputs.batch_size // self.replicas
        return local

    def _slice(self, tensor):
        if tensor is None:
            return None
        context = tf.distribute.get_replica_context()
        size = tf.shape(tensor)[0] // self.replicas
        start = context.replica_id_in_sync_group * size
        return tensor[start:start + size]

    def gather_outputs(self, net):
        """Every tensor of `net` gathered over the replicas (see `gather`), in one collective
        call: separate calls could start in a different order on each device and wait on each
        other for ever."""
        if not self.enabled:
            return net
        names = [name for name, t in net.items() if t is not None]
        gathered = self.gather([net[name] for name in names])
        return {name: gathered[names.index(name)] if name in names else None for name in net}

    def gather(self, tensors):
        """The global batch of each per-replica tensor in `tensors` (a list), in replica order,
        with gradients to this replica's slice only.

        Forward: TensorFlow's all_gather. Backward: d loss / d gathered, restricted to this
        replica's rows. Every replica computes the same global loss L, so replica r's gradient
        is dL/dx_r dx_r/dw and the replicas' sum is dL/dw, the single-device gradient. (With
        all_gather's own gradient, a sum over replicas of the incoming gradients, every replica
        would receive R dL/dx_r and the sum would have to be divided by R; in graph mode under
        MirroredStrategy that gradient also fails to find the other replicas' variables.)
        """
        context = tf.distribute.get_replica_context()
        everything = context.all_gather([tf.stop_gradient(t) for t in tensors], axis=0)
        results = []
        for tensor, gathered in zip(tensors, everything):
            gathered = tf.stop_gradient(gathered)
            rows = tf.shape(tensor)[0]
            before = context.replica_id_in_sync_group * rows
            after = tf.shape(gathered)[0] - before - rows
            padding = [[before, after]] + [[0, 0]] * (tensor.shape.ndims - 1)
            result = gathered + tf.pad(tensor - tf.stop_gradient(tensor), padding)  # exactly `gathered`
            result.set_shape([None] + tensor.shape.as_list()[1:])
            results.append(result)
        return results

    def summed_gradients(self, grads_and_vars):
        """(sum over every replica of the gradient, variable): what the optimizer applies.
        Built in each replica; runs only when fetched (tests, benchmarks)."""
        if not self.enabled:
            return grads_and_vars
        kept = [(g, v) for g, v in grads_and_vars if g is not None]
        context = tf.distribute.get_replica_context()
        summed = context.all_reduce(tf.distribute.ReduceOp.SUM,
                                    [tf.stop_gradient(tf.convert_to_tensor(g)) for g, _ in kept])
        by_var = {id(v): g for (_, v), g in zip(kept, summed)}
        return [(by_var.get(id(v)), v) for _, v in grads_and_vars]

    # ---------------------------------------------------------------- feeding
    @staticmethod
    def placeholder_twins(auxiliaries):
        """{first replica's placeholder: the other replicas' placeholders of the same key}: a
        stage's losses make their placeholders once per replica and its hooks know the first."""
        twins = {}
        for name, tensor in auxiliaries[0].items():
            if isinstance(tensor, tf.Tensor) and tensor.op.type == "Placeholder" and len(auxiliaries) > 1:
                twins[tensor] = [aux[name] for aux in auxiliaries[1:]]
        return twins

    @staticmethod
    def feed_twins(feed, twins):
        for placeholder, copies in twins.items():
            if placeholder in feed:
                for twin in copies:
                    feed[twin] = feed[placeholder]
        return feed

    # ---------------------------------------------------------------- faults
    def lost_worker_message(self, error, stage_name, run_dir):
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        telling = [line for line in lines if any(w in line.lower() for w in ("socket", "connect", "peer", "task", "unavailable"))]
        detail = (telling or lines or [""])[0][:200]
        return (f"{stage_name}: {self.worker} lost contact with another worker ({type(error).__name__}: "
                f"{detail}); stopped. A worker died or the network failed. What was saved is kept in "
                f"{run_dir}: start every worker again with the same command and --resume to continue from "
                f"the last checkpoint.")


class ShardedSession:
    """A Session whose forward passes accept any batch length under a strategy.

    A fed batch of another length than the training step's global batch is run in chunks of
    exactly that length (the last one padded by repeating its last row, the padding cut from the
    results): a collective op of MultiWorkerMirroredStrategy keeps the shape of its first run,
    and the chunks split evenly over the replicas. Training steps run as they are.
    """

    def __init__(self, session, dist, batch_size, twins=None):
        self.session, self.dist, self.batch_size, self.twins = session, dist, batch_size, twins or {}
        self.graph = session.graph

    def run(self, fetches, feed_dict=None, **kwargs):
        feed = Distribution.feed_twins(dict(feed_dict or {}), self.twins)
        lengths = {len(v) for v in feed.values() if isinstance(v, np.ndarray) and v.ndim}
        if len(lengths) != 1 or lengths == {self.batch_size}:
            return self.session.run(fetches, feed, **kwargs)
        length, size = lengths.pop(), self.batch_size
        parts = [self.session.run(fetches, self._chunk(feed, start, size), **kwargs) for start in range(0, length, size)]
        return tf.nest.map_structure(lambda *chunks: _joined(chunks, size, length), *parts)

    def close(self):
        self.session.close()

    @staticmethod
    def _chunk(feed, start, size):
        chunk = {}
        for key, value in feed.items():
            if isinstance(value, np.ndarray) and value.ndim:
                value = value[start:start + size]
                value = np.concatenate([value, np.repeat(value[-1:], size - len(value), axis=0)])
            chunk[key] = value
        return chunk


def _joined(chunks, size, length):
    """Per-sample results of the chunks in one array without the padding; other values from the first chunk."""
    if all(isinstance(c, np.ndarray) and c.ndim and len(c) == size for c in chunks):
        return np.concatenate(chunks)[:length]
    return chunks[0]
