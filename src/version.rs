//! Version banner shared by the CLI and the init.

/// e.g. `anemos 0.1.0 (git 1a2b3c4, x86_64-unknown-linux-musl)`.
pub fn banner() -> String {
    format!(
        "anemos {} (git {}, {})",
        env!("CARGO_PKG_VERSION"),
        env!("ANEMOS_GIT"),
        env!("ANEMOS_TARGET")
    )
}
