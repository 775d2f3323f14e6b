-- Version 6: the ledger of partner transfers (`[[remotes]]`): what was
-- pulled from a partner's SFTP server (by remote path) and pushed to it (by
-- `system/file`), and how far each transfer got, so that one interrupted at
-- any instant is finished or redone, never done twice. `record` is the
-- transfer: its stage (pulled, done, pushing, renaming, pushed), size,
-- remote mtime, SHA-256, temporary and final names, and when.
CREATE TABLE transfers (
    remote    text NOT NULL,
    direction text NOT NULL CHECK (direction IN ('pull', 'push')),
    name      text NOT NULL,
    record    jsonb NOT NULL,
    PRIMARY KEY (remote, direction, name)
);

-- What a remote resumes when it connects: its transfers not finished, found
-- without reading its history.
CREATE INDEX transfers_unfinished ON transfers (remote)
    WHERE record->>'stage' NOT IN ('done', 'pushed');
