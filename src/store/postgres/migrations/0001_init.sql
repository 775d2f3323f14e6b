-- ordersync's state on PostgreSQL, version 1: one table per record kind of
-- the portable dump (docs/CONTRACT.md §12), with the keys that make a
-- record unique as primary keys and the indexes the store's reads need.
-- Applied by ordersync itself (src/store/postgres/mod.rs), in a transaction,
-- under an advisory lock; never edit a released migration, add the next.

CREATE TABLE orders (
    id              uuid PRIMARY KEY,
    external_id     text NOT NULL UNIQUE,
    -- The UUID an external id spells (any case, braces, urn:uuid:), so no
    -- external id can name another order's id.
    external_uuid   uuid UNIQUE,
    revision        integer NOT NULL CHECK (revision >= 1),
    sent_sha256     bytea NOT NULL CHECK (length(sent_sha256) = 32),
    regulated       boolean NOT NULL,
    -- The fields export filters use, typed (filters still decide in Rust;
    -- these only narrow the candidates).
    created         bigint NOT NULL,
    updated         bigint NOT NULL,
    channel         text,
    type            text,
    currency        text,
    status          text,
    internal_status text,
    reference       text,
    -- The filled-in order, without its revision (a column of its own).
    doc             jsonb NOT NULL
);
CREATE INDEX orders_created ON orders (created, id);
CREATE INDEX orders_updated ON orders (updated, id);

CREATE TABLE events (
    order_id uuid NOT NULL REFERENCES orders (id),
    n        bigint GENERATED ALWAYS AS IDENTITY,
    at       bigint NOT NULL,
    event    text NOT NULL,
    detail   text NOT NULL,
    PRIMARY KEY (order_id, n)
);

CREATE TABLE export_states (
    system     text NOT NULL,
    order_id   uuid NOT NULL REFERENCES orders (id),
    state      text NOT NULL CHECK (state IN ('pending', 'written', 'acked')),
    sort       bigint NOT NULL,
    file       text,
    written_at bigint,
    acked_at   bigint,
    revision   integer,
    PRIMARY KEY (system, order_id)
);
-- A state's listing (pending: oldest created first; written/acked: oldest
-- first), paged by (sort, order_id).
CREATE INDEX export_states_listing ON export_states (system, state, sort, order_id);

-- Kept counts: `status` reads them, never counts rows.
CREATE TABLE state_counts (
    system text NOT NULL,
    state  text NOT NULL CHECK (state IN ('pending', 'written', 'acked')),
    n      bigint NOT NULL,
    PRIMARY KEY (system, state)
);

CREATE TABLE notes (
    order_id uuid NOT NULL REFERENCES orders (id),
    system   text NOT NULL,
    sha256   bytea NOT NULL CHECK (length(sha256) = 32),
    PRIMARY KEY (order_id, system, sha256)
);

CREATE TABLE stock (
    sku      text PRIMARY KEY,
    in_stock bigint,
    reserved bigint
);

-- A file applied: the same name with the same content is never applied
-- twice, even by two processes (the primary key is the guarantee).
CREATE TABLE applied_files (
    name   text NOT NULL,
    sha256 bytea NOT NULL CHECK (length(sha256) = 32),
    at     bigint NOT NULL,
    kind   text NOT NULL,
    PRIMARY KEY (name, sha256)
);

-- A big file part-applied in chunks: how many of its items are in.
CREATE TABLE file_progress (
    name   text NOT NULL,
    sha256 bytea NOT NULL CHECK (length(sha256) = 32),
    orders bigint NOT NULL,
    PRIMARY KEY (name, sha256)
);

CREATE TABLE export_sequences (
    system text PRIMARY KEY,
    last   bigint NOT NULL CHECK (last >= 0)
);

-- Export files recorded, not yet known to be written.
CREATE TABLE export_batches (
    system  text NOT NULL,
    seq     bigint NOT NULL,
    file    text NOT NULL,
    orders  jsonb NOT NULL,
    size    bigint,
    sha256  text,
    PRIMARY KEY (system, seq)
);

-- The eligibility settings of a system last reconciled.
CREATE TABLE system_settings (
    system   text PRIMARY KEY,
    settings text NOT NULL
);
