"""How long the GUI thread is held when a query's plots are drawn, on synthetic collections of 100k and 1M images.

    .venv/bin/python bench/plot_stall.py [--sizes 100000 1000000] [--repeats 5]

A synthetic query outcome (random cosine and Hamming distances for every image, a top-12) is handed to the
float-against-binary panel exactly as the window does, and the GUI thread's time is measured from the call until
the panel has been painted (offscreen). Two ways, interleaved in one run: "sorted on the worker" (today: the outcome
carries its sorted curves and scatter sample, made by explorer.app.analysis.run_query on the query thread) and
"sorted on the GUI thread" (before: the panel sorted the full arrays itself, which this bench reproduces by doing
those sorts on the GUI thread before the call). The worker-side cost is printed too: it no longer freezes the window.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    from explorer.app.analysis import QueryOutcome, scatter_sample
    from explorer.engine.search import Ranking
    from explorer.ui.plots import FloatBinaryPanel

    panel = FloatBinaryPanel()
    panel.resize(560, 700)
    panel.show()
    app.processEvents()
    print(f"{'images':>10}  {'GUI thread, sorted on the worker':>34}  {'GUI thread, sorted on the GUI thread':>38}  "
          f"{'worker: sort + sample':>22}")  # fmt: skip
    for n in args.sizes:
        rng = np.random.default_rng(0)
        cosine = rng.uniform(0.1, 1.2, n).astype(np.float32)
        hamming = rng.integers(300, 700, n).astype(np.int64)
        rows = np.argsort(cosine)[:12]
        on_worker, on_gui, worker_cost = [], [], []
        for _ in range(args.repeats):
            for where in ("worker", "gui"):
                outcome = QueryOutcome("synthetic", np.zeros(8, np.float32), None, 12, 1280)
                outcome.float_ranking = Ranking(1280, False, [])
                outcome.cosine, outcome.hamming, outcome.float_rows, outcome.binary_rows = cosine, hamming, rows, rows
                started = time.perf_counter()
                outcome.cosine_sorted, outcome.hamming_sorted = np.sort(cosine), np.sort(hamming)
                outcome.scatter_rows = scatter_sample(n)
                sorted_at = time.perf_counter()
                if where == "worker":
                    worker_cost.append(sorted_at - started)
                    started = sorted_at  # done on the query thread: not the GUI thread's time
                panel.show_outcome(outcome)
                app.processEvents()  # the paint
                (on_worker if where == "worker" else on_gui).append(time.perf_counter() - started)
        print(f"{n:>10,}  {1000 * statistics.median(on_worker):>31.0f} ms  {1000 * statistics.median(on_gui):>35.0f} ms"
              f"  {1000 * statistics.median(worker_cost):>19.0f} ms")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
