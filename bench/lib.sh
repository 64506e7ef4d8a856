# Shared by the bench scripts (source it): open-file limits, a temporary
# directory and the cleanup of the server they start.

# raise_open_files NAME NEED: every session is a socket (or two), so raise
# the soft limit on open files to the hard one, and stop if NEED is over it.
raise_open_files() {
  local hard
  hard=$(ulimit -Hn)
  [[ $hard == unlimited ]] && hard=1048576
  ulimit -n "$hard" 2>/dev/null || true
  if (( $(ulimit -n) < $2 )); then
    echo "$1: open files limited to $(ulimit -n); this run needs $2" >&2
    exit 1
  fi
}

# bench_tmp NAME: makes $tmp, and on exit stops $server_pid (when set) and
# removes $tmp unless KEEP is set.
bench_tmp() {
  bench_name=$1
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/switchyard-$1.XXXXXX")
  server_pid=
  trap bench_cleanup EXIT
}

bench_cleanup() {
  if [[ -n $server_pid ]]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [[ -n ${KEEP:-} ]]; then
    echo "$bench_name: kept $tmp" >&2
  else
    rm -rf "$tmp"
  fi
}
