#!/usr/bin/env bash
# SNIPS recipe: RNN-T ASR with NLU-aware multitask-LM n-best rescoring.
#
# Usage: ./run.sh [--preset default|tiny] [--stage N] [--stop-stage M] [--work-dir DIR]
#                 [--corpus-dir DIR] [--lm-text-dir DIR] [--on-change stop|rerun|always]
#
# Every stage is one installed entry point (see its --help). A finished stage leaves
# $work_dir/.done/stageN recording what made it (command, preset variables, input fingerprints,
# promised outputs; see `stage-marker --help`). A re-run skips a stage only when that record
# matches; a stage done by another preset/options/inputs stops the run with the differences
# (--on-change rerun redoes it instead), a stage whose outputs are gone runs again. The records
# hold commands and inputs, not the Python code: --on-change always redoes every stage from
# --stage to --stop-stage (e.g. --stage 26 --stop-stage 26 after a fix to make-report).
# One run.sh at a time per work dir: a second one (or a re-run while the stages of a killed
# run.sh are still alive) stops and names the processes that hold the work dir.
#
#  stage 0  prepare-snips       SNIPS TSVs (--corpus-dir, else download, else ../shared copy)
#                               -> data/manifests/snips_{recordings,supervisions,nlu}_*.jsonl.gz,
#                                  data/audio/{split}/*.wav (TTS engines and voices per split: conf
#                                  tts_plan; voices disjoint per split; with a test_unseen_engine
#                                  split, the test sentences by engines train and dev never use)
#  stage 1  validate-manifests  data/manifests -> (checks Lhotse + intent/slot fields + every audio header)
#  stage 2  compute-fbank       data/manifests -> data/fbank/snips_cuts_{train,dev,test}.jsonl.gz
#                                  (+ snips_cuts_train_sp<f>.jsonl.gz with conf speed_perturb)
#  stage 3  train-bpe           ASR train transcripts -> data/lang_bpe_N/bpe.model for N in $bpe_sizes
#  stage 4  prepare-lm-text     --lm-text-dir (else ../shared/data/lm_text) + SNIPS train -> data/lm/{pretrain,finetune}.txt
#  stage 5  compute-rare-words  ASR train transcripts -> data/lang/{word_counts,rare_words}.txt
#  stage 6  train-asr           data/fbank + data/lang_bpe_N -> exp/asr/conformer_rnnt/epoch-N.pt
#  stage 7  average-checkpoints exp/asr/conformer_rnnt/epoch-*.pt -> .../avg.pt
#  stage 8  decode-asr          avg.pt -> exp/asr/conformer_rnnt/decode/nbest-{dev,test[,test_unseen_engine]}.jsonl.gz (+ lattices,
#                               recogs/errs/wer-summary, oracle WER, RTF)
#  stage 9  train-lm pretrain   data/lm/pretrain.txt -> exp/lm/pretrain/best.pt (one run, shared)
#  Stages 10-16 train each LM system once per seed of $lm_seeds -> exp/lm/<system>/seed<N>/best.pt
#  stage 10 train-lm            LM-only fine-tuning on SNIPS train text -> exp/lm/lm/
#  stage 11 train-lm            multitask from scratch, linear weights -> exp/lm/multitask_linear/
#  stage 12 train-lm            multitask from scratch, RWM weights -> exp/lm/multitask_rwm/
#  stage 13 train-lm            pre-trained LM, multitask fine-tuning (RWM) -> exp/lm/pretrained_multitask_rwm/
#  stage 14 train-lm            the same, RWM sampling one task per step -> .../pretrained_multitask_rwm_sample/
#  stage 15 pseudo-label-nlu    stage 13's NLU heads label data/lm/pretrain.txt; confidence threshold
#                               chosen on dev -> data/lm/pseudo_nlu.jsonl.gz (+ .stats.json)
#  stage 16 train-lm            as stage 13 on SNIPS train + pseudo-labels -> .../pretrained_multitask_rwm_pseudo/
#  stage 17 extract-slot-lexicon NLU labels of SNIPS train only -> data/lang/lexicons/ (phrases
#                               per slot type, per intent, global)
#  stage 18 make-context-lists  intent of each dev/test utterance from the multitask LM's NLU head
#                               on the unbiased 1-best -> exp/context/predicted.tsv; gold intents
#                               (upper bound only) -> exp/context/gold.tsv
#  stage 19 tune-context        biased decoding, global lexicon: context score tuned on dev ->
#                               $asr_dir/decode_biased_global/
#  stage 20 tune-context        biased decoding, the predicted intent's lexicon -> .../decode_biased/
#  stage 21 tune-context        biased decoding, the gold intent's lexicon, at stage 20's context
#                               score (the bound of stage 20's system) -> .../decode_biased_gold/
#  stage 22 train-token-lm      (conf fusion=true) data/lm/{pretrain,finetune}.txt in the ASR's BPE ->
#                               exp/asr/token_lm/best.pt (the LM of shallow fusion)
#  stage 23 tune-fusion         (conf fusion=true) LM shallow fusion in the first pass, LM / internal-LM
#                               scales and length bonus tuned on dev -> $asr_dir/decode_fused/
#  stage 24 rescore-systems     conf/systems.toml (the experiment matrix): every system (each LM
#                               seed) -> exp/rescore/<system>[/seed<N>]/ (λ, β tuned on dev only;
#                               NLU of the chosen hypothesis; a complete, unchanged system is skipped)
#  stage 25 rare-word-coverage  where the rare test words are: in the lexicons, the n-best, the 1-best
#                               (unbiased, biased and fused first passes) -> exp/coverage/coverage-test.md
#  stage 26 make-report         conf/systems.toml + exp/rescore + .done -> RESULTS.md, results.json, plots/
#  With asr_lm_parallel=true, stages 6-8 then 17-21 and 23 run next to stages 9, 22, 13, 10-12, 14-16
#  (one core each; while the RNN-T group waits or has finished, up to conf lm_seed_jobs LM seeds at once;
#  once it has finished, it rescores stage 24's systems whose LMs are trained while no two seeds run;
#  where the LM group finishes first, it rescores the systems whose inputs are ready meanwhile).
set -euo pipefail
# The stages 1-26 and the options are shared by every corpus: recipes/common/run.sh.
recipe_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
corpus=snips
corpus_title=SNIPS
gold_kind=nlu          # snips_nlu_{dev,test}: one row per utterance, ids = the audio's ids
audio_in=data/audio    # stage 0's synthesized audio (an input of stages 1-2)
slu_metrics=snips          # score-wer --slu-metrics
validate_opts=
# SNIPS annotations when the download fails (the project's read-only copy, where it exists)
snips_local_copy=$(realpath -m "$recipe_dir/../../../shared/data/snips")
[ -d "$snips_local_copy" ] || snips_local_copy=
stage_prepare_corpus() {
  local tts=(--tts-backend "$tts_backend")  # one engine for every split, or the conf's plan
  [ -z "${tts_plan:-}" ] || tts=(--tts-plan "$tts_plan")
  # conf render_nlu_only=false: only the ASR subset of train is synthesized, the other train rows
  # are text-only NLU supervisions, so stage 1 checks the NLU manifests as text (SLURP's rule)
  # and their audio through the supervisions manifests.
  local render=${render_nlu_only:-true}
  [ "$render" = true ] || validate_opts="--text-only-nlu true"
  run_stage 0 "Prepare SNIPS manifests and synthesize audio" \
    "${corpus_dir:-}" \
    "$m/${corpus}_supervisions_train.jsonl.gz $m/${corpus}_nlu_test.jsonl.gz $m/${corpus}_intents.txt data/audio${render_split:+ $m/${corpus}_supervisions_$render_split.jsonl.gz}" \
    prepare-snips ${corpus_dir:+--corpus-dir "$corpus_dir"} --download-dir download/snips \
      ${snips_local_copy:+--local-copy-dir "$snips_local_copy"} \
      --output-dir data/manifests --audio-dir data/audio --asr-train-subset "$asr_train_subset" \
      --max-per-split "$max_per_split" --render-nlu-only "$render" --seed "$seed" --num-jobs "$nj" \
      --train-renders "$train_renders" "${tts[@]}"
}
. "$recipe_dir/../common/run.sh"
