//! The `ls -l` style listing of `anemos inspect`.

use super::{
    EntryInfo, Segment, S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK,
};

pub(super) fn segment_header(index: usize, segment: &Segment) -> String {
    format!(
        "segment {index}: offset 0x{:x}, {}, {} entries, {} bytes uncompressed ({} bytes in image)",
        segment.offset,
        segment.compression,
        segment.entries.len(),
        segment.uncompressed_size,
        segment.compressed_len
    )
}

pub(super) fn entry_line(entry: &EntryInfo) -> String {
    let size = match entry.file_type() {
        S_IFCHR | S_IFBLK => format!("{},{:>4}", entry.rdev.0, entry.rdev.1),
        _ => entry.size.to_string(),
    };
    let mut line = format!(
        "{} {:>4} {:>4} {:>9} {}",
        mode_string(entry.mode),
        entry.uid,
        entry.gid,
        size,
        entry.path
    );
    if let Some(target) = &entry.link_target {
        line.push_str(" -> ");
        line.push_str(target);
    }
    line
}

/// `ls -l` style mode string, e.g. `drwxr-xr-x`.
pub(super) fn mode_string(mode: u32) -> String {
    let kind = match mode & S_IFMT {
        S_IFREG => '-',
        S_IFDIR => 'd',
        S_IFLNK => 'l',
        S_IFCHR => 'c',
        S_IFBLK => 'b',
        S_IFIFO => 'p',
        S_IFSOCK => 's',
        _ => '?',
    };
    let mut s = String::with_capacity(10);
    s.push(kind);
    for (shift, special, special_char) in [(6, 0o4000, 's'), (3, 0o2000, 's'), (0, 0o1000, 't')] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        let exec = bits & 1 != 0;
        s.push(match (mode & special != 0, exec) {
            (true, true) => special_char,
            (true, false) => special_char.to_ascii_uppercase(),
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    s
}

pub(super) fn kind_name(mode: u32) -> &'static str {
    match mode & S_IFMT {
        S_IFREG => "regular file",
        S_IFDIR => "directory",
        S_IFLNK => "symlink",
        S_IFCHR => "character device",
        S_IFBLK => "block device",
        S_IFIFO => "fifo",
        S_IFSOCK => "socket",
        _ => "file of unknown type",
    }
}
