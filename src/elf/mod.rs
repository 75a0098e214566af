//! Reading ELF files, for the packer: the parts the dynamic loader looks at (for the
//! shared-library closure of `--binary`) and the `.modinfo` section of kernel modules.
//!
//! Everything goes through goblin. For the loader's view only the ELF header, the program
//! headers, the dynamic segment and the dynamic string table are read, as the loader does;
//! for `.modinfo` only the section headers and the section name table. Symbol tables are never
//! parsed. `.modinfo` is read with goblin too rather than by hand: goblin handles both
//! endiannesses, both classes and extended section numbering, and the section lookup measured
//! about 2 KiB of code in the release binary, no more than a hand-rolled section reader.

use std::fs;
use std::io::{self, Read};
use std::path::Path;

use goblin::container::Ctx;
use goblin::elf::dynamic::{Dynamic, DF_1_NODEFLIB, DT_NEEDED, DT_RPATH, DT_RUNPATH, DT_SONAME};
use goblin::elf::header::{EI_CLASS, EI_DATA};
use goblin::elf::program_header::{ProgramHeader, PT_INTERP};
use goblin::elf::section_header::{SectionHeader, SHN_XINDEX, SHT_NOBITS};
use goblin::elf::Elf;

pub use goblin::elf::header::{ELFCLASS64, EM_386, EM_AARCH64, EM_ARM, EM_X86_64};

/// Why bytes could not be read as ELF.
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    /// No ELF magic at all.
    #[error("not an ELF file")]
    NotElf,
    /// ELF magic, but the structure is broken (bad offsets or sizes in its headers).
    #[error("malformed elf: {0}")]
    Malformed(String),
}

/// What the loader needs to know about one ELF object.
#[derive(Debug, Clone, Default)]
pub struct ElfInfo {
    /// Class, byte order and machine: libraries must match the requester.
    pub kind: ElfKind,
    /// `PT_INTERP`, if any.
    pub interpreter: Option<String>,
    /// `DT_SONAME`, if any.
    pub soname: Option<String>,
    /// `DT_NEEDED` entries, in order.
    pub needed: Vec<String>,
    /// `DT_RPATH` entries (each a colon-separated list).
    pub rpath: Vec<String>,
    /// `DT_RUNPATH` entries (each a colon-separated list).
    pub runpath: Vec<String>,
    /// `DF_1_NODEFLIB`: do not search the default directories.
    pub nodeflib: bool,
}

/// The identity a library must share with the object that loads it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ElfKind {
    /// `EI_CLASS` (1 = 32-bit, 2 = 64-bit).
    pub class: u8,
    /// `EI_DATA` (1 = little endian, 2 = big endian).
    pub data: u8,
    /// `e_machine`.
    pub machine: u16,
}

/// True if `bytes` starts with the ELF magic.
pub fn has_elf_magic(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x7fELF")
}

/// Parse the parts of an ELF file the dynamic loader looks at.
pub fn parse_elf(bytes: &[u8]) -> Result<ElfInfo, ElfError> {
    if !has_elf_magic(bytes) {
        return Err(ElfError::NotElf);
    }
    let malformed = |e: goblin::error::Error| ElfError::Malformed(e.to_string());
    let header = Elf::parse_header(bytes).map_err(malformed)?;
    let container = header.container().map_err(malformed)?;
    let endian = header.endianness().map_err(malformed)?;
    let ctx = Ctx::new(container, endian);
    let phoff =
        usize::try_from(header.e_phoff).map_err(|_| bad("program header offset out of range"))?;
    let phdrs =
        ProgramHeader::parse(bytes, phoff, usize::from(header.e_phnum), ctx).map_err(malformed)?;
    let mut info = ElfInfo {
        kind: ElfKind {
            class: header.e_ident[EI_CLASS],
            data: header.e_ident[EI_DATA],
            machine: header.e_machine,
        },
        interpreter: read_interpreter(bytes, &phdrs)?,
        ..ElfInfo::default()
    };
    if let Some(dynamic) = Dynamic::parse(bytes, &phdrs, ctx).map_err(malformed)? {
        read_dynamic(bytes, &dynamic, &mut info)?;
    }
    Ok(info)
}

/// Shorthand for a [`ElfError::Malformed`] with a fixed message.
fn bad(reason: &str) -> ElfError {
    ElfError::Malformed(reason.to_string())
}

/// The `PT_INTERP` string, if the file has one.
fn read_interpreter(bytes: &[u8], phdrs: &[ProgramHeader]) -> Result<Option<String>, ElfError> {
    let Some(ph) = phdrs.iter().find(|ph| ph.p_type == PT_INTERP) else {
        return Ok(None);
    };
    let start = usize::try_from(ph.p_offset).map_err(|_| bad("PT_INTERP offset out of range"))?;
    let len = usize::try_from(ph.p_filesz).map_err(|_| bad("PT_INTERP size out of range"))?;
    let end = start
        .checked_add(len)
        .ok_or_else(|| bad("PT_INTERP out of range"))?;
    let raw = bytes
        .get(start..end)
        .ok_or_else(|| bad("PT_INTERP beyond end of file"))?;
    let raw = raw.split(|&b| b == 0).next().unwrap_or_default();
    let interp = std::str::from_utf8(raw).map_err(|_| bad("PT_INTERP is not valid UTF-8"))?;
    if interp.is_empty() {
        return Err(bad("empty PT_INTERP"));
    }
    Ok(Some(interp.to_string()))
}

/// Fill the dynamic-section fields of `info`.
fn read_dynamic(bytes: &[u8], dynamic: &Dynamic, info: &mut ElfInfo) -> Result<(), ElfError> {
    let strtab = StrTab {
        bytes,
        start: dynamic.info.strtab,
        size: dynamic.info.strsz,
    };
    info.nodeflib = dynamic.info.flags_1 & DF_1_NODEFLIB != 0;
    for entry in &dynamic.dyns {
        let tag = entry.d_tag;
        if tag != DT_NEEDED && tag != DT_RPATH && tag != DT_RUNPATH && tag != DT_SONAME {
            continue;
        }
        let value = strtab
            .get(entry.d_val)
            .ok_or_else(|| bad("dynamic entry points outside the string table"))?;
        match tag {
            DT_NEEDED => info.needed.push(value),
            DT_RPATH => info.rpath.push(value),
            DT_RUNPATH => info.runpath.push(value),
            _ => info.soname = Some(value),
        }
    }
    Ok(())
}

/// The dynamic string table (`DT_STRTAB`/`DT_STRSZ`), read defensively.
struct StrTab<'a> {
    bytes: &'a [u8],
    start: usize,
    size: usize,
}

impl StrTab<'_> {
    /// The NUL-terminated string at `offset`, if it lies inside the table.
    fn get(&self, offset: u64) -> Option<String> {
        let offset = usize::try_from(offset).ok()?;
        if offset >= self.size {
            return None;
        }
        let end = self.start.checked_add(self.size)?.min(self.bytes.len());
        let from = self.start.checked_add(offset)?;
        let tail = self.bytes.get(from..end)?;
        let nul = tail.iter().position(|&b| b == 0)?;
        std::str::from_utf8(&tail[..nul]).ok().map(str::to_string)
    }
}

/// Read the ELF identity of a candidate library without reading it all.
pub fn read_kind(path: &Path) -> Option<ElfKind> {
    let mut head = [0u8; 64];
    let mut file = fs::File::open(path).ok()?;
    let mut filled = 0;
    while filled < head.len() {
        match file.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        }
    }
    let head = &head[..filled];
    if !has_elf_magic(head) {
        return None;
    }
    let header = Elf::parse_header(head).ok()?;
    Some(ElfKind {
        class: header.e_ident[EI_CLASS],
        data: header.e_ident[EI_DATA],
        machine: header.e_machine,
    })
}

// ---------------------------------------------------------------------------
// Sections: .modinfo
// ---------------------------------------------------------------------------

/// The bytes of the section called `name`; `None` when the file has no section table or no
/// such section (an `SHT_NOBITS` section is empty).
pub fn section<'a>(bytes: &'a [u8], name: &str) -> Result<Option<&'a [u8]>, ElfError> {
    if !has_elf_magic(bytes) {
        return Err(ElfError::NotElf);
    }
    let malformed = |e: goblin::error::Error| ElfError::Malformed(e.to_string());
    let header = Elf::parse_header(bytes).map_err(malformed)?;
    let ctx = Ctx::new(
        header.container().map_err(malformed)?,
        header.endianness().map_err(malformed)?,
    );
    let shoff =
        usize::try_from(header.e_shoff).map_err(|_| bad("section header offset out of range"))?;
    // goblin takes the section count from section header 0 when e_shnum is 0 (extended
    // numbering); the name table index is there too when e_shstrndx is SHN_XINDEX.
    let sections =
        SectionHeader::parse(bytes, shoff, usize::from(header.e_shnum), ctx).map_err(malformed)?;
    let Some(first) = sections.first() else {
        return Ok(None);
    };
    let strndx = if u32::from(header.e_shstrndx) == SHN_XINDEX {
        first.sh_link as usize
    } else {
        usize::from(header.e_shstrndx)
    };
    let strtab = sections.get(strndx).ok_or_else(|| {
        ElfError::Malformed(format!(
            "section name table index {strndx} is out of range ({} sections)",
            sections.len()
        ))
    })?;
    let names = slice(bytes, strtab.sh_offset, strtab.sh_size)?;
    for sec in &sections {
        let at = sec.sh_name;
        let here = names.get(at..).unwrap_or_default();
        if here.split(|&b| b == 0).next().unwrap_or_default() != name.as_bytes() {
            continue;
        }
        if sec.sh_type == SHT_NOBITS {
            return Ok(Some(&[]));
        }
        return slice(bytes, sec.sh_offset, sec.sh_size).map(Some);
    }
    Ok(None)
}

/// `len` bytes at `off`, bounds-checked.
fn slice(bytes: &[u8], off: u64, len: u64) -> Result<&[u8], ElfError> {
    usize::try_from(off)
        .ok()
        .zip(usize::try_from(len).ok())
        .and_then(|(o, l)| bytes.get(o..o.checked_add(l)?))
        .ok_or_else(|| {
            ElfError::Malformed(format!(
                "section of {len} bytes at offset {off} is past the end"
            ))
        })
}

/// The `key=value` entries of a kernel module's `.modinfo` section, in order. Data that is
/// not ELF (or has no `.modinfo`) yields no entries.
pub fn modinfo(bytes: &[u8]) -> Result<Vec<(String, String)>, ElfError> {
    let section = match section(bytes, ".modinfo") {
        Ok(Some(section)) => section,
        Ok(None) | Err(ElfError::NotElf) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(section
        .split(|&b| b == 0)
        .filter(|rec| !rec.is_empty())
        .filter_map(|rec| {
            let rec = String::from_utf8_lossy(rec);
            let (k, v) = rec.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect())
}
