-- Profiles: the users table, its four section tables and user_preferences.
-- A key whose JSON value no typed column reproduces exactly lives in the row's `extra` (json_put sets or,
-- given NULL, removes it); every write that changes a profile bumps users.version and updated_at, and a
-- write that would change nothing is not made (version and updated_at stay).

-- name: get_profile(email) :one
-- The whole profile of one email, matched case-insensitively; no row if there is none.
SELECT * FROM {schema}.profile_rows WHERE lower(email) = lower(:email)

-- name: list_profiles() :many
-- Every profile, oldest first.
SELECT * FROM {schema}.profile_rows ORDER BY id

-- name: recent_profiles(limit) :many
-- The profiles used most recently, newest first; profiles never used are left out.
SELECT * FROM {schema}.profile_rows
 WHERE last_used IS NOT NULL
 ORDER BY last_used DESC, id
 LIMIT :limit

-- name: lock_and_get_profile(email) :one
-- Lock one profile's users row until the transaction ends and read the whole profile; no row if there is
-- none. `locked_version` is the version of the row as locked, the newest; if it differs from `version`, as of
-- the statement's snapshot, the lock waited for a writer and the rest of the row is stale: read it again.
SELECT p.*, l.version AS locked_version
  FROM (SELECT id, version FROM {schema}.users WHERE lower(email) = lower(:email) FOR UPDATE) AS l
  JOIN {schema}.profile_rows AS p ON p.id = l.id

-- name: register_profile(email, avd_name, avd_raw, vnc_instance, vnc_raw) :scalar
-- Create a profile {email, avd_name[, vnc_instance]}, or set those on the existing one; true if created,
-- false if it existed (no row, and version left alone, when it already held those values). vnc_instance is
-- given when :vnc_instance (typed) or :vnc_raw (kept as written) is not null.
INSERT INTO {schema}.users AS u (email, inner_email, avd_name, vnc_instance, extra)
VALUES (:email, :email, :avd_name, :vnc_instance,
        {schema}.json_put({schema}.json_put('{}', 'avd_name', :avd_raw), 'vnc_instance', :vnc_raw))
ON CONFLICT ((lower(email))) DO UPDATE
   SET avd_name = EXCLUDED.avd_name,
       vnc_instance = CASE WHEN EXCLUDED.extra -> 'vnc_instance' IS NULL
                           THEN coalesce(EXCLUDED.vnc_instance, u.vnc_instance) END,
       extra = {schema}.json_put(
                   CASE WHEN EXCLUDED.vnc_instance IS NULL AND EXCLUDED.extra -> 'vnc_instance' IS NULL THEN u.extra
                        ELSE {schema}.json_put(u.extra, 'vnc_instance', EXCLUDED.extra -> 'vnc_instance') END,
                   'avd_name', :avd_raw),
       version = u.version + 1,
       updated_at = now()
 WHERE NOT (u.avd_name IS NOT DISTINCT FROM EXCLUDED.avd_name
            AND (u.extra -> 'avd_name')::text IS NOT DISTINCT FROM (EXCLUDED.extra -> 'avd_name')::text
            AND ((EXCLUDED.vnc_instance IS NULL AND EXCLUDED.extra -> 'vnc_instance' IS NULL)
                 OR (u.vnc_instance IS NOT DISTINCT FROM EXCLUDED.vnc_instance
                     AND (u.extra -> 'vnc_instance')::text IS NOT DISTINCT FROM
                         (EXCLUDED.extra -> 'vnc_instance')::text)))
RETURNING xmax = 0

-- name: save_profile_status(email, avd_name, avd_raw, last_used, last_used_date) :scalar
-- Record that a profile was just used (creating it if needed): email (the stored spelling), avd_name,
-- last_used, last_used_date.
INSERT INTO {schema}.users AS u (email, inner_email, avd_name, last_used, last_used_date, extra)
VALUES (:email, :email, :avd_name, :last_used, :last_used_date, {schema}.json_put('{}', 'avd_name', :avd_raw))
ON CONFLICT ((lower(email))) DO UPDATE
   SET inner_email = u.email,
       avd_name = EXCLUDED.avd_name,
       last_used = EXCLUDED.last_used,
       last_used_date = EXCLUDED.last_used_date,
       extra = {schema}.json_put({schema}.json_put({schema}.json_put({schema}.json_put(
                   u.extra, 'email', NULL), 'last_used', NULL), 'last_used_date', NULL), 'avd_name', :avd_raw),
       version = u.version + 1,
       updated_at = now()
RETURNING xmax = 0

-- name: set_user_column(email, key, value, raw, {column}) :scalar
-- Set one typed column and its override in `extra` (raw NULL: none); the profile's id, or no row. A value
-- already held is not written again (version stays).
WITH changed AS (
    UPDATE {schema}.users
       SET {column} = :value,
           extra = {schema}.json_put(extra, :key, :raw),
           version = version + 1,
           updated_at = now()
     WHERE lower(email) = lower(:email)
       AND ({column} IS DISTINCT FROM :value
            OR (extra -> :key)::text IS DISTINCT FROM CAST(:raw AS json)::text)
    RETURNING id
)
SELECT id FROM changed
UNION ALL
SELECT id FROM {schema}.users WHERE lower(email) = lower(:email) AND NOT EXISTS (SELECT FROM changed)
LIMIT 1

-- name: set_user_extra(email, key, raw) :scalar
-- Set one top-level key that has no column; the profile's id, or no row. A value already held (the same
-- JSON text) is not written again.
WITH changed AS (
    UPDATE {schema}.users
       SET extra = {schema}.json_put(extra, :key, :raw),
           version = version + 1,
           updated_at = now()
     WHERE lower(email) = lower(:email)
       AND (extra -> :key)::text IS DISTINCT FROM CAST(:raw AS json)::text
    RETURNING id
)
SELECT id FROM changed
UNION ALL
SELECT id FROM {schema}.users WHERE lower(email) = lower(:email) AND NOT EXISTS (SELECT FROM changed)
LIMIT 1

-- name: set_section_column(email, section, key, value, raw, {table}, {column}) :one
-- Set one typed column of a section, creating the section; (the profile's id, null), or no row. A value already
-- held is not written again. A section stored as something other than an object or null is left as it is: the
-- row is then (id, its JSON type).
WITH u AS (
    UPDATE {schema}.users AS u
       SET extra = {schema}.json_put(u.extra, :section, NULL),
           version = u.version + 1,
           updated_at = now()
     WHERE lower(u.email) = lower(:email)
       AND coalesce(json_typeof(u.extra -> :section), 'null') = 'null'
       AND NOT (u.extra -> :section IS NULL
                AND EXISTS (SELECT FROM {schema}.{table} AS t
                             WHERE t.user_id = u.id
                               AND t.{column} IS NOT DISTINCT FROM :value
                               AND (t.extra -> :key)::text IS NOT DISTINCT FROM CAST(:raw AS json)::text))
    RETURNING id
),
s AS (
    INSERT INTO {schema}.{table} AS t (user_id, {column}, extra)
    SELECT id, :value, {schema}.json_put('{}', :key, :raw) FROM u
    ON CONFLICT (user_id) DO UPDATE
       SET {column} = EXCLUDED.{column},
           extra = {schema}.json_put(t.extra, :key, :raw)
    RETURNING user_id
)
SELECT user_id, NULL FROM s
UNION ALL
SELECT id, nullif(json_typeof(extra -> :section), 'null')
  FROM {schema}.users WHERE lower(email) = lower(:email) AND NOT EXISTS (SELECT FROM u)
LIMIT 1

-- name: set_section_extra(email, section, key, raw, {table}) :one
-- Set one key without a column inside a section, creating the section; (the profile's id, null), or no row. A
-- value already held (the same JSON text) is not written again. A section stored as something other than an
-- object or null is left as it is: the row is then (id, its JSON type).
WITH u AS (
    UPDATE {schema}.users AS u
       SET extra = {schema}.json_put(u.extra, :section, NULL),
           version = u.version + 1,
           updated_at = now()
     WHERE lower(u.email) = lower(:email)
       AND coalesce(json_typeof(u.extra -> :section), 'null') = 'null'
       AND NOT (u.extra -> :section IS NULL
                AND EXISTS (SELECT FROM {schema}.{table} AS t
                             WHERE t.user_id = u.id
                               AND (t.extra -> :key)::text IS NOT DISTINCT FROM CAST(:raw AS json)::text))
    RETURNING id
),
s AS (
    INSERT INTO {schema}.{table} AS t (user_id, extra)
    SELECT id, {schema}.json_put('{}', :key, :raw) FROM u
    ON CONFLICT (user_id) DO UPDATE
       SET extra = {schema}.json_put(t.extra, :key, :raw)
    RETURNING user_id
)
SELECT user_id, NULL FROM s
UNION ALL
SELECT id, nullif(json_typeof(extra -> :section), 'null')
  FROM {schema}.users WHERE lower(email) = lower(:email) AND NOT EXISTS (SELECT FROM u)
LIMIT 1

-- name: set_preference(email, key, raw) :one
-- Set one preference, creating the preferences object; (the profile's id, null), or no row. A value already
-- held (the same JSON text) is not written again. Preferences stored as something other than an object or null
-- are left as they are: the row is then (id, their JSON type).
WITH u AS (
    UPDATE {schema}.users AS u
       SET has_preferences = true,
           extra = {schema}.json_put(u.extra, 'preferences', NULL),
           version = u.version + 1,
           updated_at = now()
     WHERE lower(u.email) = lower(:email)
       AND coalesce(json_typeof(u.extra -> 'preferences'), 'null') = 'null'
       AND NOT (u.has_preferences AND u.extra -> 'preferences' IS NULL
                AND EXISTS (SELECT FROM {schema}.user_preferences AS p
                             WHERE p.user_id = u.id AND p.key = :key
                               AND p.value::text = CAST(:raw AS json)::text))
    RETURNING id
),
s AS (
    INSERT INTO {schema}.user_preferences AS p (user_id, key, value)
    SELECT id, :key, :raw FROM u
    ON CONFLICT (user_id, key) DO UPDATE SET value = EXCLUDED.value
    RETURNING user_id
)
SELECT user_id, NULL FROM s
UNION ALL
SELECT id, nullif(json_typeof(extra -> 'preferences'), 'null')
  FROM {schema}.users WHERE lower(email) = lower(:email) AND NOT EXISTS (SELECT FROM u)
LIMIT 1

-- name: update_auth_state(email, authenticated, now) :scalar
-- Authenticated: auth_date = now and auth_failed_date = null; else auth_failed_date = now. The id, or no row.
UPDATE {schema}.users
   SET auth_date = CASE WHEN :authenticated THEN :now ELSE auth_date END,
       auth_failed_date = CASE WHEN :authenticated THEN NULL ELSE :now END,
       extra = CASE WHEN :authenticated
                    THEN {schema}.json_put({schema}.json_put(extra, 'auth_date', NULL), 'auth_failed_date', 'null')
                    ELSE {schema}.json_put(extra, 'auth_failed_date', NULL) END,
       version = version + 1,
       updated_at = now()
 WHERE lower(email) = lower(:email)
RETURNING id

-- name: delete_profile(email) :affected
-- Delete a profile with its sections and preferences (and, by cascade, release its VNC slot).
DELETE FROM {schema}.users WHERE lower(email) = lower(:email)

-- name: update_user_columns(id, columns) :affected
-- Set the data columns named in a JSON object keyed by column name (the others keep their values); bumps
-- version.
UPDATE {schema}.users AS u
   SET (inner_email, avd_name, timezone, last_snapshot, kindle_version_name, kindle_version_code,
        android_version, system_image, last_used, last_used_date, auth_date, auth_failed_date,
        cold_storage_date, last_snapshot_timestamp, was_running_at_restart, styles_updated,
        created_from_seed_clone, post_boot_randomized, needs_device_randomization, cold_storage_dry_run,
        vnc_instance, has_preferences, extra)
     = (SELECT r.inner_email, r.avd_name, r.timezone, r.last_snapshot, r.kindle_version_name,
               r.kindle_version_code, r.android_version, r.system_image, r.last_used, r.last_used_date,
               r.auth_date, r.auth_failed_date, r.cold_storage_date, r.last_snapshot_timestamp,
               r.was_running_at_restart, r.styles_updated, r.created_from_seed_clone, r.post_boot_randomized,
               r.needs_device_randomization, r.cold_storage_dry_run, r.vnc_instance, r.has_preferences,
               coalesce(r.extra, '{}')
          FROM json_populate_record(u, :columns) AS r),
       version = u.version + 1,
       updated_at = now()
 WHERE u.id = :id

-- name: delete_section(user_id, {table}) :affected
-- Remove one section row of a profile.
DELETE FROM {schema}.{table} WHERE user_id = :user_id

-- name: insert_section(row, {table}) :affected
-- Insert one section row from a JSON object keyed by column name (user_id included).
INSERT INTO {schema}.{table}
SELECT * FROM json_populate_record(NULL::{schema}.{table}, :row)

-- name: delete_preferences(user_id) :affected
-- Remove every preference of a profile.
DELETE FROM {schema}.user_preferences WHERE user_id = :user_id

-- name: insert_preferences(user_id, prefs) :affected
-- Insert a profile's preferences from one JSON object, each value kept as written.
INSERT INTO {schema}.user_preferences (user_id, key, value)
SELECT :user_id, key, value FROM json_each(:prefs)
