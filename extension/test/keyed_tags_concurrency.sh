#!/usr/bin/env bash
# Keyed cache tags under concurrent writers (pgbench), for real:
#   - no writer ever fails because of the bumps: no deadlock, no
#     serialization failure, also in REPEATABLE READ and SERIALIZABLE;
#   - exactly one bump per committed transaction and distinct key value:
#     every transaction logs (in the same transaction) which values it
#     touched, and each keyed tag's generation must equal the number of
#     committed transactions that touched its value; the table tag's, the
#     number of committed writing transactions;
#   - a transaction over pulse.keyed_tag_limit values bumps the column's
#     epoch instead, once.
#
# Starts its own cluster on PULSE_TEST_PORT in PULSE_TEST_TMP (destroyed at
# exit).  KEYED_SECONDS (default 6) sets the length of each pgbench run.
# Prints "ok N - ..." lines, then "N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh

PORT=${PULSE_TEST_PORT:?PULSE_TEST_PORT is not set}
TMP=${PULSE_TEST_TMP:?PULSE_TEST_TMP is not set}
PG="$TMP/pg"
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
SECONDS_EACH=${KEYED_SECONDS:-6}
mkdir -p "$TMP"
chmod 755 "$TMP"
trap 'scripts/cluster.sh destroy "$PG" >/dev/null 2>&1' EXIT

PULSE_FSYNC=off scripts/cluster.sh start "$PG" "$PORT" >/dev/null ||
	{ echo "not ok 1 - start the cluster"; echo "0 passed, 1 failed"; exit 1; }
eval "$(scripts/cluster.sh env "$PG")"
export PGDATABASE=pulse PGOPTIONS="-c client_min_messages=warning"
q() { psql -X -q -At -v ON_ERROR_STOP=1 -c "$1"; }

psql -X -q -d postgres -c "CREATE DATABASE pulse" &&
	q "CREATE EXTENSION pulse;
	   CREATE TABLE items (id int PRIMARY KEY, tenant int NOT NULL, v int NOT NULL DEFAULT 0);
	   INSERT INTO items SELECT i, i % 20, 0 FROM generate_series(1, 250) i;
	   -- what each committed transaction touched, written in that transaction
	   CREATE TABLE touched (xact bigint NOT NULL, col text NOT NULL, val int NOT NULL);
	   SELECT pulse.track('items', 'it', keys => '{tenant,id}');" >/dev/null ||
	{ echo "not ok 1 - set up the database"; echo "0 passed, 1 failed"; exit 1; }

# One transaction: moves a random row to a random tenant and inserts another
# row, so that concurrent transactions share tenant tags and take them in
# different orders.  Each client writes rows of its own (ids client*25+1..
# client*25+25, new ids in a range of its own) locked in id order, as a
# careful application does: the data can neither deadlock nor, in
# REPEATABLE READ, conflict on its own; only the bumps are shared.
cat >"$TMP/move.sql" <<'SQL'
\set a :client_id * 25 + random(1, 25)
\set b :client_id * 25 + random(1, 25)
\set nt random(0, 19)
\set nid 1000 + :client_id * 100000000 + random(1, 99999999)
BEGIN ISOLATION LEVEL :iso;
SELECT id FROM items WHERE id IN (:a, :b) ORDER BY id FOR UPDATE;
INSERT INTO touched SELECT txid_current(), 'tenant', tenant FROM items WHERE id = :b;
INSERT INTO touched SELECT txid_current(), 'id', :b;
UPDATE items SET tenant = :nt, v = v + 1 WHERE id = :b;
INSERT INTO touched VALUES (txid_current(), 'tenant', :nt);
WITH ins AS (INSERT INTO items VALUES (:nid, :nt) ON CONFLICT (id) DO NOTHING RETURNING id)
INSERT INTO touched SELECT txid_current(), 'id', id FROM ins;
UPDATE items SET v = v + 1 WHERE id = :a;
INSERT INTO touched SELECT txid_current(), 'tenant', tenant FROM items WHERE id = :a;
INSERT INTO touched SELECT txid_current(), 'id', :a;
COMMIT;
SQL

run_pgbench() { # run_pgbench ISOLATION LOG
	"$PGBIN/pgbench" -n -c 8 -j 2 -T "$SECONDS_EACH" --max-tries=20 -D iso="$1" -f "$TMP/move.sql" pulse >"$2" 2>&1
}
failed_of() { sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$1"; }
retried_of() { sed -n 's/^number of transactions retried: \([0-9]*\).*/\1/p' "$1"; }
done_of() { sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$1"; }

for iso in 'READ COMMITTED' 'REPEATABLE READ' 'SERIALIZABLE'; do
	log="$TMP/pgbench-${iso// /_}.log"
	run_pgbench "$iso" "$log"
	rc=$?
	tap_check "8 writers, $iso: pgbench ran ($(done_of "$log") transactions)" [ "$rc" -eq 0 ]
	tap_check "8 writers, $iso: no failed transaction (deadlock or serialization)" \
		[ "$(failed_of "$log")" = 0 ] ||
		grep -iE 'error|deadlock|serializ' "$log" | head -5
	# SERIALIZABLE may retry because of the data's own predicate locks (index pages); the others never
	[ "$iso" = SERIALIZABLE ] ||
		tap_check "8 writers, $iso: no transaction retried ($(retried_of "$log"))" [ "$(retried_of "$log")" = 0 ]
done

# every keyed tag's generation = committed transactions that touched its value
mismatches=$(q "WITH expect AS (
                    SELECT 'it:' || col || '=' || val AS tag, count(DISTINCT xact) AS n
                      FROM touched GROUP BY 1)
                SELECT count(*) FROM expect e
                  FULL JOIN (SELECT tag, generation FROM pulse.cache_tags WHERE family IS NOT NULL) c
                       USING (tag)
                 WHERE e.n IS DISTINCT FROM c.generation")
tap_check "every keyed tag bumped once per committed transaction that touched its value ($mismatches mismatches)" \
	[ "$mismatches" = 0 ]
xacts=$(q "SELECT count(DISTINCT xact) FROM touched")
table_gen=$(q "SELECT generation FROM pulse.cache_tags WHERE tag = 'it'")
tap_check "the table tag bumped once per committed transaction ($xacts transactions, generation $table_gen)" \
	[ "$xacts" = "$table_gen" ]

# beyond the limit: the epoch, once per transaction
before=$(q "SELECT coalesce((SELECT generation FROM pulse.cache_tags WHERE tag = 'it:id=*'), 0)")
q "SET pulse.keyed_tag_limit = 50; UPDATE items SET v = v + 1 WHERE id <= 250" >/dev/null
after=$(q "SELECT generation FROM pulse.cache_tags WHERE tag = 'it:id=*'")
tap_check "a transaction over pulse.keyed_tag_limit ids bumps the id epoch once ($before -> $after)" \
	[ "$after" = $((before + 1)) ]
tenant20=$(q "SELECT count(*) FROM pulse.cache_tags WHERE tag LIKE 'it:tenant=%' AND tag <> 'it:tenant=*'")
tap_check "... and still bumps the 20 tenants it touched one by one ($tenant20 tenant tags)" [ "$tenant20" -ge 20 ]

tap_done
