"""Published numbers of the baselines and the methods this project reproduces, with their sources.

A number goes in only with the source it was read from (repository + file, or paper + table),
written next to it; a number read only in a third party's re-print says so. A number that could
not be read from stored material is left out, and the setting says where it was looked for:
`compare.py --published` prints those notes too, so an empty row is never mistaken for a zero.

VIGOR's retrieval table (Siamese-VGG, SAFA, SAFA+Mining, VIGOR; same-area and cross-area: R@1,
R@5, R@10, R@1%, hit rate) was read as re-printed in FRGeo's Table 3 (Zhang and Zhu, "Aligning
Geometric Spatial Layout in Cross-view Geo-localization via Feature Recombination"), stored as
an image on its project page: zqwlearning/FRGeo images/tab-vigor.jpg (commit 7547b94; the
earlier version at defba14 prints the same values for these four rows). The VIGOR paper itself
(Zhu, Yang, Chen, CVPR 2021, arXiv 2011.12172) was not among the stored material.

Looked for and not found (as of this file's commit): the VIGOR paper's own tables and its
meter-level numbers; VIGOR's repository (Jeff-Zilence/VIGOR: README.md in all 7 commits,
train_SAFA.py, train_overall.py, evaluate_from_npy.py print or list none of them); SAMP's table
(the paper; Afoolbird/SAMP's Readme.md in all 3 commits lists none, its one figure is the
architecture); README tables of Jeff-Zilence/TransGeo2022, Skyy93/Sample4Geo, tudelft-iv/CCVPE,
tudelft-iv/SliceMatch, zxh009123/GeoDTR_plus, yanghongji2007/SAIG (none re-prints VIGOR's or
SAMP's rows); the pages and docs corpora (arXiv, papers-with-code, blog pages: abstracts only).
"""
from dataclasses import dataclass, field
from typing import Optional

from utils.errors import ConfigError

METRICS = ("top1", "top5", "top10", "top1_percent", "hit_rate", "mean_m", "median_m")
# (header, field) of a setting's table: VIGOR's numbers, or SAFA's one-to-one recalls (CVUSA, CVACT)
VIGOR_COLUMNS = (("top-1", "top1"), ("top-5", "top5"), ("top-10", "top10"), ("top-1%", "top1_percent"),
                 ("hit", "hit_rate"), ("mean m", "mean_m"), ("median m", "median_m"))
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


_VIGOR_REPRINT = ("VIGOR paper (Zhu, Yang, Chen, CVPR 2021, arXiv 2011.12172), retrieval table, as re-printed in "
                  "zqwlearning/FRGeo images/tab-vigor.jpg (FRGeo's Table 3, commit 7547b94)")
_SAMP_PAPER = "SAMP paper (AAAI 2025) and Afoolbird/SAMP Readme.md"

# (method, same-area R@1, R@5, R@10, R@1%, hit, cross-area R@1, R@5, R@10, R@1%, hit), percent, read
# from zqwlearning/FRGeo images/tab-vigor.jpg
_VIGOR_TABLE = (
    ("Siamese-VGG", 18.69, 43.64, 55.36, 97.55, 21.90, 2.77, 8.61, 12.94, 62.64, 3.16),
    ("SAFA", 33.93, 58.42, 68.12, 98.24, 36.87, 8.20, 19.59, 26.36, 77.61, 8.85),
    ("SAFA+Mining", 38.02, 62.87, 71.12, 97.63, 41.81, 9.23, 21.12, 28.02, 77.84, 9.92),
    ("VIGOR", 41.07, 65.81, 74.05, 98.37, 44.71, 11.00, 23.56, 30.76, 80.22, 11.64),
)


def _vigor_rows(area):
    first = 1 if area == "same-area" else 6
    return tuple(PublishedRow(row[0], source=_VIGOR_REPRINT, top1=row[first], top5=row[first + 1],
                              top10=row[first + 2], top1_percent=row[first + 3], hit_rate=row[first + 4])
                 for row in _VIGOR_TABLE)


def _not_sourced(area):
    return (f"Siamese-VGG, SAFA, SAFA+Mining, VIGOR ({area}), mean and median metres: the VIGOR paper's "
            f"meter-level results; not in the stored material searched",
            f"SAMP ({area}): {_SAMP_PAPER}; not in the stored material searched")


_SAFA_README = ("SAFA's README.md (github.com/YujiaoShi/cross_view_localization_SAFA), table \"The recall "
                "accuracy\", row {row}; r@1% there counts fewer than int(0.01 N) closer aerials (script/test_cvusa.py, script/test_cvact.py)")
_SAFA_PAPER = ("SAFA paper (Shi, Liu, Yu, Li, NeurIPS 2019), its tables: not in the stored material searched; the "
               "README's numbers are given instead")
_ONE_TO_ONE_BASELINES = "CVM-Net and other baselines of SAFA's tables: not in the stored material searched"

PUBLISHED = {
    "vigor_same_area": PublishedSetting(title="VIGOR, same-area", rows=_vigor_rows("same-area"),
                                        not_sourced=_not_sourced("same-area")),
    "vigor_cross_area": PublishedSetting(title="VIGOR, cross-area", rows=_vigor_rows("cross-area"),
                                         not_sourced=_not_sourced("cross-area")),
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
