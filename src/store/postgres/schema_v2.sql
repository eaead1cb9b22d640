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

INSERT INTO mkplan_schema (version) VALUES (2);
