"""University-1652's protocol on a trained two-view network (model/networks.py `two_view`):
Recall@1/5/10, Recall@top1% and AP (utils/evaluation/instance_retrieval.py) for

* <query view> -> satellite: every test query image against test/gallery_satellite;
* <query view> -> satellite, multi-query: a building's query images pooled into one query;
* satellite -> drone (drone queries only): test/query_satellite against test/gallery_drone.

Descriptors come from the one scan (utils/evaluation/scan.py) of two SplitIndexes
(utils/data/university1652_splits.py): the test split, and the satellite -> drone index.
Results are written as results.json and results.md; numbers in percent.
"""
import json
import os


from utils.data.splits import build_loader, load_university1652_tree
from utils.data.university1652_splits import satellite_to_drone_index, split_indexes
from utils.evaluation.inference import restore_network
from utils.evaluation.instance_retrieval import evaluate_instance_retrieval, pool_by_building
from utils.evaluation.scan import Scanner, descriptor_pass
from utils.session import checkpoints as ckpt

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"


def task_results(test_scan, query_view, reverse_scan=None, satellite_queries=0):
    """{task name: InstanceRetrievalResult} from the scans (scan.Descriptors) of the test split and,
    for drone queries, of the satellite -> drone index whose first `satellite_queries` tiles are the queries."""
    test = test_scan.readable
    gallery, gallery_ids = test_scan.readable_sat, test.sat_building
    queries, query_ids = test_scan.readable_grd, test.grd_building
    results = {f"{query_view} -> satellite": evaluate_instance_retrieval(queries, query_ids, gallery, gallery_ids)}
    pooled, pooled_ids = pool_by_building(queries, query_ids)
    results[f"{query_view} -> satellite (multi-query)"] = evaluate_instance_retrieval(pooled, pooled_ids, gallery,
                                                                                     gallery_ids)
    if reverse_scan is not None:
        is_query = reverse_scan.sat_rows < satellite_queries
        results["satellite -> drone"] = evaluate_instance_retrieval(
            reverse_scan.readable_sat[is_query], reverse_scan.readable.sat_building[is_query],
            reverse_scan.readable_grd, reverse_scan.readable.grd_building)
    return results


def as_table(results):
    """{task: {metric: percent, queries, gallery}}."""
    table = {}
    for task, r in results.items():
        row = {f"R@{k}": 100 * v for k, v in r.recall.items()}
        row.update({"R@top1%": 100 * r.recall_top1_percent, "AP": 100 * r.mean_ap, "queries": len(r.first_ranks)})
        table[task] = row
    return table


def markdown(table, name=""):
    metrics = [k for k in next(iter(table.values())) if k != "queries"]
    lines = [f"University-1652 protocol{f': {name}' if name else ''}", "",
             "| task | queries | " + " | ".join(metrics) + " |", "|---|---:|" + "---:|" * len(metrics)]
    for task, row in table.items():
        lines.append(f"| {task} | {row['queries']} | " + " | ".join(f"{row[m]:.2f}" for m in metrics) + " |")
    return "\n".join(lines) + "\n"


def write_results(table, out_dir, name=""):
    """results.json and results.md in out_dir; returns the markdown."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, RESULTS_JSON), "w") as f:
        json.dump({"name": name, "tasks": table}, f, indent=1)
    text = markdown(table, name)
    with open(os.path.join(out_dir, RESULTS_MD), "w") as f:
        f.write(text)
    return text


def scan_checkpoint(cfg, checkpoint, progress=False):
    """(test scan, satellite -> drone scan or None, number of satellite queries) of a checkpoint."""
    tree = load_university1652_tree(cfg)
    _, test = split_indexes(tree, cfg.data.query_view)
    reverse, satellite_queries = satellite_to_drone_index(tree) if cfg.data.query_view == "drone" else (None, 0)
    network = restore_network(cfg, ckpt.checkpoint_prefix(checkpoint), "two_view")
    try:
        loader = build_loader(cfg, [i for i in (test, reverse) if i is not None])

        def scan(index):
            return descriptor_pass(Scanner(network, loader, index, cfg.validation.scan_batch, workers=cfg.data.workers,
                                           on_bad_sample=cfg.data.on_bad_sample, progress=progress))
        return scan(test), (None if reverse is None else scan(reverse)), satellite_queries
    finally:
        network.sess.close()


def evaluate_checkpoint(cfg, checkpoint, out_dir, name="", progress=False):
    """University-1652's tasks on a checkpoint, written to out_dir; returns (table, markdown)."""
    test_scan, reverse_scan, satellite_queries = scan_checkpoint(cfg, checkpoint, progress)
    table = as_table(task_results(test_scan, cfg.data.query_view, reverse_scan, satellite_queries))
    return table, write_results(table, out_dir, name or os.path.normpath(checkpoint))
