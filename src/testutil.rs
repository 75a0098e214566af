//! Test-only helpers. A test that needs a host tool, root or a cached artifact asks here:
//! locally a missing prerequisite skips the test with a `SKIP` line naming what to install;
//! with `ANEMOS_REQUIRE_TOOLS=1` (set by `.ci/run`) it fails the test instead, so CI can
//! never mistake a skipped check for a passed one.

use std::path::PathBuf;

/// True when missing prerequisites must fail tests (CI).
pub fn required() -> bool {
    std::env::var("ANEMOS_REQUIRE_TOOLS").is_ok_and(|v| v == "1")
}

/// Reports a missing prerequisite for `test`: panics under `ANEMOS_REQUIRE_TOOLS=1`,
/// otherwise prints `SKIP` and returns, so the caller returns early.
pub fn skip(test: &str, why: &str) {
    if required() {
        panic!("{test}: {why} (ANEMOS_REQUIRE_TOOLS=1: a missing prerequisite fails the test)");
    }
    eprintln!("SKIP {test}: {why}");
}

/// A host tool from PATH or the sbin directories (mkfs.* live there); `None` after [`skip`]
/// naming the Debian package to install.
pub fn tool(name: &str, package: &str, test: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        skip(
            test,
            &format!("{name} is not installed (apt-get install {package})"),
        );
    }
    found
}
