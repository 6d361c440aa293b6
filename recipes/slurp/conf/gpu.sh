# GPU preset of the SLURP recipe: sized for one modern GPU (or several through torchrun).
# Not run in this repository's CI (no GPU there); see README "SLURP on a GPU" for what it needs.
prepare_opts="--mic all --max-per-split 0 --include-synthetic true"   # + slurp_synth in train
bpe_sizes="500"
rare_threshold=5
seed=13
nj=8
asr_lm_parallel=false        # the GPU trains the RNN-T, then the LMs, one after the other
# asr/config.py preset "large": 12-layer 256-dim Conformer, 600 s batches, AMP, 4 data workers
asr_preset=large
asr_launcher="torchrun --nproc-per-node 1 -m asr.train"   # --nproc-per-node N: DDP over N GPUs
asr_bpe=500
asr_train_opts="--device cuda --num-epochs 30"
asr_avg=5
# Speed perturbation as Kaldi and icefall recipes use it on real speech: stage 2 stores the
# features of x0.9 and x1.1 copies of train, stage 6 draws one version per utterance and epoch
# (train-asr --speed-cuts). Not in the CPU preset, whose RNN-T sees a fraction of train anyway.
speed_perturb="0.9 1.1"
decode_opts="--method modified_beam --beam 16 --nbest 16 --max-sym-per-frame 2 --device cuda --max-duration 600"
lm_preset=default
lm_opts=""                   # train-lm has no GPU path yet: the small LMs train on the CPU (~32 min)
rescore_jobs=2   # stage 24: two systems / seeds at once, one core each
tune_opts="--lm-scale-min 0 --lm-scale-max 1.5 --lm-scale-step 0.05 --word-bonus-min -1 --word-bonus-max 3 --word-bonus-step 0.25"
lexicon_opts="--min-count 1 --max-phrases 0"
lm_seeds="42 43 44"
rwm_sample=false   # stage 14 (RWM sampling; measured worse than scaling on SNIPS) is left out
pseudo_opts="--min-precision 0.9 --max-sentences 50000 --batch-size 256"
context_scores="0.1 0.2 0.3 0.5 0.75 1"
context_patience=1
