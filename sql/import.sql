-- Bulk import of users.json (kindle_store/users_file.py): a fixed handful of set-based statements per import,
-- whatever the number of profiles. The profiles that are new or differ are COPYed into a temporary staging
-- table, one row per profile with its id (new profiles get theirs from the sequence first), each part as the
-- JSON object of its row (keyed by column name, as json_populate_record reads it); then users are upserted
-- by id and the touched section rows replaced.
-- A staged section or preferences column is SQL NULL when that part is left as it is, JSON null when the
-- section is removed, and an object when it is replaced.

-- name: no_jit() :affected
-- No JIT for this transaction: the planner's estimates on the bulk statements make PostgreSQL compile
-- them, which costs ~0.25 s per import whatever its size (measured on PG 15).
SET LOCAL jit = off

-- name: lock_users() :affected
-- Keep every other writer out until the import commits (readers go on): the diff stays true while we write.
LOCK TABLE {schema}.users IN SHARE ROW EXCLUSIVE MODE

-- name: count_profiles() :scalar
-- How many profiles the database holds.
SELECT count(*) FROM {schema}.users

-- name: existing_profiles(emails) :many
-- The stored profiles of these emails (matched case-insensitively), each with the spelling asked for.
SELECT f.email AS file_email, p.*
  FROM unnest(CAST(:emails AS text[])) AS f(email)
  JOIN {schema}.profile_rows AS p ON lower(p.email) = lower(f.email)

-- name: reserve_ids(schema_name, n) :many
-- n fresh ids for new profiles, from the users identity sequence, so the staged rows carry their ids.
SELECT nextval(pg_get_serial_sequence(format('%I.users', CAST(:schema_name AS text)), 'id'))
  FROM generate_series(1, :n)

-- name: create_stage() :affected
-- The staging table for one import; gone at the end of the transaction.
CREATE TEMPORARY TABLE kindle_import_stage (
    ord                 integer NOT NULL,
    user_id             bigint NOT NULL,
    users               json NOT NULL,
    emulator_settings   json,
    device_identifiers  json,
    library_settings    json,
    reading_settings    json,
    preferences         json
) ON COMMIT DROP

-- name: copy_stage() :affected
-- COPY (text format) of the staged profiles: file order, id, users row, four sections, preferences.
COPY pg_temp.kindle_import_stage (ord, user_id, users, emulator_settings, device_identifiers, library_settings,
                                  reading_settings, preferences) FROM STDIN

-- name: upsert_users() :affected
-- Create the new profiles (with their reserved ids, in file order) and rewrite the changed ones, bumping
-- version and updated_at.
INSERT INTO {schema}.users AS u (
       id, email, inner_email, avd_name, timezone, last_snapshot, kindle_version_name, kindle_version_code,
       android_version, system_image, last_used, last_used_date, auth_date, auth_failed_date,
       cold_storage_date, last_snapshot_timestamp, was_running_at_restart, styles_updated,
       created_from_seed_clone, post_boot_randomized, needs_device_randomization, cold_storage_dry_run,
       vnc_instance, has_preferences, extra)
OVERRIDING SYSTEM VALUE
SELECT s.user_id, r.email, r.inner_email, r.avd_name, r.timezone, r.last_snapshot, r.kindle_version_name,
       r.kindle_version_code, r.android_version, r.system_image, r.last_used, r.last_used_date,
       r.auth_date, r.auth_failed_date, r.cold_storage_date, r.last_snapshot_timestamp,
       r.was_running_at_restart, r.styles_updated, r.created_from_seed_clone, r.post_boot_randomized,
       r.needs_device_randomization, r.cold_storage_dry_run, r.vnc_instance, r.has_preferences,
       coalesce(r.extra, '{}')
  FROM pg_temp.kindle_import_stage AS s,
       json_populate_record(NULL::{schema}.users, s.users) AS r
 ORDER BY s.ord
ON CONFLICT (id) DO UPDATE
   SET (email, inner_email, avd_name, timezone, last_snapshot, kindle_version_name, kindle_version_code,
        android_version, system_image, last_used, last_used_date, auth_date, auth_failed_date,
        cold_storage_date, last_snapshot_timestamp, was_running_at_restart, styles_updated,
        created_from_seed_clone, post_boot_randomized, needs_device_randomization, cold_storage_dry_run,
        vnc_instance, has_preferences, extra)
     = (EXCLUDED.email, EXCLUDED.inner_email, EXCLUDED.avd_name, EXCLUDED.timezone, EXCLUDED.last_snapshot,
        EXCLUDED.kindle_version_name, EXCLUDED.kindle_version_code, EXCLUDED.android_version,
        EXCLUDED.system_image, EXCLUDED.last_used, EXCLUDED.last_used_date, EXCLUDED.auth_date,
        EXCLUDED.auth_failed_date, EXCLUDED.cold_storage_date, EXCLUDED.last_snapshot_timestamp,
        EXCLUDED.was_running_at_restart, EXCLUDED.styles_updated, EXCLUDED.created_from_seed_clone,
        EXCLUDED.post_boot_randomized, EXCLUDED.needs_device_randomization, EXCLUDED.cold_storage_dry_run,
        EXCLUDED.vnc_instance, EXCLUDED.has_preferences, EXCLUDED.extra),
       version = u.version + 1,
       updated_at = now()

-- name: delete_sections({table}) :affected
-- Remove the section rows that the staged profiles remove or replace.
DELETE FROM {schema}.{table} AS t
 USING pg_temp.kindle_import_stage AS s
 WHERE t.user_id = s.user_id
   AND s.{table} IS NOT NULL

-- name: insert_sections({table}) :affected
-- Insert the staged section rows (the staged object has every column but user_id, which the stage row has).
INSERT INTO {schema}.{table}
SELECT r.*
  FROM pg_temp.kindle_import_stage AS s,
       json_populate_record(json_populate_record(NULL::{schema}.{table}, json_build_object('user_id', s.user_id)),
                            CASE WHEN json_typeof(s.{table}) = 'object' THEN s.{table} END) AS r
 WHERE json_typeof(s.{table}) = 'object'

-- name: delete_preferences() :affected
-- Remove the preferences that the staged profiles replace.
DELETE FROM {schema}.user_preferences AS p
 USING pg_temp.kindle_import_stage AS s
 WHERE p.user_id = s.user_id
   AND s.preferences IS NOT NULL

-- name: insert_preferences() :affected
-- Insert the staged preferences, one row per key, each value's JSON text kept as written.
INSERT INTO {schema}.user_preferences (user_id, key, value)
SELECT s.user_id, e.key, e.value
  FROM pg_temp.kindle_import_stage AS s,
       json_each(CASE WHEN json_typeof(s.preferences) = 'object' THEN s.preferences ELSE '{}' END) AS e
 WHERE s.preferences IS NOT NULL
