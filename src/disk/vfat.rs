//! STUB until the vfat module lands.
use std::io::{Read, Seek, Write};
pub struct VfatOptions { pub label: Option<String>, pub volume_id: u32, pub fat32: bool, pub hidden_sectors: u32 }
#[derive(Debug, thiserror::Error)]
pub enum VfatError { #[error("vfat: not implemented yet")] Todo }
pub fn format<D: Read + Write + Seek>(_dev: &mut D, _len: u64, _opts: &VfatOptions) -> Result<(), VfatError> { Err(VfatError::Todo) }
