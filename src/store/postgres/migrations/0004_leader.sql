-- The leader's lease of an active/standby pair (`[cluster]`): one row,
-- taken by a node when it has expired, renewed by its holder, and checked
-- by every write transaction of the holder (the fence). Times are the
-- server's clock only: the nodes' clocks never decide.
CREATE TABLE leader (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    node text NOT NULL,
    epoch bigint NOT NULL CHECK (epoch > 0),
    expires timestamptz NOT NULL,
    since timestamptz NOT NULL
);
