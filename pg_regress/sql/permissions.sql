-- Every object of the extension with its owner and the privileges of everyone else, so that a
-- new function left executable by PUBLIC (the default) or a table readable by everyone shows
-- up as a diff. (The owner's own privileges are implicit, and differ by version: MAINTAIN.)
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS cdc_health;
RESET client_min_messages;

SELECT pg_catalog.pg_describe_object(d.classid, d.objid, 0) AS object,
       pg_catalog.pg_get_userbyid(o.owner) AS owner,
       (SELECT pg_catalog.string_agg(
                   CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                        ELSE pg_catalog.pg_get_userbyid(a.grantee) END
                   || '=' || a.privilege_type, ', '
                   ORDER BY a.grantee <> 0, pg_catalog.pg_get_userbyid(a.grantee), a.privilege_type)
        FROM pg_catalog.aclexplode(o.acl) a WHERE a.grantee <> o.owner) AS privileges
FROM pg_catalog.pg_depend d
JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'cdc_health'
CROSS JOIN LATERAL (
    SELECT p.proowner, coalesce(p.proacl, pg_catalog.acldefault('f'::pg_catalog."char", p.proowner))
    FROM pg_catalog.pg_proc p WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND p.oid = d.objid
    UNION ALL
    SELECT c.relowner, coalesce(c.relacl, pg_catalog.acldefault(
               CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END::pg_catalog."char", c.relowner))
    FROM pg_catalog.pg_class c WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND c.oid = d.objid
    UNION ALL
    SELECT n.nspowner, coalesce(n.nspacl, pg_catalog.acldefault('n'::pg_catalog."char", n.nspowner))
    FROM pg_catalog.pg_namespace n WHERE d.classid = 'pg_catalog.pg_namespace'::pg_catalog.regclass AND n.oid = d.objid
    UNION ALL
    SELECT w.fdwowner, coalesce(w.fdwacl, pg_catalog.acldefault('F'::pg_catalog."char", w.fdwowner))
    FROM pg_catalog.pg_foreign_data_wrapper w WHERE d.classid = 'pg_catalog.pg_foreign_data_wrapper'::pg_catalog.regclass AND w.oid = d.objid
    UNION ALL
    SELECT t.typowner, coalesce(t.typacl, pg_catalog.acldefault('T'::pg_catalog."char", t.typowner))
    FROM pg_catalog.pg_type t WHERE d.classid = 'pg_catalog.pg_type'::pg_catalog.regclass AND t.oid = d.objid
    -- Row types of the tables and their arrays are members on 17+ only; they follow the table.
      AND t.typrelid = 0 AND t.typcategory <> 'A'
) AS o(owner, acl)
WHERE d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass AND d.deptype = 'e'
ORDER BY 1;

-- Members of other kinds than the ones listed above (none today): a new kind needs a line here.
SELECT pg_catalog.pg_describe_object(d.classid, d.objid, 0) AS unlisted
FROM pg_catalog.pg_depend d
JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'cdc_health'
WHERE d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass AND d.deptype = 'e'
  AND d.classid NOT IN ('pg_catalog.pg_proc'::pg_catalog.regclass, 'pg_catalog.pg_class'::pg_catalog.regclass,
                        'pg_catalog.pg_namespace'::pg_catalog.regclass,
                        'pg_catalog.pg_foreign_data_wrapper'::pg_catalog.regclass,
                        'pg_catalog.pg_type'::pg_catalog.regclass);

-- Column privileges granted anywhere in the schema.
SELECT c.relname, a.attname, a.attacl
FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
WHERE c.relnamespace = 'cdc_health'::pg_catalog.regnamespace AND a.attacl IS NOT NULL
ORDER BY 1, 2;
