"""
Schema v2: the VNC/emulator slot map (vnc_instance_map.json) next to the profiles.

`vnc_instances` has one typed column per key of an instance dict; `id` is the slot number n. The database
enforces what must never happen: two slots on one display or port (deferrable constraints, checked at the end
of each statement so an import may swap ports between slots) and two slots for one email (a unique index on
lower(assigned_profile); a free slot has NULL there). `assigned_profile` may name an email that has no
profile, so it is no foreign key: a statement trigger on `users` releases the slots of deleted profiles.

Exactness: `appium_last_health_check` keeps the file's float bit for bit (double precision);
`appium_last_health_check_at` is the timestamptz SQL queries, generated from it. `absent` lists the well-known
keys an instance dict lacks, `extra` (json, not jsonb, so every number keeps its spelling) its unknown keys and
the overrides of values a column cannot give back (see kindle_store/vnc.py). `vnc_map_meta` keeps the file's
top-level keys other than "instances" ("version" and unknown ones) as written.
"""

from psycopg import sql
from yoyo import step

__depends__ = {"0001_profiles"}

APPLY = """
CREATE FUNCTION {s}.vnc_ports(n integer)
RETURNS TABLE (display integer, vnc_port integer, appium_port integer, emulator_port integer,
               appium_system_port integer, appium_chromedriver_port integer, appium_mjpeg_server_port integer)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    -- the X display and every port of slot n: the formula of kindle_store.vnc_manager.ports_for
    SELECT n, 5900 + n, 4723 + n, 5554 + 2 * (n - 1), 8200 + n, 9515 + n, 7810 + n
$$;

CREATE TABLE {s}.vnc_instances (
    id                           integer PRIMARY KEY,
    display                      integer,
    vnc_port                     integer,
    appium_port                  integer,
    emulator_port                integer,
    emulator_id                  text,
    assigned_profile             text CHECK (assigned_profile <> '' AND octet_length(assigned_profile) <= 1024),
    appium_pid                   integer,
    appium_running               boolean,
    appium_last_health_check     double precision,
    appium_last_health_check_at  timestamptz GENERATED ALWAYS AS (to_timestamp(appium_last_health_check)) STORED,
    appium_system_port           integer,
    appium_chromedriver_port     integer,
    appium_mjpeg_server_port     integer,
    absent                       text[] NOT NULL DEFAULT '{{}}' CHECK (absent <@ ARRAY[
                                     'display', 'vnc_port', 'appium_port', 'emulator_port', 'emulator_id',
                                     'assigned_profile', 'appium_pid', 'appium_running',
                                     'appium_last_health_check', 'appium_system_port',
                                     'appium_chromedriver_port', 'appium_mjpeg_server_port']),
    extra                        json NOT NULL DEFAULT '{{}}',
    created_at                   timestamptz NOT NULL DEFAULT now(),
    updated_at                   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT vnc_instances_display_key UNIQUE (display) DEFERRABLE,
    CONSTRAINT vnc_instances_vnc_port_key UNIQUE (vnc_port) DEFERRABLE,
    CONSTRAINT vnc_instances_appium_port_key UNIQUE (appium_port) DEFERRABLE,
    CONSTRAINT vnc_instances_emulator_port_key UNIQUE (emulator_port) DEFERRABLE,
    CONSTRAINT vnc_instances_appium_system_port_key UNIQUE (appium_system_port) DEFERRABLE,
    CONSTRAINT vnc_instances_appium_chromedriver_port_key UNIQUE (appium_chromedriver_port) DEFERRABLE,
    CONSTRAINT vnc_instances_appium_mjpeg_server_port_key UNIQUE (appium_mjpeg_server_port) DEFERRABLE
);
CREATE UNIQUE INDEX vnc_instances_assigned_profile_key
    ON {s}.vnc_instances (lower(assigned_profile)) WHERE assigned_profile IS NOT NULL;
CREATE INDEX vnc_instances_free_idx ON {s}.vnc_instances (id) WHERE assigned_profile IS NULL;

CREATE TABLE {s}.vnc_map_meta (
    one         boolean PRIMARY KEY DEFAULT true CHECK (one),
    top         json NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION {s}.vnc_release(keys text[]) RETURNS SETOF integer
LANGUAGE sql AS $$
    -- free the slots held by these emails (lower-cased): no assignment, no emulator, Appium stopped; their ids
    UPDATE {s}.vnc_instances
       SET assigned_profile = NULL,
           emulator_id = NULL,
           appium_pid = NULL,
           appium_running = false,
           absent = ARRAY(SELECT k FROM unnest(absent) AS k
                           WHERE k NOT IN ('emulator_id', 'appium_pid', 'appium_running')),
           updated_at = now()
     WHERE assigned_profile IS NOT NULL AND lower(assigned_profile) = ANY (keys)
    RETURNING id
$$;

CREATE FUNCTION {s}.vnc_release_deleted_profiles() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM {s}.vnc_release(ARRAY(SELECT lower(email) FROM gone));
    RETURN NULL;
END
$$;

CREATE TRIGGER users_release_vnc_instances
    AFTER DELETE ON {s}.users
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION {s}.vnc_release_deleted_profiles();
"""

ROLLBACK = """
DROP TRIGGER users_release_vnc_instances ON {s}.users;
DROP FUNCTION {s}.vnc_release_deleted_profiles();
DROP FUNCTION {s}.vnc_release(text[]);
DROP TABLE {s}.vnc_map_meta, {s}.vnc_instances;
DROP FUNCTION {s}.vnc_ports(integer);
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
