-- Version 2: what the daemon needs to run on PostgreSQL, beyond the dump.
--
-- Timeline events get their number from ordersync (in blocks of 1,024 from
-- `event_blocks`, so an event costs no round trip), not from an identity:
-- numbers only order one order's events.
ALTER TABLE events ALTER COLUMN n DROP IDENTITY;
CREATE SEQUENCE event_blocks;

-- The kept count of stored orders (`status` reads it, never counts rows).
CREATE TABLE order_count (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    n   bigint NOT NULL
);
INSERT INTO order_count (n) SELECT count(*) FROM orders;

-- An external id moves from one order to another within one group's
-- transaction (an update renames it, a new order takes the old name):
-- unique at its end, not at every statement.
ALTER TABLE orders DROP CONSTRAINT orders_external_id_key;
ALTER TABLE orders ADD CONSTRAINT orders_external_id_key
    UNIQUE (external_id) DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE orders DROP CONSTRAINT orders_external_uuid_key;
ALTER TABLE orders ADD CONSTRAINT orders_external_uuid_key
    UNIQUE (external_uuid) DEFERRABLE INITIALLY DEFERRED;
