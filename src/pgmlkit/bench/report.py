"""The bench's report: the results table, the targets text, and bench.json."""
from __future__ import annotations

import json
from pathlib import Path

from .harness import by_name, short_number


def format_table(results) -> str:
    lines = [f"{'name':<28} {'group':<10} {'rows':>9} {'median s':>10} {'us/row':>11} {'rows/s':>13}  repeats",
             "-" * 92]
    for r in by_name(results).values():
        lines.append(f"{r['name']:<28} {r['group']:<10} {r['rows']:>9,} {r['seconds']:>10.4f} "
                     f"{short_number(r['us_per_row']):>11} {r['rows_per_s']:>13,.0f}  {r['repeats']}")
    return "\n".join(lines)


def format_targets(targets: list[dict]) -> str:
    lines = []
    for t in targets:
        lines.append(f"  [{'PASS' if t['passed'] else 'MISS'}] {t['goal']}: {t['measured']}")
        if t.get("bound") and not t["passed"]:
            lines.append(f"         bound: {t['bound']}")
    return "\n".join(lines)



def write_json(document: dict, output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(document, indent=2) + "\n")
