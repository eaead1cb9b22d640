-- mkplan's team state, schema version 1. Applied by `mkplan state init` (or on first use) in
-- one transaction; `mkplan_schema` says which version a database holds.
--
-- Scopes: one per backend identity (the service a journal speaks of). A database serves
-- many fleets; every row names its scope.

CREATE TABLE mkplan_schema (
    version    integer PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now(),
    applied_by text NOT NULL DEFAULT current_user
);

CREATE TABLE mkplan_scopes (
    scope           text PRIMARY KEY,
    -- The journal's length and the chain hash of its last record ('' for none).
    journal_records bigint NOT NULL DEFAULT 0,
    journal_chain   text NOT NULL DEFAULT '',
    -- The audit trail's length and the SHA-256 of its last line.
    audit_entries   bigint NOT NULL DEFAULT 0,
    audit_head      text NOT NULL DEFAULT '0000000000000000000000000000000000000000000000000000000000000000',
    -- Apply runs handed out: step names are r{run}.{step}, unique in the scope.
    runs            integer NOT NULL DEFAULT 0
);

-- The write-ahead journal: append-only. `line` is the record exactly as the file store writes
-- it (its SHA-256 and the record, without a seal); `chain` is
-- sha256(previous chain || sha256), so a row edited or removed breaks every chain after it.
CREATE TABLE mkplan_journal (
    scope      text NOT NULL REFERENCES mkplan_scopes,
    seq        bigint NOT NULL,
    instance   text,
    line       text NOT NULL,
    sha256     text NOT NULL,
    chain      text NOT NULL,
    batch      text NOT NULL,
    fence      bigint,
    written_by text NOT NULL DEFAULT session_user,
    written_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (scope, seq)
);
CREATE INDEX mkplan_journal_batch ON mkplan_journal (batch);
CREATE INDEX mkplan_journal_instance ON mkplan_journal (scope, instance);

-- The audit trail: append-only, each line links to the SHA-256 of the line before, as in
-- the file store's audit.jsonl.
CREATE TABLE mkplan_audit (
    scope      text NOT NULL REFERENCES mkplan_scopes,
    seq        bigint NOT NULL,
    line       text NOT NULL,
    batch      text NOT NULL,
    written_by text NOT NULL DEFAULT session_user,
    PRIMARY KEY (scope, seq)
);
CREATE INDEX mkplan_audit_batch ON mkplan_audit (batch);

-- Leases: one writer per (scope, instance) at a time. `fence` grows with every lease taken;
-- a journal write names its lease and fence and is refused once another holds the
-- instances.
CREATE SEQUENCE mkplan_fence;
CREATE TABLE mkplan_leases (
    id        text PRIMARY KEY,
    scope     text NOT NULL,
    instances text[] NOT NULL,
    fence     bigint NOT NULL,
    command   text NOT NULL,
    holder    text NOT NULL,
    host      text NOT NULL,
    -- The machine and its boot (machine-id/boot_id): a lease whose process is gone from this
    -- very machine is reclaimed at once, not at its expiry.
    host_id   text NOT NULL,
    pid       integer NOT NULL,
    started   timestamptz NOT NULL DEFAULT clock_timestamp(),
    renewed   timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires   timestamptz NOT NULL
);
CREATE INDEX mkplan_leases_scope ON mkplan_leases (scope);

CREATE FUNCTION mkplan_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'mkplan: % is append-only: its rows are evidence', TG_TABLE_NAME;
END $$;
CREATE TRIGGER mkplan_journal_append_only BEFORE UPDATE OR DELETE ON mkplan_journal
    FOR EACH ROW EXECUTE FUNCTION mkplan_append_only();
CREATE TRIGGER mkplan_journal_no_truncate BEFORE TRUNCATE ON mkplan_journal
    FOR EACH STATEMENT EXECUTE FUNCTION mkplan_append_only();
CREATE TRIGGER mkplan_audit_append_only BEFORE UPDATE OR DELETE ON mkplan_audit
    FOR EACH ROW EXECUTE FUNCTION mkplan_append_only();
CREATE TRIGGER mkplan_audit_no_truncate BEFORE TRUNCATE ON mkplan_audit
    FOR EACH STATEMENT EXECUTE FUNCTION mkplan_append_only();

-- Refuses unless lease `p_lease` still holds fence `p_fence` and has not expired.
CREATE FUNCTION mkplan_check_fence(p_lease text, p_fence bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    held record;
BEGIN
    IF p_lease IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'MKP01',
            MESSAGE = 'a journal write names no lease: only a writer holding a lease may append';
    END IF;
    SELECT * INTO held FROM mkplan_leases WHERE id = p_lease FOR SHARE;
    IF NOT FOUND OR held.fence <> p_fence THEN
        RAISE EXCEPTION USING ERRCODE = 'MKP01',
            MESSAGE = format('lease %s is no longer held: another writer took the instances over', p_lease);
    END IF;
    IF held.expires <= clock_timestamp() THEN
        RAISE EXCEPTION USING ERRCODE = 'MKP01',
            MESSAGE = format('lease %s expired at %s', p_lease, held.expires);
    END IF;
END $$;

-- Appends journal lines as one batch under a lease, chained after the scope's last record.
-- It runs with its owner's rights (SECURITY DEFINER): operators need no INSERT on the journal,
-- so nothing reaches it but through a lease's fence. A batch that is already there (a retry
-- after a lost reply) is not written twice.
CREATE FUNCTION mkplan_journal_append(p_scope text, p_lease text, p_fence bigint, p_batch text,
    p_lines text[], p_sha256 text[], p_instances text[]) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    PERFORM mkplan_check_fence(p_lease, p_fence);
    RETURN mkplan_journal_write(p_scope, p_fence, p_batch, p_lines, p_sha256, p_instances);
END $$;

-- The write itself, for append and push only: no one else may call it.
CREATE FUNCTION mkplan_journal_write(p_scope text, p_fence bigint, p_batch text,
    p_lines text[], p_sha256 text[], p_instances text[]) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
    c text;
BEGIN
    INSERT INTO mkplan_scopes (scope) VALUES (p_scope) ON CONFLICT DO NOTHING;
    SELECT journal_records, journal_chain INTO n, c FROM mkplan_scopes
        WHERE scope = p_scope FOR UPDATE;
    IF EXISTS (SELECT 1 FROM mkplan_journal WHERE batch = p_batch) THEN
        RETURN n;
    END IF;
    FOR i IN 1 .. coalesce(array_length(p_lines, 1), 0) LOOP
        n := n + 1;
        c := encode(sha256(convert_to(c || p_sha256[i], 'UTF8')), 'hex');
        INSERT INTO mkplan_journal (scope, seq, instance, line, sha256, chain, batch, fence)
            VALUES (p_scope, n, p_instances[i], p_lines[i], p_sha256[i], c, p_batch, p_fence);
    END LOOP;
    UPDATE mkplan_scopes SET journal_records = n, journal_chain = c WHERE scope = p_scope;
    RETURN n;
END $$;

-- Appends audit entries as one batch; the server builds each line, so that writers of one
-- scope at once keep one chain. Returns the trail's length and head.
CREATE FUNCTION mkplan_audit_append(p_scope text, p_lease text, p_fence bigint, p_batch text,
    p_time bigint, p_events text[], OUT entries bigint, OUT head text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
#variable_conflict use_column
DECLARE
    line text;
BEGIN
    PERFORM mkplan_check_fence(p_lease, p_fence);
    INSERT INTO mkplan_scopes (scope) VALUES (p_scope) ON CONFLICT DO NOTHING;
    SELECT audit_entries, audit_head INTO entries, head FROM mkplan_scopes
        WHERE scope = p_scope FOR UPDATE;
    IF EXISTS (SELECT 1 FROM mkplan_audit WHERE batch = p_batch) THEN
        RETURN;
    END IF;
    FOR i IN 1 .. coalesce(array_length(p_events, 1), 0) LOOP
        entries := entries + 1;
        line := format('{"seq":%s,"prev":"%s","time":%s,"event":%s}', entries, head, p_time, p_events[i]);
        head := encode(sha256(convert_to(line, 'UTF8')), 'hex');
        INSERT INTO mkplan_audit (scope, seq, line, batch) VALUES (p_scope, entries, line, p_batch);
    END LOOP;
    UPDATE mkplan_scopes SET audit_entries = entries, audit_head = head WHERE scope = p_scope;
END $$;

-- Hands out the scope's next run number.
CREATE FUNCTION mkplan_next_run(p_scope text, p_lease text, p_fence bigint) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    n integer;
BEGIN
    PERFORM mkplan_check_fence(p_lease, p_fence);
    INSERT INTO mkplan_scopes (scope, runs) VALUES (p_scope, 1)
        ON CONFLICT (scope) DO UPDATE SET runs = mkplan_scopes.runs + 1
        RETURNING runs INTO n;
    RETURN n;
END $$;

-- Takes a lease on `p_instances` of `p_scope`: first removes the expired leases that overlap
-- them (returned as reclaimed), then refuses if a live one overlaps (returned as held).
CREATE FUNCTION mkplan_lease_take(p_id text, p_scope text, p_instances text[], p_command text,
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
    IF EXISTS (SELECT 1 FROM mkplan_leases l WHERE l.scope = p_scope AND l.instances && p_instances) THEN
        RETURN QUERY SELECT 'held'::text, l.id, l.fence, l.command, l.holder, l.host, l.pid, l.started, l.expires, l.instances, l.host_id
            FROM mkplan_leases l WHERE l.scope = p_scope AND l.instances && p_instances;
        RETURN;
    END IF;
    f := nextval('mkplan_fence');
    INSERT INTO mkplan_leases (id, scope, instances, fence, command, holder, host, host_id, pid, expires)
        VALUES (p_id, p_scope, p_instances, f, p_command, p_holder, p_host, p_host_id, p_pid,
                clock_timestamp() + p_ttl_ms * interval '1 millisecond');
    RETURN QUERY SELECT 'taken'::text, l.id, l.fence, l.command, l.holder, l.host, l.pid, l.started, l.expires, l.instances, l.host_id
        FROM mkplan_leases l WHERE l.id = p_id;
END $$;

-- `mkplan state push`: a file journal and its audit trail, moved into an empty scope in one
-- transaction; the audit lines stay as written, so the journal's anchors still hold.
CREATE FUNCTION mkplan_push(p_scope text, p_batch text, p_lines text[], p_sha256 text[],
    p_instances text[], p_audit text[], p_audit_head text, p_runs integer) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
    a bigint;
BEGIN
    INSERT INTO mkplan_scopes (scope) VALUES (p_scope) ON CONFLICT DO NOTHING;
    SELECT journal_records, audit_entries INTO n, a FROM mkplan_scopes
        WHERE scope = p_scope FOR UPDATE;
    IF n > 0 OR a > 0 OR EXISTS (SELECT 1 FROM mkplan_leases WHERE scope = p_scope) THEN
        RAISE EXCEPTION USING ERRCODE = 'MKP02',
            MESSAGE = format('the database already holds %s journal records and %s audit entries of %s, or a lease on it: a push would mix two histories', n, a, p_scope);
    END IF;
    PERFORM mkplan_journal_write(p_scope, NULL, p_batch, p_lines, p_sha256, p_instances);
    FOR i IN 1 .. coalesce(array_length(p_audit, 1), 0) LOOP
        INSERT INTO mkplan_audit (scope, seq, line, batch) VALUES (p_scope, i, p_audit[i], p_batch);
    END LOOP;
    UPDATE mkplan_scopes SET audit_entries = coalesce(array_length(p_audit, 1), 0),
        audit_head = p_audit_head, runs = p_runs WHERE scope = p_scope;
    RETURN coalesce(array_length(p_lines, 1), 0);
END $$;

-- Only the owner (who ran `mkplan state init`) writes the journal directly, and pushes.
REVOKE EXECUTE ON FUNCTION mkplan_journal_write(text, bigint, text, text[], text[], text[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION mkplan_push(text, text, text[], text[], text[], text[], text, integer) FROM PUBLIC;

INSERT INTO mkplan_schema (version) VALUES (1);
