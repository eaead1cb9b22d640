-- mkplan's team state, schema version 4: a service instance's lease is one, whatever backend
-- identity it is reached through.
--
-- A journal scope is a backend identity, and one service instance may be reached as two: the
-- TKE API's public and private endpoints, `tke:us-south (https://…)` and
-- `tke:us-south (https://private…)`, used by two operators on one database. Until now a lease
-- overlapped only leases of its own scope, so two applies through two endpoints could act on
-- one instance at once. Now a live lease of any other service scope on the same instance ids
-- refuses it too, naming its holder. Leases of a domain group's Linux image (`…#host=…`) keep
-- to their own scope: their instances are APQNs, which another image numbers the same way.
-- Another scope's expired lease is neither reclaimed nor waited for here: its own scope's next
-- writer settles what its holder left (`settle_wait` reads that scope's journal).

CREATE OR REPLACE FUNCTION mkplan_lease_take(p_id text, p_scope text, p_instances text[], p_command text,
    p_holder text, p_host text, p_host_id text, p_pid integer, p_ttl_ms bigint)
RETURNS TABLE (outcome text, id text, fence bigint, command text, holder text, host text,
    pid integer, started timestamptz, expires timestamptz, instances text[], host_id text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
#variable_conflict use_column
DECLARE
    f bigint;
BEGIN
    LOCK TABLE mkplan_leases IN SHARE ROW EXCLUSIVE MODE;
    RETURN QUERY WITH gone AS (
        DELETE FROM mkplan_leases l
        WHERE l.scope = p_scope AND l.instances && p_instances AND l.expires <= clock_timestamp()
        RETURNING l.*)
        SELECT 'reclaimed'::text, g.id, g.fence, g.command, g.holder, g.host, g.pid, g.started, g.expires, g.instances, g.host_id
        FROM gone g;
    IF EXISTS (SELECT 1 FROM mkplan_leases l WHERE l.instances && p_instances AND (l.scope = p_scope
            OR (strpos(l.scope, '#host=') = 0 AND strpos(p_scope, '#host=') = 0
                AND l.expires > clock_timestamp()))) THEN
        RETURN QUERY SELECT 'held'::text, l.id, l.fence, l.command, l.holder, l.host, l.pid, l.started, l.expires, l.instances, l.host_id
            FROM mkplan_leases l WHERE l.instances && p_instances AND (l.scope = p_scope
                OR (strpos(l.scope, '#host=') = 0 AND strpos(p_scope, '#host=') = 0
                    AND l.expires > clock_timestamp()));
        RETURN;
    END IF;
    f := nextval('mkplan_fence');
    INSERT INTO mkplan_leases (id, scope, instances, fence, command, holder, host, host_id, pid, expires)
        VALUES (p_id, p_scope, p_instances, f, p_command, p_holder, p_host, p_host_id, p_pid,
                clock_timestamp() + p_ttl_ms * interval '1 millisecond');
    RETURN QUERY SELECT 'taken'::text, l.id, l.fence, l.command, l.holder, l.host, l.pid, l.started, l.expires, l.instances, l.host_id
        FROM mkplan_leases l WHERE l.id = p_id;
END $$;

INSERT INTO mkplan_schema (version) VALUES (4);
