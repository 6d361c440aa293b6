# The shared stages of every corpus recipe (recipes/<corpus>/run.sh sources this file after
# setting: corpus (manifest prefix), corpus_title, gold_kind (the manifest with each evaluated
# utterance's reference, intent and slots: nlu or supervisions), audio_in (stage 0's audio
# folder, or empty), validate_opts, slu_metrics (score-wer --slu-metrics), and a function
# stage_prepare_corpus that runs stage 0 with run_stage). Arguments: see the corpus's
# run.sh --help.
set -euo pipefail
set -a  # export every variable: stages run in a child bash under /usr/bin/time (peak memory)
export recipe_dir corpus corpus_title gold_kind audio_in validate_opts slu_metrics

preset=default
stage=0
stop_stage=100
work_dir=$recipe_dir
corpus_dir=
lm_text_dir=
on_change=stop

while [ $# -gt 0 ]; do
  case "$1" in
    --preset) preset=$2; shift 2 ;;
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --work-dir) work_dir=$2; shift 2 ;;
    --corpus-dir) corpus_dir=$(realpath "$2"); shift 2 ;;
    --lm-text-dir) lm_text_dir=$(realpath "$2"); shift 2 ;;
    --on-change) on_change=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "$0: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

for v in stage stop_stage; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "$0: --${v//_/-} must be a stage number, got '${!v}'" >&2; exit 2; }
done
case $on_change in
  stop|rerun|always) ;;
  *) echo "$0: --on-change must be stop, rerun or always" >&2; exit 2 ;;
esac
# The project's read-only data copies (not part of the repository; used only where they exist):
# the external LM text when no --lm-text-dir (and the corpus's own copies, see its run.sh).
shared_data=$(realpath -m "$recipe_dir/../../../shared/data")
[ -n "$lm_text_dir" ] || [ ! -d "$shared_data/lm_text" ] || lm_text_dir=$shared_data/lm_text
conf=$recipe_dir/conf/$preset.sh
[ -f "$conf" ] || { echo "$0: no preset file $conf" >&2; exit 2; }
# The work dir as an absolute path (the log, every cmd.sh header and the preset see it), entered
# and locked before the preset is read: a preset may measure the host (cpu_bf16_pays), which a
# run refused here must not do next to the run that holds the work dir.
work_dir=$(realpath -m "$work_dir")
mkdir -p "$work_dir" && cd "$work_dir"
# One run.sh per work dir. The lock's file descriptor is inherited by every stage process, so
# the stages of a run.sh killed with -9 (which no trap can catch) still hold it.
exec 9>> .run.lock
if ! flock -n 9; then
  echo "$0: $work_dir is in use by another run.sh, or by the stages of one that was killed:" >&2
  exec 9>&-  # not a holder itself (nor the listing below, which would inherit it)
  stage-marker holders .run.lock | sed "s/^/  /" >&2
  echo "Wait for them to finish or stop them (kill <pid>), then re-run." >&2
  exit 2
fi
# shellcheck source=host.sh
. "$recipe_dir/../common/host.sh"  # cpu_bf16_pays, for presets that choose by host
# shellcheck source=conf/default.sh
. "$conf"
asr_lm_parallel=${asr_lm_parallel:-false}  # older conf files: stages one after another
# The evaluated sets (tuned on dev; test is the report's evaluation set). A TTS plan with a
# test_unseen_engine split (SNIPS, conf tts_plan) adds that set: the test sentences spoken by
# engines no training or dev utterance uses; every first pass and system is scored on it too.
eval_sets=${eval_sets:-dev test}
case ${tts_plan:-} in
  *test_unseen_engine*) [[ " $eval_sets " == *" test_unseen_engine "* ]] || eval_sets+=" test_unseen_engine" ;;
esac
# Stage 14 (RWM sampling one task per step, an ablation measured on 2026-12-02: worse than
# scaling, p = 1.0) runs only with rwm_sample=true; otherwise its system leaves the matrix.
rwm_sample=${rwm_sample:-true}
exclude_systems= stage14_done=.done/stage14
[ "$rwm_sample" = true ] || { exclude_systems=pretrained_multitask_rwm_sample; stage14_done=; }
# LM shallow fusion in the first pass (conf fusion=true; asr/README.md, "LM shallow fusion"):
# stage 22 trains a token LM over the ASR's BPE ids on the LM text (train-token-lm, in the LM
# group), stage 23 decodes with it, the LM scale, internal-LM scale and length bonus tuned on
# dev (tune-fusion over fusion_grid). Without it the systems named fused_* leave the matrix.
fusion=${fusion:-false}
fusion_lm_opts=${fusion_lm_opts:-}
fusion_grid=${fusion_grid:---lm-scales 0.1 0.2 0.3 --ilm-scales 0 0.1 --length-bonuses 0.5 0.75}
fusion_lm_dir=exp/asr/token_lm
fusion_done=.done/stage23
if [ "$fusion" != true ]; then
  fusion_done=
  for s in $(sed -n 's/^\[systems\.\(fused_[A-Za-z0-9_]*\)\]$/\1/p' "$recipe_dir/conf/systems.toml"); do
    exclude_systems+="${exclude_systems:+ }$s"
  done
fi
# Speed perturbation from stored features (conf speed_perturb, e.g. "0.9 1.1"; empty = off):
# stage 2 also stores the features of speed-perturbed copies of train, and stage 6 draws per
# utterance and epoch the original or one copy (train-asr --speed-cuts); asr/README.md.
speed_perturb=${speed_perturb:-}
speed_cuts=$(for f in $speed_perturb; do printf "data/fbank/%s_cuts_train_sp%g.jsonl.gz " "$corpus" "$f"; done)
# Other TTS renderings of the train utterances (conf train_renders N > 1, corpora whose stage 0
# synthesizes audio): stage 0 renders each ASR train sentence N - 1 more times by other voices
# (split train_renders), stage 2 stores their features (and speed copies), and stage 6 draws
# them with the speed copies (train-asr --render-cuts); data_prep/snips.py.
train_renders=${train_renders:-1}
render_split= render_cuts=
if [ "$train_renders" -gt 1 ]; then
  render_split=train_renders
  render_cuts=$(for f in "" $speed_perturb; do printf "data/fbank/%s_cuts_train_renders%s.jsonl.gz " "$corpus" "${f:+_sp$f}"; done)
fi

log() {
  local fname=${BASH_SOURCE[1]##*/} where
  # a function a stage's child bash imported (export -f) has no file or line of its own: bash
  # names its source "environment"
  if [ "$fname" = environment ]; then
    where=${FUNCNAME[1]}
  else
    where=${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}
  fi
  echo -e "$(date '+%Y-%m-%d %H:%M:%S') ($where) $*"
}

# Every stage process runs in the background and is waited for, so a signal to run.sh is
# handled at once; on any exit run.sh can see (error, Ctrl-C, kill) it kills its stage processes
# and all their descendants (train-asr runs under time + bash -c): kill_children, proc.sh.
# shellcheck source=proc.sh
. "$recipe_dir/../common/proc.sh"

# run_stage N "description" "inputs" "outputs" command...: runs unless its .done marker matches,
# then writes the marker (command, variables, input fingerprints, time, peak memory).
run_stage() {
  local n=$1 desc=$2 inputs=$3 outputs=$4; shift 4
  if [ "$stage" -gt "$n" ] || [ "$stop_stage" -lt "$n" ]; then return 0; fi
  local body= rc=0
  [ "$(type -t "$1")" != function ] || body=$(declare -f "$1")
  # shellcheck disable=SC2086
  stage-marker check --stage "$n" --desc "$desc" --on-change "$on_change" --function-body "$body" \
    --inputs $inputs --outputs $outputs -- "$@" || rc=$?
  case $rc in
    0) log "Stage $n: $desc - already done, skipping"; return 0 ;;
    1) ;;
    *) log "ERROR: stage $n cannot be skipped or run (see above)"; return 2 ;;
  esac
  log "Stage $n: $desc"
  local t0=$SECONDS mem=
  rm -f ".stage$n.mem"
  if [ -x /usr/bin/time ]; then
    /usr/bin/time -o ".stage$n.mem" -f "%M" bash -c 'set -euo pipefail; "$@"' stage "$@" &
  else
    "$@" &
  fi
  wait $! || { rc=$?; log "ERROR: stage $n ($desc) failed with status $rc"; return "$rc"; }
  mem=$(tail -n 1 ".stage$n.mem" 2> /dev/null || true)
  rm -f ".stage$n.mem"
  # shellcheck disable=SC2086
  stage-marker write --stage "$n" --desc "$desc" --function-body "$body" --seconds "$((SECONDS - t0))" \
    ${mem:+--peak-rss-kb "$mem"} --inputs $inputs --outputs $outputs -- "$@"
  log "Stage $n: done in $((SECONDS - t0)) s"
}

# logged DIR command...: append the exact command to DIR/cmd.sh (ESPnet style), then run it.
# Its body (declare -f) is part of the stage marker of every stage whose command starts with
# `logged`: a change to it makes every finished work dir redo those stages (--on-change rerun).
logged() {
  local dir=$1; shift
  mkdir -p "$dir"
  [ -f "$dir/cmd.sh" ] || echo "# Exact commands, run from $work_dir" > "$dir/cmd.sh"
  printf '%q ' "$@" >> "$dir/cmd.sh"; echo >> "$dir/cmd.sh"
  "$@"
}

trap 'kill_children' EXIT
trap 'kill_children; exit 130' INT
trap 'kill_children; exit 143' TERM
log "Preset $preset ($conf), work dir $work_dir, stages $stage..$stop_stage"
# the preset's bf16 answer (host.sh cpu_bf16_pays), where it asked and measured
if [ -f log/.cpu-bf16 ]; then
  log "bf16 autocast pays on this host: $(cat log/.cpu-bf16) (log/.cpu-bf16; check-bf16's report: log/.cpu-bf16.json; CPU_BF16=true|false overrides)"
fi

stage_bpe() {
  local size
  for size in $bpe_sizes; do
    train-bpe --supervisions "data/manifests/${corpus}_supervisions_train.jsonl.gz" --vocab-size "$size" \
      --lang-dir "data/lang_bpe_$size"
  done
}
asr_dir=exp/asr/conformer_rnnt
decode_dir=$asr_dir/decode
# nbest_lists DIR: the n-best list of every eval set in DIR, the promised outputs of a first-pass
# stage (stages 8, 19-21, 23): early rescoring (--ready-from .done) waits for them all
nbest_lists() { local s; for s in $eval_sets; do printf '%s/nbest-%s.jsonl.gz ' "$1" "$s"; done; }
stage_train_asr() {
  # asr_launcher (conf): e.g. "torchrun --nproc-per-node 4 -m asr.train" for DDP; default train-asr.
  # The sets beyond dev and test (a held-out TTS engine) are monitored: their greedy WER at every
  # dev check goes to $asr_dir/log/monitor.csv (a learning curve; no choice uses it).
  local s monitor=()
  for s in $eval_sets; do
    case $s in dev|test) ;; *) monitor+=("$s=data/fbank/${corpus}_cuts_$s.jsonl.gz") ;; esac
  done
  # shellcheck disable=SC2086
  logged $asr_dir ${asr_launcher:-train-asr} --preset "$asr_preset" --exp-dir $asr_dir \
    --train-cuts data/fbank/${corpus}_cuts_train.jsonl.gz --dev-cuts data/fbank/${corpus}_cuts_dev.jsonl.gz \
    --bpe-model "data/lang_bpe_$asr_bpe/bpe.model" --vocab-size "$asr_bpe" \
    ${monitor[@]:+--monitor-cuts "${monitor[@]}"} ${speed_cuts:+--speed-cuts $speed_cuts} \
    ${render_cuts:+--render-cuts $render_cuts} $asr_train_opts
}
stage_decode() {
  logged $asr_dir decode-asr --preset "$asr_preset" --exp-dir $asr_dir --checkpoint $asr_dir/avg.pt \
    --bpe-model "data/lang_bpe_$asr_bpe/bpe.model" --out-dir $decode_dir \
    --cuts $(printf "data/fbank/${corpus}_cuts_%s.jsonl.gz " $eval_sets) $decode_opts
}
# --keep-last-k 1: each LM directory keeps best.pt (what the later stages read) and its newest
# epoch-N.pt (what a re-run resumes from); the older epochs' checkpoints were 2.7 GB of the
# 4.4 GB of exp/lm in a SNIPS run (session 30; 19 LM runs). A preset's lm_opts can set it again
# (last wins).
lm_common="--preset $lm_preset --nlu-train data/manifests/${corpus}_nlu_train.jsonl.gz \
  --nlu-dev data/manifests/${corpus}_nlu_dev.jsonl.gz --intents data/manifests/${corpus}_intents.txt \
  --slot-tags data/manifests/${corpus}_slot_tags.txt --keep-last-k 1 $lm_opts"
stage_lm() {  # stage_lm NAME train-lm options...
  local name=$1; shift
  # shellcheck disable=SC2086
  logged exp/lm/$name train-lm --exp-dir exp/lm/$name $lm_common "$@"
}
# Every LM system is trained once per seed of $lm_seeds (conf) into exp/lm/NAME/seedN; the LM
# pre-training they start from is one run, shared. systems.toml names them exp/lm/NAME/seed{seed}.
lm_seeds=${lm_seeds:-42}
# Up to lm_seed_jobs (conf, default 1) seeds of a stage train at once, one thread each, in the
# parallel layout only while the RNN-T group's core is idle (asr_core_idle: it has finished, or
# waits for an LM stage not yet passed); elsewhere nothing else runs (run_seeds, jobs.sh).
lm_seed_jobs=${lm_seed_jobs:-1}
lm_seed_free=
# shellcheck source=jobs.sh
. "$recipe_dir/../common/jobs.sh"
stage_lm_seed() {  # stage_lm_seed SEED NAME train-lm options...
  local s=$1 name=$2; shift 2
  stage_lm "$name/seed$s" --seed "$s" "$@"
}
stage_lm_seeds() {  # stage_lm_seeds NAME train-lm options...
  local name=$1; shift
  run_seeds "$lm_seeds" "train-lm $name" stage_lm_seed "$name" "$@"
}
lm_best() {  # lm_best NAME: the best.pt of every seed
  local s
  for s in $lm_seeds; do printf 'exp/lm/%s/seed%s/best.pt ' "$1" "$s"; done
}
pseudo_nlu=data/lm/pseudo_nlu.jsonl.gz
pseudo_opts=${pseudo_opts:-}  # pseudo-label-nlu options (conf)
rescore_jobs=${rescore_jobs:-1}  # stage 24: systems / seeds rescored at once (one process each)
# The multitask model whose NLU heads pick each utterance's biasing lists and label the LM text.
context_lm=${context_lm:-exp/lm/pretrained_multitask_rwm/seed${lm_seeds%% *}/best.pt}
systems_toml=$recipe_dir/conf/systems.toml  # the experiment matrix (stages 22, 24)
report_parallel=
[ "$asr_lm_parallel" != true ] || report_parallel="--parallel 6-8,17-21${fusion_done:+,23} 9-16${fusion_done:+,22}"

export -f log logged stage_bpe stage_train_asr stage_decode stage_lm stage_lm_seed stage_lm_seeds \
  seed_slots run_seeds asr_core_idle

m=data/manifests
stage_prepare_corpus  # stage 0, defined by the corpus's run.sh
# shellcheck disable=SC2086
run_stage 1 "Validate manifests" "$m $audio_in" "" validate-manifests --manifest-dir data/manifests --prefix "$corpus" \
  --splits train $render_split $eval_sets $validate_opts
# shellcheck disable=SC2086
run_stage 2 "Compute fbank features" "$m $audio_in" \
  "$(printf "data/fbank/${corpus}_cuts_%s.jsonl.gz " train $eval_sets)$speed_cuts$render_cuts" \
  compute-fbank --manifest-dir data/manifests --prefix "$corpus" --output-dir data/fbank --num-jobs "$nj" \
    --splits train $render_split $eval_sets ${speed_perturb:+--speed-perturb $speed_perturb}
run_stage 3 "Train BPE models ($bpe_sizes)" "$m" "$(printf 'data/lang_bpe_%s/bpe.model ' $bpe_sizes)" stage_bpe
run_stage 4 "Prepare leak-free LM text" "$m ${lm_text_dir:-}" "data/lm/pretrain.txt data/lm/finetune.txt" \
  prepare-lm-text --manifest-dir data/manifests --prefix "$corpus" --output-dir data/lm \
    ${lm_text_dir:+--lm-text-dir "$lm_text_dir"}
run_stage 5 "Word counts and rare words (K=$rare_threshold)" "$m" "data/lang/word_counts.txt data/lang/rare_words.txt" \
  compute-rare-words --supervisions data/manifests/${corpus}_supervisions_train.jsonl.gz \
    --eval-manifests data/manifests/${corpus}_nlu_dev.jsonl.gz data/manifests/${corpus}_nlu_test.jsonl.gz \
    --lang-dir data/lang --threshold "$rare_threshold"

# Stages 6-8 (RNN-T) and 9-16 (LMs) do not depend on each other and each uses one CPU thread:
# with asr_lm_parallel=true (conf) the RNN-T group runs in the background, next to the LMs, and
# writes its output to log/asr-stages.log; after stage 8 it goes on with the biased and fused first
# passes (stages 17, 19, 23, 18, 20, 21), stage 23 waiting until the LM group has passed stage 22
# (the fusion LM) and stage 18 until it has passed stage 13 (its NLU head). The LM group trains the
# fusion LM right after stage 9, so that neither wait holds up the RNN-T group on a host where
# the LSTMs are slow (the 06b193a run: stage 23 waited 18 min for a stage 22 run last), and
# stage 13 next (before 10-12). While the RNN-T group waits, and once it has finished, its core
# is idle (asr_core_idle), and the LM group trains up to lm_seed_jobs seeds of a stage at once.
# Killing run.sh kills both; a re-run resumes both.
fbank_in="data/fbank data/lang_bpe_$asr_bpe/bpe.model"
asr_stages() {
  run_stage 6 "Train the RNN-T ($asr_preset)" "$fbank_in" "$asr_dir/config.json" stage_train_asr
  run_stage 7 "Average the last $asr_avg checkpoints" .done/stage6 "$asr_dir/avg.pt" \
    logged $asr_dir average-checkpoints --preset "$asr_preset" --exp-dir $asr_dir --avg "$asr_avg" --out $asr_dir/avg.pt
  run_stage 8 "Decode ${eval_sets// /, } to n-best lists" "$fbank_in .done/stage7" \
    "$(nbest_lists $decode_dir)" stage_decode
}
lm_in="$m/${corpus}_nlu_train.jsonl.gz $m/${corpus}_nlu_dev.jsonl.gz $m/${corpus}_intents.txt $m/${corpus}_slot_tags.txt"
lm_stages() {
  run_stage 9 "LM pre-training on plain text" "$lm_in data/lm/pretrain.txt" exp/lm/pretrain/best.pt \
    stage_lm pretrain --mode pretrain --train-text data/lm/pretrain.txt
  if [ "$fusion" = true ]; then
    # shellcheck disable=SC2086
    run_stage 22 "Fusion LM: token LSTM over the ASR's BPE on the LM text" \
      "data/lm/pretrain.txt data/lm/finetune.txt data/lang_bpe_$asr_bpe/bpe.model" "$fusion_lm_dir/best.pt" \
      logged $fusion_lm_dir train-token-lm --text data/lm/pretrain.txt data/lm/finetune.txt \
        --bpe-model "data/lang_bpe_$asr_bpe/bpe.model" --exp-dir $fusion_lm_dir --seed "$seed" $fusion_lm_opts
  fi
  touch log/.lm-stage22-passed  # stage 23 (in the RNN-T group) may use the fusion LM now
  # Stage 13 before 10-12: its NLU head is what stage 18 (RNN-T group) and stage 15 wait for.
  run_stage 13 "Pre-trained LM, multitask fine-tuning (RWM) (seeds $lm_seeds)" "$lm_in .done/stage9" \
    "$(lm_best pretrained_multitask_rwm)" \
    stage_lm_seeds pretrained_multitask_rwm --mode finetune-multitask --scheduler rwm --init-from exp/lm/pretrain/best.pt
  touch log/.lm-stage13-passed  # stage 18 (in the RNN-T group) may use stage 13's NLU head now
  run_stage 10 "LM-only fine-tuning on $corpus_title train text (seeds $lm_seeds)" \
    "$lm_in data/lm/finetune.txt .done/stage9" "$(lm_best lm)" \
    stage_lm_seeds lm --mode finetune-lm --init-from exp/lm/pretrain/best.pt --train-text data/lm/finetune.txt
  run_stage 11 "Multitask LM, linear task weights (seeds $lm_seeds)" "$lm_in" "$(lm_best multitask_linear)" \
    stage_lm_seeds multitask_linear --mode multitask --scheduler linear
  run_stage 12 "Multitask LM, RWM task weights (seeds $lm_seeds)" "$lm_in" "$(lm_best multitask_rwm)" \
    stage_lm_seeds multitask_rwm --mode multitask --scheduler rwm
  if [ "$rwm_sample" = true ]; then
    run_stage 14 "Pre-trained LM, multitask fine-tuning, RWM sampling one task per step (seeds $lm_seeds)" \
      "$lm_in .done/stage9" "$(lm_best pretrained_multitask_rwm_sample)" \
      stage_lm_seeds pretrained_multitask_rwm_sample --mode finetune-multitask --scheduler rwm --rwm-use sample \
        --init-from exp/lm/pretrain/best.pt
  fi
  # shellcheck disable=SC2086
  run_stage 15 "Pseudo-label the LM text with the multitask model's NLU heads" \
    "$lm_in data/lm/pretrain.txt .done/stage13" "$pseudo_nlu" \
    pseudo-label-nlu --checkpoint "$context_lm" --text data/lm/pretrain.txt \
      --dev-nlu "$m/${corpus}_nlu_dev.jsonl.gz" --exclude-nlu "$m/${corpus}_nlu_train.jsonl.gz" \
      --out "$pseudo_nlu" --seed "$seed" $pseudo_opts
  run_stage 16 "Pre-trained LM, multitask fine-tuning (RWM) on $corpus_title train + pseudo-labels (seeds $lm_seeds)" \
    "$lm_in .done/stage9 .done/stage15" "$(lm_best pretrained_multitask_rwm_pseudo)" \
    stage_lm_seeds pretrained_multitask_rwm_pseudo --mode finetune-multitask --scheduler rwm \
      --init-from exp/lm/pretrain/best.pt --nlu-extra "$pseudo_nlu"
}
# Stages 17-21: the NLU labels in the first pass (contextual biasing with slot lexicons).
lex_dir=data/lang/lexicons
gold_sets=$(printf "$m/${corpus}_${gold_kind}_%s.jsonl.gz " $eval_sets)
stage_context_lists() {
  # shellcheck disable=SC2086
  make-context-lists --source predicted --nbest $(printf "$decode_dir/nbest-%s.jsonl.gz " $eval_sets) \
    --lm-checkpoint "$context_lm" --gold $gold_sets --lexicon-dir $lex_dir --out exp/context/predicted.tsv
  # shellcheck disable=SC2086
  make-context-lists --source gold --gold $gold_sets --lexicon-dir $lex_dir --out exp/context/gold.tsv
}
context_patience=${context_patience:-0}  # tune-context --patience (0: every score of the grid)
stage_biased() {  # stage_biased OUT_DIR tune-context options...
  local out=$1; shift
  # shellcheck disable=SC2086
  logged "$out" tune-context --preset "$asr_preset" --checkpoint $asr_dir/avg.pt \
    --bpe-model "data/lang_bpe_$asr_bpe/bpe.model" --out-dir "$out" --tune-set dev \
    --cuts $(printf "data/fbank/${corpus}_cuts_%s.jsonl.gz " $eval_sets) \
    --scores $context_scores --patience "$context_patience" $decode_opts "$@"
}
stage_fused() {
  # shellcheck disable=SC2086
  logged $asr_dir/decode_fused tune-fusion --preset "$asr_preset" --checkpoint $asr_dir/avg.pt \
    --bpe-model "data/lang_bpe_$asr_bpe/bpe.model" --out-dir $asr_dir/decode_fused --tune-set dev \
    --cuts $(printf "data/fbank/${corpus}_cuts_%s.jsonl.gz " $eval_sets) \
    $decode_opts --fusion-lm $fusion_lm_dir/best.pt $fusion_grid
}
# wait_for_lm_stage N WHO: in the parallel layout, until the LM group has passed stage N (run,
# done or out of the requested range); fails when the LM group ended without passing it.
wait_for_lm_stage() {
  [ -n "${lm_pid:-}" ] || return 0
  local said=
  while [ ! -f "log/.lm-stage$1-passed" ]; do
    if ! kill -0 "$lm_pid" 2> /dev/null; then
      rm -f "log/.asr-waits-for-$1"
      log "ERROR: the LM stages ended before stage $1; $2 needs its output"; return 1
    fi
    # this core is idle meanwhile: the LM group may train two seeds at once (asr_core_idle)
    [ -n "$said" ] || { touch "log/.asr-waits-for-$1"; log "$2 waits for the LM group to pass stage $1"; said=1; }
    sleep 5
  done
  rm -f "log/.asr-waits-for-$1"
}
export -f stage_context_lists stage_biased stage_fused wait_for_lm_stage
first_pass_stages() {  # 17-21 (and 23); 19 needs no LM, so it runs before waiting for stage 22 or 13
  run_stage 17 "Slot lexicons from the training NLU labels" "$m/${corpus}_nlu_train.jsonl.gz" "$lex_dir/lexicons.json" \
    extract-slot-lexicon --nlu-manifest $m/${corpus}_nlu_train.jsonl.gz --out-dir $lex_dir $lexicon_opts
  run_stage 19 "Biased decoding, global slot lexicon (score tuned on dev)" "$fbank_in .done/stage7 .done/stage17" \
    "$(nbest_lists $asr_dir/decode_biased_global)" \
    stage_biased $asr_dir/decode_biased_global --context-lexicon $lex_dir/global.txt
  if [ "$fusion" = true ]; then
    if [ "$stage" -le 23 ] && [ "$stop_stage" -ge 23 ]; then wait_for_lm_stage 22 "Stage 23"; fi
    run_stage 23 "Fused decoding: LM shallow fusion (LM/ILM scales, length bonus tuned on dev)" \
      "$fbank_in .done/stage7 .done/stage22" "$(nbest_lists $asr_dir/decode_fused)" stage_fused
  fi
  if [ "$stage" -le 18 ] && [ "$stop_stage" -ge 18 ]; then wait_for_lm_stage 13 "Stage 18"; fi
  run_stage 18 "Intent of each utterance for biasing (predicted, gold)" \
    "$lex_dir .done/stage8 .done/stage13 $gold_sets" "exp/context/predicted.tsv exp/context/gold.tsv" \
    stage_context_lists
  run_stage 20 "Biased decoding, predicted intent's slot lexicon" "$fbank_in .done/stage7 .done/stage18" \
    "$(nbest_lists $asr_dir/decode_biased)" \
    stage_biased $asr_dir/decode_biased --context-lexicon $lex_dir --context-lists exp/context/predicted.tsv
  # the bound: stage 20's system (its dev-tuned score) with the gold intent's lists, no grid of its own
  run_stage 21 "Biased decoding, gold intent's slot lexicon (upper bound)" \
    "$fbank_in .done/stage7 .done/stage18 .done/stage20" "$(nbest_lists $asr_dir/decode_biased_gold)" \
    stage_biased $asr_dir/decode_biased_gold --context-lexicon $lex_dir --context-lists exp/context/gold.tsv \
      --score-from $asr_dir/decode_biased/context-tuned.json
}

# Stage 24's rescore-systems options around its --jobs (early_rescore runs the same command).
rescore_in="$gold_sets data/lang/word_counts.txt"
# shellcheck disable=SC2206
rescore_head=(--systems "$systems_toml" --nbest-dir $decode_dir
  --gold "data/manifests/${corpus}_${gold_kind}_{set}.jsonl.gz" --word-counts data/lang/word_counts.txt
  --threshold "$rare_threshold" --slu-metrics "$slu_metrics" --lm-seeds $lm_seeds)
# shellcheck disable=SC2206
rescore_tail=(--sets $eval_sets ${exclude_systems:+--exclude-systems $exclude_systems}
  --out-dir exp/rescore $tune_opts)
# early_rescore WHO OTHER_DONE OTHER_PID [BUSY]: the last work of a group in the parallel layout
# (conf early_rescore, default true). Once the group WHO has finished its stages, its core is
# idle until the other group ends; meanwhile stage 24's systems whose inputs are ready (LMs
# trained, n-best lists decoded) can be rescored there. One system (seed) per call of stage 24's
# command with --ready-from .done --max-runs 1, one torch thread (as stage 24's --jobs workers:
# the same floats). The RNN-T group, on hosts where it finishes first, holds log/.asr-busy
# meanwhile (no seed starts beside another: asr_core_idle) and starts a run only while no two
# seeds run and no seed waits for the core (rescore_may_take_core: the flags log/.lm-seeds-beside
# and log/.lm-seeds-want of run_seeds); the LM group, on hosts where it finishes first (the
# session-43 bf16 run: 334 s before the RNN-T group's fused and biased decoding, with stage 24
# still to come), rescores the systems of the unbiased lists while those decodings run. Only the
# first group to finish rescores early, one run at a time, until the other has finished
# (early_rescore_loop in jobs.sh); stage 24 then skips every system that is complete and
# unchanged (system.json) and does the rest. A failure here is logged and leaves everything to
# stage 24. Output: log/early-rescore.log.
early_rescore=${early_rescore:-true}
_rescored_runs() {  # the complete system (seed) runs in exp/rescore
  if [ -d exp/rescore ]; then find exp/rescore -name system.json | wc -l; else echo 0; fi
}
_rescore_one() {  # one system run of stage 24's command, on this core
  OMP_NUM_THREADS=1 rescore-systems "${rescore_head[@]}" --jobs 1 "${rescore_tail[@]}" \
    --ready-from .done --max-runs 1 >> log/early-rescore.log 2>&1
}
early_rescore() {
  local who=$1 other_done=$2 other_pid=$3 busy=${4:-}
  [ "$early_rescore" = true ] && [ "$stage" -le 24 ] && [ "$stop_stage" -ge 24 ] || return 0
  [ ! -f "$other_done" ] && kill -0 "$other_pid" 2> /dev/null || return 0  # the other is done too
  log "Early rescoring on the $who's core: stage 24's systems whose inputs are ready, while the other group runs (log/early-rescore.log)"
  early_rescore_loop "$who" "$other_done" "$other_pid" "$busy" _rescore_one _rescored_runs
  log "Early rescoring on the $who's core: the other group has finished; stage 24 does the rest"
}

mkdir -p log
rm -f log/.lm-stage13-passed log/.lm-stage22-passed log/.asr-done log/.asr-waits-for-* log/.asr-busy \
  log/.lm-seeds-beside log/.lm-seeds-want log/.lm-done log/.asr-pid
if [ "$asr_lm_parallel" = true ] && [ "$stage" -le 8 ] && [ "$stop_stage" -ge 9 ]; then
  log "Stages 6-8 and 17-21${fusion_done:+, 23} (RNN-T, biased${fusion_done:+ and fused} decoding) run in the background next to stages 9-16${fusion_done:+, 22} (LMs): tail -f $work_dir/log/asr-stages.log"
  lm_seed_free=asr_core_idle  # (set -a: the stages see it) more LM seeds at once only while idle
  seeds_beside_flag=log/.lm-seeds-beside  # while two seeds run (early_rescore waits meanwhile)
  seeds_want_flag=log/.lm-seeds-want  # while a seed waits for a core (early_rescore leaves it)
  # (not &&: set -e holds) .lm-done once the group is done: its core may rescore meanwhile
  # (early_rescore), while the RNN-T group (its pid in log/.asr-pid, written just below) runs
  { lm_stages; touch log/.lm-done
    until [ -s log/.asr-pid ]; do sleep 1; done
    early_rescore "LM group" log/.asr-done "$(cat log/.asr-pid)"; } &  # (bash runs a trap only between foreground commands)
  lm_pid=$!
  # .asr-done once the group is done: its core is the LMs' now
  { asr_stages; first_pass_stages; touch log/.asr-done
    early_rescore "RNN-T group" log/.lm-done "$lm_pid" log/.asr-busy; } >> log/asr-stages.log 2>&1 &
  asr_pid=$!
  echo "$asr_pid" > log/.asr-pid.tmp && mv log/.asr-pid.tmp log/.asr-pid
  if ! wait $lm_pid; then
    log "ERROR: the LM stages failed (see above)"
    exit 1
  fi
  [ -f log/.asr-done ] \
    || log "Stages 9-16${fusion_done:+, 22} done; waiting for stages 6-8 and 17-21${fusion_done:+, 23} (RNN-T, biased${fusion_done:+ and fused} decoding)"
  if ! wait $asr_pid; then
    tail -n 30 log/asr-stages.log >&2
    log "ERROR: the RNN-T / biased-decoding stages failed; full log: $work_dir/log/asr-stages.log"
    exit 1
  fi
  grep -h "Stage \(6\|7\|8\|17\|18\|19\|20\|21\|23\):" log/asr-stages.log | tail -n 14 || true
else
  asr_stages
  lm_stages
  first_pass_stages
fi

# shellcheck disable=SC2086
run_stage 24 "Tune on dev, rescore, score every system" \
  "$rescore_in $systems_toml $(printf '.done/stage%s ' 8 9 10 11 12 13 16 17 19 20 21) $stage14_done $fusion_done" exp/rescore \
  rescore-systems "${rescore_head[@]}" --jobs "$rescore_jobs" "${rescore_tail[@]}"
run_stage 25 "Rare-word coverage: lexicons, beams, 1-best (test)" ".done/stage24" "exp/coverage/coverage-test.md" \
  rare-word-coverage --gold $m/${corpus}_${gold_kind}_test.jsonl.gz --word-counts data/lang/word_counts.txt \
    --threshold "$rare_threshold" --lexicon-dir $lex_dir --lists exp/context/predicted.tsv \
    --nbest unbiased=$decode_dir/nbest-test.jsonl.gz biased_global=$asr_dir/decode_biased_global/nbest-test.jsonl.gz \
      biased=$asr_dir/decode_biased/nbest-test.jsonl.gz biased_gold=$asr_dir/decode_biased_gold/nbest-test.jsonl.gz \
      ${fusion_done:+fused=$asr_dir/decode_fused/nbest-test.jsonl.gz} \
    --out exp/coverage/coverage-test.md
# shellcheck disable=SC2086
run_stage 26 "Write RESULTS.md" ".done/stage24 .done/stage25 $systems_toml" "RESULTS.md results.json" \
  make-report --systems "$systems_toml" --lm-seeds $lm_seeds --sets $eval_sets \
    ${exclude_systems:+--exclude-systems $exclude_systems} --rescore-dir exp/rescore --out RESULTS.md \
    --title "$corpus_title recipe results ($preset preset)" \
    --config-files "$asr_dir/config.json" 'exp/lm/*/config.json' 'exp/lm/*/seed*/config.json' \
      ${fusion_done:+"$fusion_lm_dir/config.json"} \
    --cmd-files "$asr_dir/cmd.sh" "$asr_dir/decode_biased*/cmd.sh" 'exp/lm/*/cmd.sh' 'exp/lm/*/seed*/cmd.sh' \
      ${fusion_done:+"$fusion_lm_dir/cmd.sh" "$asr_dir/decode_fused/cmd.sh"} \
    --done-dir .done $report_parallel --decode-dir $decode_dir --asr-log-dir "$asr_dir/log" \
    --extra-md exp/coverage/coverage-test.md

log "All requested stages done."
