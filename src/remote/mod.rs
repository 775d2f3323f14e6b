//! Partners who host their own SFTP server (`[[remotes]]`, issue 23): the
//! connection to one ([`session`]) and its host-key check
//! ([`known_hosts`]). The pull and push rules and the ledger come next
//! (ARCHITECTURE.md, "Next: partner SFTP").

pub mod known_hosts;
pub mod session;
