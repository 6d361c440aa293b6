# The seeds of one LM stage side by side where a core is idle (sourced by recipes/common/run.sh;
# tests/recipes/test_jobs_sh.py). Each training uses one CPU thread, so on the recipe's 2 cores a
# second seed costs the first nothing as long as nothing else runs: in the parallel layout the
# RNN-T group's core is idle while it waits for an LM stage (wait_for_lm_stage) and once it has
# finished, and the LM group is the longer one on hosts where the LMs train in fp32.
#
# Globals read (not part of a stage's signature: they change when a seed runs, not what it
# computes; a minute-capped training is the exception only if a third process shares the cores):
#   lm_seed_jobs  the most seeds of a stage at once (conf; default 1 = one after another)
#   lm_seed_free  a command (its words split on blanks, no quoting) whose status 0 says a core is
#                 idle: more than one seed runs only then (run.sh: asr_core_idle); empty =
#                 always (nothing else runs)
#   seed_log_dir  where a seed started next to another writes its output (default log)
#   seed_poll     seconds between looks at the running seeds and the flag (default 2)
#   seeds_beside_flag  a file that exists exactly while two or more seeds run (default: none):
#                 run.sh's early rescoring takes the idle core only while it is absent
#   seeds_want_flag  a file that exists exactly while a seed is due, fewer than lm_seed_jobs run
#                 and lm_seed_free says no core is idle (default: none): run.sh's early
#                 rescoring starts no new system run meanwhile, so the core it holds goes to
#                 the seed when its current run ends (rescore_may_take_core)

# asr_core_idle: run.sh's lm_seed_free in the parallel layout (run in the work dir): status 0
# while the RNN-T group's core is idle: log/.asr-done (it has finished), or log/.asr-waits-for-N
# for a stage N the LM group has not passed yet (log/.lm-stageN-passed). The LM group marks a
# stage passed before it starts the next one, so no seed starts beside the RNN-T group's resumed
# work. (The session-37 run had one flag that the waiting group removed on its 5-s poll: two
# stage-10 seeds started beside stages 18-21 and shared the cores with them for 3.5 min.)
# Once the group has finished, its early rescoring (run.sh early_rescore) holds log/.asr-busy
# while it rescores a system on that core: no seed starts beside another meanwhile.
asr_core_idle() {
  if [ -f log/.asr-done ]; then [ ! -f log/.asr-busy ]; return; fi
  local f
  for f in log/.asr-waits-for-*; do
    [ -f "$f" ] && [ ! -f "log/.lm-stage${f##*-}-passed" ] && return 0
  done
  return 1
}

# rescore_may_take_core: status 0 if run.sh's early rescoring may start a system run on the
# RNN-T group's core now (run in the work dir): no two seeds run side by side (log/.lm-seeds-beside)
# and no seed is waiting for that core (log/.lm-seeds-want). An LM seed (minutes, on the LM
# group's critical path) goes first: a system run it displaces is done by stage 24 instead. In
# the session-40 run early rescoring's runs followed each other with log/.asr-busy gone only
# between two of them, so stage 16's seeds ran one after another (1,433 s against 842 s).
# (Where the LM group has finished first, no seed runs any more: its early rescoring always may.)
rescore_may_take_core() {
  [ ! -f log/.lm-seeds-beside ] && [ ! -f log/.lm-seeds-want ]
}

# early_rescore_loop WHO OTHER_DONE OTHER_PID BUSY RUN_ONE COUNT: the early rescoring of run.sh's
# parallel layout, on the core of the group WHO, which has finished its stages (and has touched
# its own done flag before calling this). While the other group has not finished (its flag
# OTHER_DONE absent, its process OTHER_PID alive) and rescore_may_take_core says so, RUN_ONE (a
# command: one system run, status 0 unless it failed) runs again and again, with the file BUSY (if
# not empty) held meanwhile; COUNT prints how many system runs are complete, so that a call that
# completed none (nothing ready yet) waits $rescore_idle_poll seconds (default 30) before the next.
# A failed RUN_ONE ends the loop (status 0: stage 24 does the rest). Each group touches its own
# done flag before its loop and a loop starts a run only after it has seen no flag of the other:
# so of two groups only the first to finish rescores early, and never two runs at once.
early_rescore_loop() {
  local who=$1 other_done=$2 other_pid=$3 busy=$4 run_one=$5 count=$6 before after
  while [ ! -f "$other_done" ] && kill -0 "$other_pid" 2> /dev/null; do
    if ! rescore_may_take_core; then sleep "${rescore_poll:-5}"; continue; fi
    [ -z "$busy" ] || touch "$busy"
    sleep "${seed_poll:-2}"; sleep 1  # a seed started beside another just before shows its flag
    if ! rescore_may_take_core || [ -f "$other_done" ]; then
      [ -z "$busy" ] || rm -f "$busy"
      continue
    fi
    before=$($count)
    # shellcheck disable=SC2086  # a command and its arguments
    if ! $run_one; then
      [ -z "$busy" ] || rm -f "$busy"
      log "Early rescoring failed (log/early-rescore.log); stage 24 does the rest"
      return 0
    fi
    [ -z "$busy" ] || rm -f "$busy"
    after=$($count)
    if [ "$after" -gt "$before" ]; then
      log "Early rescoring ($who): $after system runs (seeds) complete in exp/rescore"
    else
      sleep "${rescore_idle_poll:-30}"  # nothing ready yet
    fi
  done
}

# seed_slots: how many seeds may run at once now.
seed_slots() {
  local max=${lm_seed_jobs:-1}
  [[ $max =~ ^[1-9][0-9]*$ ]] || { echo "lm_seed_jobs must be a positive integer, got '$max'" >&2; return 2; }
  # shellcheck disable=SC2086  # a command and its arguments
  if [ -z "${lm_seed_free:-}" ] || $lm_seed_free; then echo "$max"; else echo 1; fi
}

# run_seeds "SEEDS" LABEL FN ARGS...: `FN SEED ARGS...` for every seed of SEEDS, in order, up to
# seed_slots at once (asked again whenever the next seed is due, so a core that becomes idle is
# used from the next seed on; a seed already started is not stopped when the core gets busy
# again). The first seed in flight writes to the caller's output; a seed started next to another
# writes to $seed_log_dir/LABEL-seedS.log (its path logged), so two progress bars never share a
# stream. Every seed runs to its end even when another fails; the status is then 1 and the failed
# seeds are named.
run_seeds() {
  local seeds=$1 label=$2 fn=$3 s pid failed= slots logf
  shift 3
  seed_slots > /dev/null || return 2  # a bad lm_seed_jobs stops before any seed starts
  local -A running=()  # pid -> seed
  _reap_seeds() {  # forget the seeds that ended, noting failures; the flag says if 2+ still run
    local p
    for p in "${!running[@]}"; do
      kill -0 "$p" 2> /dev/null && continue
      wait "$p" || failed+=" ${running[$p]}"
      unset "running[$p]"
    done
    [ -z "${seeds_beside_flag:-}" ] || [ ${#running[@]} -ge 2 ] || rm -f "$seeds_beside_flag"
  }
  _unwant() { [ -z "${seeds_want_flag:-}" ] || rm -f "$seeds_want_flag"; }
  for s in $seeds; do
    while [ ${#running[@]} -gt 0 ]; do
      slots=$(seed_slots) || { _unwant; return 2; }
      [ ${#running[@]} -ge "$slots" ] || break
      # seed $s is due, and one more could run if a core were idle: say so (seeds_want_flag)
      [ -z "${seeds_want_flag:-}" ] || [ ${#running[@]} -ge "${lm_seed_jobs:-1}" ] \
        || touch "$seeds_want_flag"
      sleep "${seed_poll:-2}"
      _reap_seeds
    done
    _unwant
    if [ ${#running[@]} -eq 0 ]; then
      log "$label, seed $s"
      "$fn" "$s" "$@" &
    else
      logf=${seed_log_dir:-log}/${label//[^A-Za-z0-9_.-]/-}-seed$s.log
      mkdir -p "$(dirname "$logf")"
      log "$label, seed $s, next to seed ${running[*]} (a core is idle): output in $logf"
      [ -z "${seeds_beside_flag:-}" ] || touch "$seeds_beside_flag"
      "$fn" "$s" "$@" > "$logf" 2>&1 &
    fi
    running[$!]=$s
  done
  while [ ${#running[@]} -gt 0 ]; do  # polled, so that the flag goes when one seed is left
    sleep "${seed_poll:-2}"
    _reap_seeds
  done
  if [ -n "$failed" ]; then
    log "ERROR: $label failed for seed(s)$failed"
    return 1
  fi
}
