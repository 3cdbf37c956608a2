-- Monitoring: what `kindle-store stats` and `kindle-store doctor` show an operator.
-- Everything is read from the statistics views of the database the connection is in; the project's schema
-- is a value (:schema_name), compared with catalog names, never pasted into the SQL.

-- name: server_version() :one
-- The server's version: the short number, the major version and the full banner.
SELECT current_setting('server_version')                  AS version,
       current_setting('server_version_num')::int / 10000 AS major,
       version()                                          AS banner,
       current_database()                                 AS database,
       current_user                                       AS "user"

-- name: connections_by_state() :many
-- Client connections to this database by state (active, idle, idle in transaction, ...), busiest first.
SELECT coalesce(state, 'unknown')                                         AS state,
       count(*)::int                                                      AS connections,
       count(*) FILTER (WHERE wait_event_type IS NOT NULL
                          AND wait_event_type <> 'Client')::int            AS waiting,
       coalesce(max(extract(epoch FROM clock_timestamp() - state_change)), 0)::float8
                                                                          AS longest_s
  FROM pg_stat_activity
 WHERE datname = current_database()
   AND backend_type = 'client backend'
 GROUP BY 1
 ORDER BY 2 DESC, 1

-- name: active_queries(limit) :many
-- The statements running now in this database (this session's own left out), longest first;
-- at most :limit rows, the query text cut to 200 characters.
SELECT pid,
       usename                                                           AS "user",
       application_name                                                  AS application,
       coalesce(host(client_addr), CASE WHEN client_port = -1 THEN 'local socket' END, '') AS client,
       state,
       coalesce(wait_event_type || ':' || wait_event, '')                AS waiting_on,
       extract(epoch FROM clock_timestamp() - query_start)::float8       AS duration_s,
       left(regexp_replace(query, '\s+', ' ', 'g'), 200)                 AS query
  FROM pg_stat_activity
 WHERE datname = current_database()
   AND backend_type = 'client backend'
   AND state IS DISTINCT FROM 'idle'
   AND pid <> pg_backend_pid()
 ORDER BY query_start NULLS LAST, pid
 LIMIT :limit

-- name: table_stats(schema_name) :many
-- Per table of the schema: rows inserted/updated/deleted since the statistics were reset, live and dead
-- rows, scans, size, and when it was last vacuumed and analyzed (by hand or by autovacuum).
SELECT s.relname                                 AS "table",
       s.n_tup_ins                               AS n_tup_ins,
       s.n_tup_upd                               AS n_tup_upd,
       s.n_tup_del                               AS n_tup_del,
       s.n_live_tup                              AS n_live_tup,
       s.n_dead_tup                              AS n_dead_tup,
       s.seq_scan                                AS seq_scan,
       coalesce(s.idx_scan, 0)                   AS idx_scan,
       pg_total_relation_size(s.relid)           AS total_bytes,
       s.last_vacuum                             AS last_vacuum,
       s.last_autovacuum                         AS last_autovacuum,
       s.last_analyze                            AS last_analyze,
       s.last_autoanalyze                        AS last_autoanalyze
  FROM pg_stat_user_tables AS s
 WHERE s.schemaname = :schema_name
 ORDER BY s.relname

-- name: index_stats(schema_name) :many
-- Per index of the schema: scans since the statistics were reset and size; `unused` flags an index never
-- scanned that enforces no constraint (a unique or primary key index is needed even when never scanned).
SELECT s.relname                                   AS "table",
       s.indexrelname                              AS "index",
       s.idx_scan                                  AS idx_scan,
       s.idx_tup_read                              AS idx_tup_read,
       pg_relation_size(s.indexrelid)              AS bytes,
       i.indisunique                               AS is_unique,
       (s.idx_scan = 0 AND NOT i.indisunique)      AS unused
  FROM pg_stat_user_indexes AS s
  JOIN pg_index AS i ON i.indexrelid = s.indexrelid
 WHERE s.schemaname = :schema_name
 ORDER BY s.relname, s.indexrelname

-- name: schema_relations(schema_name) :many
-- Every table, view, index and sequence of the schema with its kind: what doctor compares with the
-- objects the migrations create. No rows if the schema does not exist.
SELECT c.relname AS name,
       CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'table' WHEN 'v' THEN 'view'
                      WHEN 'm' THEN 'materialized view' WHEN 'i' THEN 'index' WHEN 'I' THEN 'index'
                      WHEN 'S' THEN 'sequence' ELSE c.relkind::text END AS kind
  FROM pg_class AS c
  JOIN pg_namespace AS n ON n.oid = c.relnamespace
 WHERE n.nspname = :schema_name
 ORDER BY c.relname

-- name: schema_exists(schema_name) :scalar
-- True if the schema exists in this database.
SELECT to_regnamespace(:schema_name) IS NOT NULL
