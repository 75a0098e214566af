//! In-memory model of an initramfs tree and its deterministic newc cpio encoding.
//!
//! Entries are kept in a `BTreeMap` keyed by the normalised path ("usr/bin/x"), so the
//! archive is always written sorted with parents before children (a path's parent is a
//! prefix of it and therefore sorts first). Inode numbers are assigned from that order,
//! owners default to 0 and every mtime comes from one value (`SOURCE_DATE_EPOCH` or 0),
//! so the same inputs give a byte-identical archive.
//!
//! The newc headers are produced by the `cpio` crate. Its `Writer::finish` returns Ok after a
//! short write (it does not check how many bytes the inner writer took), so we count the bytes
//! ourselves.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use cpio::newc::{Builder, ModeFileType};

/// newc stores sizes as 8 hex digits: 4 GiB - 1 is the largest file it can hold.
pub const NEWC_MAX_FILE: u64 = u32::MAX as u64;

/// Errors while building or writing an archive. Each names the entry or source it concerns.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{origin}: path {path:?} escapes the image root (\"..\" component)")]
    Escapes { origin: String, path: String },
    #[error("{origin}: {path} is {size} bytes, over the newc format's 4 GiB per-file limit")]
    TooLarge {
        origin: String,
        path: String,
        size: u64,
    },
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} changed while packing: expected {expected} bytes, read {actual}")]
    Changed {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    #[error("writing the archive")]
    Write(#[source] io::Error),
    #[error("{origin}: symlink loop while resolving {path}")]
    SymlinkLoop { origin: String, path: String },
}

pub type Result<T> = std::result::Result<T, ArchiveError>;

/// Where a regular file's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    /// Read from this host path at write time (size checked against `len`).
    Path { path: PathBuf, len: u64 },
    /// Held in memory.
    Bytes(Vec<u8>),
}

/// The kind of an archive entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File(Data),
    Symlink(String),
    Char(u32, u32),
    Block(u32, u32),
    Fifo,
    Socket,
}

/// One entry: kind plus metadata. `perm` holds the permission bits only (0o7777).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: Kind,
    pub perm: u32,
    pub uid: u32,
    pub gid: u32,
    /// Entries with the same `Some(key)` are hard links to one file.
    pub link_group: Option<u64>,
}

impl Node {
    /// Owned by root, not hard-linked.
    fn of(kind: Kind, perm: u32) -> Node {
        Node {
            kind,
            perm,
            uid: 0,
            gid: 0,
            link_group: None,
        }
    }
    pub fn dir(perm: u32) -> Node {
        Node::of(Kind::Dir, perm)
    }
    pub fn file(data: Data, perm: u32) -> Node {
        Node::of(Kind::File(data), perm)
    }
    pub fn symlink(target: &str) -> Node {
        Node::of(Kind::Symlink(target.to_string()), 0o777)
    }
    pub fn char_dev(major: u32, minor: u32, perm: u32) -> Node {
        Node::of(Kind::Char(major, minor), perm)
    }
}

/// Normalises a destination path inside the image: strips leading `/` and `./`, drops `.`
/// components, rejects `..`. Returns "" for the root itself.
pub fn normalize(origin: &str, path: &str) -> Result<String> {
    let mut parts = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                return Err(ArchiveError::Escapes {
                    origin: origin.into(),
                    path: path.into(),
                })
            }
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
        }
    }
    Ok(parts.join("/"))
}

/// Statistics returned by [`Archive::write`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriteStats {
    pub entries: usize,
    pub bytes: u64,
}

/// A deterministic initramfs tree.
#[derive(Debug, Default, Clone)]
pub struct Archive {
    nodes: BTreeMap<String, Node>,
    next_group: u64,
}

impl Archive {
    pub fn new() -> Archive {
        Archive::default()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The entry at `path` (normalised form), if any.
    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    /// Iterates over entries in archive order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Node)> {
        self.nodes.iter()
    }

    /// A fresh hard-link group key.
    pub fn new_link_group(&mut self) -> u64 {
        self.next_group += 1;
        self.next_group
    }

    /// Inserts `node` at `path` (any form; normalised here), creating missing parent
    /// directories (0755). A parent that is a symlink inside the archive (e.g. `lib -> usr/lib`
    /// from a merged-/usr rootfs) is followed, so the entry lands where the kernel would put it.
    /// A later insert at the same path replaces the earlier one, except that an existing
    /// directory is kept (with its metadata updated) when a directory is inserted again.
    pub fn insert(&mut self, origin: &str, path: &str, node: Node) -> Result<String> {
        let norm = normalize(origin, path)?;
        if norm.is_empty() {
            return Ok(norm);
        }
        let resolved = self.resolve_parents(origin, &norm)?;
        self.ensure_dirs(&resolved);
        self.nodes.insert(resolved.clone(), node);
        Ok(resolved)
    }

    /// Creates `path` and its parents as directories if missing.
    pub fn mkdir_p(&mut self, origin: &str, path: &str) -> Result<String> {
        let norm = normalize(origin, path)?;
        if norm.is_empty() {
            return Ok(norm);
        }
        let resolved = self.resolve_parents(origin, &norm)?;
        self.ensure_dirs(&resolved);
        self.nodes
            .entry(resolved.clone())
            .or_insert_with(|| Node::dir(0o755));
        Ok(resolved)
    }

    fn ensure_dirs(&mut self, path: &str) {
        let mut end = 0;
        while let Some(i) = path[end..].find('/') {
            let parent = &path[..end + i];
            self.nodes
                .entry(parent.to_string())
                .or_insert_with(|| Node::dir(0o755));
            end += i + 1;
        }
    }

    /// Rewrites `path` so that no proper prefix of it is a symlink in the archive.
    fn resolve_parents(&self, origin: &str, path: &str) -> Result<String> {
        let mut current = path.to_string();
        for _ in 0..32 {
            let mut changed = false;
            let comps: Vec<&str> = current.split('/').collect();
            for i in 1..comps.len() {
                let prefix = comps[..i].join("/");
                if let Some(Node {
                    kind: Kind::Symlink(target),
                    ..
                }) = self.nodes.get(&prefix)
                {
                    let base = if target.starts_with('/') {
                        String::new()
                    } else {
                        comps[..i - 1].join("/")
                    };
                    let joined = format!("{}/{}/{}", base, target, comps[i..].join("/"));
                    current = normalize_lexically(&joined);
                    changed = true;
                    break;
                }
            }
            if !changed {
                return Ok(current);
            }
        }
        Err(ArchiveError::SymlinkLoop {
            origin: origin.into(),
            path: path.into(),
        })
    }

    /// Writes the archive as newc cpio (with trailer) to `out`. `mtime` is used for every entry.
    pub fn write<W: Write>(&self, out: W, mtime: u32) -> Result<WriteStats> {
        let mut out = CountingWriter {
            inner: out,
            count: 0,
        };
        // Hard-link groups: every member shares the first member's inode; the data goes with
        // the last member (GNU cpio's convention, which the kernel also accepts).
        let mut group_ino: BTreeMap<u64, (u32, u32, String)> = BTreeMap::new();
        let mut ino: u32 = 0;
        for (path, node) in &self.nodes {
            ino += 1;
            if let Some(g) = node.link_group {
                let e = group_ino.entry(g).or_insert((ino, 0, path.clone()));
                e.1 += 1;
                e.2 = path.clone();
            }
        }
        let mut ino: u32 = 0;
        for (path, node) in &self.nodes {
            ino += 1;
            let (this_ino, nlink, carries_data) =
                match node.link_group.and_then(|g| group_ino.get(&g)) {
                    Some((first, count, last)) if *count > 1 => (*first, *count, last == path),
                    _ => (ino, if node.kind == Kind::Dir { 2 } else { 1 }, true),
                };
            let mut b = Builder::new(path)
                .ino(this_ino)
                .uid(node.uid)
                .gid(node.gid)
                .nlink(nlink)
                .mtime(mtime)
                .mode(node.perm & 0o7777);
            let (ft, body): (ModeFileType, Option<&Data>) = match &node.kind {
                Kind::Dir => (ModeFileType::Directory, None),
                Kind::File(d) => (
                    ModeFileType::Regular,
                    if carries_data { Some(d) } else { None },
                ),
                Kind::Symlink(_) => (ModeFileType::Symlink, None),
                Kind::Char(ma, mi) => {
                    b = b.rdev_major(*ma).rdev_minor(*mi);
                    (ModeFileType::Char, None)
                }
                Kind::Block(ma, mi) => {
                    b = b.rdev_major(*ma).rdev_minor(*mi);
                    (ModeFileType::Block, None)
                }
                Kind::Fifo => (ModeFileType::Fifo, None),
                Kind::Socket => (ModeFileType::Socket, None),
            };
            b = b.set_mode_file_type(ft);
            match (&node.kind, body) {
                (Kind::Symlink(t), _) => write_bytes(b, &mut out, t.as_bytes())?,
                (_, Some(Data::Bytes(bytes))) => write_bytes(b, &mut out, bytes)?,
                (_, Some(Data::Path { path: src, len })) => {
                    write_path(b, &mut out, path, src, *len)?
                }
                (_, None) => write_bytes(b, &mut out, &[])?,
            }
        }
        cpio::newc::trailer(&mut out).map_err(ArchiveError::Write)?;
        out.flush().map_err(ArchiveError::Write)?;
        Ok(WriteStats {
            entries: self.nodes.len(),
            bytes: out.count,
        })
    }
}

fn normalize_lexically(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    parts.join("/")
}

fn write_bytes<W: Write>(b: Builder, out: &mut W, data: &[u8]) -> Result<()> {
    let size = u32::try_from(data.len()).map_err(|_| ArchiveError::TooLarge {
        origin: "archive".into(),
        path: "(in-memory entry)".into(),
        size: data.len() as u64,
    })?;
    let mut w = b.write(out, size);
    w.write_all(data).map_err(ArchiveError::Write)?;
    w.finish().map_err(ArchiveError::Write)?;
    Ok(())
}

fn write_path<W: Write>(b: Builder, out: &mut W, dest: &str, src: &Path, len: u64) -> Result<()> {
    let size = u32::try_from(len).map_err(|_| ArchiveError::TooLarge {
        origin: src.display().to_string(),
        path: dest.into(),
        size: len,
    })?;
    let f = File::open(src).map_err(|e| ArchiveError::Read {
        path: src.into(),
        source: e,
    })?;
    let mut w = b.write(out, size);
    // Copy at most `len` bytes and then check that exactly `len` arrived: the cpio crate would
    // otherwise accept a short body silently.
    let mut limited = f.take(len);
    let copied = io::copy(&mut limited, &mut w).map_err(|e| ArchiveError::Read {
        path: src.into(),
        source: e,
    })?;
    let mut probe = [0u8; 1];
    let extra = limited.into_inner().read(&mut probe).unwrap_or(0);
    if copied != len || extra != 0 {
        return Err(ArchiveError::Changed {
            path: src.into(),
            expected: len,
            actual: copied + extra as u64,
        });
    }
    w.finish().map_err(ArchiveError::Write)?;
    Ok(())
}

/// A writer that counts the bytes passed through it.
pub struct CountingWriter<W> {
    pub inner: W,
    pub count: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn read_back(bytes: &[u8]) -> Vec<(String, u32, u32, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let mut cur = Cursor::new(bytes);
        loop {
            let mut r = cpio::newc::Reader::new(cur).expect("entry");
            if r.entry().is_trailer() {
                break;
            }
            let (name, mode, ino, nlink) = (
                r.entry().name().to_string(),
                r.entry().mode(),
                r.entry().ino(),
                r.entry().nlink(),
            );
            let mut data = Vec::new();
            r.read_to_end(&mut data).expect("data");
            cur = r.finish().expect("finish");
            out.push((name, mode, ino, nlink, data));
        }
        out
    }

    #[test]
    fn normalize_cases() {
        let cases = [
            ("/a/b", "a/b"),
            ("./a//b/", "a/b"),
            ("a/./b", "a/b"),
            ("/", ""),
        ];
        for (input, want) in cases {
            assert_eq!(normalize("t", input).expect(input), want, "case {input}");
        }
        for bad in ["../x", "a/../../x", "/a/.."] {
            let e = normalize("--add", bad).expect_err(bad);
            assert!(e.to_string().contains("escapes"), "{bad}: {e}");
        }
    }

    #[test]
    fn round_trip_preserves_kinds_and_order() {
        let mut a = Archive::new();
        a.insert(
            "t",
            "/usr/bin/tool",
            Node::file(Data::Bytes(b"hello".to_vec()), 0o755),
        )
        .unwrap();
        a.insert("t", "bin", Node::symlink("usr/bin")).unwrap();
        a.insert("t", "dev/console", Node::char_dev(5, 1, 0o600))
            .unwrap();
        a.insert("t", "etc/empty", Node::file(Data::Bytes(vec![]), 0o644))
            .unwrap();
        let mut buf = Vec::new();
        let stats = a.write(&mut buf, 0).unwrap();
        assert_eq!(stats.bytes, buf.len() as u64);
        let got = read_back(&buf);
        let names: Vec<&str> = got.iter().map(|g| g.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "bin",
                "dev",
                "dev/console",
                "etc",
                "etc/empty",
                "usr",
                "usr/bin",
                "usr/bin/tool"
            ]
        );
        let tool = got.iter().find(|g| g.0 == "usr/bin/tool").unwrap();
        assert_eq!(tool.1, 0o100755);
        assert_eq!(tool.4, b"hello");
        let bin = got.iter().find(|g| g.0 == "bin").unwrap();
        assert_eq!(bin.1 & 0o170000, 0o120000);
        assert_eq!(bin.4, b"usr/bin");
        let con = got.iter().find(|g| g.0 == "dev/console").unwrap();
        assert_eq!(con.1, 0o020600);
    }

    #[test]
    fn hard_links_share_inode_and_data_goes_last() {
        let mut a = Archive::new();
        let g = a.new_link_group();
        for p in ["x/a", "x/b"] {
            let mut n = Node::file(Data::Bytes(b"same".to_vec()), 0o644);
            n.link_group = Some(g);
            a.insert("t", p, n).unwrap();
        }
        let mut buf = Vec::new();
        a.write(&mut buf, 0).unwrap();
        let got = read_back(&buf);
        let xa = got.iter().find(|g| g.0 == "x/a").unwrap();
        let xb = got.iter().find(|g| g.0 == "x/b").unwrap();
        assert_eq!(xa.2, xb.2, "same inode");
        assert_eq!((xa.3, xb.3), (2, 2), "nlink");
        assert!(xa.4.is_empty());
        assert_eq!(xb.4, b"same");
    }

    #[test]
    fn parents_follow_archive_symlinks() {
        let mut a = Archive::new();
        a.insert("t", "lib", Node::symlink("usr/lib")).unwrap();
        let p = a
            .insert(
                "t",
                "/lib/x86_64-linux-gnu/libc.so.6",
                Node::file(Data::Bytes(vec![1]), 0o755),
            )
            .unwrap();
        assert_eq!(p, "usr/lib/x86_64-linux-gnu/libc.so.6");
        assert!(matches!(a.get("lib").unwrap().kind, Kind::Symlink(_)));
    }

    #[test]
    fn changed_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"12345").unwrap();
        let mut a = Archive::new();
        a.insert(
            "t",
            "f",
            Node::file(
                Data::Path {
                    path: f.clone(),
                    len: 3,
                },
                0o644,
            ),
        )
        .unwrap();
        let e = a.write(Vec::new(), 0).expect_err("size mismatch");
        assert!(e.to_string().contains("changed while packing"), "{e}");
    }

    #[test]
    fn same_input_same_bytes() {
        let build = || {
            let mut a = Archive::new();
            a.insert("t", "b/c", Node::file(Data::Bytes(b"c".to_vec()), 0o644))
                .unwrap();
            a.insert("t", "a", Node::dir(0o700)).unwrap();
            let mut buf = Vec::new();
            a.write(&mut buf, 1234).unwrap();
            buf
        };
        assert_eq!(build(), build());
    }
}
