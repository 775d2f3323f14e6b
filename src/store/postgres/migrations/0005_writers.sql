-- Version 5: every process that writes the store holds the leader's lease,
-- a daemon alone too (a pair of one), and the daemons that run on the
-- store say who they are.
--
-- `holder` identifies the process that took the lease (its machine's boot,
-- its pid namespace, its pid and start time): a process restarted on the
-- same machine after its predecessor died takes the lease at once instead
-- of waiting for it to expire. Empty: unknown (taken by an older binary).
ALTER TABLE leader ADD COLUMN holder text NOT NULL DEFAULT '';

-- One row per node name (`[cluster] node`, or the host name of a daemon
-- alone): the process that holds the name (`token`, new at each start), when
-- it was last seen by the server's clock, and its settings, so that a node
-- whose configuration differs from a live node's is refused at start.
CREATE TABLE nodes (
    node     text PRIMARY KEY,
    token    uuid NOT NULL,
    holder   text NOT NULL,
    paired   boolean NOT NULL,
    seen     timestamptz NOT NULL,
    settings jsonb NOT NULL
);
