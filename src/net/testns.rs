//! Test helpers: a fresh network namespace on a dedicated thread, and `ip` to create links and
//! check what our netlink calls did. Missing privileges or tools skip through
//! [`crate::testutil`] (a failure under `ANEMOS_REQUIRE_TOOLS=1`).

use super::sys;

/// Runs `f` on a new thread moved into a fresh network namespace. `None` (after
/// [`crate::testutil::skip`]) when `ip` is missing or the namespace cannot be created.
pub fn in_netns<T: Send + 'static>(
    test: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    crate::testutil::tool("ip", "iproute2", test)?;
    let r = std::thread::spawn(move || sys::unshare_net().map(|()| f()))
        .join()
        .unwrap();
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            crate::testutil::skip(test, &format!("unshare(CLONE_NEWNET): {e} (needs root)"));
            None
        }
    }
}

/// `ip ARGS...`: its stdout when it succeeds.
pub fn ip_cmd(args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("ip").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}
