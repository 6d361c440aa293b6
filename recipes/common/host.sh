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
