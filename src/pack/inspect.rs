//! STUB until inspect lands.
use std::path::Path;
#[derive(Debug, thiserror::Error)]
pub enum InspectError { #[error("inspect: not implemented yet")] Todo }
pub struct Segment;
#[derive(Debug)] pub struct ExtractSummary;
pub fn read_segments(_image: &Path) -> Result<Vec<Segment>, InspectError> { Err(InspectError::Todo) }
pub fn format_listing(_s: &[Segment]) -> String { String::new() }
pub fn extract(_image: &Path, _dest: &Path) -> Result<ExtractSummary, InspectError> { Err(InspectError::Todo) }
pub fn cat(_image: &Path, _path: &str) -> Result<Vec<u8>, InspectError> { Err(InspectError::Todo) }
