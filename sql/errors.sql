--
-- Bad input to pulse.page and pulse.explain_page: a clear error with the
-- right SQLSTATE, never a crash.
--
\set VERBOSITY sqlstate
CREATE TABLE err_items (id int PRIMARY KEY, v text);
INSERT INTO err_items SELECT i, 'v' || i FROM generate_series(1, 5) i;
\set VERBOSITY default

-- err(sql): the SQLSTATE and message of the error sql raises, or 'ok'.
CREATE FUNCTION err(q text, OUT state text, OUT message text)
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    state := 'ok';
EXCEPTION WHEN OTHERS THEN
    state := SQLSTATE;
    message := SQLERRM;
END
$$;

-- page_size outside 1..10000: 22023
SELECT * FROM err($q$SELECT pulse.page('SELECT id FROM err_items', 'id', NULL, 0)$q$);
SELECT * FROM err($q$SELECT pulse.page('SELECT id FROM err_items', 'id', NULL, 10001)$q$);
SELECT * FROM err($q$SELECT pulse.page('SELECT id FROM err_items', 'id', NULL, -5)$q$);
SELECT jsonb_array_length(pulse.page('SELECT id FROM err_items', 'id', NULL, 10000)->'items') AS max_ok;
SELECT * FROM err($q$SELECT pulse.page('SELECT id FROM err_items', 'id', NULL, NULL)$q$);

-- NULL query or order: 22004
SELECT * FROM err($q$SELECT pulse.page(NULL, 'id')$q$);
SELECT * FROM err($q$SELECT pulse.page('SELECT id FROM err_items', NULL)$q$);

-- order_by that is not a list of columns: 22023
SELECT * FROM err($q$SELECT pulse.page('SELECT id FROM err_items', '')$q$);
SELECT * FROM err($q$SELECT pulse.page('SELECT id FROM err_items', 'id,')$q$);
SELECT pulse.page('SELECT id FROM err_items', 'id desc desc');
SELECT * FROM err($q$SELECT pulse.page('SELECT id FROM err_items', 'id nulls')$q$);
SELECT * FROM err($q$SELECT pulse.page('SELECT id FROM err_items', 'id nulls middle')$q$);
SELECT * FROM err($q$SELECT pulse.page('SELECT id FROM err_items', 'id; DROP TABLE err_items')$q$);
SELECT * FROM err($q$SELECT pulse.page('SELECT id FROM err_items', 'lower(v)')$q$);
SELECT * FROM err($q$SELECT pulse.page('SELECT id FROM err_items', '"id')$q$);
SELECT * FROM err($q$SELECT pulse.page('SELECT id FROM err_items', 'id, id')$q$);
SELECT * FROM err($q$SELECT pulse.page('SELECT id FROM err_items', '""')$q$);
-- unknown or ambiguous column: 42703, 42702
SELECT * FROM err($q$SELECT pulse.page('SELECT id FROM err_items', 'nosuch')$q$);
SELECT * FROM err($q$SELECT pulse.page('SELECT id, v AS id FROM err_items', 'id')$q$);
-- quoted identifiers are exact
SELECT pulse.page('SELECT id AS "Id" FROM err_items', '"Id"', NULL, 1)->'items' AS quoted;
SELECT * FROM err($q$SELECT pulse.page('SELECT id AS "Id" FROM err_items', 'Id', NULL, 1)$q$);

-- query that is not one plain SELECT: 22023; bad SQL: 42601
SELECT * FROM err($q$SELECT pulse.page('DELETE FROM err_items', 'id')$q$);
SELECT * FROM err($q$SELECT pulse.page('SELECT 1 AS id; SELECT 2 AS id', 'id')$q$);
SELECT pulse.page('SELECT id FROM err_items ORDER BY id', 'id');
SELECT * FROM err($q$SELECT pulse.page('SELECT id FROM err_items LIMIT 3', 'id')$q$);
SELECT * FROM err($q$SELECT pulse.page('SELECT id FROM err_items OFFSET 3', 'id')$q$);
SELECT * FROM err($q$SELECT pulse.page('SELECT id INTO err_copy FROM err_items', 'id')$q$);
SELECT pulse.page('SELEC id FROM err_items', 'id');
SELECT * FROM err($q$SELECT pulse.page('SELECT id FROM err_items WHERE (', 'id')$q$);
SELECT * FROM err($q$SELECT pulse.page('', 'id')$q$);
SELECT * FROM err($q$SELECT pulse.page('SELECT id FROM no_such_table', 'id')$q$);
-- a trailing comment or semicolon is fine
SELECT jsonb_array_length(pulse.page('SELECT id FROM err_items -- trailing comment', 'id')->'items') AS comment_ok;
SELECT jsonb_array_length(pulse.page('SELECT id FROM err_items;', 'id')->'items') AS semicolon_ok;

-- args: must be an array matching the query's parameters
SELECT * FROM err($q$SELECT pulse.page('SELECT id FROM err_items', 'id', NULL, 5, '{"a": 1}')$q$);
SELECT * FROM err($q$SELECT pulse.page('SELECT id FROM err_items', 'id', NULL, 5, '1')$q$);
SELECT * FROM err($q$SELECT pulse.page('SELECT id FROM err_items WHERE id = $1', 'id', NULL, 5, '[]')$q$);
SELECT pulse.page('SELECT id FROM err_items WHERE id = $2', 'id', NULL, 5, '[1, 2]');
SELECT * FROM err($q$SELECT pulse.page('SELECT id FROM err_items', 'id', NULL, 5, '[1]')$q$);
SELECT * FROM err($q$SELECT pulse.page('SELECT id FROM err_items WHERE id = $1', 'id', NULL, 5, '["abc"]')$q$);
SELECT * FROM err($q$SELECT pulse.page('SELECT id FROM err_items WHERE id = $1', 'id', NULL, 5, '[{"x": 1}]')$q$);
SELECT * FROM err($q$SELECT pulse.page('SELECT id FROM err_items WHERE id = $1', 'id', NULL, 5, '[[1, 2]]')$q$);
SELECT * FROM err($q$SELECT pulse.page('SELECT id FROM err_items WHERE id = $1', 'id', NULL, 5, (SELECT jsonb_agg(i) FROM generate_series(1, 101) i))$q$);
SELECT * FROM err($q$SELECT pulse.page('SELECT id FROM err_items WHERE id = $1', 'id', NULL, 5, NULL)$q$);

-- explain_page validates the same way
SELECT * FROM err($q$SELECT pulse.explain_page('SELECT id FROM err_items', 'nosuch')$q$);
SELECT * FROM err($q$SELECT pulse.explain_page('UPDATE err_items SET v = v', 'id')$q$);
SELECT * FROM err($q$SELECT pulse.explain_page('SELECT id FROM err_items', 'id', '{}')$q$);

-- sort keys without an ordering: the database's own error
SELECT * FROM err($q$SELECT pulse.page('SELECT id, ''{}''::json AS j FROM err_items', 'j, id')$q$);

-- sort keys a cursor could not read back: anonymous records (22023)
SELECT * FROM err($q$SELECT pulse.page('SELECT id, row(id, v) AS r FROM err_items', 'r, id')$q$);
SELECT * FROM err($q$SELECT pulse.page('SELECT id, ARRAY[row(id, v)] AS r FROM err_items', 'r, id')$q$);

-- the backend survived all of the above
SELECT jsonb_array_length(pulse.page('SELECT id FROM err_items', 'id')->'items') AS still_alive;
