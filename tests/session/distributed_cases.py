"""Distributed cases the tests run in subprocesses (logical devices must be made before TF starts).

    python tests/session/distributed_cases.py steps OUT.json [STAGE ...]
        for each stage: the trainer's graph on one device and on 2 logical CPU devices
        (MirroredStrategy), from the same weights, on the same global batch of 4: losses and
        summed gradients of each of 3 Adam steps, and the weights after them; writes the
        comparison to OUT.json and each graph's TensorBoard summaries to events/<stage>/<label>
        beside it.
    python tests/session/distributed_cases.py train CONFIG_JSON
        run_stage of the stages listed in the config (a JSON file: config, overrides, stages, and
        optionally runs: [{overrides, resume, stop_after_steps}, ...] made one after another in
        this process, an interrupted run's message printed, and evaluate: evaluate.py's arguments,
        run after training) with the distribute settings of the overrides; TF_CONFIG as given.
"""
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

STEPS = 3


def _compare_steps(names, out_path):
    from utils.cli import graph_mode
    from utils.session.distribute import Distribution
    graph_mode()
    mirrored = Distribution({"distribute": {"strategy": "mirrored", "replicas": 2}})  # before TF starts

    from model.losses import semi_positive_weight
    from tests.training.test_stage_losses import STAGES, UNCERTAINTIES, tiny_config

    cfg = tiny_config()
    w = semi_positive_weight(UNCERTAINTIES, a=cfg.stages.E_3.weight_a, b=cfg.stages.E_3.weight_b,
                             c=cfg.stages.E_3.weight_c)
    report = {}
    events = os.path.join(os.path.dirname(os.path.abspath(out_path)), "events")
    for name in names:
        start = {}
        runs = {label: _three_steps(STAGES[name], cfg, dist, start, w, os.path.join(events, name, label))
                for label, dist in (("single", None), ("mirrored", mirrored))}
        report[name] = _differences(runs["single"], runs["mirrored"])
    with open(out_path, "w") as f:
        json.dump(report, f, indent=1)


def _three_steps(stage, cfg, dist, start, e3_weights, events_dir):
    """STEPS Adam steps of a stage's training graph on one global batch: the losses and summed
    gradients each step applies, the weights after them; the summaries go to `events_dir`. One
    device puts its initial values into `start` (a dict), a strategy starts from them (fed to the
    initialisers: the graph has no Saver, which would double its build time)."""
    import tensorflow.compat.v1 as tf

    from tests.training.test_stage_losses import (
        BATCH,
        LEARNING_RATE,
        SESSION_CONFIG,
        e3_feed_weights,
        feed_of,
        make_batch,
    )
    from utils.session.distribute import ShardedSession
    from utils.training.graph import build_training_graph
    parts = build_training_graph(stage, cfg, BATCH, LEARNING_RATE, dist, savers=False)
    parts.graph.finalize()
    grads = {v.op.name: g for g, v in parts.grads_and_vars if g is not None}
    writer = tf.summary.FileWriter(events_dir)
    with tf.Session(graph=parts.graph, config=SESSION_CONFIG) as raw:
        sess = ShardedSession(raw, dist, BATCH, parts.replica_placeholders) if dist else raw
        variables = parts.graph.get_collection("variables")
        if dist is None:
            raw.run(parts.init_op)
            start.update(zip([v.op.name for v in variables], raw.run(variables)))
        else:
            raw.run(parts.init_op, {v.initial_value: start[v.op.name] for v in variables})
        feed = feed_of(parts.inputs, make_batch(0))
        history = []
        for step in range(STEPS):
            if "W_" in parts.auxiliary:
                e3_feed_weights(sess, parts.auxiliary, feed, e3_weights, 0)
            summaries = [parts.scalar_summary] + ([parts.image_summary] if parts.image_summary is not None else [])
            fetches = {"losses": parts.losses, "grads": grads, "train": parts.train_op, "summaries": summaries}
            out = sess.run(fetches, feed)  # the losses and gradients of the weights before this step's update
            for summary in out.pop("summaries"):
                writer.add_summary(summary, step)
            history.append(out)
        values = dict(zip([v.op.name for v in variables], raw.run(variables)))
    writer.close()
    return {"history": history, "values": values, "grad_names": sorted(grads)}


def _differences(single, mirrored):
    import numpy as np
    """Relative differences of the losses and per-variable gradient norms, weight differences."""
    loss_rel, grad_rel, per_variable = 0.0, 0.0, 0.0
    for step, (a, b) in enumerate(zip(single["history"], mirrored["history"])):
        for term, value in a["losses"].items():
            loss_rel = max(loss_rel, abs(float(b["losses"][term]) - float(value)) / max(abs(float(value)), 1e-30))
        total, error = 0.0, 0.0
        for var, grad in a["grads"].items():
            norm, miss = np.linalg.norm(grad), np.linalg.norm(b["grads"][var] - grad)
            total, error = total + norm ** 2, error + miss ** 2
            if step == 0:  # each variable's gradient from the same weights; Adam's steps then amplify rounding
                per_variable = max(per_variable, float(miss / max(norm, 1e-30)))
        grad_rel = max(grad_rel, float(np.sqrt(error / total)))
    weight_abs = {k: float(np.max(np.abs(np.asarray(v, np.float64) - mirrored["values"][k])))
                  for k, v in single["values"].items()}
    scale = {k: float(np.max(np.abs(v))) for k, v in single["values"].items()}
    return {"same_variables": sorted(single["values"]) == sorted(mirrored["values"]),
            "same_gradients": single["grad_names"] == mirrored["grad_names"],
            "loss_rel": loss_rel, "grad_rel": grad_rel, "grad_rel_per_variable": per_variable, "weight_abs": weight_abs, "weight_scale": scale,
            "first_loss": float(single["history"][0]["losses"]["loss"]),
            "last_loss": float(single["history"][-1]["losses"]["loss"])}


def _train(config_path):
    with open(config_path) as f:
        job = json.load(f)
    from utils.cli import graph_mode
    from utils.config import load_config
    from utils.session.distribute import Distribution
    graph_mode()
    Distribution(load_config(job["config"], job["overrides"]))  # devices and cluster before TF starts
    import train_first_E_1
    import train_second_E_2_1
    import train_second_E_2_2
    import train_third_E_3
    from utils.cli import run
    from utils.errors import TrainingStopped
    from utils.training.trainer import run_stage
    stages = {"E_1a": train_first_E_1.E_1a, "E_1b": train_first_E_1.E_1b, "E_2_1": train_second_E_2_1.E_2_1,
              "E_2_2": train_second_E_2_2.E_2_2, "E_3": train_third_E_3.E_3}

    def main(argv):
        alone = {"resume": job.get("resume", False), "stop_after_steps": job.get("stop_after_steps")}
        for one in job.get("runs") or [alone]:  # one after another in this process
            cfg = load_config(job["config"], job["overrides"] + one.get("overrides", []))
            try:
                for name in job["stages"]:
                    run_stage(stages[name], cfg, resume=one.get("resume", False), show_progress=False,
                              stop_after_steps=one.get("stop_after_steps"))
            except TrainingStopped as stopped:
                if stopped.reason != "interrupted" or len(job.get("runs") or []) < 2:
                    raise
                print(stopped, flush=True)
        if job.get("evaluate"):
            import evaluate
            return evaluate.main(job["evaluate"])
    return run(main)


if __name__ == "__main__":
    if sys.argv[1] == "steps":
        _compare_steps(sys.argv[3:] or ["E_1a", "E_1b", "E_2_1", "E_2_2", "E_3"], sys.argv[2])
    elif sys.argv[1] == "train":
        sys.exit(_train(sys.argv[2]))
