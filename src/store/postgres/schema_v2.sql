-- mkplan's team state, schema version 2: which writers have stopped sending.
--
-- Every intent on a shared journal promises a send window: its operation leaves within it, or
-- never. A writer that takes service instances over waits out the windows of the intents left
-- open (and the time a request may take to arrive) before it settles them from the live state,
-- unless their writer is known to have stopped: it released its lease as its process finished,
-- or another writer on the same machine found its process gone and reclaimed the lease. A lease
-- that merely expired (its holder killed on another machine, paused, cut off) leaves no row
-- here: its holder may wake up and send, within the window.

CREATE TABLE mkplan_writers_ended (
    fence    bigint PRIMARY KEY,
    scope    text NOT NULL,
    how      text NOT NULL CHECK (how IN ('released', 'gone')),
    ended_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Ends lease `p_id` if it still holds fence `p_fence`: its holder releasing it, or a writer on
-- the holder's machine that found the holder's process gone (`p_gone`). Returns 1 when the
-- lease was there.
CREATE FUNCTION mkplan_lease_release(p_id text, p_fence bigint, p_gone boolean) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    s text;
BEGIN
    DELETE FROM mkplan_leases WHERE id = p_id AND fence = p_fence RETURNING scope INTO s;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    INSERT INTO mkplan_writers_ended (fence, scope, how)
        VALUES (p_fence, s, CASE WHEN p_gone THEN 'gone' ELSE 'released' END)
        ON CONFLICT (fence) DO NOTHING;
    RETURN 1;
END $$;

-- Records that the writer of an expired lease that `mkplan_lease_take` reclaimed is gone: a
-- writer on its machine found its process ended. Only for a fence no lease holds any more.
CREATE FUNCTION mkplan_writer_gone(p_scope text, p_fence bigint) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM mkplan_leases WHERE fence = p_fence) THEN
        RETURN;
    END IF;
    INSERT INTO mkplan_writers_ended (fence, scope, how) VALUES (p_fence, p_scope, 'gone')
        ON CONFLICT (fence) DO NOTHING;
END $$;

-- Which database, on which timeline, each scope's journal was last written in. A restore from
-- a dump or a copy (a new database), a point-in-time recovery or a replica promoted after a
-- failover (a new WAL timeline) all change it: records written after the copy was taken may
-- be missing, so nothing before that moment is evidence (mkplan journals it as rolled back).
ALTER TABLE mkplan_scopes ADD COLUMN incarnation text;

-- This database and its WAL timeline, or NULL where they cannot be read (a standby).
CREATE FUNCTION mkplan_incarnation() RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, public AS $$
BEGIN
    RETURN (SELECT d.oid::text FROM pg_database d WHERE d.datname = current_database())
        || '/' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8);
EXCEPTION WHEN OTHERS THEN
    RETURN NULL;
END $$;

-- Records, under a lease, that `p_scope`'s journal now lives in this database on this
-- timeline (after mkplan journaled any change of it).
CREATE FUNCTION mkplan_scope_incarnation(p_scope text, p_lease text, p_fence bigint)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    PERFORM mkplan_check_fence(p_lease, p_fence);
    INSERT INTO mkplan_scopes (scope, incarnation) VALUES (p_scope, mkplan_incarnation())
        ON CONFLICT (scope) DO UPDATE SET incarnation = mkplan_incarnation();
END $$;

INSERT INTO mkplan_schema (version) VALUES (2);
