//! STUB until the by-* naming module lands.
use std::io::{Read, Seek};
use std::path::Path;
#[derive(Debug, Clone, Default)]
pub struct BlockInfo { pub kname: String, pub parent: Option<String>, pub partnum: Option<u32>, pub serial: Option<String>, pub wwid: Option<String>, pub model: Option<String>, pub vendor: Option<String>, pub devpath: String, pub subsystem_hint: Option<String> }
#[derive(Debug, Clone, Default)]
pub struct Probe { pub fs_type: Option<String>, pub fs_uuid: Option<String>, pub fs_label: Option<String>, pub part_uuid: Option<String>, pub part_label: Option<String> }
#[derive(Debug, Clone)]
pub struct GptPart { pub number: u32, pub part_uuid: String, pub part_label: String }
pub fn read_block_infos(_sysfs: &Path) -> std::io::Result<Vec<BlockInfo>> { Ok(vec![]) }
pub fn probe_fs<R: Read + Seek>(_r: &mut R) -> std::io::Result<Probe> { Ok(Probe::default()) }
pub fn read_gpt<R: Read + Seek>(_r: &mut R) -> std::io::Result<Option<Vec<GptPart>>> { Ok(None) }
pub fn link_names(_info: &BlockInfo, _probe: &Probe) -> Vec<(String, String)> { vec![] }
pub fn create_links(_dev: &Path, _links: &[(String, String)]) -> std::io::Result<usize> { Ok(0) }
