# Process helpers of the recipes, sourced by recipes/common/run.sh (tests/recipes/test_proc_sh.py).

# kill_tree PID: sends TERM to PID and to all its descendants, missing none, and adds each to
# killed_procs ("pid:start-time"). Listing a process's children and then signalling them races
# with a parent that starts a child in between (run.sh's LM branch starting its next stage just
# as run.sh is killed): that child misses the signal, is re-parented to init and outlives the
# run. So every process is first stopped (SIGSTOP, which is asynchronous: wait_stopped waits for
# it), top-down, before its children are listed; a stopped process starts nothing. Then TERM and
# CONT, children before their parent.
killed_procs=()
kill_tree() {
  local c start
  start=$(proc_start "$1") || return 0
  kill -STOP "$1" 2> /dev/null || return 0
  wait_stopped "$1"
  for c in $(pgrep -P "$1" 2> /dev/null); do kill_tree "$c"; done
  kill -TERM "$1" 2> /dev/null || true
  kill -CONT "$1" 2> /dev/null || true
  killed_procs+=("$1:$start")
}

# _stat_file FILE / _proc_stat PID: the fields of a /proc stat file (a thread's; PID's main
# thread's) into the caller's _stat; status 1 if there is none.
_stat_file() {
  local s
  { read -r s < "$1"; } 2> /dev/null || return 1
  # the fields after the command name, which may hold spaces and parentheses
  read -r -a _stat <<< "${s##*) }"
}
_proc_stat() { _stat_file "/proc/$1/stat"; }

# proc_state PID / proc_start PID: the state letter (R, S, D, T, Z...) / the start time (clock
# ticks after boot: with the pid, a process's identity) of PID; status 1 if there is none.
proc_state() { local _stat; _proc_stat "$1" || return 1; echo "${_stat[0]}"; }
proc_start() { local _stat; _proc_stat "$1" || return 1; echo "${_stat[19]}"; }

# threads_live PID: status 0 while a thread of PID has not exited. /proc/PID/stat is the main
# thread's: when it has ended before the others (a torch process's worker pool, still tearing
# down after TERM), it shows Z while those threads still hold the process's open files, run.sh's
# lock among them. A thread closes its files before it turns Z, so once none is left but
# zombies, the files are closed.
threads_live() {
  local t _stat
  for t in "/proc/$1/task/"*/stat; do
    _stat_file "$t" || continue
    case ${_stat[0]} in Z | X) ;; *) return 0 ;; esac
  done
  return 1
}

# wait_stopped PID: until PID is stopped, a zombie or gone (at most about 5 s: a process in an
# uninterruptible wait stops when it leaves it).
wait_stopped() {
  local i
  for ((i = 0; i < 500; i++)); do
    case $(proc_state "$1") in '' | T | t | Z | X) return 0 ;; esac
    sleep 0.01
  done
}

# wait_exited SECONDS PID:START...: until every process has exited (gone, or a zombie with no
# live thread; a process still tearing down its memory and closing its files, e.g. the lock of
# run.sh, is neither), at most SECONDS. Prints the "pid:start" of those still running, if any
# (status 1).
wait_exited() {
  local deadline=$((SECONDS + $1)) p left _stat
  shift
  while :; do
    left=()
    for p; do
      _proc_stat "${p%%:*}" || continue  # gone
      [ "${_stat[19]}" = "${p#*:}" ] || continue  # its pid reused by another process
      case ${_stat[0]} in Z | X) threads_live "${p%%:*}" || continue ;; esac
      left+=("$p")
    done
    [ ${#left[@]} -gt 0 ] || return 0
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "${left[@]}"
      return 1
    fi
    sleep 0.05
  done
}

# kill_children: kill_tree on every child of this shell, then waits until they have all exited
# (kill_wait_s, default 30 s; then KILL for those left), so that when run.sh has exited its
# stages have too and a re-run finds the work dir free.
kill_children() {
  local c left p
  killed_procs=()
  for c in $(pgrep -P $$ 2> /dev/null); do kill_tree "$c"; done
  [ ${#killed_procs[@]} -gt 0 ] || return 0
  left=$(wait_exited "${kill_wait_s:-30}" "${killed_procs[@]}") && return 0
  for p in $left; do
    echo "$(date '+%Y-%m-%d %H:%M:%S') process ${p%%:*} still running after TERM: KILL" >&2
    kill -KILL "${p%%:*}" 2> /dev/null || true
  done
  # shellcheck disable=SC2086
  wait_exited 10 $left > /dev/null || true
}
