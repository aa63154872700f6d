answer = """
CREATE OR REPLACE FUNCTION plpy_exercise_income_above(min_income numeric)
RETURNS bigint
LANGUAGE plpython3u STABLE
AS $$
if "plan" not in SD:      # parsed and planned once per connection
    SD["plan"] = plpy.prepare("SELECT count(*) AS n FROM customer_data WHERE income > $1", ["numeric"])
return SD["plan"].execute([min_income])[0]["n"]      # None -> NULL -> no row matches -> 0
$$;
"""
