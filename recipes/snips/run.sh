#!/usr/bin/env bash
# SNIPS recipe: RNN-T ASR with NLU-aware multitask-LM n-best rescoring.
#
# Usage: ./run.sh [--preset default|tiny] [--stage N] [--stop-stage M] [--work-dir DIR]
#                 [--corpus-dir DIR] [--lm-text-dir DIR]
#
# Every stage is one installed entry point (see its --help); a finished stage leaves
# $work_dir/.done/stageN and is skipped on re-run (delete the marker to redo it).
#
#  stage 0  prepare-snips       SNIPS TSVs (--corpus-dir, else download, else ../shared copy)
#                               -> data/manifests/snips_{recordings,supervisions,nlu}_*.jsonl.gz,
#                                  data/audio/{split}/*.wav (espeak-ng TTS, voices disjoint per split)
#  stage 1  validate-manifests  data/manifests -> (checks Lhotse + intent/slot fields)
#  stage 2  compute-fbank       data/manifests -> data/fbank/snips_cuts_{train,dev,test}.jsonl.gz
#  stage 3  train-bpe           ASR train transcripts -> data/lang_bpe_N/bpe.model for N in $bpe_sizes
#  stage 4  prepare-lm-text     ../shared/data/lm_text + SNIPS train -> data/lm/{pretrain,finetune}.txt
#  stage 5  compute-rare-words  ASR train transcripts -> data/lang/{word_counts,rare_words}.txt
set -euo pipefail

recipe_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
preset=default
stage=0
stop_stage=100
work_dir=$recipe_dir
corpus_dir=
lm_text_dir=

while [ $# -gt 0 ]; do
  case "$1" in
    --preset) preset=$2; shift 2 ;;
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --work-dir) work_dir=$2; shift 2 ;;
    --corpus-dir) corpus_dir=$(realpath "$2"); shift 2 ;;
    --lm-text-dir) lm_text_dir=$(realpath "$2"); shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "$0: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

conf=$recipe_dir/conf/$preset.sh
[ -f "$conf" ] || { echo "$0: no preset file $conf" >&2; exit 2; }
# shellcheck source=conf/default.sh
. "$conf"

log() {
  local fname=${BASH_SOURCE[1]##*/}
  echo -e "$(date '+%Y-%m-%d %H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"
}

# run_stage N "description" command...: runs once, then leaves a marker.
run_stage() {
  local n=$1 desc=$2; shift 2
  if [ "$stage" -gt "$n" ] || [ "$stop_stage" -lt "$n" ]; then return 0; fi
  if [ -f ".done/stage$n" ]; then
    log "Stage $n: $desc - already done, skipping"
    return 0
  fi
  log "Stage $n: $desc"
  local t0=$SECONDS
  "$@"
  mkdir -p .done && echo "$((SECONDS - t0))" > ".done/stage$n"
  log "Stage $n: done in $((SECONDS - t0)) s"
}

mkdir -p "$work_dir" && cd "$work_dir"
log "Preset $preset ($conf), work dir $work_dir, stages $stage..$stop_stage"

stage_bpe() { local size; for size in $bpe_sizes; do train-bpe --vocab-size "$size" --lang-dir "data/lang_bpe_$size"; done; }

run_stage 0 "Prepare SNIPS manifests and synthesize audio" \
  prepare-snips ${corpus_dir:+--corpus-dir "$corpus_dir"} --download-dir download/snips \
    --output-dir data/manifests --audio-dir data/audio --asr-train-subset "$asr_train_subset" \
    --max-per-split "$max_per_split" --tts-backend "$tts_backend" --seed "$seed" --num-jobs "$nj"
run_stage 1 "Validate manifests" validate-manifests --manifest-dir data/manifests
run_stage 2 "Compute fbank features" \
  compute-fbank --manifest-dir data/manifests --output-dir data/fbank --num-jobs "$nj"
run_stage 3 "Train BPE models ($bpe_sizes)" stage_bpe
run_stage 4 "Prepare leak-free LM text" \
  prepare-lm-text --manifest-dir data/manifests --output-dir data/lm \
    ${lm_text_dir:+--lm-text-dir "$lm_text_dir"}
run_stage 5 "Word counts and rare words (K=$rare_threshold)" \
  compute-rare-words --supervisions data/manifests/snips_supervisions_train.jsonl.gz \
    --eval-manifests data/manifests/snips_nlu_dev.jsonl.gz data/manifests/snips_nlu_test.jsonl.gz \
    --lang-dir data/lang --threshold "$rare_threshold"

log "All requested stages done."
