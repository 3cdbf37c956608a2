-- Least privilege: what `kindle-store grant` reads from the catalogs before it changes anything.
-- The CREATE ROLE, ALTER ... OWNER and GRANT statements themselves are composed in kindle_store/ops.py
-- with psycopg.sql.Identifier, since role names are identifiers and cannot be parameters.

-- name: roles() :many
-- Every role of the cluster with the attributes grant checks.
SELECT rolname      AS name,
       rolsuper     AS superuser,
       rolcanlogin  AS can_login
  FROM pg_roles
 ORDER BY rolname

-- name: schema_owner_members(schema_name) :many
-- The roles that may ALTER or DROP what the schema's owner owns: the owner, its members, the superusers.
SELECT r.rolname AS name
  FROM pg_namespace AS n
  JOIN pg_roles AS r ON pg_has_role(r.oid, n.nspowner, 'MEMBER')
 WHERE n.nspname = :schema_name
 ORDER BY r.rolname

-- name: schema_objects(schema_name) :many
-- Everything in the schema that has an owner of its own, with its owner: tables, views, sequences not tied
-- to a column, functions and procedures (with their argument types as [schema, type] pairs), and types.
-- `kind` is the keyword its ALTER statement takes. Objects belonging to an extension are left out.
SELECT CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'
                      WHEN 'f' THEN 'FOREIGN TABLE' WHEN 'c' THEN 'TYPE' ELSE 'TABLE' END AS kind,
       c.relname                    AS name,
       pg_get_userbyid(c.relowner)  AS owner,
       NULL::json                   AS args
  FROM pg_class AS c
  JOIN pg_namespace AS n ON n.oid = c.relnamespace
 WHERE n.nspname = :schema_name
   AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c')
   AND NOT EXISTS (SELECT FROM pg_depend AS d
                    WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                      AND (d.deptype = 'e' OR (c.relkind = 'S' AND d.deptype IN ('a', 'i'))))
UNION ALL
SELECT 'ROUTINE',
       p.proname,
       pg_get_userbyid(p.proowner),
       (SELECT coalesce(json_agg(json_build_array(tn.nspname, t.typname) ORDER BY a.ord), '[]')
          FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY AS a(typ, ord)
          JOIN pg_type AS t ON t.oid = a.typ
          JOIN pg_namespace AS tn ON tn.oid = t.typnamespace)
  FROM pg_proc AS p
  JOIN pg_namespace AS n ON n.oid = p.pronamespace
 WHERE n.nspname = :schema_name
   AND p.prokind IN ('f', 'p')
   AND NOT EXISTS (SELECT FROM pg_depend AS d
                    WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
UNION ALL
SELECT CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END,
       t.typname,
       pg_get_userbyid(t.typowner),
       NULL::json
  FROM pg_type AS t
  JOIN pg_namespace AS n ON n.oid = t.typnamespace
 WHERE n.nspname = :schema_name
   AND t.typtype IN ('e', 'd', 'r')
   AND NOT EXISTS (SELECT FROM pg_depend AS d
                    WHERE d.classid = 'pg_type'::regclass AND d.objid = t.oid AND d.deptype = 'e')
 ORDER BY 1, 2
