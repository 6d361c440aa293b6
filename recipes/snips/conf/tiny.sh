# Tiny preset: the whole recipe in minutes on 2 CPU cores (CI).
max_per_split=40
asr_train_subset=30
render_nlu_only=false   # as the default preset: only the ASR subset of train is synthesized
bpe_sizes="64"
rare_threshold=2
tts_backend=espeak-ng
tts_plan="train=espeak-ng,flite:awb,flite:rms;dev=espeak-ng,flite:slt;test=espeak-ng,flite:kal16;test_unseen_engine=festival"
seed=13
nj=1
asr_lm_parallel=true
# Model sizes and optimiser settings: the named presets of asr/config.py and lm/config.py; any
# field can be overridden in asr_train_opts / lm_opts. The values each run used are written to
# exp/*/config.json and listed in RESULTS.md ("Resolved configurations").
asr_preset=tiny
asr_bpe=64
asr_train_opts="--num-epochs 2"
speed_perturb="0.9 1.1"   # stored speed-perturbed train copies (as in the default preset)
train_renders=2           # each train sentence also rendered by another engine (exercises the code)
asr_avg=1
decode_opts="--method modified_beam --beam 4 --nbest 4 --max-sym-per-frame 2"
lm_preset=tiny
lm_opts="--epochs 1"
rescore_jobs=2   # stage 24: two systems / seeds at once, one core each
tune_opts="--lm-scale-min 0 --lm-scale-max 1 --lm-scale-step 0.25 --word-bonus-min 0 --word-bonus-max 1 --word-bonus-step 0.5"
# Systems, labels, the headline system, comparisons and targets: conf/systems.toml
lexicon_opts="--min-count 1 --max-phrases 0"
lm_seeds="42 43"
lm_seed_jobs=2     # two seeds at once where a core is idle (exercises run_seeds)
pseudo_opts="--threshold 0 --max-sentences 200"   # the tiny model reaches no dev precision
context_scores="0.5 1"
fusion=true   # stages 22-23: a tiny fusion LM and a 2-point grid (exercises the code)
fusion_lm_opts="--embed-dim 16 --hidden-dim 32 --num-epochs 1 --batch-tokens 2000"
fusion_grid="--lm-scales 0 0.2 --ilm-scales 0 --length-bonuses 0"
