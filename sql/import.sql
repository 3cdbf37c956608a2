-- Bulk import of users.json (kindle_store/users_file.py): a fixed handful of set-based statements per import,
-- whatever the number of profiles. The users rows of the profiles that are new or differ are COPYed into a
-- temporary staging table, each with its id (new profiles get theirs from the sequence first), and upserted by id
-- from there; the section and preferences rows that a changed profile replaces or drops are deleted, and the new
-- ones COPYed straight into their tables, in binary (typed values: nothing for either side to escape or parse).
-- Each COPY names its columns in the order users_file.py sends them (tests/test_users_file.py holds the two together).

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

-- name: same_email(emails) :scalar
-- The first two of these emails, in their order, that lower() takes for one email: the database's case rules
-- (its collation's) are not Python's, so a file Python finds no two spellings in may still hold some. No row if none.
SELECT (array_agg(f.email ORDER BY f.n))[1:2]
  FROM unnest(CAST(:emails AS text[])) WITH ORDINALITY AS f(email, n)
 GROUP BY lower(f.email)
HAVING count(*) > 1
 ORDER BY (array_agg(f.n ORDER BY f.n))[2]
 LIMIT 1

-- name: existing_profiles(emails) :many
-- The stored profiles of these emails (matched case-insensitively), each with the spelling asked for.
SELECT f.email AS file_email, p.*
  FROM unnest(CAST(:emails AS text[])) AS f(email)
  JOIN {schema}.profile_rows AS p ON lower(p.email) = lower(f.email)

-- name: reserve_ids(schema_name, n) :many
-- n fresh ids for new profiles, from the users identity sequence, so the rows COPYed in carry their ids.
SELECT nextval(pg_get_serial_sequence(format('%I.users', CAST(:schema_name AS text)), 'id'))
  FROM generate_series(1, :n)

-- name: copy_users() :affected
-- COPY (binary format) of the new profiles' users rows, with their reserved ids, in file order: id, email, the
-- typed columns, extra, has_preferences.
COPY {schema}.users (
       id, email, inner_email, avd_name, timezone, last_snapshot, kindle_version_name, kindle_version_code,
       android_version, system_image, last_used, last_used_date, auth_date, auth_failed_date, cold_storage_date,
       last_snapshot_timestamp, was_running_at_restart, styles_updated, created_from_seed_clone,
       post_boot_randomized, needs_device_randomization, cold_storage_dry_run, vnc_instance, extra,
       has_preferences)
FROM STDIN (FORMAT BINARY)

-- name: update_users(users) :affected
-- Rewrite the changed profiles' users rows, given as a JSON array of users rows (each an object by column name),
-- bumping version and updated_at.
UPDATE {schema}.users AS u
   SET (email, inner_email, avd_name, timezone, last_snapshot, kindle_version_name, kindle_version_code,
        android_version, system_image, last_used, last_used_date, auth_date, auth_failed_date,
        cold_storage_date, last_snapshot_timestamp, was_running_at_restart, styles_updated,
        created_from_seed_clone, post_boot_randomized, needs_device_randomization, cold_storage_dry_run,
        vnc_instance, has_preferences, extra)
     = (s.email, s.inner_email, s.avd_name, s.timezone, s.last_snapshot, s.kindle_version_name,
        s.kindle_version_code, s.android_version, s.system_image, s.last_used, s.last_used_date, s.auth_date,
        s.auth_failed_date, s.cold_storage_date, s.last_snapshot_timestamp, s.was_running_at_restart,
        s.styles_updated, s.created_from_seed_clone, s.post_boot_randomized, s.needs_device_randomization,
        s.cold_storage_dry_run, s.vnc_instance, s.has_preferences, s.extra),
       version = u.version + 1,
       updated_at = now()
  FROM json_populate_recordset(CAST(NULL AS {schema}.users), :users) AS s
 WHERE u.id = s.id

-- name: delete_rows({table}, ids) :affected
-- Remove the rows of these profiles from a section table or user_preferences: the parts a changed profile replaces
-- or drops.
DELETE FROM {schema}.{table}
 WHERE user_id = ANY(CAST(:ids AS bigint[]))

-- name: copy_emulator_settings() :affected
-- COPY (binary format) of the new emulator_settings rows.
COPY {schema}.emulator_settings (
       user_id, hw_overlays_disabled, animations_disabled, sleep_disabled, status_bar_disabled,
       auto_updates_disabled, memory_optimizations_applied, appium_device_initialized, memory_optimization_timestamp,
       extra)
FROM STDIN (FORMAT BINARY)

-- name: copy_device_identifiers() :affected
-- COPY (binary format) of the new device_identifiers rows.
COPY {schema}.device_identifiers (
       user_id, hw_wifi_mac, hw_ethernet_mac, ro_serialno, ro_build_id, ro_product_name, android_id, extra)
FROM STDIN (FORMAT BINARY)

-- name: copy_library_settings() :affected
-- COPY (binary format) of the new library_settings rows.
COPY {schema}.library_settings (user_id, view_type, group_by_series, actively_reading_title, extra)
FROM STDIN (FORMAT BINARY)

-- name: copy_reading_settings() :affected
-- COPY (binary format) of the new reading_settings rows.
COPY {schema}.reading_settings (
       user_id, theme, font_size, real_time_highlighting, about_book, page_turn_animation, popular_highlights,
       highlight_menu, extra)
FROM STDIN (FORMAT BINARY)

-- name: copy_preferences() :affected
-- COPY (binary format) of the new preferences, one row per key, each value's JSON text as orjson writes it.
COPY {schema}.user_preferences (user_id, key, value)
FROM STDIN (FORMAT BINARY)
