-- Version 3: indexes so that an HTTP GET (`GET /v10/orders/export`) with a
-- selective filter reads only the orders it may send
-- (src/store/postgres/candidates.rs). They only narrow the candidates:
-- ordersync's filters decide every one, in Rust.
--
-- A filter compares a text field lower-cased by Rust (`to_lowercase`). The
-- database's `lower` follows its locale (and a Turkish one lower-cases "I"
-- to a dotless i), so the indexes hold the one lower case both sides agree
-- on: an all-ASCII value with A-Z made a-z ("C" collation), and NULL for
-- any other value, which the queries always let through. "All ASCII" is a
-- regular expression, not a comparison of lengths, so that it holds in a
-- database of any encoding (in LATIN1 or SQL_ASCII a non-ASCII character
-- is one byte long). A missing value folds as the empty string, as a
-- filter reads it.
CREATE FUNCTION ordersync_fold(value text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
        SELECT CASE WHEN coalesce(value, '') !~ '[^\x01-\x7f]'
                    THEN lower(coalesce(value, '') COLLATE "C") END
    $$;

-- One per text filter key, compared in "C" (byte order, as Rust compares
-- strings): eq, in, gt, gte, lt, lte, bt and sw are index scans. The time
-- keys have theirs (orders_created, orders_updated).
CREATE INDEX orders_fold_reference ON orders ((ordersync_fold(reference) COLLATE "C"));
CREATE INDEX orders_fold_external_id ON orders ((ordersync_fold(external_id) COLLATE "C"));
CREATE INDEX orders_fold_channel ON orders ((ordersync_fold(channel) COLLATE "C"));
CREATE INDEX orders_fold_type ON orders ((ordersync_fold(type) COLLATE "C"));
CREATE INDEX orders_fold_currency ON orders ((ordersync_fold(currency) COLLATE "C"));
CREATE INDEX orders_fold_status ON orders ((ordersync_fold(status) COLLATE "C"));
CREATE INDEX orders_fold_internal_status ON orders ((ordersync_fold(internal_status) COLLATE "C"));

-- The statistics of the new index expressions, without which the planner
-- guesses that any value matches 1 order in 200 and reads the whole
-- listing instead of the index (autovacuum gathers them only after a
-- tenth of the table has changed, which may take long in a big store).
-- Only for a table analyzed before: statistics saying "no rows" in a new
-- store make its first big load three times slower (measured: 100,000
-- orders with `run --once`, 28 s without, 83 s with them), until
-- autovacuum analyzes it again.
DO $$
BEGIN
    IF (SELECT reltuples > 0 FROM pg_class WHERE oid = 'orders'::regclass) THEN
        ANALYZE orders;
    END IF;
END
$$;
