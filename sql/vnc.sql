-- The VNC/emulator slot map: vnc_instances (one row per slot, id = the slot number) and vnc_map_meta (the
-- file's other top-level keys); plus the profiles' was_running_at_restart flag, which the VNC manager owns.
-- A free slot has assigned_profile NULL; emails match case-insensitively, through lower(assigned_profile).

-- name: list_instances() :many
-- Every slot, by id.
SELECT * FROM {schema}.vnc_instances ORDER BY id

-- name: get_instance(email) :one
-- The slot assigned to an email (any case); no row if it holds none.
SELECT * FROM {schema}.vnc_instances
 WHERE assigned_profile IS NOT NULL AND lower(assigned_profile) = lower(:email)

-- name: lock_slot_creation(schema_name) :scalar
-- Wait for the lock under which new slots are created, held until the transaction ends: assign_instance
-- (locked) run after it sees every slot created before, waits for a free slot another transaction is taking,
-- and creates its own slot without racing anyone.
SELECT pg_advisory_xact_lock(hashtextextended('kindle_store.vnc_instances:' || :schema_name, 0))

-- name: assign_instance(email, instance_id, schema_name, locked) :one
-- The email's slot; else the slot instance_id if it is free (no row if it is taken or unknown); else the
-- lowest free slot; else a new slot max(id) + 1 with the ports of vnc_ports. A free slot another transaction
-- is taking is passed by (SKIP LOCKED), and no slot is created while one is free: that transaction may yet roll
-- back. With :locked (lock_slot_creation ran earlier in the same transaction), such a slot is waited for
-- instead, and a slot is created only if none is left. The slot-creation lock is tried here, never waited for: no row when another
-- transaction holds it or has just taken the id, or when every free slot is being taken, and the caller tries
-- again after lock_slot_creation. The unique constraints stay the last line of defence.
WITH mine AS (
    SELECT id FROM {schema}.vnc_instances
     WHERE assigned_profile IS NOT NULL AND lower(assigned_profile) = lower(:email)
),
wanted AS (
    SELECT id FROM {schema}.vnc_instances
     WHERE id = :instance_id AND assigned_profile IS NULL AND NOT EXISTS (SELECT FROM mine)
       FOR UPDATE
),
passing AS (
    SELECT id FROM {schema}.vnc_instances
     WHERE assigned_profile IS NULL AND CAST(:instance_id AS integer) IS NULL AND NOT EXISTS (SELECT FROM mine)
       AND NOT CAST(:locked AS boolean)
     ORDER BY id
     LIMIT 1
       FOR UPDATE SKIP LOCKED
),
waiting AS (
    SELECT id FROM {schema}.vnc_instances
     WHERE assigned_profile IS NULL AND CAST(:instance_id AS integer) IS NULL AND NOT EXISTS (SELECT FROM mine)
       AND CAST(:locked AS boolean)
     ORDER BY id
     LIMIT 1
       FOR UPDATE
),
free AS (
    SELECT id FROM passing UNION ALL SELECT id FROM waiting
),
taken AS (
    UPDATE {schema}.vnc_instances AS v
       SET assigned_profile = :email,
           extra = {schema}.json_put(v.extra, 'assigned_profile', NULL),
           absent = array_remove(v.absent, 'assigned_profile'),
           updated_at = now()
     WHERE v.id IN (SELECT id FROM wanted UNION ALL SELECT id FROM free)
    RETURNING v.*
),
created AS (
    INSERT INTO {schema}.vnc_instances AS v
           (id, display, vnc_port, appium_port, emulator_port, assigned_profile, appium_running,
            appium_system_port, appium_chromedriver_port, appium_mjpeg_server_port)
    SELECT n.id, p.display, p.vnc_port, p.appium_port, p.emulator_port, :email, false,
           p.appium_system_port, p.appium_chromedriver_port, p.appium_mjpeg_server_port
      FROM (SELECT coalesce(max(id), 0) + 1 AS id FROM {schema}.vnc_instances) AS n
     CROSS JOIN {schema}.vnc_ports(n.id) AS p
     WHERE CAST(:instance_id AS integer) IS NULL
       AND NOT EXISTS (SELECT FROM mine)
       AND NOT EXISTS (SELECT FROM free)
       AND (CAST(:locked AS boolean)
            OR NOT EXISTS (SELECT FROM {schema}.vnc_instances WHERE assigned_profile IS NULL))
       AND pg_try_advisory_xact_lock(hashtextextended('kindle_store.vnc_instances:' || :schema_name, 0))
    ON CONFLICT (id) DO NOTHING
    RETURNING v.*
)
SELECT v.* FROM {schema}.vnc_instances AS v WHERE v.id IN (SELECT id FROM mine)
UNION ALL
SELECT * FROM taken
UNION ALL
SELECT * FROM created

-- name: release_instance(email) :scalar
-- Free the email's slot (vnc_release: no assignment, no emulator, Appium stopped); how many slots it freed.
SELECT count(*) FROM {schema}.vnc_release(ARRAY[lower(:email)])

-- name: set_emulator_id(email, emulator_id) :scalar
-- Set the emulator id of the email's slot; its id, or no row if the email holds none.
UPDATE {schema}.vnc_instances
   SET emulator_id = :emulator_id,
       absent = array_remove(absent, 'emulator_id'),
       updated_at = now()
 WHERE assigned_profile IS NOT NULL AND lower(assigned_profile) = lower(:email)
RETURNING id

-- name: reset_appium_states() :affected
-- Appium stopped on every slot (appium_pid null, appium_running false); touches only the slots that change.
UPDATE {schema}.vnc_instances
   SET appium_pid = NULL,
       appium_running = false,
       absent = ARRAY(SELECT k FROM unnest(absent) AS k WHERE k NOT IN ('appium_pid', 'appium_running')),
       updated_at = now()
 WHERE appium_pid IS NOT NULL
    OR appium_running IS DISTINCT FROM false
    OR absent && ARRAY['appium_pid', 'appium_running']

-- name: port_formula(first, last) :many
-- The display and ports of slots first..last as the database computes them (vnc_ports), by id.
SELECT n AS id, p.*
  FROM generate_series(CAST(:first AS integer), CAST(:last AS integer)) AS n
 CROSS JOIN {schema}.vnc_ports(n) AS p
 ORDER BY n

-- name: running_at_restart() :many
-- The stored emails of the profiles whose was_running_at_restart is true, oldest profile first.
SELECT email FROM {schema}.users WHERE was_running_at_restart ORDER BY id

-- name: clear_running_flags() :affected
-- was_running_at_restart = null (the key kept) wherever it is true; bumps those profiles' version.
UPDATE {schema}.users
   SET was_running_at_restart = NULL,
       extra = {schema}.json_put(extra, 'was_running_at_restart', 'null'),
       version = version + 1,
       updated_at = now()
 WHERE was_running_at_restart

-- name: lock_instances() :affected
-- Keep every other writer of the slot map out until the transaction ends (readers go on): for an import.
LOCK TABLE {schema}.vnc_instances IN SHARE ROW EXCLUSIVE MODE

-- name: unassign_instances(ids) :affected
-- Clear the assignment of these slots, so that an import can move emails between slots in one transaction.
UPDATE {schema}.vnc_instances
   SET assigned_profile = NULL
 WHERE id = ANY (:ids) AND assigned_profile IS NOT NULL

-- name: upsert_instances(rows) :affected
-- Insert or overwrite the slots of a JSON array of rows keyed by column name (VncInstance.to_row).
INSERT INTO {schema}.vnc_instances AS v
       (id, display, vnc_port, appium_port, emulator_port, emulator_id, assigned_profile, appium_pid,
        appium_running, appium_last_health_check, appium_system_port, appium_chromedriver_port,
        appium_mjpeg_server_port, absent, extra)
SELECT r.id, r.display, r.vnc_port, r.appium_port, r.emulator_port, r.emulator_id, r.assigned_profile,
       r.appium_pid, r.appium_running, r.appium_last_health_check, r.appium_system_port,
       r.appium_chromedriver_port, r.appium_mjpeg_server_port, r.absent, r.extra
  FROM json_populate_recordset(NULL::{schema}.vnc_instances, :rows) AS r
ON CONFLICT (id) DO UPDATE
   SET (display, vnc_port, appium_port, emulator_port, emulator_id, assigned_profile, appium_pid,
        appium_running, appium_last_health_check, appium_system_port, appium_chromedriver_port,
        appium_mjpeg_server_port, absent, extra, updated_at)
     = (EXCLUDED.display, EXCLUDED.vnc_port, EXCLUDED.appium_port, EXCLUDED.emulator_port,
        EXCLUDED.emulator_id, EXCLUDED.assigned_profile, EXCLUDED.appium_pid, EXCLUDED.appium_running,
        EXCLUDED.appium_last_health_check, EXCLUDED.appium_system_port, EXCLUDED.appium_chromedriver_port,
        EXCLUDED.appium_mjpeg_server_port, EXCLUDED.absent, EXCLUDED.extra, now())

-- name: get_map_meta() :scalar
-- The file's top-level keys other than "instances", as last imported; no row if no file was ever imported.
SELECT top FROM {schema}.vnc_map_meta

-- name: put_map_meta(top) :affected
-- Store the file's top-level keys other than "instances" (a JSON object); the same text already stored is not
-- written again.
INSERT INTO {schema}.vnc_map_meta AS m (top) VALUES (:top)
ON CONFLICT (one) DO UPDATE SET top = EXCLUDED.top, updated_at = now()
 WHERE m.top::text IS DISTINCT FROM EXCLUDED.top::text
