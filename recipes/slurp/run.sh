#!/usr/bin/env bash
# SLURP recipe: RNN-T ASR with NLU-aware multitask-LM n-best rescoring on real speech.
#
# Usage: ./run.sh --corpus-dir DIR [--preset default|gpu|tiny] [--stage N] [--stop-stage M]
#                 [--work-dir DIR] [--lm-text-dir DIR] [--on-change stop|rerun|always]
#
# --corpus-dir is a clone of github.com/pswietojanski/slurp (dataset/slurp/*.jsonl) with the
# audio of its Zenodo release (record 4274930: slurp_real.tar.gz, slurp_synth.tar.gz, about
# 6 GB) unpacked in DIR/audio/ (scripts/download_audio.sh does this). Without the audio,
# stage 0 writes the NLU manifests and stops saying what to download.
# The stages and their rules are the SNIPS recipe's (recipes/common/run.sh): a finished stage
# leaves $work_dir/.done/stageN; a re-run skips a stage only when its record matches.
#
#  stage 0  prepare-slurp       SLURP JSONL + FLAC -> data/manifests/slurp_{recordings,supervisions}_*.jsonl.gz
#                               (one per recording), slurp_nlu_*.jsonl.gz (one per sentence)
#  stage 1  validate-manifests  data/manifests -> (checks Lhotse + intent/slot fields + every audio header)
#  stage 2  compute-fbank       data/manifests -> data/fbank/slurp_cuts_{train,dev,test}.jsonl.gz
#  stage 3  train-bpe           ASR train transcripts -> data/lang_bpe_N/bpe.model for N in $bpe_sizes
#  stage 4  prepare-lm-text     --lm-text-dir (else ../shared/data/lm_text) + SLURP train -> data/lm/{pretrain,finetune}.txt
#  stage 5  compute-rare-words  ASR train transcripts -> data/lang/{word_counts,rare_words}.txt
#  stage 6  train-asr           data/fbank + data/lang_bpe_N -> exp/asr/conformer_rnnt/epoch-N.pt
#  stage 7  average-checkpoints exp/asr/conformer_rnnt/epoch-*.pt -> .../avg.pt
#  stage 8  decode-asr          avg.pt -> exp/asr/conformer_rnnt/decode/nbest-{dev,test}.jsonl.gz (+ lattices,
#                               recogs/errs/wer-summary, oracle WER, RTF)
#  stage 9  train-lm pretrain   data/lm/pretrain.txt -> exp/lm/pretrain/best.pt (one run, shared)
#  Stages 10-16 train each LM system once per seed of $lm_seeds -> exp/lm/<system>/seed<N>/best.pt
#  stage 10 train-lm            LM-only fine-tuning on SLURP train text -> exp/lm/lm/
#  stage 11 train-lm            multitask from scratch, linear weights -> exp/lm/multitask_linear/
#  stage 12 train-lm            multitask from scratch, RWM weights -> exp/lm/multitask_rwm/
#  stage 13 train-lm            pre-trained LM, multitask fine-tuning (RWM) -> exp/lm/pretrained_multitask_rwm/
#  stage 14 train-lm            the same, RWM sampling one task per step -> .../pretrained_multitask_rwm_sample/
#  stage 15 pseudo-label-nlu    stage 13's NLU heads label data/lm/pretrain.txt; confidence threshold
#                               chosen on dev -> data/lm/pseudo_nlu.jsonl.gz (+ .stats.json)
#  stage 16 train-lm            as stage 13 on SLURP train + pseudo-labels -> .../pretrained_multitask_rwm_pseudo/
#  stage 17 extract-slot-lexicon NLU labels of SLURP train only -> data/lang/lexicons/ (phrases
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
recipe_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
corpus=slurp
corpus_title=SLURP
gold_kind=supervisions      # several recordings per sentence: the evaluated ids are the recordings'
audio_in=                   # the audio stays in --corpus-dir (stage 0 fingerprints it)
slu_metrics=slurp          # score-wer --slu-metrics
validate_opts="--text-only-nlu true"
stage_prepare_corpus() {
  if [ "$stage" -le 0 ] && [ -z "${corpus_dir:-}" ]; then
    log "ERROR: --corpus-dir is required: a clone of github.com/pswietojanski/slurp with the audio of its Zenodo release (record 4274930) in <dir>/audio (see ./run.sh --help)"
    return 2
  fi
  # shellcheck disable=SC2086
  run_stage 0 "Prepare SLURP manifests" "$corpus_dir" \
    "$m/slurp_supervisions_train.jsonl.gz $m/slurp_nlu_test.jsonl.gz $m/slurp_intents.txt" \
    prepare-slurp --corpus-dir "$corpus_dir" --output-dir data/manifests $prepare_opts
}
. "$recipe_dir/../common/run.sh"
