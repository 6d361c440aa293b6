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
tune_opts="--lm-scale-min 0 --lm-scale-max 1 --lm-scale-step 0.25 --word-bonus-min 0 --word-bonus-max 1 --word-bonus-step 0.5"
lexicon_opts="--min-count 1 --max-phrases 0"
context_lm=exp/lm/pretrained_multitask_rwm/best.pt
context_scores="0.5 1"
