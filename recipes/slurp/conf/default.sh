# Default (CPU) preset of the SLURP recipe: every size, count and weight lives here.
# Real recordings (headset + far-field) of train; devel/test as released. On 2 CPU cores the
# RNN-T sees a fraction of SLURP's ~50k train recordings in its budget: use the gpu preset for
# the real corpus.
prepare_opts="--mic all --max-per-split 0"   # prepare-slurp options (see its --help)
bpe_sizes="256"
rare_threshold=5
seed=13
nj=2
asr_lm_parallel=true
asr_preset=default
asr_bpe=256
asr_train_opts="--max-minutes 75"
asr_avg=3
decode_opts="--method modified_beam --beam 16 --nbest 16 --max-sym-per-frame 2"
lm_preset=default
lm_opts=""
rescore_jobs=2   # stage 22: two systems / seeds at once, one core each
tune_opts="--lm-scale-min 0 --lm-scale-max 1.5 --lm-scale-step 0.05 --word-bonus-min -1 --word-bonus-max 3 --word-bonus-step 0.25"
lexicon_opts="--min-count 1 --max-phrases 0"
lm_seeds="42 43 44"
pseudo_opts="--min-precision 0.9 --max-sentences 20000"
context_scores="0.25 0.5 0.75 1"
