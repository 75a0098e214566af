//! Downloading a rootfs archive over plain HTTP. [`Download`] is a `Read` over the response
//! body that survives dropped connections: it reconnects with `Range:` from the byte it got to
//! (retries with backoff; a server that ignores Range is read from the start and the bytes we
//! already have are skipped), hashes everything it hands out, and logs progress. Two uses:
//! - into RAM before anything destructive ([`download`]), verified against the sha256 first;
//! - streamed straight into the unpack for archives that do not fit in RAM; the hash is then
//!   checked when the stream ends ([`Download::finish`]).
//!
//! [`choose_mode`] decides between them from `install.download` and the sizes.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};

/// host, port, path of an http:// URL. Pure.
pub fn parse_url(url: &str) -> Result<(String, u16, String)> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        if url.starts_with("https://") {
            anyhow!("{url}: https is not supported by the deploy image; use http:// — the sha256 in anemos.toml protects the content")
        } else {
            anyhow!("{url}: only http:// URLs are supported")
        }
    })?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>()
                .map_err(|_| anyhow!("{url}: bad port {p:?}"))?,
        ),
        None => (hostport, 80),
    };
    if host.is_empty() {
        bail!("{url}: no host");
    }
    Ok((host.to_string(), port, path.to_string()))
}

/// Longest response head accepted: a server sending endless header lines is refused instead
/// of filling the deploy image's RAM.
pub const MAX_HEAD: usize = 64 << 10;

/// Reads a response head up to its empty line (not included), at most [`MAX_HEAD`] bytes;
/// the body starts right after it in `r`.
pub fn read_head<R: BufRead>(r: &mut R) -> Result<String> {
    let mut head = String::new();
    loop {
        let mut l = String::new();
        let left = (MAX_HEAD + 1).saturating_sub(head.len()) as u64;
        let n = r
            .by_ref()
            .take(left)
            .read_line(&mut l)
            .map_err(|e| anyhow!("reading the response header: {e}"))?;
        if head.len() + l.len() > MAX_HEAD {
            bail!("the response header is longer than {MAX_HEAD} bytes");
        }
        if n == 0 {
            bail!("connection closed before the response header ended");
        }
        if l == "\r\n" || l == "\n" {
            return Ok(head);
        }
        head.push_str(&l);
    }
}

/// Whether a response head announces a chunked body.
pub fn is_chunked(head: &str) -> bool {
    head.lines().any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.to_ascii_lowercase().contains("chunked")
        })
    })
}

/// Status code, Content-Length and Content-Range total from a response head. Pure.
pub fn parse_head(head: &str) -> Result<(u16, Option<u64>, Option<u64>)> {
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| anyhow!("malformed HTTP response"))?;
    let mut len = None;
    let mut total = None;
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let v = v.trim();
        match k.trim().to_ascii_lowercase().as_str() {
            "content-length" => len = v.parse().ok(),
            "content-range" => total = v.rsplit('/').next().and_then(|t| t.parse().ok()),
            _ => {}
        }
    }
    Ok((status, len, total))
}

/// `MemAvailable` from /proc/meminfo, in bytes.
pub fn mem_available(meminfo: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|k| k.parse::<u64>().ok())
        .map(|k| k * 1024)
}

/// How a URL rootfs gets to the unpack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Ram,
    Stream,
}

/// RAM kept free beside a download held in RAM (mkfs, the unpack, the tools).
pub const RAM_MARGIN: u64 = 128 << 20;

/// Pure: RAM or stream for `setting`, given the archive size the server announced and the
/// room in RAM (`MemAvailable` and the free space of the tmpfs it would go to). Returns the
/// mode and a sentence saying why, for the log.
pub fn choose_mode(
    setting: crate::config::Download,
    size: Option<u64>,
    mem_available: u64,
    tmpfs_free: u64,
) -> Result<(Mode, String)> {
    use crate::config::Download as D;
    let room = mem_available.min(tmpfs_free);
    let mib = |b: u64| b >> 20;
    match (setting, size) {
        (D::Stream, _) => Ok((Mode::Stream, "install.download = \"stream\"".into())),
        (D::Ram, None) | (D::Auto, None) => Ok((
            Mode::Ram,
            "the server gave no size; downloading into RAM first (set install.download = \"stream\" for archives larger than RAM)".into(),
        )),
        (setting, Some(n)) if n.saturating_add(RAM_MARGIN) <= room => Ok((
            Mode::Ram,
            format!(
                "{} MiB fits in RAM ({} MiB available){}",
                mib(n),
                mib(room),
                if setting == D::Ram { ", install.download = \"ram\"" } else { "" }
            ),
        )),
        (D::Ram, Some(n)) => bail!(
            "install.download = \"ram\": the archive is {} MiB but only {} MiB of RAM is available (it needs {} MiB more for the deploy); use download = \"auto\" or \"stream\", or give the machine more RAM",
            mib(n),
            mib(room),
            mib(RAM_MARGIN)
        ),
        (D::Auto, Some(n)) => Ok((
            Mode::Stream,
            format!(
                "{} MiB does not fit in RAM ({} MiB available, {} MiB kept free)",
                mib(n),
                mib(room),
                mib(RAM_MARGIN)
            ),
        )),
    }
}

/// A failed connection attempt: worth retrying (network, 5xx) or not (4xx, bad response).
enum ConnError {
    Transient(anyhow::Error),
    Fatal(anyhow::Error),
}

/// The body of an http:// URL as a resumable, hashing `Read`.
pub struct Download {
    url: String,
    host: String,
    port: u16,
    path: String,
    conn: Option<BufReader<TcpStream>>,
    done: u64,
    total: Option<u64>,
    /// Bytes of the current response to discard (a server that ignored Range).
    skip: u64,
    hasher: Sha256,
    retries: u32,
    attempt: u32,
    start: Instant,
    last: Instant,
}

impl Download {
    /// Connects and reads the response head, so an unreachable server or a 404 fails here,
    /// before anything is written anywhere.
    pub fn open(url: &str, retries: u32) -> Result<Download> {
        let (host, port, path) = parse_url(url)?;
        let mut d = Download {
            url: url.to_string(),
            host,
            port,
            path,
            conn: None,
            done: 0,
            total: None,
            skip: 0,
            hasher: Sha256::new(),
            retries,
            attempt: 0,
            start: Instant::now(),
            last: Instant::now(),
        };
        match d.connect() {
            Ok(()) => {}
            Err(ConnError::Fatal(e)) => return Err(e),
            Err(ConnError::Transient(e)) => d.recover(format!("{e:#}"))?,
        }
        Ok(d)
    }

    /// The size the server announced.
    pub fn total(&self) -> Option<u64> {
        self.total
    }

    fn connect(&mut self) -> std::result::Result<(), ConnError> {
        use ConnError::*;
        let addr = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .with_context(|| format!("resolving {}", self.host))
            .map_err(Transient)?
            .next()
            .ok_or_else(|| Transient(anyhow!("{}: no address", self.host)))?;
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .with_context(|| format!("connecting to {addr}"))
            .map_err(Transient)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| Transient(e.into()))?;
        let range = if self.done > 0 {
            format!("Range: bytes={}-\r\n", self.done)
        } else {
            String::new()
        };
        let mut w = &s;
        write!(
            w,
            // HTTP/1.0: the reply is the raw body up to Content-Length or the close, never
            // chunked (which this reader does not decode); Range and Host work as in 1.1.
            "GET {} HTTP/1.0\r\nHost: {}\r\nUser-Agent: anemos/{}\r\n{range}Connection: close\r\n\r\n",
            self.path,
            self.host,
            env!("CARGO_PKG_VERSION")
        )
        .map_err(|e| Transient(anyhow!("sending the request: {e}")))?;
        let mut r = BufReader::with_capacity(256 << 10, s);
        let head = read_head(&mut r).map_err(Transient)?;
        let (status, len, range) = parse_head(&head).map_err(Transient)?;
        if is_chunked(&head) {
            return Err(Fatal(anyhow!(
                "{}: the server sent a chunked reply to an HTTP/1.0 request; this download needs a server that sends plain bodies",
                self.url
            )));
        }
        match status {
            200 => {
                // A fresh body (the server ignored Range if we asked): skip what we have.
                self.skip = self.done;
                if self.total.is_some() && len.is_some() && self.total != len {
                    return Err(Fatal(anyhow!(
                        "{}: the size changed between requests ({} then {} bytes)",
                        self.url,
                        self.total.unwrap_or(0),
                        len.unwrap_or(0)
                    )));
                }
                self.total = len.or(self.total);
            }
            206 if self.done > 0 => {
                let start = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.trim().eq_ignore_ascii_case("content-range").then_some(v)
                    })
                    .and_then(|v| v.trim().strip_prefix("bytes "))
                    .and_then(|v| v.split('-').next())
                    .and_then(|v| v.trim().parse::<u64>().ok());
                if start != Some(self.done) {
                    return Err(Fatal(anyhow!(
                        "{}: asked to resume at byte {}, the server sent a range starting at {:?}",
                        self.url,
                        self.done,
                        start
                    )));
                }
                if self.total.is_some() && range.is_some() && range != self.total {
                    return Err(Fatal(anyhow!(
                        "{}: the size changed between requests ({} then {} bytes); the file was replaced during the download",
                        self.url,
                        self.total.unwrap_or(0),
                        range.unwrap_or(0)
                    )));
                }
                self.skip = 0;
                self.total = range.or(self.total);
            }
            code @ 500..=599 => {
                return Err(Transient(anyhow!("HTTP {code} for {}", self.url)));
            }
            code => return Err(Fatal(anyhow!("HTTP {code} for {}", self.url))),
        }
        self.conn = Some(r);
        Ok(())
    }

    /// After a failure: wait, reconnect with Range, up to `retries` times in a row.
    fn recover(&mut self, mut err: String) -> Result<()> {
        loop {
            self.attempt += 1;
            if self.attempt > self.retries {
                bail!(
                    "downloading {} failed after {} retries ({} bytes received): {err}",
                    self.url,
                    self.retries,
                    self.done
                );
            }
            let wait = Duration::from_millis(500 * (1 << self.attempt.min(5)));
            log::warn!(
                "download of {} interrupted at {} bytes: {err}; retry {}/{} in {} ms",
                self.url,
                self.done,
                self.attempt,
                self.retries,
                wait.as_millis()
            );
            std::thread::sleep(wait);
            match self.connect() {
                Ok(()) => return Ok(()),
                Err(ConnError::Fatal(e)) => return Err(e),
                Err(ConnError::Transient(e)) => err = format!("{e:#}"),
            }
        }
    }

    /// Counts and hashes bytes handed to the consumer; returns how many.
    fn accept(&mut self, data: &[u8]) -> usize {
        if self.done == 0 {
            // Rates count from the first byte: a streamed download may wait for partitioning
            // between open() and the first read.
            self.start = Instant::now();
        }
        self.hasher.update(data);
        self.done += data.len() as u64;
        self.attempt = 0;
        self.progress();
        data.len()
    }

    fn progress(&mut self) {
        if self.last.elapsed() < Duration::from_secs(2) {
            return;
        }
        self.last = Instant::now();
        let secs = self.start.elapsed().as_secs_f64().max(0.001);
        let rate = self.done as f64 / secs / 1e6;
        match self.total {
            Some(t) => log::info!(
                "downloading: {} of {} MiB ({}%), {rate:.1} MB/s",
                self.done >> 20,
                t >> 20,
                self.done * 100 / t.max(1)
            ),
            None => log::info!("downloading: {} MiB, {rate:.1} MB/s", self.done >> 20),
        }
    }

    /// Reads whatever the consumer left (e.g. tar's end padding), then checks the size and,
    /// when given, the sha256. `after` ends the mismatch message: what state the disks are in.
    /// Returns (bytes, sha256 hex).
    pub fn finish(mut self, sha256: Option<&str>, after: &str) -> Result<(u64, String)> {
        io::copy(&mut self, &mut io::sink())
            .with_context(|| format!("downloading {}", self.url))?;
        let got = crate::util::hex(&self.hasher.clone().finalize());
        let secs = self.start.elapsed().as_secs_f64().max(0.001);
        log::info!(
            "downloaded {}: {} bytes in {secs:.1} s ({:.1} MB/s), sha256 {got}",
            self.url,
            self.done,
            self.done as f64 / secs / 1e6
        );
        if let Some(want) = sha256 {
            if !want.eq_ignore_ascii_case(&got) {
                bail!(
                    "{}: sha256 mismatch: anemos.toml says {want}, the download is {got}; {after}",
                    self.url
                );
            }
            log::info!("sha256 verified");
        }
        Ok((self.done, got))
    }
}

impl Read for Download {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(t) = self.total {
                if self.done >= t {
                    return Ok(0);
                }
            }
            if buf.is_empty() {
                return Ok(0);
            }
            let err = match self.conn.as_mut() {
                None => "not connected".to_string(),
                Some(c) => {
                    let want = match self.total {
                        // Stop at Content-Length: a server may keep the connection open.
                        Some(t) if self.skip == 0 => buf.len().min((t - self.done) as usize),
                        _ => buf.len(),
                    };
                    match c.read(&mut buf[..want]) {
                        Ok(0) if self.total.is_none() && self.skip == 0 => return Ok(0),
                        Ok(0) => match self.total {
                            Some(t) => {
                                format!("connection closed after {} of {t} bytes", self.done)
                            }
                            None => "connection closed while skipping".to_string(),
                        },
                        Ok(n) => {
                            // Bytes we already have (a server that ignored Range) are dropped.
                            let k = (n as u64).min(self.skip) as usize;
                            self.skip -= k as u64;
                            if k == n {
                                continue;
                            }
                            buf.copy_within(k..n, 0);
                            return Ok(self.accept(&buf[..n - k]));
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => format!("reading the body: {e}"),
                    }
                }
            };
            self.conn = None;
            self.recover(err)
                .map_err(|e| io::Error::other(format!("{e:#}")))?;
        }
    }
}

/// Downloads `url` to `dest` (RAM), verifying `sha256` (lowercase hex) when given.
/// Returns (bytes, sha256 hex).
#[cfg(test)]
pub fn download(
    url: &str,
    dest: &Path,
    sha256: Option<&str>,
    retries: u32,
) -> Result<(u64, String)> {
    let dl = Download::open(url, retries)?;
    save(dl, dest, sha256)
}

/// Copies an opened download to `dest` and verifies it.
pub fn save(mut dl: Download, dest: &Path, sha256: Option<&str>) -> Result<(u64, String)> {
    let mut file = File::create(dest).with_context(|| format!("creating {}", dest.display()))?;
    io::copy(&mut dl, &mut file).map_err(|e| {
        if e.raw_os_error() == Some(libc::ENOSPC) {
            anyhow!(
                "{}: RAM is full ({e}); set install.download = \"stream\" in anemos.toml",
                dest.display()
            )
        } else {
            anyhow!("{e}")
        }
    })?;
    file.sync_all().ok();
    dl.finish(sha256, "nothing was written to any disk")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn urls_and_heads() {
        assert_eq!(
            parse_url("http://10.0.2.100/r.tar.zst").unwrap(),
            ("10.0.2.100".into(), 80, "/r.tar.zst".into())
        );
        assert_eq!(
            parse_url("http://h:8080").unwrap(),
            ("h".into(), 8080, "/".into())
        );
        assert!(parse_url("https://h/x")
            .unwrap_err()
            .to_string()
            .contains("https is not supported"));
        assert!(parse_url("ftp://h/x").is_err());
        assert_eq!(
            parse_head(
                "HTTP/1.1 206 Partial\r\nContent-Range: bytes 10-99/100\r\nContent-Length: 90\r\n"
            )
            .unwrap(),
            (206, Some(90), Some(100))
        );
    }

    #[test]
    fn response_head_is_read_to_its_empty_line_and_bounded() {
        let mut r = io::Cursor::new(&b"HTTP/1.0 200 OK\r\nContent-Length: 4\r\n\r\nBODY"[..]);
        assert_eq!(
            read_head(&mut r).unwrap(),
            "HTTP/1.0 200 OK\r\nContent-Length: 4\r\n"
        );
        let mut body = String::new();
        r.read_to_string(&mut body).unwrap();
        assert_eq!(body, "BODY");
        // A server that never ends its head: refused at the bound, not read on.
        let endless = format!(
            "HTTP/1.0 200 OK\r\n{}",
            "X-Pad: 0123456789\r\n".repeat(10_000)
        );
        let e = read_head(&mut io::Cursor::new(endless.as_bytes())).unwrap_err();
        assert!(e.to_string().contains("longer than 65536 bytes"), "{e}");
        // One endless line, too.
        let line = vec![b'a'; MAX_HEAD * 2];
        assert!(read_head(&mut io::Cursor::new(&line[..])).is_err());
        // Closed early.
        let e = read_head(&mut io::Cursor::new(&b"HTTP/1.0 200 OK\r\n"[..])).unwrap_err();
        assert!(e.to_string().contains("closed before"), "{e}");
        assert!(is_chunked(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n"
        ));
        assert!(!is_chunked(
            "HTTP/1.1 200 OK\r\nX-Transfer-Encoding-Note: chunked\r\n"
        ));
    }

    #[derive(Clone, Copy, PartialEq)]
    enum Srv {
        Good,
        /// Drops the first transfer halfway, honours Range after.
        DropFirst,
        /// Drops the first transfer halfway and ignores Range (always 200, whole body).
        DropNoRange,
        /// 404 for everything.
        NotFound,
        /// Replies chunked.
        Chunked,
        /// Drops the first transfer halfway; the resumed range says the file grew.
        Replaced,
    }

    /// A test HTTP server; returns its port and a counter of requests served.
    fn serve_with(
        data: Vec<u8>,
        mode: Srv,
    ) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let h2 = hits.clone();
        std::thread::spawn(move || {
            let mut first = true;
            for s in l.incoming().take(8) {
                let mut s = s.unwrap();
                h2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut req = [0u8; 2048];
                // Read the whole request head: a short first read would lose the Range line.
                let mut n = 0;
                while !req[..n].windows(4).any(|w| w == b"\r\n\r\n") && n < req.len() {
                    match s.read(&mut req[n..]) {
                        Ok(0) | Err(_) => break,
                        Ok(k) => n += k,
                    }
                }
                if mode == Srv::NotFound {
                    let _ = s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
                    continue;
                }
                if mode == Srv::Chunked {
                    let _ = s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
                    continue;
                }
                let req = String::from_utf8_lossy(&req[..n]).to_string();
                let from: usize = req
                    .lines()
                    .find_map(|l| l.strip_prefix("Range: bytes="))
                    .and_then(|r| r.trim_end_matches('-').parse().ok())
                    .filter(|_| mode != Srv::DropNoRange)
                    .unwrap_or(0);
                let body = &data[from..];
                let claimed = if mode == Srv::Replaced {
                    data.len() + 10
                } else {
                    data.len()
                };
                let head = if from > 0 {
                    format!("HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {from}-{}/{claimed}\r\n\r\n", body.len(), data.len() - 1)
                } else {
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len())
                };
                let _ = s.write_all(head.as_bytes());
                if mode != Srv::Good && first {
                    let _ = s.write_all(&body[..body.len() / 2]);
                    first = false;
                    continue; // dropped halfway
                }
                let _ = s.write_all(body);
            }
        });
        (port, hits)
    }

    fn serve(data: Vec<u8>, drop_first: bool) -> u16 {
        serve_with(
            data,
            if drop_first {
                Srv::DropFirst
            } else {
                Srv::Good
            },
        )
        .0
    }

    fn sha_hex(d: &[u8]) -> String {
        crate::util::hex(&Sha256::digest(d))
    }

    /// The streaming use: a consumer reads through the drop; it never sees the gap.
    #[test]
    fn stream_reader_resumes_transparently_with_and_without_range() {
        let data: Vec<u8> = (0..700_000u32).map(|i| (i % 253) as u8).collect();
        for mode in [Srv::DropFirst, Srv::DropNoRange] {
            let (port, hits) = serve_with(data.clone(), mode);
            let mut dl = Download::open(&format!("http://127.0.0.1:{port}/r"), 3).unwrap();
            assert_eq!(dl.total(), Some(data.len() as u64));
            let mut got = Vec::new();
            // Small reads, like a decompressor's.
            let mut buf = [0u8; 4096];
            while got.len() < 400_000 {
                let n = dl.read(&mut buf).unwrap();
                got.extend_from_slice(&buf[..n]);
            }
            // finish() drains the rest and verifies the whole stream.
            let (n, sha) = dl.finish(Some(&sha_hex(&data)), "x").unwrap();
            assert_eq!((n, sha), (data.len() as u64, sha_hex(&data)));
            assert_eq!(got[..], data[..got.len()]);
            assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 2);
        }
    }

    #[test]
    fn http_errors_are_not_retried() {
        let (port, hits) = serve_with(vec![], Srv::NotFound);
        let e = Download::open(&format!("http://127.0.0.1:{port}/missing"), 4)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("HTTP 404"), "{e}");
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn chunked_and_replaced_files_are_refused() {
        let (port, _) = serve_with(vec![], Srv::Chunked);
        let e = Download::open(&format!("http://127.0.0.1:{port}/c"), 2)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("chunked"), "{e}");
        let data = vec![7u8; 300_000];
        let (port, _) = serve_with(data, Srv::Replaced);
        let d = tempfile::tempdir().unwrap();
        let e = download(
            &format!("http://127.0.0.1:{port}/r"),
            &d.path().join("r"),
            None,
            3,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("the size changed between requests (300000 then 300010 bytes)"),
            "{e}"
        );
    }

    #[test]
    fn mode_choice() {
        use crate::config::Download as D;
        const M: u64 = 1 << 20;
        let c = |s, size, mem, tmp| choose_mode(s, size, mem, tmp).map(|(m, _)| m);
        assert_eq!(
            c(D::Auto, Some(100 * M), 1024 * M, 512 * M).unwrap(),
            Mode::Ram
        );
        // 400 MiB + 128 MiB margin > 512 MiB tmpfs room: streamed.
        assert_eq!(
            c(D::Auto, Some(400 * M), 1024 * M, 512 * M).unwrap(),
            Mode::Stream
        );
        assert_eq!(
            c(D::Auto, Some(400 * M), 300 * M, 4096 * M).unwrap(),
            Mode::Stream
        );
        assert_eq!(c(D::Auto, None, 300 * M, 300 * M).unwrap(), Mode::Ram);
        assert_eq!(
            c(D::Stream, Some(M), 4096 * M, 4096 * M).unwrap(),
            Mode::Stream
        );
        assert_eq!(
            c(D::Ram, Some(100 * M), 1024 * M, 512 * M).unwrap(),
            Mode::Ram
        );
        let e = c(D::Ram, Some(400 * M), 1024 * M, 512 * M)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("400 MiB") && e.contains("only 512 MiB") && e.contains("\"stream\""),
            "{e}"
        );
        let (_, why) = choose_mode(D::Auto, Some(400 * M), 1024 * M, 512 * M).unwrap();
        assert!(why.contains("does not fit in RAM"), "{why}");
    }

    #[test]
    fn resumes_after_a_dropped_connection_and_verifies() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let want: String = Sha256::digest(&data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let port = serve(data.clone(), true);
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("f");
        let (n, got) =
            download(&format!("http://127.0.0.1:{port}/f"), &dest, Some(&want), 3).unwrap();
        assert_eq!((n, got), (data.len() as u64, want));
        assert_eq!(std::fs::read(&dest).unwrap(), data);
    }

    #[test]
    fn sha_mismatch_names_both_hashes() {
        let port = serve(b"hello".to_vec(), false);
        let d = tempfile::tempdir().unwrap();
        let e = download(
            &format!("http://127.0.0.1:{port}/f"),
            &d.path().join("f"),
            Some(&"0".repeat(64)),
            0,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("sha256 mismatch")
                && e.contains(&"0".repeat(64))
                && e.contains("2cf24dba5fb0a30e"),
            "{e}"
        );
    }

    #[test]
    fn unreachable_server_is_a_clear_error() {
        let d = tempfile::tempdir().unwrap();
        let e = download("http://127.0.0.1:1/f", &d.path().join("f"), None, 1).unwrap_err();
        let s = format!("{e:#}");
        assert!(
            s.contains("failed after 1 retries") && s.contains("connecting to 127.0.0.1:1"),
            "{s}"
        );
    }
}
