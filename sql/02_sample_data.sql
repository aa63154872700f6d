-- 02 — sample data: the talk's customer_data table, its three rows, and a seeded generator
-- whose purchase_amount follows a known formula plus noise, so later notebooks can check
-- that a model recovers the formula.
-- Apply with: psql "$DATABASE_URL" -f sql/02_sample_data.sql      (idempotent)
-- Then:       SELECT load_sample_customers(100000, 42);

-- @block customer_data
-- The talk's table, exactly as on the slide. NUMERIC columns arrive in PL/Python as
-- decimal.Decimal — remember that for notebook 05.
CREATE TABLE IF NOT EXISTS customer_data (
    id SERIAL PRIMARY KEY,
    age INTEGER,
    income NUMERIC,
    credit_score INTEGER,
    purchase_amount NUMERIC
);

-- @block sample_data_truth
-- The formula the generator uses. Kept in one place so the notebooks can compare a trained
-- model's coefficients with it:  purchase_amount = intercept + Σ coefficient·feature + noise.
CREATE OR REPLACE FUNCTION sample_data_truth()
RETURNS TABLE (term text, value double precision)
LANGUAGE sql IMMUTABLE
AS $$
    VALUES ('intercept',     -1200.0::double precision),
           ('age',              12.0),
           ('income',            0.015),
           ('credit_score',      2.0),
           ('noise_stddev',     80.0)
$$;

-- @block load_sample_customers
-- Replace the table's contents with the talk's three rows plus n_rows generated ones.
-- The same seed gives the same rows on every machine: setseed() fixes the sequence random()
-- draws from, and each generated row draws its numbers in the same order, so row k depends
-- only on the seed and k — a larger n_rows extends the same sequence. Box–Muller turns two
-- uniform numbers into one normally distributed one. (Triggers on customer_data fire for these
-- rows like for any INSERT; a trigger that fills purchase_amount should only do so when it is NULL.)
CREATE OR REPLACE FUNCTION load_sample_customers(n_rows integer DEFAULT 100000, seed integer DEFAULT 42)
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    t record;
BEGIN
    IF n_rows IS NULL OR n_rows < 0 THEN
        RAISE EXCEPTION 'load_sample_customers: n_rows must be 0 or more, got %', coalesce(n_rows::text, 'NULL')
            USING HINT = 'For example: SELECT load_sample_customers(100000, 42);';
    END IF;
    IF seed IS NULL THEN   -- setseed(NULL) would silently leave the sequence unseeded
        RAISE EXCEPTION 'load_sample_customers: seed must not be NULL'
            USING HINT = 'Any integer; the same seed gives the same rows: SELECT load_sample_customers(100000, 42);';
    END IF;
    SELECT max(value) FILTER (WHERE term = 'intercept')    AS intercept,
           max(value) FILTER (WHERE term = 'age')          AS age,
           max(value) FILTER (WHERE term = 'income')       AS income,
           max(value) FILTER (WHERE term = 'credit_score') AS credit_score,
           max(value) FILTER (WHERE term = 'noise_stddev') AS noise
      INTO t FROM sample_data_truth();

    TRUNCATE customer_data RESTART IDENTITY;
    INSERT INTO customer_data (age, income, credit_score, purchase_amount)
    VALUES (35, 50000, 700, 1000),
           (28, 35000, 650, 500),
           (45, 80000, 750, 2000);

    PERFORM setseed(seed / 2147483648.0);   -- setseed wants a value in [-1, 1]
    INSERT INTO customer_data (age, income, credit_score, purchase_amount)
    SELECT age, income, credit_score,
           round((t.intercept + t.age * age + t.income * income + t.credit_score * credit_score
                  + t.noise * noise)::numeric, 2)
      FROM (
        SELECT 18 + floor(random() * 58)::int                                   AS age,          -- 18..75
               round((15000 + 120000 * random() ^ 1.5)::numeric, 2)               AS income,       -- skewed: most earn less
               least(850, greatest(300, round(680 + 60 * normal_1)))::int        AS credit_score,
               normal_2                                                           AS noise
          FROM (
            SELECT sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()) AS normal_1,
                   sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()) AS normal_2
              FROM generate_series(1, n_rows)
          ) AS gaussians
      ) AS features;
    RETURN n_rows + 3;
END;
$$;

-- @block talk_rows
-- The talk's three rows, for a first look before any data is generated (only into an empty table).
INSERT INTO customer_data (age, income, credit_score, purchase_amount)
SELECT * FROM (VALUES (35, 50000, 700, 1000), (28, 35000, 650, 500), (45, 80000, 750, 2000)) AS talk(a, i, c, p)
 WHERE NOT EXISTS (SELECT FROM customer_data);
