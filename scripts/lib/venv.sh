# Sourced by the scripts that make a pinned Python virtualenv for the tests.
#
# pinned_venv DIR PROGRAM PIN...: makes (once) the virtualenv DIR with the PyPI packages PIN...
# and prints DIR. It is rebuilt from nothing when the pins differ from those it was made with
# (DIR/.pins) or DIR/bin/PROGRAM is missing. pip's output goes to stderr.
pinned_venv() {
    local venv="$1" program="$2"
    shift 2
    local stamp="$venv/.pins"
    if [[ -x "$venv/bin/$program" && -f "$stamp" && "$(cat "$stamp")" == "$*" ]]; then
        echo "$venv"
        return 0
    fi
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@" >&2
    echo "$*" > "$stamp"
    echo "$venv"
}
