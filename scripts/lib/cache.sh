# Shared by the scripts that build a cached artifact under qemu-tests/cache (the Debian root, the
# builder root, the package mirror): logging, one build at a time, the recipe stamp, host
# packages. Sourced after the script sets NAME (its log prefix) and `force`.

log() { printf '%s: %s\n' "$NAME" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# cache_lock DIR: one build at a time; a second run waits, then finds the artifact up to date.
cache_lock() {
    mkdir -p "$1"
    exec 9>"$1/lock"
    flock 9 || die "could not lock $1/lock"
}

# cache_fresh ARTIFACT STAMP RECIPE: true when ARTIFACT exists and STAMP's first line is RECIPE
# (and --force was not given). The upstream archive moves on (security updates), so an
# unchanged stamp means "built by this recipe", not "what today's archive would give".
cache_fresh() {
    ((!force)) && [[ -e "$1" && -f "$2" ]] && [[ "$(head -n 1 "$2")" == "$3" ]]
}

# apt_install PKG...: installs Debian packages (no recommends) after an index update.
apt_install() {
    log "installing $*"
    apt-get update -qq >&2 || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}
