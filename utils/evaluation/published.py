"""Published numbers of the baselines and the methods this project reproduces, with their sources.

A number goes in only with the source it was read from (repository + file, or paper + table),
written next to it. A number that could not be read from stored material is left out, and the
setting says where it was looked for: `compare.py --published` prints those notes too, so an
empty row is never mistaken for a zero.

Looked for and not found (as of this file's commit): the retrieval tables of the VIGOR paper
(Zhu, Yang, Chen, CVPR 2021, arXiv 2011.12172: Siamese-VGG, SAFA, SAFA+Mining, VIGOR, same-area
and cross-area); VIGOR's repository (Jeff-Zilence/VIGOR: README.md, train_SAFA.py,
train_overall.py, evaluate_from_npy.py print or list none of them); SAMP's table (the paper;
Afoolbird/SAMP's Readme.md lists none).
"""
from dataclasses import dataclass, field
from typing import Optional

from utils.errors import ConfigError

METRICS = ("top1", "top5", "top10", "top1_percent", "hit_rate", "mean_m", "median_m")
# (header, field) of a setting's table: VIGOR's numbers, or SAFA's one-to-one recalls (CVUSA, CVACT)
VIGOR_COLUMNS = (("top-1", "top1"), ("top-5", "top5"), ("top-1%", "top1_percent"), ("hit", "hit_rate"),
                 ("mean m", "mean_m"), ("median m", "median_m"))
ONE_TO_ONE_COLUMNS = (("r@1", "top1"), ("r@5", "top5"), ("r@10", "top10"), ("r@1%", "top1_percent"))


@dataclass(frozen=True)
class PublishedRow:
    method: str
    source: str                       # where every number of the row was read
    top1: Optional[float] = None      # percent, as published
    top5: Optional[float] = None
    top10: Optional[float] = None
    top1_percent: Optional[float] = None
    hit_rate: Optional[float] = None
    mean_m: Optional[float] = None    # meter-level localization, where given
    median_m: Optional[float] = None

    def numbers(self):
        return {name: getattr(self, name) for name in METRICS if getattr(self, name) is not None}


@dataclass(frozen=True)
class PublishedSetting:
    title: str
    rows: tuple = ()                  # PublishedRow, each with its source
    not_sourced: tuple = field(default=())   # "method: where it was looked for", numbers left out
    columns: tuple = VIGOR_COLUMNS    # (header, PublishedRow field) of the table


_VIGOR_PAPER = "VIGOR paper (Zhu, Yang, Chen, CVPR 2021, arXiv 2011.12172), retrieval table"
_SAMP_PAPER = "SAMP paper (AAAI 2025) and Afoolbird/SAMP Readme.md"


def _vigor_not_sourced(area):
    return tuple(f"{method} ({area}): {_VIGOR_PAPER}; not in the stored material searched"
                 for method in ("Siamese-VGG", "SAFA", "SAFA+Mining", "VIGOR")) + (
        f"SAMP ({area}): {_SAMP_PAPER}; not in the stored material searched",)


_SAFA_README = ("SAFA's README.md (github.com/YujiaoShi/cross_view_localization_SAFA), table \"The recall "
                "accuracy\", row {row}; r@1% there counts fewer than int(0.01 N) closer aerials (script/test_cvusa.py, script/test_cvact.py)")
_SAFA_PAPER = ("SAFA paper (Shi, Liu, Yu, Li, NeurIPS 2019), its tables: not in the stored material searched; the "
               "README's numbers are given instead")
_ONE_TO_ONE_BASELINES = "CVM-Net and other baselines of SAFA's tables: not in the stored material searched"

PUBLISHED = {
    "vigor_same_area": PublishedSetting(title="VIGOR, same-area", not_sourced=_vigor_not_sourced("same-area")),
    "vigor_cross_area": PublishedSetting(title="VIGOR, cross-area", not_sourced=_vigor_not_sourced("cross-area")),
    "cvusa": PublishedSetting(
        title="CVUSA, SAFA's protocol (one-to-one, val-19zl.csv)", columns=ONE_TO_ONE_COLUMNS,
        rows=(PublishedRow("SAFA (polar)", source=_SAFA_README.format(row="CVUSA"),
                           top1=89.84, top5=96.93, top10=98.14, top1_percent=99.64),),
        not_sourced=(_SAFA_PAPER, _ONE_TO_ONE_BASELINES)),
    "cvact": PublishedSetting(
        title="CVACT_val, SAFA's protocol (one-to-one)", columns=ONE_TO_ONE_COLUMNS,
        rows=(PublishedRow("SAFA (polar)", source=_SAFA_README.format(row="CVACT_val"),
                           top1=81.03, top5=92.80, top10=94.84, top1_percent=98.17),),
        not_sourced=(_SAFA_PAPER, _ONE_TO_ONE_BASELINES)),
}


def published_setting(name, registry=None):
    registry = PUBLISHED if registry is None else registry
    if name not in registry:
        raise ConfigError(f"no published numbers for setting '{name}'; known settings: {', '.join(sorted(registry))}")
    return registry[name]


def _cell(value):
    return "-" if value is None else f"{value:.2f}"


def published_table(setting) -> str:
    """The sourced rows as markdown (percent and metres as published), then what was left out."""
    head = ["published"] + [header for header, _ in setting.columns] + ["source"]
    lines = [f"## Published: {setting.title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in setting.rows:
        lines.append("| " + " | ".join([row.method] + [_cell(getattr(row, m)) for _, m in setting.columns]
                                       + [row.source]) + " |")
    if not setting.rows:
        lines.append("| (no number sourced) |" + " - |" * (len(head) - 1))
    if setting.not_sourced:
        lines += ["", "Left out (no number without its source):"] + [f"- {note}" for note in setting.not_sourced]
    return "\n".join(lines) + "\n"
