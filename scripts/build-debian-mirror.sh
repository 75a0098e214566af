#!/usr/bin/env bash
# Builds, once, a small flat Debian 12 (bookworm, amd64) package mirror that mmdebstrap can
# bootstrap from over HTTP without network access to Debian, and caches it:
#
#   <cache>/debian-mirror/pool/*.deb     the packages (one version each)
#   <cache>/debian-mirror/Packages{,.gz} the index (dpkg-scanpackages)
#   <cache>/debian-mirror/Release        Suite/Codename bookworm, hashes of the index (apt-ftparchive)
#   <cache>/debian-mirror/stamp          what it was built from; when it matches, reruns are instant
#   <cache>/debian-mirror/packages.txt   the packages and versions in the mirror
#   <cache>/debian-mirror/build.log      mmdebstrap's output (download, then the check)
#
# Usage: scripts/build-debian-mirror.sh [--force] [--no-check]
#   --force      rebuild even when the mirror is up to date
#   --no-check   skip the final check (a bootstrap from the new mirror alone over HTTP)
#
# Environment:
#   ANEMOS_CACHE    cache directory (default qemu-tests/cache)
#   DEBIAN_MIRROR   the upstream mirror (default http://deb.debian.org/debian)
#
# The package set is exactly what
#   mmdebstrap --variant=minbase --include=systemd-sysv,udev,linux-image-cloud-amd64,e2fsprogs,\
#              openssh-server,systemd-boot-efi bookworm
# installs (mmdebstrap's defaults: no Recommends), taken from bookworm, bookworm-updates and
# bookworm-security, newest version of each: the .debs are those mmdebstrap itself downloads
# (essential/unlink skipped, /var/cache/apt/archives copied out before the cleanup).
#
# The mirror is flat and unsigned; apt accepts it only as trusted, so the source line is
#
#   deb [trusted=yes] http://HOST[:PORT]/ ./         e.g. deb [trusted=yes] http://10.0.2.100/ ./
#
# with the directory above served at that URL's root. Each .deb is still checked against the
# SHA256 in Packages, and Packages against Release; only the Release signature is missing (it is
# a test fixture built from Debian's signed archive on this host). The Release file is required:
# without its Suite/Codename mmdebstrap finds "no essential packages" for bookworm. Use it as
#   mmdebstrap --variant=minbase --include=<the list above> bookworm OUT \
#              "deb [trusted=yes] http://HOST/ ./"
#
# Building needs root (mmdebstrap's root mode) and network access to the upstream mirror; it
# takes a few minutes (the download-and-install run, then the check run against the result).
set -euo pipefail
umask 022
export LC_ALL=C

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${ANEMOS_CACHE:-$repo/qemu-tests/cache}"
work="$cache/debian-mirror"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
suite=bookworm
arch=amd64
force=0
check=1
# Bump when the steps below change in a way that changes the mirror.
RECIPE=1
INCLUDE=(systemd-sysv udev linux-image-cloud-amd64 e2fsprogs openssh-server systemd-boot-efi)
VARIANT=minbase

NAME=build-debian-mirror
# shellcheck source=scripts/lib/cache.sh
. "$repo/scripts/lib/cache.sh"

for arg in "$@"; do
    case "$arg" in
        --force | -f) force=1 ;;
        --no-check) check=0 ;;
        -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) die "unknown argument: $arg (usage: scripts/build-debian-mirror.sh [--force] [--no-check])" ;;
    esac
done

cache_lock "$work"

# --- up to date? -----------------------------------------------------------------------------
# The upstream archive moves on (security updates), so an unchanged stamp means "built by this
# recipe", not "what today's archive would give"; --force rebuilds.
recipe="recipe $RECIPE suite $suite arch $arch mirror $mirror variant $VARIANT packages ${INCLUDE[*]}"
if cache_fresh "$work/Release" "$work/stamp" "$recipe"; then
    log "up to date: $work ($(du -sh "$work/pool" | cut -f1), $(wc -l <"$work/packages.txt") packages); built $(sed -n 2p "$work/stamp")"
    exit 0
fi

[[ $EUID -eq 0 ]] || die "must run as root to build (mmdebstrap's root mode, apt-get install)"
[[ "$(dpkg --print-architecture)" == "$arch" ]] || die "the host must be $arch (mmdebstrap runs natively)"

# --- host packages ---------------------------------------------------------------------------
need=()
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v dpkg-scanpackages >/dev/null || need+=(dpkg-dev)
command -v apt-ftparchive >/dev/null || need+=(apt-utils)
command -v python3 >/dev/null || need+=(python3)
if ((${#need[@]})); then
    apt_install "${need[@]}" || die "apt-get install ${need[*]} failed"
fi

# --- the packages ----------------------------------------------------------------------------
# The previous mirror goes first: a half-built one must never carry a stamp or a Release.
rm -rf "$work/stamp" "$work/Release" "$work/Packages" "$work/Packages.gz" "$work/packages.txt" \
    "$work/pool" "$work/.debs" "$work/.lists" "$work/.override" "$work/.check.tar"
mkdir -p "$work/.debs" "$work/.lists"
start=$(date +%s)
include="$(IFS=,; echo "${INCLUDE[*]}")"
sources=(
    "deb $mirror $suite main"
    "deb $mirror $suite-updates main"
    "deb ${mirror%/debian}/debian-security $suite-security main"
)
log "downloading: mmdebstrap --variant=$VARIANT --include=$include $suite (log: $work/build.log)"
# The target is /dev/null (no output); the customize hook copies the downloaded .debs out
# before the cleanup step would delete them, and essential/unlink is skipped so the Essential
# packages (installed with dpkg before apt runs) are among them.
if ! mmdebstrap --mode=root --variant="$VARIANT" --include="$include" --architectures="$arch" \
    --skip=essential/unlink \
    --customize-hook="sync-out /var/cache/apt/archives $work/.debs" \
    --customize-hook="sync-out /var/lib/apt/lists $work/.lists" \
    "$suite" /dev/null "${sources[@]}" >"$work/build.log" 2>&1; then
    tail -n 40 "$work/build.log" >&2
    die "mmdebstrap failed (full log: $work/build.log)"
fi
# The archive's Priority and Section, which can differ from a .deb's own control fields (apt's
# control file says "important", the archive says "required", and minbase selects "required"):
# an override file from the upstream indexes, first entry of each package.
for f in "$work"/.lists/*_Packages*; do
    [[ -f "$f" ]] || continue
    /usr/lib/apt/apt-helper cat-file "$f" || die "could not read $f"
    echo
done | awk 'function out() { if (p != "" && !(p in seen)) { seen[p]; print p, (r == "" ? "optional" : r), (c == "" ? "misc" : c) }
                             p = r = c = "" }
            /^Package: /{p=$2} /^Priority: /{r=$2} /^Section: /{c=$2} /^$/{out()} END{out()}' >"$work/.override"
[[ -s "$work/.override" ]] || die "no upstream package lists were copied out (see $work/build.log)"
rm -rf "$work/.lists"
mkdir "$work/pool"
find "$work/.debs" -maxdepth 1 -type f -name '*.deb' -exec mv -t "$work/pool" {} +
rm -rf "$work/.debs"
count=$(find "$work/pool" -name '*.deb' | wc -l)
((count > 100)) || die "only $count .debs were collected (expected a few hundred; see $work/build.log)"
log "downloaded $count packages in $(($(date +%s) - start)) s: $(du -sh "$work/pool" | cut -f1)"

# --- the index -------------------------------------------------------------------------------
# Filename: fields are pool/<name>.deb, relative to the mirror's root ("./" in the source line).
(
    cd "$work"
    dpkg-scanpackages --arch "$arch" pool .override 2>>build.log >Packages \
        || die "dpkg-scanpackages failed (see $work/build.log)"
    gzip -9n -k Packages
    n=$(grep -c '^Package: ' Packages)
    [[ "$n" == "$count" ]] || die "Packages lists $n packages, the pool holds $count"
    grep -q '^Essential: yes' Packages || die "no Essential package in Packages"
    apt-ftparchive \
        -o APT::FTPArchive::Release::Origin=anemos-test \
        -o APT::FTPArchive::Release::Label=anemos-test \
        -o APT::FTPArchive::Release::Suite="$suite" \
        -o APT::FTPArchive::Release::Codename="$suite" \
        -o APT::FTPArchive::Release::Architectures="$arch" \
        -o APT::FTPArchive::Release::Description="flat $suite mirror for anemos tests (unsigned)" \
        release . >.Release.tmp || die "apt-ftparchive release failed"
    grep -q '^SHA256:' .Release.tmp || die "Release has no SHA256 list"
    awk '/^Package: /{p=$2} /^Version: /{print p, $2}' Packages | sort >packages.txt
)
rm -f "$work/.override"
mv -f "$work/.Release.tmp" "$work/Release"

# --- the check -------------------------------------------------------------------------------
# Bootstrap from the new mirror alone, served over HTTP on a loopback port, as the guest will.
if ((check)); then
    t=$(date +%s)
    srvlog="$work/.http.log"
    python3 -u -m http.server --bind 127.0.0.1 --directory "$work" 0 >"$srvlog" 2>&1 &
    srv=$!
    trap 'kill "$srv" 2>/dev/null || true; wait "$srv" 2>/dev/null || true; rm -f "$work/.check.tar"' EXIT
    port=""
    for _ in $(seq 50); do
        port="$(sed -n 's/.* port \([0-9]\+\).*/\1/p' "$srvlog" | head -n 1)"
        [[ -n "$port" ]] && break
        kill -0 "$srv" 2>/dev/null || { cat "$srvlog" >&2; die "the HTTP server did not start"; }
        sleep 0.1
    done
    [[ -n "$port" ]] || die "the HTTP server did not report its port"
    line="deb [trusted=yes] http://127.0.0.1:$port/ ./"
    log "checking: mmdebstrap --variant=$VARIANT --include=$include $suite \"$line\""
    echo "=== check: $line" >>"$work/build.log"
    if ! mmdebstrap --mode=root --variant="$VARIANT" --include="$include" --architectures="$arch" \
        "$suite" "$work/.check.tar" "$line" >>"$work/build.log" 2>&1; then
        tail -n 40 "$work/build.log" >&2
        die "bootstrapping from the new mirror failed (full log: $work/build.log)"
    fi
    kernels="$(tar -tf "$work/.check.tar" | grep -c '^\./boot/vmlinuz-' || true)"
    ((kernels > 0)) || die "the check's root has no kernel in boot/"
    # The same package set as the download run, i.e. every package in the mirror.
    tar -xOf "$work/.check.tar" ./var/lib/dpkg/status \
        | awk '/^Package: /{print $2}' | sort >"$work/.check.list" || die "no dpkg status in the check's root"
    if ! diff <(cut -d' ' -f1 "$work/packages.txt") "$work/.check.list" >"$work/.check.diff"; then
        cat "$work/.check.diff" >&2
        die "the check installed a different package set than the mirror holds (< mirror only, > root only)"
    fi
    rm -f "$work/.check.list" "$work/.check.diff"
    log "check done in $(($(date +%s) - t)) s: a $(du -h "$work/.check.tar" | cut -f1) ($(stat -c %s "$work/.check.tar") bytes) root tar of all $count packages from the mirror alone"
    kill "$srv" 2>/dev/null || true
    wait "$srv" 2>/dev/null || true
    rm -f "$work/.check.tar" "$srvlog"
    trap - EXIT
fi

printf '%s\n%s\n' "$recipe" "$(date -u +%Y-%m-%dT%H:%M:%SZ), $count packages" >"$work/stamp"
log "wrote $work: $count packages, pool $(du -sh "$work/pool" | cut -f1) ($(du -sb "$work/pool" | cut -f1) bytes); total $(($(date +%s) - start)) s"
log "apt source line: deb [trusted=yes] http://HOST/ ./   (serve $work at http://HOST/)"
