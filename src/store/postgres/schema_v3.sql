-- mkplan's team state, schema version 3: the journals of domain groups (`zcrypt:` backend).
--
-- A domain group's journal holds records of its own kind (docs/zcrypt.md), so it is kept apart
-- from the HPCS journals: one per group scope (the group's identity, on one Linux image), each
-- row the record as a state folder's journal writes it, without a seal, and chained as in
-- `mkplan_journal`. It is written only under a lease (`mkplan_leases`, taken on the image's
-- APQNs, so that two groups that share an APQN are not changed at once) and is append-only.

CREATE TABLE mkplan_group_scopes (
    scope       text PRIMARY KEY,
    -- The journal's length and the chain hash of its last record ('' for none).
    records     bigint NOT NULL DEFAULT 0,
    chain       text NOT NULL DEFAULT '',
    -- Which database and WAL timeline it was last written in (`mkplan_incarnation()`).
    incarnation text
);

CREATE TABLE mkplan_group_journal (
    scope      text NOT NULL REFERENCES mkplan_group_scopes,
    seq        bigint NOT NULL,
    line       text NOT NULL,
    sha256     text NOT NULL,
    chain      text NOT NULL,
    batch      text NOT NULL,
    fence      bigint,
    written_by text NOT NULL DEFAULT session_user,
    written_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (scope, seq)
);
CREATE INDEX mkplan_group_journal_batch ON mkplan_group_journal (batch);

CREATE TRIGGER mkplan_group_journal_append_only BEFORE UPDATE OR DELETE ON mkplan_group_journal
    FOR EACH ROW EXECUTE FUNCTION mkplan_append_only();
CREATE TRIGGER mkplan_group_journal_no_truncate BEFORE TRUNCATE ON mkplan_group_journal
    FOR EACH STATEMENT EXECUTE FUNCTION mkplan_append_only();

-- The write itself, for append and push only: chained after the scope's last record; a batch
-- that is already there (a retry after a lost reply) is not written twice.
CREATE FUNCTION mkplan_group_write(p_scope text, p_fence bigint, p_batch text,
    p_lines text[], p_sha256 text[], OUT records bigint, OUT chain text)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
BEGIN
    INSERT INTO mkplan_group_scopes (scope) VALUES (p_scope) ON CONFLICT DO NOTHING;
    SELECT s.records, s.chain INTO records, chain FROM mkplan_group_scopes s
        WHERE s.scope = p_scope FOR UPDATE;
    IF EXISTS (SELECT 1 FROM mkplan_group_journal j WHERE j.batch = p_batch) THEN
        RETURN;
    END IF;
    FOR i IN 1 .. coalesce(array_length(p_lines, 1), 0) LOOP
        records := records + 1;
        chain := encode(sha256(convert_to(chain || p_sha256[i], 'UTF8')), 'hex');
        INSERT INTO mkplan_group_journal (scope, seq, line, sha256, chain, batch, fence)
            VALUES (p_scope, records, p_lines[i], p_sha256[i], chain, p_batch, p_fence);
    END LOOP;
    UPDATE mkplan_group_scopes s SET records = mkplan_group_write.records,
        chain = mkplan_group_write.chain WHERE s.scope = p_scope;
END $$;

-- Appends records as one batch under a lease; returns the journal's length and chain head.
CREATE FUNCTION mkplan_group_append(p_scope text, p_lease text, p_fence bigint, p_batch text,
    p_lines text[], p_sha256 text[], OUT records bigint, OUT chain text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    PERFORM mkplan_check_fence(p_lease, p_fence);
    SELECT w.records, w.chain INTO records, chain
        FROM mkplan_group_write(p_scope, p_fence, p_batch, p_lines, p_sha256) w;
END $$;

-- Records, under a lease, that `p_scope`'s journal now lives in this database on this timeline.
CREATE FUNCTION mkplan_group_incarnation(p_scope text, p_lease text, p_fence bigint)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    PERFORM mkplan_check_fence(p_lease, p_fence);
    INSERT INTO mkplan_group_scopes (scope, incarnation) VALUES (p_scope, mkplan_incarnation())
        ON CONFLICT (scope) DO UPDATE SET incarnation = mkplan_incarnation();
END $$;

-- `mkplan state push`: a state folder's group journal, moved into an empty scope in one
-- transaction, refused while a lease is held on the image (`p_lease_scope`).
CREATE FUNCTION mkplan_group_push(p_scope text, p_lease_scope text, p_batch text,
    p_lines text[], p_sha256 text[]) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    INSERT INTO mkplan_group_scopes (scope) VALUES (p_scope) ON CONFLICT DO NOTHING;
    SELECT s.records INTO n FROM mkplan_group_scopes s WHERE s.scope = p_scope FOR UPDATE;
    IF n > 0 OR EXISTS (SELECT 1 FROM mkplan_leases WHERE scope = p_lease_scope) THEN
        RAISE EXCEPTION USING ERRCODE = 'MKP02',
            MESSAGE = format('the database already holds %s journal records of %s, or a lease on its APQNs: a push would mix two histories', n, p_scope);
    END IF;
    PERFORM mkplan_group_write(p_scope, NULL, p_batch, p_lines, p_sha256);
    UPDATE mkplan_group_scopes SET incarnation = mkplan_incarnation() WHERE scope = p_scope;
    RETURN coalesce(array_length(p_lines, 1), 0);
END $$;

-- Only the owner (who ran `mkplan state init`) writes the journal directly, and pushes.
REVOKE EXECUTE ON FUNCTION mkplan_group_write(text, bigint, text, text[], text[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION mkplan_group_push(text, text, text, text[], text[]) FROM PUBLIC;

INSERT INTO mkplan_schema (version) VALUES (3);
