"""
Schema v1: profiles (users) and their sections, preferences, and unknown keys.

The schema is the one yoyo's connection points at (`?schema=` in the URL, which
`kindle-store migrate` adds); it must not be `public`. Typed columns hold every
well-known field of users.json; each table's `extra` (json, not jsonb, so every
number keeps its spelling) holds the keys no column can reproduce exactly:
unknown keys, explicit nulls, timestamps written with an offset.
"""

from psycopg import sql
from yoyo import step

__depends__: set[str] = set()

APPLY = """
CREATE FUNCTION {s}.json_put(doc json, key text, value json) RETURNS json
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    -- doc with key set to value (removed when value IS NULL), every other value's text untouched
    SELECT coalesce(json_object_agg(k, v), '{{}}'::json)
    FROM (SELECT k, v FROM json_each(doc) AS e(k, v) WHERE k <> key
          UNION ALL SELECT key, value WHERE value IS NOT NULL) AS kv(k, v)
$$;

CREATE TABLE {s}.users (
    id                          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email                       text NOT NULL CHECK (email <> '' AND octet_length(email) <= 1024),
    inner_email                 text,
    avd_name                    text,
    timezone                    text,
    last_snapshot               text,
    kindle_version_name         text,
    kindle_version_code         text,
    android_version             text,
    system_image                text,
    last_used                   timestamptz,
    last_used_date              timestamptz,
    auth_date                   timestamptz,
    auth_failed_date            timestamptz,
    cold_storage_date           timestamptz,
    last_snapshot_timestamp     timestamptz,
    was_running_at_restart      boolean,
    styles_updated              boolean,
    created_from_seed_clone     boolean,
    post_boot_randomized        boolean,
    needs_device_randomization  boolean,
    cold_storage_dry_run        boolean,
    vnc_instance                integer,
    has_preferences             boolean NOT NULL DEFAULT false,
    extra                       json NOT NULL DEFAULT '{{}}',
    version                     integer NOT NULL DEFAULT 1,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_lower_key ON {s}.users (lower(email));
CREATE INDEX users_last_used_idx ON {s}.users (last_used DESC) WHERE last_used IS NOT NULL;
CREATE INDEX users_running_at_restart_idx ON {s}.users (id) WHERE was_running_at_restart;

CREATE TABLE {s}.emulator_settings (
    user_id                        bigint PRIMARY KEY REFERENCES {s}.users (id) ON DELETE CASCADE,
    hw_overlays_disabled           boolean,
    animations_disabled            boolean,
    sleep_disabled                 boolean,
    status_bar_disabled            boolean,
    auto_updates_disabled          boolean,
    memory_optimizations_applied   boolean,
    appium_device_initialized      boolean,
    memory_optimization_timestamp  timestamptz,
    extra                          json NOT NULL DEFAULT '{{}}'
);

CREATE TABLE {s}.device_identifiers (
    user_id          bigint PRIMARY KEY REFERENCES {s}.users (id) ON DELETE CASCADE,
    hw_wifi_mac      text,
    hw_ethernet_mac  text,
    ro_serialno      text,
    ro_build_id      text,
    ro_product_name  text,
    android_id       text,
    extra            json NOT NULL DEFAULT '{{}}'
);

CREATE TABLE {s}.library_settings (
    user_id                 bigint PRIMARY KEY REFERENCES {s}.users (id) ON DELETE CASCADE,
    view_type               text,
    group_by_series         boolean,
    actively_reading_title  text,
    extra                   json NOT NULL DEFAULT '{{}}'
);

CREATE TABLE {s}.reading_settings (
    user_id                 bigint PRIMARY KEY REFERENCES {s}.users (id) ON DELETE CASCADE,
    theme                   text,
    font_size               text,
    real_time_highlighting  boolean,
    about_book              boolean,
    page_turn_animation     boolean,
    popular_highlights      boolean,
    highlight_menu          boolean,
    extra                   json NOT NULL DEFAULT '{{}}'
);

CREATE TABLE {s}.user_preferences (
    user_id  bigint NOT NULL REFERENCES {s}.users (id) ON DELETE CASCADE,
    key      text NOT NULL,
    value    json NOT NULL,
    PRIMARY KEY (user_id, key)
);

-- One row per profile with everything needed to render it: what every read of a whole profile selects.
CREATE VIEW {s}.profile_rows AS
SELECT u.*,
       CASE WHEN es.user_id IS NULL THEN NULL ELSE to_json(es) END AS emulator_settings,
       CASE WHEN di.user_id IS NULL THEN NULL ELSE to_json(di) END AS device_identifiers,
       CASE WHEN ls.user_id IS NULL THEN NULL ELSE to_json(ls) END AS library_settings,
       CASE WHEN rs.user_id IS NULL THEN NULL ELSE to_json(rs) END AS reading_settings,
       (SELECT json_object_agg(p.key, p.value) FROM {s}.user_preferences p WHERE p.user_id = u.id) AS preferences
FROM {s}.users u
LEFT JOIN {s}.emulator_settings es ON es.user_id = u.id
LEFT JOIN {s}.device_identifiers di ON di.user_id = u.id
LEFT JOIN {s}.library_settings ls ON ls.user_id = u.id
LEFT JOIN {s}.reading_settings rs ON rs.user_id = u.id;
"""

ROLLBACK = """
DROP VIEW {s}.profile_rows;
DROP TABLE {s}.user_preferences, {s}.reading_settings, {s}.library_settings,
           {s}.device_identifiers, {s}.emulator_settings, {s}.users;
DROP FUNCTION {s}.json_put(json, text, json);
"""


def _run(template: str):
    def run(conn):
        cur = conn.cursor()
        cur.execute("SELECT current_schema()")
        schema = cur.fetchone()[0]
        if schema in (None, "public"):
            raise RuntimeError(
                "yoyo is not pointed at the project schema: add ?schema=kindle_automator to the URL "
                "(kindle-store migrate does this for you)"
            )
        cur.execute(sql.SQL(template).format(s=sql.Identifier(schema)))

    return run


steps = [step(_run(APPLY), _run(ROLLBACK))]
