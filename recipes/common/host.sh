# Host helpers of the recipes, sourced by recipes/common/run.sh before the preset, so a preset
# can choose by host (tests/recipes/test_host_sh.py).

# cpu_has_bf16 [CPUINFO]: status 0 when the CPU has native bf16 arithmetic (the avx512_bf16 or
# amx_bf16 flag in CPUINFO, default /proc/cpuinfo). There, CPU bf16 autocast (train-asr /
# train-lm --cpu-bf16) made a training step 1.41x (RNN-T) and 1.65x (LM) faster; without these
# instructions PyTorch emulates bf16 and the same steps get slower (asr/README.md, lm/README.md,
# "bf16 on the CPU"). A missing or unreadable CPUINFO counts as no.
cpu_has_bf16() {
  local info=${1:-/proc/cpuinfo}
  [ -r "$info" ] || return 1
  grep -qE '^flags[[:space:]]*:(.*[[:space:]])?(avx512_bf16|amx_bf16)([[:space:]]|$)' "$info"
}

# cpu_bf16_pays [CACHE]: status 0 when bf16 autocast pays on this host: the CPU has native bf16
# (cpu_has_bf16) and `check-bf16` (common/bf16_check.py) measures bf16 training steps at least
# 1.1x faster than fp32 ones. The flag alone does not tell: on an "Intel Xeon" host with
# avx512_bf16 and no AMX, bf16 made RNN-T steps 0.92x and LM steps 0.65x as fast (session 36),
# where an "AMD EPYC" host gained 1.41x and 1.65x. The answer ("yes"/"no", with check-bf16's
# report beside it as CACHE.json) is kept in CACHE (default $work_dir/log/.cpu-bf16), so a
# resumed run keeps the branch its finished stages were made with; delete it to measure again.
# CPU_BF16=true / false answers without measuring (nothing cached). A check that fails to run,
# or a cache that is neither, ends the calling shell (exit 2, message on stderr): inside a
# preset's `if`, a status would read as "no" and the run would silently take the fp32 branch.
cpu_bf16_pays() {
  case ${CPU_BF16:-auto} in
    true) return 0 ;;
    false) return 1 ;;
    auto) ;;
    *) echo "cpu_bf16_pays: CPU_BF16 must be true, false or auto, got '$CPU_BF16'" >&2; exit 2 ;;
  esac
  local cache=${1:-${work_dir:-$PWD}/log/.cpu-bf16} answer= rc=0
  if [ -f "$cache" ]; then
    read -r answer < "$cache" || true
    case $answer in
      yes) return 0 ;;
      no) return 1 ;;
      *) echo "cpu_bf16_pays: $cache holds '$answer', not yes or no (delete it to measure again)" >&2
         exit 2 ;;
    esac
  fi
  if cpu_has_bf16; then
    check-bf16 --json "$cache.json" > /dev/null || rc=$?
    case $rc in
      0) answer=yes ;;
      1) answer=no ;;
      *) echo "cpu_bf16_pays: check-bf16 failed (status $rc)" >&2; exit 2 ;;
    esac
  else
    answer=no
  fi
  mkdir -p "$(dirname "$cache")" && echo "$answer" > "$cache.tmp" && mv "$cache.tmp" "$cache"
  [ "$answer" = yes ]
}
