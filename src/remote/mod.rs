//! Partners who host their own SFTP server (`[[remotes]]`): the connection
//! to one ([`session`]) and its host-key check ([`known_hosts`]), the rules
//! of a pull and a push over the store's ledger ([`transfer`]), a thread
//! per remote ([`task`]), and where each stands ([`status`]).

pub mod known_hosts;
pub mod session;
pub mod status;
pub mod task;
pub mod transfer;
