"""Export a ranking as CSV (spreadsheets) or JSON (scripts), with what produced it.

The JSON layout matches `explorer query --json`, so a list exported from the window and one printed by the
command line can be compared or processed by the same script.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from explorer.engine.search import Ranking

CSV_FIELDS = ["rank", "path", "relpath", "cosine_distance", "hamming_distance"]


@dataclass(frozen=True)
class ExportContext:
    query: str
    folder: Path
    model: str


def ranking_rows(ranking: Ranking) -> list[dict[str, Any]]:
    return [
        {
            "rank": r.rank,
            "path": str(r.path),
            "relpath": r.relpath,
            "cosine_distance": round(r.cosine_distance, 6),
            "hamming_distance": r.hamming_distance,
        }
        for r in ranking.results
    ]


def export_ranking(path: Path, ranking: Ranking, context: ExportContext) -> Path:
    """Write `.json` as JSON and anything else as CSV; returns the path written."""
    path = Path(path)
    rows = ranking_rows(ranking)
    if path.suffix.lower() == ".json":
        doc = {
            "query": context.query,
            "folder": str(context.folder),
            "model": context.model,
            "dim": ranking.dim,
            "ranking": "binary" if ranking.binary else "float",
            "results": rows,
        }
        path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    else:
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
            writer.writeheader()
            writer.writerows(rows)
    return path
