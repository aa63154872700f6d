"""Checks for notebook 10 (compiled models and read replicas)."""
from . import exercise
from ._sql import rows


@exercise("10.1")
def compiled_tree(answer):
    import pgmlkit

    if not isinstance(answer, str):
        return False, f"the answer should be the function's name as a string, got {type(answer).__name__}."
    with pgmlkit.connect() as conn:
        row = conn.execute("SELECT model_name, version, algorithm, tree_nodes FROM ml_compiled_functions"
                           " WHERE function_name = %s", [answer]).fetchone()
        if row is None:
            return False, (f"no function named {answer!r} was made by ml_deploy_compiled: "
                           "SELECT ml_deploy_compiled('purchase_tree', 'purchase_tree_sql');")
        model, version, algorithm, nodes = row
        if model != "purchase_tree" or algorithm != "DecisionTreeRegressor":
            return False, f"{answer} was compiled from {model} ({algorithm}); compile the decision tree purchase_tree."
        depth = conn.execute("SELECT (parameters->'hyperparameters'->>'max_depth')::int FROM ml_model_versions"
                             " WHERE model_name = %s AND version = %s", [model, version]).fetchone()[0]
        if depth != 4:
            return False, f"purchase_tree version {version} has max_depth {depth}; train it with '{{\"max_depth\": 4}}'."
        if not conn.execute("SELECT ml_compiled_is_current(%s)", [answer]).fetchone()[0]:
            return False, f"{answer} is not the deployed version of purchase_tree any more: deploy it again."
        diff = conn.execute("SELECT max_rel_diff FROM ml_compiled_check(%s, 5000)", [answer]).fetchone()[0]
    if diff > 1e-9:
        return False, f"{answer} disagrees with scikit-learn by {diff:.3g}."
    return True, (f"{answer} is purchase_tree version {version} as {nodes} CASE nodes (at most 31 for depth 4), and "
                  "agrees with scikit-learn on 5,000 rows.")


@exercise("10.2")
def stale_functions(answer):
    import pgmlkit

    got = sorted(r[0] for r in rows(answer))
    with pgmlkit.connect() as conn:
        want = sorted(r[0] for r in conn.execute("SELECT function_name FROM ml_compiled_status() WHERE NOT is_current"))
    if not want:
        return False, ("every compiled function is current right now, so the query cannot be told apart from one that "
                       "returns nothing: retrain purchase_rf first (without ml_deploy_compiled).")
    if got != want:
        return False, f"your query returned {got}; the stale functions are {want}. Compare compiled and deployed versions."
    return True, (f"{', '.join(want)} still compute(s) an older version. A monitoring job can run the same query, "
                  "and ml_deploy_compiled fixes it.")
