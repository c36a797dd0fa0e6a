"""What the demo is meant to show, checked on its own results (the demo's targets).

`results` is {stage name: the dict utils.evaluation.report.evaluate_outputs returns}, where the
stages with a Gaussian may carry "difficulty" (calibration.difficulty_report against the
synthetic city's known per-panorama difficulty).
"""
START_STAGE = {"E_1b": "E_1a", "E_2_1": "E_1a", "E_2_2": "E_2_1", "E_3": "E_2_2"}
UNCERTAIN_STAGES = ("E_2_2", "E_3")
SPEARMAN_MIN = 0.3
FINE_OVER_CENTRE_MAX = 0.6
COLLAPSE_RATIO = 0.8
PAPER_CLAIMS = (
    ("E_1a", "E_1b", "VIGOR: the semi-positive IOU-ratio loss and the offset head raise top-1 (and give metres)"),
    ("E_2_2", "E_3", "SAMP: weighting the IOU-ratio loss by the predicted ambiguity raises top-1"),
)


def _pct(value):
    return "-" if value is None else f"{100 * value:.1f}"


def _num(value, digits=2):
    return "-" if value is None else f"{value:.{digits}f}"


def uncertainty_table(results: dict) -> str:
    """Coverage against both targets, fitted Sigma scale, and what the uncertainty follows."""
    lines = ["| stage | in 1/2/3 sigma (%) | SAMP's NLL target | calibrated target | Sigma / error cov. "
             "| rho(unc, error) | rho(unc, difficulty) | rho(error, difficulty) |",
             "|---|---|---|---|---|---|---|---|"]
    for stage in UNCERTAIN_STAGES:
        c = results.get(stage, {}).get("calibration")
        if not c:
            continue
        d = results[stage].get("difficulty", {})

        def coverage(values):
            return " / ".join(_pct(values[k]) for k in ("1", "2", "3"))
        lines.append(f"| {stage} | {coverage(c['observed'])} | {coverage(c['targets']['samp_nll']['expected'])} | "
                     f"{coverage(c['targets']['calibrated']['expected'])} | {_num(c.get('fitted_scale'))} | "
                     f"{_num(c.get('spearman_uncertainty_error'))} | "
                     f"{_num(d.get('spearman_uncertainty', {}).get('difficulty'))} | "
                     f"{_num(d.get('spearman_error', {}).get('difficulty'))} |")
    return "\n".join(lines)


def difficulty_table(results: dict, stage: str = "E_3") -> str:
    """Spearman of the uncertainty and of the error with each ambiguity source, for one stage."""
    d = results.get(stage, {}).get("difficulty")
    if not d:
        return ""
    lines = [f"| {stage}: Spearman with | " + " | ".join(d["spearman_uncertainty"]) + " |",
             "|---" * (len(d["spearman_uncertainty"]) + 1) + "|",
             "| uncertainty | " + " | ".join(_num(v) for v in d["spearman_uncertainty"].values()) + " |",
             "| fine-localization error | " + " | ".join(_num(v) for v in d["spearman_error"].values()) + " |"]
    return "\n".join(lines)


def checks(results: dict) -> list:
    """(what, measured, target, met) for each of the demo's targets that its results can answer."""
    rows = []
    for stage in UNCERTAIN_STAGES:
        c = results.get(stage, {}).get("calibration")
        if not c:
            continue
        rho = c.get("spearman_uncertainty_error")
        rows.append((f"{stage}: Spearman(uncertainty, fine error)", _num(rho), f">= {SPEARMAN_MIN}",
                     rho is not None and rho >= SPEARMAN_MIN))
        samp = c["targets"]["samp_nll"]
        worst = max(abs(g) for g in samp["gap_points"].values())
        rows.append((f"{stage}: coverage vs SAMP's NLL target (max gap, points)", f"{worst:.1f}",
                     f"<= {c['tolerance_points']:g}", samp["within_tolerance"]))
    for stage in UNCERTAIN_STAGES[:1]:
        fine = results.get(stage, {}).get("fine_localization")
        centre = results.get(stage, {}).get("positive_tile_centre")
        if fine and centre:
            ratio = fine["median"] / centre["median"]
            rows.append((f"{stage}: fine-localization median / tile-centre median", _num(ratio),
                         f"<= {FINE_OVER_CENTRE_MAX}", ratio <= FINE_OVER_CENTRE_MAX))
    for stage, start in START_STAGE.items():
        if stage in results and start in results:
            a, b = results[start]["retrieval"]["top1"], results[stage]["retrieval"]["top1"]
            rows.append((f"{stage} top-1 / {start} top-1 (no collapse)", _num(b / a if a else None),
                         f">= {COLLAPSE_RATIO}", a == 0 or b / a >= COLLAPSE_RATIO))
    return rows


def checks_table(rows: list) -> str:
    lines = ["| target | measured | goal | met |", "|---|---|---|---|"]
    lines += [f"| {what} | {measured} | {goal} | {'yes' if met else 'NO'} |" for what, measured, goal, met in rows]
    return "\n".join(lines)


def side_by_side(results: dict) -> str:
    """The two comparisons the papers make, with the direction they claim and the one measured."""
    lines = ["| comparison | top-1 (%) | hit rate (%) | top-1 tile: median m | paper's claim | seen here |",
             "|---|---|---|---|---|---|"]
    for before, after, claim in PAPER_CLAIMS:
        if before not in results or after not in results:
            continue
        a, b = results[before], results[after]
        top_a, top_b = a["retrieval"]["top1"], b["retrieval"]["top1"]
        seen = "higher" if top_b > top_a else "lower" if top_b < top_a else "equal"
        lines.append(f"| {before} -> {after} | {_pct(top_a)} -> {_pct(top_b)} | "
                     f"{_pct(a['retrieval']['hit_rate'])} -> {_pct(b['retrieval']['hit_rate'])} | "
                     f"{_num(a['localization']['median'], 1)} -> {_num(b['localization']['median'], 1)} | "
                     f"{claim} | top-1 {seen} |")
    return "\n".join(lines)
