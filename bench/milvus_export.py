"""Export time and query latency through Milvus Lite, and how far its rankings are from the local ones.

    .venv/bin/python bench/milvus_export.py [--n 100000] [--dim 1280] [--queries 200] [--batch 1000]

Synthetic clustered embeddings (bench/search_latency.py's Mixture: 1,000 centres plus noise, the app's 1280
dimensions) go into a real catalog (SQLite, as `explorer index` leaves it), are exported with
explorer.engine.milvus_store.export_to_milvus into a Milvus Lite store in a temporary folder, and are queried
through MilvusExport.search, one query at a time, as `explorer query --in milvus://...` does (the query's
embedding given: the model's time is not Milvus's). The local ranking is explorer.engine.search.Collection.search
on the same catalog (an exact scan at this size, float and binary). Reported: the export's two phases (rows sent,
then Milvus Lite building its indexes at flush), the store's size on disk, query latency (median, p99) and the
top-10 overlap with the local ranking. Figures come from whatever machine runs it; on a shared 2-core VM the
p99 wanders between runs.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from search_latency import Latency, Mixture, time_queries

from explorer.engine.catalog import Catalog, FileStamp
from explorer.engine.export_data import ExportSource, ModelIdentity
from explorer.engine.milvus_store import EF_SEARCH, MilvusExport, export_to_milvus
from explorer.engine.milvus_target import Target
from explorer.engine.search import Collection, Ranking
from trainer.progress import Progress

K = 10


def build_catalog(root: Path, mix: Mixture, n: int) -> Collection:
    """A catalog of `n` synthetic images, written in batches as indexing writes them."""
    catalog = Catalog(root / "cache" / "catalog.sqlite", mix.dim)
    done = 0
    for chunk in mix.chunks(n, stream=1, chunk=5000):
        stamps = [FileStamp(f"{i // 1000:03d}/img_{i:06d}.jpg", 100_000 + i, 1_700_000_000 * 10**9 + i)
                  for i in range(done, done + len(chunk))]  # fmt: skip
        catalog.commit_batch(list(zip(stamps, chunk, strict=True)), [])
        done += len(chunk)
    return Collection(root / "photos", catalog)


def overlap(a: Ranking, b: Ranking) -> float:
    return len({r.path for r in a.results} & {r.path for r in b.results}) / K


def disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=1280)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--batch", type=int, default=1000, help="rows per insert (the CLI's default)")
    p.add_argument("--efs", default="64,128,256,512", help="HNSW search breadths to measure (the app's: EF_SEARCH)")
    args = p.parse_args()

    import milvus_lite
    import pymilvus

    mix = Mixture(args.dim)
    queries = mix.sample(args.queries, stream=99)  # near the data, not in it
    model = ModelIdentity("b" * 64, "synthetic", args.dim)
    with tempfile.TemporaryDirectory(prefix="milvus-bench-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        local = build_catalog(root, mix, args.n)
        source = ExportSource.from_collection(local)
        print(
            f"catalog of {args.n:,} x {args.dim}-d written and read in {time.perf_counter() - t0:.1f} s",
            file=sys.stderr,
        )

        stages: dict[str, float] = {}

        def progress(p: Progress) -> None:
            stages.setdefault(p.stage, time.perf_counter())
            if p.done == p.total or p.done % (20 * args.batch) == 0:
                print(f"  {p.stage} {p.done:,}/{p.total:,}", file=sys.stderr, flush=True)

        target = Target.parse(str(root / "store.db"))
        t0 = time.perf_counter()
        summary = export_to_milvus([source], model, target, args.batch, progress)
        total_s = time.perf_counter() - t0
        index_s = t0 + total_s - stages["building Milvus's search index"]
        size = disk_bytes(root / "store.db")

        truth = {b: [local.search(q, K, binary=b) for q in queries] for b in (False, True)}
        local_latency = {
            b: time_queries(lambda i, b=b: local.search(queries[i], K, binary=b), len(queries)) for b in (False, True)
        }
        results: dict[str, tuple[Latency, float, bool]] = {}
        for ef in [int(e) for e in args.efs.split(",")]:
            with MilvusExport(target, model, ef=ef) as store:
                overlaps = [overlap(store.search(q, K), t) for q, t in zip(queries, truth[False], strict=True)]
                latency = time_queries(lambda i, s=store: s.search(queries[i], K), len(queries))
                default = " (default)" if ef == EF_SEARCH else ""
                results[f"float (cosine, HNSW ef {ef}{default})"] = (latency, float(np.mean(overlaps)), False)
        with MilvusExport(target, model) as store:
            overlaps = [overlap(store.search(q, K, True), t) for q, t in zip(queries, truth[True], strict=True)]
            latency = time_queries(lambda i: store.search(queries[i], K, True), len(queries))
            results["binary (Hamming, exact)"] = (latency, float(np.mean(overlaps)), True)
        local.catalog.close()

    print(f"## Milvus Lite export and query, {args.n:,} synthetic {args.dim}-d embeddings (bench/milvus_export.py)\n")
    versions = f"pymilvus {pymilvus.__version__}, milvus-lite {milvus_lite.__version__}"
    print(f"{versions}, Python {platform.python_version()}, {platform.machine()}, batch {args.batch}, "
          f"{args.queries} queries, k = {K}\n")  # fmt: skip
    print("| export | rows sent | index build (flush) | total | rows/s | store on disk |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| {summary.rows:,} rows | {total_s - index_s:.1f} s | {index_s:.1f} s | {total_s:.1f} s | "
          f"{summary.rows / total_s:,.0f} | {size / 2**20:,.0f} MB |\n")  # fmt: skip
    print("| query (one at a time) | Milvus Lite median | p99 | local median | local p99 | top-10 overlap with local |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, (lat, ov, b) in results.items():
        loc = local_latency[b]
        print(f"| {name} | {lat.median_ms:.1f} ms | {lat.p99_ms:.1f} ms | {loc.median_ms:.1f} ms | "
              f"{loc.p99_ms:.1f} ms | {ov:.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
