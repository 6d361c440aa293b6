# Tiny preset: the SLURP recipe end to end in minutes on a SLURP-format fixture (CI).
prepare_opts="--mic all --max-per-split 0"
bpe_sizes="48"
rare_threshold=2
seed=13
nj=1
asr_lm_parallel=true
asr_preset=tiny
asr_bpe=48
asr_train_opts="--num-epochs 2"
asr_avg=1
decode_opts="--method modified_beam --beam 4 --nbest 4 --max-sym-per-frame 2"
lm_preset=tiny
lm_opts="--epochs 1"
rescore_jobs=2   # stage 24: two systems / seeds at once, one core each
tune_opts="--lm-scale-min 0 --lm-scale-max 1 --lm-scale-step 0.25 --word-bonus-min 0 --word-bonus-max 1 --word-bonus-step 0.5"
lexicon_opts="--min-count 1 --max-phrases 0"
# One LM seed and no stage 14 (RWM sampling): the SNIPS tiny preset covers several seeds and
# stage 14; this preset keeps what is SLURP's own (prepare-slurp, recording-level gold, SLU metrics).
lm_seeds="42"
rwm_sample=false
pseudo_opts="--threshold 0 --max-sentences 200"   # the tiny model reaches no dev precision
context_scores="0.5 1"
