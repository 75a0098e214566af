//! STUB until the ELF closure module lands.
use std::path::{Path, PathBuf};
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ElfFile { pub dest: PathBuf, pub src: PathBuf }
#[derive(Debug, thiserror::Error)]
pub enum ElfError { #[error("--binary: not implemented yet")] Todo }
pub fn resolve_closure(_sysroot: &Path, _binaries: &[PathBuf]) -> Result<Vec<ElfFile>, ElfError> { Err(ElfError::Todo) }
