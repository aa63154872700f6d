"""python -m pgmlkit.bench [--quick] [--output build/bench.json] [--only STEP ...] [--strict]"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from ..config import KIT_ROOT, database_url
from .harness import BenchError, missing_results
from .report import format_table, format_targets, write_json
from .steps import STEP_NAMES, run_benchmark


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pgmlkit.bench",
                                     description="the talk's trade-offs, measured on this machine -> build/bench.json")
    parser.add_argument("--quick", action="store_true", help="small sizes, fewer repeats (a few minutes; CI's smoke run)")
    parser.add_argument("--output", default=str(KIT_ROOT / "build" / "bench.json"), help="where to write the JSON")
    parser.add_argument("--only", nargs="*", choices=STEP_NAMES, metavar="STEP",
                        help=f"run only these steps ({', '.join(STEP_NAMES)}), for debugging; the JSON is partial")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    database = urlsplit(database_url()).path.lstrip("/")
    print(f"pgmlkit bench ({'QUICK' if args.quick else 'full'}) on database {database} — progress below; "
          "it replaces customer_data's rows and deploys new model versions there", file=sys.stderr, flush=True)
    try:
        document = run_benchmark(quick=args.quick, only=set(args.only) if args.only else None)
    except BenchError as error:
        print(f"\nbench: FAILED — {error}", file=sys.stderr)
        return error.status
    except ConnectionError as error:
        print(f"\nbench: {error}", file=sys.stderr)
        return 2
    output = Path(args.output)
    write_json(document, output)

    print(format_table(document["results"]))
    print(f"\nTargets (ratios measured in this run, {document['environment']['cores']} cores, "
          f"{'QUICK' if args.quick else 'full'}):")
    print(format_targets(document["targets"]))
    missing = missing_results(document["results"])
    print(f"\nWrote {output} in {time.perf_counter() - started:.0f} s"
          + (f"; partial run, missing: {', '.join(missing)}" if missing else ""))
    if missing and not args.only:
        return 1
    if args.strict and not all(t["passed"] for t in document["targets"]):
        return 1
    return 0
