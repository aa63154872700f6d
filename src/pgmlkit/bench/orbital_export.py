"""Run by build/orbital-venv's Python, not the kit's: the registry's models compiled to SQL by orbital.

    python orbital_export.py < request.json > answer.json
    request: {"models": {"name": "/path/to/model.pkl", ...}, "features": ["age", "income", "credit_score"],
              "table": "orbital_input"}
    answer:  {"name": {"sql": "...", "seconds": 1.2, "orbital": "0.6.0"} | {"error": "why orbital could not"}, ...}

Imports nothing of the kit (that environment has orbital and the server's scikit-learn pins, nothing else).
The bench checked each file's sha256 against the registry before writing it.
"""
import json
import pickle
import sys
import time
from importlib.metadata import version


def export(path: str, features: list, table: str) -> dict:
    import orbital
    from sklearn.pipeline import Pipeline

    with open(path, "rb") as f:
        model = pickle.load(f)
    pipeline = model if isinstance(model, Pipeline) else Pipeline([("model", model)])   # fitted: no refit
    started = time.perf_counter()
    try:
        parsed = orbital.parse_pipeline(pipeline, features={name: orbital.types.DoubleColumnType() for name in features})
        sql = orbital.export_sql(table, parsed, dialect="postgres")
    except Exception as error:       # what orbital cannot express is a result to report, not a crash
        return {"error": f"{type(error).__name__}: {str(error)[:500]}", "orbital": version("orbital")}
    return {"sql": sql, "seconds": time.perf_counter() - started, "orbital": version("orbital")}


def main() -> int:
    request = json.load(sys.stdin)
    answer = {name: export(path, request["features"], request["table"]) for name, path in request["models"].items()}
    json.dump(answer, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
