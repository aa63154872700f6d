# What PL/Python hands a function, as py_type_of() reports it:
answer = {
    "12.5::numeric": "decimal.Decimal",          # exact decimal, not float: convert before numpy/scikit-learn
    "ARRAY[1.5, NULL]::float8[]": "list",        # a Python list; the NULL element is None
    "'\\x01ff'::bytea": "bytes",                 # how a pickled model arrives (notebook 03)
    "'{\"a\": 1}'::jsonb": "str",                # JSON text: json.loads() it, or use the jsonb_plpython3u transform
    "NULL::text": "NoneType",                    # SQL NULL is None, whatever the type
}
