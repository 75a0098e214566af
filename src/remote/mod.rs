//! Remote access to the deploy image, shared by the workstation (`anemos deploy`, `anemos
//! watch`), the server (`anemos kexec --access`) and the init: operator and host keys, the
//! access bundle that carries them, and the state/control files a watcher reads and writes.

pub mod bundle;
pub mod keys;
pub mod state;
