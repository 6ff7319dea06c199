--
-- The page contract under writes between pages (README, "Keyset
-- pagination").  A page returns the first rows strictly after the cursor's
-- key values, as they are when the page runs; a cursor holds key values,
-- not a row.  Each statement of the contract, in order:
--   1. a row present with the same keys for the whole walk appears exactly
--      once, in order;
--   2. an inserted row appears iff its keys are after the cursor;
--   3. a deleted row not yet returned never appears;
--   4. a row whose keys move from after the cursor to before it never
--      appears; from before to after, it appears twice;
--   5. a row whose keys move but stay after the cursor appears once;
--   6. a change to other columns shows in the page that returns the row;
--   7. deleting the cursor's own row changes nothing: the walk goes on
--      after its key values.
--
CREATE TABLE w (id int PRIMARY KEY, k int NOT NULL, note text NOT NULL);
INSERT INTO w SELECT i, i * 10, 'as loaded' FROM generate_series(1, 10) i;
CREATE TABLE w_seen (walk text, page int, pos int, id int, k int, note text);

-- w_page(walk, n, cursor): page n of a walk in the order (k, id), 3 rows a
-- page; records its rows and returns the next cursor (the previous one for
-- a backward walk).
CREATE FUNCTION w_page(walk text, n int, cur text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    p jsonb := pulse.page('SELECT id, k, note FROM w', 'k, id', cur, 3);
BEGIN
    INSERT INTO w_seen
    SELECT walk, n, x.pos, (x.e->>'id')::int, (x.e->>'k')::int, x.e->>'note'
    FROM jsonb_array_elements(p->'items') WITH ORDINALITY AS x(e, pos);
    RETURN CASE WHEN walk = 'backward' THEN p->>'prev_cursor' ELSE p->>'next_cursor' END;
END
$$;

-- Page 1: k 10, 20, 30.  The cursor stands at (k 30, id 3).
SELECT w_page('forward', 1, NULL) AS c \gset
-- Writes between page 1 and page 2:
INSERT INTO w VALUES (11, 25, 'inserted before the cursor');   -- 2: never
INSERT INTO w VALUES (12, 35, 'inserted after the cursor');    -- 2: once
DELETE FROM w WHERE id = 5;                                    -- 3: k 50, never
UPDATE w SET k = 5, note = 'moved before the cursor' WHERE id = 8;    -- 4: never
UPDATE w SET k = 95, note = 'moved after the cursor' WHERE id = 1;    -- 4: twice
UPDATE w SET k = 65, note = 'moved, still after' WHERE id = 6;        -- 5: once
UPDATE w SET note = 'changed before its page' WHERE id = 9;           -- 6
DELETE FROM w WHERE id = 3;                                    -- 7: the cursor's row
SELECT w_page('forward', 2, :'c') AS c \gset
SELECT w_page('forward', 3, :'c') AS c \gset
SELECT w_page('forward', 4, :'c') IS NULL AS last_page;
SELECT page, pos, id, k, note FROM w_seen WHERE walk = 'forward' ORDER BY page, pos;

-- Row by row: how often the walk returned each row of w (now or before).
SELECT w.id, w.k, w.note, count(s.id) AS times
FROM (SELECT id, k, note FROM w UNION ALL SELECT 3, 30, 'deleted' UNION ALL SELECT 5, 50, 'deleted') w
LEFT JOIN w_seen s ON s.id = w.id AND s.walk = 'forward'
GROUP BY w.id, w.k, w.note ORDER BY w.id;

-- Backward walks mirror it: from the last page towards the first, a row
-- whose keys move from before the cursor (not yet returned) to after it is
-- never returned, and one inserted before the cursor is.
TRUNCATE w, w_seen;
INSERT INTO w SELECT i, i * 10, 'as loaded' FROM generate_series(1, 10) i;
SELECT pulse.page('SELECT id, k, note FROM w', 'k, id', NULL, 3)->>'next_cursor' AS f1 \gset
SELECT pulse.page('SELECT id, k, note FROM w', 'k, id', :'f1', 3)->>'next_cursor' AS f2 \gset
SELECT pulse.page('SELECT id, k, note FROM w', 'k, id', :'f2', 3)->>'next_cursor' AS f3 \gset
SELECT pulse.page('SELECT id, k, note FROM w', 'k, id', :'f3', 3)->>'prev_cursor' AS b \gset
-- the backward cursor stands at k 100; rows before it are still ahead
INSERT INTO w VALUES (11, 45, 'inserted before the cursor');
UPDATE w SET k = 200, note = 'moved after the cursor' WHERE id = 2;
SELECT w_page('backward', 1, :'b') AS b \gset
SELECT w_page('backward', 2, :'b') AS b \gset
SELECT w_page('backward', 3, :'b') IS NULL AS first_page;
SELECT page, pos, id, k, note FROM w_seen WHERE walk = 'backward' ORDER BY page, pos;

DROP FUNCTION w_page(text, int, text);
DROP TABLE w, w_seen;
