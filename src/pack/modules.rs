//! STUB until the module closure lands.
use std::path::PathBuf;
pub struct ModuleRequest { pub kdir: PathBuf, pub names: Vec<String>, pub keep_compressed: bool, pub firmware_dirs: Vec<PathBuf> }
pub struct ModuleFile { pub dest: PathBuf, pub data: Vec<u8> }
pub struct FirmwareFile { pub dest: PathBuf, pub src: PathBuf }
pub struct ModulePlan { pub release: String, pub modules: Vec<ModuleFile>, pub firmware: Vec<FirmwareFile>, pub builtin_skipped: Vec<String>, pub manifest: String }
#[derive(Debug, thiserror::Error)]
pub enum ModuleError { #[error("modules: not implemented yet")] Todo }
pub fn resolve_modules(_req: &ModuleRequest) -> Result<ModulePlan, ModuleError> { Err(ModuleError::Todo) }
