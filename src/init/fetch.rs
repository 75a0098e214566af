//! Downloading a rootfs archive over plain HTTP into RAM before anything destructive:
//! streamed to a file on tmpfs while hashing, resumed with `Range:` after a dropped connection
//! (retries with backoff), progress on the console, and the whole download verified against the
//! configured sha256 before the deploy continues. A mismatch fails with both hashes.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
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

struct Progress {
    start: Instant,
    last: Instant,
}

/// Downloads `url` to `dest`, verifying `sha256` (lowercase hex) when given.
/// Returns (bytes, sha256 hex).
pub fn download(
    url: &str,
    dest: &Path,
    sha256: Option<&str>,
    retries: u32,
) -> Result<(u64, String)> {
    let (host, port, path) = parse_url(url)?;
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(dest)
        .with_context(|| format!("creating {}", dest.display()))?;
    let mut hasher = Sha256::new();
    let mut done: u64 = 0;
    let mut total: Option<u64> = None;
    let mut attempt = 0;
    let mut p = Progress {
        start: Instant::now(),
        last: Instant::now(),
    };
    loop {
        match fetch_once(
            &host,
            port,
            &path,
            done,
            &mut file,
            &mut hasher,
            &mut done,
            &mut total,
            &mut p,
        ) {
            Ok(()) => break,
            Err(e) => {
                attempt += 1;
                if attempt > retries {
                    return Err(e.context(format!(
                        "downloading {url} failed after {retries} retries ({done} bytes received)"
                    )));
                }
                let wait = Duration::from_millis(500 * (1 << attempt.min(5)));
                log::warn!("download of {url} interrupted at {done} bytes: {e:#}; retry {attempt}/{retries} in {} ms", wait.as_millis());
                std::thread::sleep(wait);
            }
        }
    }
    file.sync_all().ok();
    let got = crate::pack::payload::hex(&hasher.finalize());
    let secs = p.start.elapsed().as_secs_f64().max(0.001);
    log::info!(
        "downloaded {url}: {done} bytes in {secs:.1} s ({:.1} MB/s), sha256 {got}",
        done as f64 / secs / 1e6
    );
    if let Some(want) = sha256 {
        if !want.eq_ignore_ascii_case(&got) {
            bail!("{url}: sha256 mismatch: anemos.toml says {want}, the download is {got}; nothing was written to any disk");
        }
        log::info!("sha256 verified");
    }
    Ok((done, got))
}

#[allow(clippy::too_many_arguments)]
fn fetch_once(
    host: &str,
    port: u16,
    path: &str,
    from: u64,
    file: &mut File,
    hasher: &mut Sha256,
    done: &mut u64,
    total: &mut Option<u64>,
    p: &mut Progress,
) -> Result<()> {
    let addr = (host, port)
        .to_socket_addrs()
        .with_context(|| format!("resolving {host}"))?
        .next()
        .ok_or_else(|| anyhow!("{host}: no address"))?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let range = if from > 0 {
        format!("Range: bytes={from}-\r\n")
    } else {
        String::new()
    };
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: anemos/{}\r\n{range}Connection: close\r\n\r\n", env!("CARGO_PKG_VERSION"))?;
    let mut r = BufReader::new(s);
    let mut head = String::new();
    loop {
        let mut l = String::new();
        if r.read_line(&mut l)? == 0 {
            bail!("connection closed before the response header ended");
        }
        if l == "\r\n" || l == "\n" {
            break;
        }
        head.push_str(&l);
    }
    let (status, len, range_total) = parse_head(&head)?;
    match status {
        200 => {
            if from > 0 {
                // The server ignored Range: start over.
                file.set_len(0)?;
                std::io::Seek::seek(file, std::io::SeekFrom::Start(0))?;
                *hasher = Sha256::new();
                *done = 0;
            }
            *total = len;
        }
        206 => *total = range_total.or(*total),
        code => bail!("HTTP {code} for {path}"),
    }
    let mut buf = vec![0u8; 256 << 10];
    loop {
        // Stop at Content-Length: a server may keep the connection open afterwards.
        if let Some(t) = *total {
            if *done >= t {
                break;
            }
        }
        let n = r.read(&mut buf).context("reading the body")?;
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n])?;
        hasher.update(&buf[..n]);
        *done += n as u64;
        if p.last.elapsed() >= Duration::from_secs(2) {
            p.last = Instant::now();
            let secs = p.start.elapsed().as_secs_f64().max(0.001);
            match *total {
                Some(t) => log::info!(
                    "downloading: {} of {} MiB ({}%), {:.1} MB/s",
                    *done >> 20,
                    t >> 20,
                    *done * 100 / t.max(1),
                    *done as f64 / secs / 1e6
                ),
                None => log::info!(
                    "downloading: {} MiB, {:.1} MB/s",
                    *done >> 20,
                    *done as f64 / secs / 1e6
                ),
            }
        }
    }
    if let Some(t) = *total {
        if *done < t {
            bail!("connection closed after {} of {t} bytes", *done);
        }
    }
    Ok(())
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

    /// A server that drops the connection halfway on the first request and honours Range after.
    fn serve(data: Vec<u8>, drop_first: bool) -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let mut first = true;
            for s in l.incoming().take(5) {
                let mut s = s.unwrap();
                let mut req = [0u8; 2048];
                // Read the whole request head: a short first read would lose the Range line.
                let mut n = 0;
                while !req[..n].windows(4).any(|w| w == b"\r\n\r\n") && n < req.len() {
                    match s.read(&mut req[n..]) {
                        Ok(0) | Err(_) => break,
                        Ok(k) => n += k,
                    }
                }
                let req = String::from_utf8_lossy(&req[..n]).to_string();
                let from: usize = req
                    .lines()
                    .find_map(|l| l.strip_prefix("Range: bytes="))
                    .and_then(|r| r.trim_end_matches('-').parse().ok())
                    .unwrap_or(0);
                let body = &data[from..];
                let head = if from > 0 {
                    format!("HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {from}-{}/{}\r\n\r\n", body.len(), data.len() - 1, data.len())
                } else {
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len())
                };
                s.write_all(head.as_bytes()).unwrap();
                if drop_first && first {
                    s.write_all(&body[..body.len() / 2]).unwrap();
                    first = false;
                    continue; // dropped halfway
                }
                s.write_all(body).unwrap();
            }
        });
        port
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
