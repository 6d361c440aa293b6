# Default preset of the SNIPS recipe: every size, count and weight of the data stages lives here.
# (Sourced by run.sh; later stages append their settings.)
max_per_split=0          # 0 = all SNIPS rows
asr_train_subset=6000    # train utterances with audio for the RNN-T (limited paired data)
# The other 7,084 train rows are NLU text only (LMs, slot lexicons): not synthesized (about half
# of stage 0's TTS time); true renders them too (snips_recordings_train_all, real durations).
render_nlu_only=false
bpe_sizes="128 256"      # data/lang_bpe_N for each N
rare_threshold=5         # K: a word seen < K times in the ASR transcripts is rare
tts_backend=espeak-ng    # the engine of every split when tts_plan is empty
# TTS engines and voices per split (data_prep/tts_plan.py; issue 13): training mixes four
# engines - espeak-ng (formants), two flite voices, MBROLA's four English diphone voices and SVOX
# Pico's two HMM voices (Debian contrib / non-free: make system-deps adds them; licences in the
# README) - each train utterance drawing its engine uniformly; dev and test each add a flite
# voice no training utterance uses; the extra evaluation set test_unseen_engine is the test text
# spoken by festival, an engine that neither train nor dev uses (its voices kal_diphone,
# ked_diphone, cmu_us_slt_arctic_hts). Dev, test and test_unseen_engine are the same audio as
# with the earlier two-engine plan (conf/two_train_engines.sh). Held-out-engine WER: one
# training engine 94%, two 51.69, four 44.00 (dev 34.62 -> 34.53; every voice unseen in training
# 3.5-9.5 points better, espeak-ng's own voices 3.5-4.7 worse: RESULTS.md, "Number of training
# engines" and the Discussion).
tts_plan="train=espeak-ng,flite:awb,flite:rms,mbrola,pico;dev=espeak-ng,flite:slt;test=espeak-ng,flite:kal16;test_unseen_engine=festival"
seed=13
nj=2                     # processes for TTS / fbank
asr_lm_parallel=true     # stages 6-8 + 17-21 (RNN-T, biased decoding) and 9-16 (LMs) side by side, one core each
# ASR (asr/config.py presets; any train-asr option can be added to asr_train_opts)
# Model sizes and optimiser settings: the named presets of asr/config.py and lm/config.py; any
# field can be overridden in asr_train_opts / lm_opts. The values each run used are written to
# exp/*/config.json and listed in RESULTS.md ("Resolved configurations").
asr_preset=default
asr_bpe=128
# Training budget: a step count, so how long the model trains does not depend on the host's speed
# (two runs of identical training under a 75-minute budget stopped at steps 3,552 and 3,233 on two
# hosts of this machine type: test WER 43.88 against 46.30). 3,400 steps took 65.2 min in the
# d9ec6f7 run and would take about 72-79 min at those two hosts' step rates; --max-minutes is only
# the cap that keeps a slower host within the recipe's 2 h (the run then stops before step 3,400,
# and RESULTS.md's learning curve shows where). The LMs (stages 9-16, 3 seeds) train on the other
# core.
# LR cool-down (session 41, train-asr --lr-cooldown-steps): the Noam LR falls linearly to 0 over
# the last 700 steps (about 20% of the budget), and stage 7's average (epochs 9-11) then includes
# the short partial newest epoch the step budget ends (its weights are the most annealed). Chosen
# on dev by resuming the session-40 run's own checkpoints (same data, seed and batches, steps
# bit for bit equal until the cool-down starts): dev loss at step 3,400 1.790 (700 steps) / 1.827
# (1,400) against 1.862 without; 1-best / 16-best oracle dev WER of the recipe's decoding 37.74 /
# 31.20 (700) / 38.64 / 31.72 (1,400) against 38.39 / 31.52 (asr/README.md, "LR cool-down").
asr_train_opts="--max-steps 3400 --max-minutes 80 --lr-cooldown-steps 700"
lm_opts=""
# Where bf16 pays (cpu_bf16_pays, recipes/common/host.sh: the CPU has native bf16 and check-bf16
# measures bf16 training steps >= 1.1x faster; since session 36, before the flag alone decided:
# on an "Intel Xeon" host with avx512_bf16 and no AMX, bf16 steps were 0.92x (RNN-T) and 0.65x
# (LM) as fast as fp32 ones, and that branch's run there trained 1.8-2.3x slower than on the AMD
# host, RESULTS.md "A host where bf16 does not pay") both trainings run their steps
# under bf16 autocast (--cpu-bf16; losses, weights and dev checks stay fp32): 1.41x faster RNN-T
# steps and 1.65x faster LM steps on this machine type (asr/README.md, lm/README.md). In the
# recipe, next to the bf16 LM branch, the first 1,600 RNN-T steps took 0.57 s each with the dev
# checks (2026-12-04, a run of edb3fc6 stopped there), so 7,000 steps fit in about 70 min; the
# preset's 14 epochs end at step 4,913 (the a1dca08 run stopped there), so the cap is raised to
# 30 epochs (about 351 steps each) and the step count ends the training. The LMs, whose budgets
# are minutes or epochs, reach their epoch caps sooner. Elsewhere bf16 is emulated and slower:
# fp32, 3,400 steps. The bf16 cap is 90 min since 2026-12-05 (80 before): on an "Intel Xeon"
# host with amx_bf16 a recipe step took 0.8 s (0.49 s on the "AMD EPYC" host of the bcb7271
# run), so 7,000 steps do not fit in 80 min there; the fresh-clone run of 1ffc5e2 on that host
# (which asked for 10,000 steps: the Noam schedule depends on the step only, so up to the cap it
# is this preset's training) stopped at the 90-min cap at step 6,471 and the recipe took 103 min
# (RESULTS.md). On the AMD host 7,000 steps take 57 min.
# LM shallow fusion in the first pass (stages 22-23, asr/README.md "LM shallow fusion"): a token
# LSTM (1.7M parameters) over the RNN-T's BPE 128 ids, trained on the LM text (bf16 hosts: 4
# epochs, 16-27 min in the LM group; elsewhere 2 epochs), and the
# fused search with the LM scale, internal-LM scale and length bonus chosen on dev from fusion_grid
# (8 points since session 46, below). On the report model (the 1ffc5e2 run's avg.pt; stages
# 22-23 run in its work dir) the grid picked LM 0.2, ILM 0.1, bonus 0.5: 1-best dev 34.56 ->
# 32.79, test 40.42 -> 37.90, held-out engine 44.71 -> 41.91, test rare-word WER 104.86 -> 98.41;
# + LM rescoring test 37.04, the best system (RESULTS.md, "LM shallow fusion in the first
# pass"). 6 epochs instead of 3 (session 27, on the 1f01e5b fresh
# run's RNN-T, at its chosen point LM 0.2 / ILM 0.1 / bonus 0.75): validation perplexity 4.32 ->
# 3.96, dev 32.94 -> 32.62 (epoch 5: 32.27); the LM group had 24 min of slack in that run. On the
# 8c5d83c fresh run's RNN-T, each LM with its own dev-tuned point: dev 33.80 -> 33.20, held-out
# engine 42.54 -> 42.25, test 38.48 -> 39.29 (rare-word 98.12 -> 96.92): within the noise.
# 4 epochs since session 34: on the "AMD EPYC" host of the 06b193a run an epoch took 400 s
# (234 s on the "Intel Xeon" host), so 6 epochs (2,448 s) made the LM group the longer one and
# the recipe 137 min; that run's validation loss by epoch: 1.642 1.541 1.464 1.422 1.393 1.375.
# The eb4afe9 run (4 epochs, same host, the same RNN-T bit for bit, RESULTS.md) took 113 min, at a
# measured cost: fused 1-best dev 30.02 -> 30.56, test 35.12 -> 36.42 (the same dev-chosen point),
# the best system test 33.86 -> 34.59, dev 29.23 -> 29.03. Where an epoch takes ~234 s, 6 epochs
# still fit in 2 h ("--num-epochs 6 --cpu-bf16 true" here).
# Cosine LR since session 35 (train-token-lm --lr-schedule cosine: from --lr down to a tenth over
# the planned steps; before, 2e-3 constant, the plateau decay never fired). Validation loss of
# the LM text's held-out lines by epoch, same data and seed as the eb4afe9 run, trained next to
# each other on this host: constant 2e-3 1.642 1.541 1.464 1.422; cosine from 2e-3 1.631 1.528
# 1.417 1.388; cosine from 4e-3 1.642 1.521 1.407 1.371 (6 constant epochs: 1.375). Chosen: 4e-3.
# The 1e5acfa run (RESULTS.md): fused 1-best dev / test 30.04 / 35.62 against 30.15 / 36.24 with the
# old LM on the same avg.pt (one training each).
# fp32 hosts: 2 epochs since session 38. On the "AMD EPYC" host without AVX-512 of the session-37
# run (RESULTS.md "An AMD host without AVX-512") an fp32 epoch took 928 s: 3 epochs (2,785 s)
# made the LM group 118 min and the recipe 139 min; 2 epochs bring stage 13 and all after it
# 15 min earlier (validation loss there: 1.408 after 3 epochs). Measured in the session-38
# fresh-clone run on that host (same RNN-T bit for bit): 1,705 s, loss 1.472, fused 1-best
# dev / test / held-out 37.42 / 40.28 / 44.00 against 37.05 / 39.88 / 44.05; recipe 117 min.
fusion=true
fusion_lm_opts="--num-epochs 2 --lr-schedule cosine --lr 4e-3"
# LM scale 0.1 left the grid in session 46 (8 points; ~40 s of dev decoding each on the bf16
# host class, so ~160 s of the RNN-T group): it was never chosen, and in the three bf16 runs
# whose grids are on disk (cc6b815, b2142d5, 34fc451) its best point was 1.07, 1.50 and 0.81
# dev points worse than the chosen one; every earlier run's report names LM 0.2 or 0.3.
fusion_grid="--lm-scales 0.2 0.3 --ilm-scales 0 0.1 --length-bonuses 0.5 0.75"
# Batches of 120 s (--max-duration 120 --warmup-steps 150 --valid-interval 100, 3,500 steps)
# were tried in a fresh-clone run (2026-12-06, session 30, RESULTS.md "The 120-s batch run"):
# the 90-min cap stopped it at step 2,209 (76% of the audio the cc7e2de run's 60-s training saw
# on a faster hour of the host), 1-best dev 37.28 against 35.43; the preset keeps 60 s.
if cpu_bf16_pays; then
  # The cool-down: the same share of the steps as in fp32. Measured on a bf16 host in the
  # cc6b815 run (session 43, RESULTS.md): the training is session 35's bit for bit until step
  # 5,600; the last checkpoint's dev loss 1.596 against 1.643, but the averaged model's 1-best /
  # oracle dev 34.27 / 26.59 against 34.15 / 26.31 without it (test 38.36 against 39.26): no
  # dev gain shown by one training; kept, as it costs no time. There, 7,000 steps took 89.8 min,
  # just inside the 90-min cap (10-16% slower steps than in session 35 on the same host class).
  # 6,600 steps (cool-down 1,320, the same 20%) and dev checks at epoch ends only (every ~333
  # steps; --valid-interval 0) since session 45: in the b2142d5 run (session 44) the cap stopped
  # the training at step 6,934 (0.78 s a step with the checks) and the recipe took 121 min, the
  # RNN-T group the long pole; the 34 checks every 200 steps (150 dev + 150 held-out-engine
  # utterances, greedy) cost ~4 s each. 334 fewer steps and no such checks save ~6 min of that
  # group's ~107; the curve keeps one point per epoch. The 34fc451 run (RESULTS.md, "Under 2 h on
  # the bf16 host class"): 113 min; 1-best dev 33.96 against 34.21, but fused 1-best dev 31.23
  # against 29.92 and the best system's test 34.44 against 33.27. Session 44's checkpoints resumed
  # from step 4,990 with this schedule: fused 1-best dev 31.18 against 29.92, so the shorter
  # schedule costs that (RESULTS.md, same section). Since session 46 7,000 steps again
  # (cool-down 1,400), with no in-training checks and the 4 fusion-grid points fewer (~160 s)
  # paying for the ~400 steps (~270 s at ~0.68 s a step): the RNN-T group had 241 s of slack
  # against the LM group in the 34fc451 run.
  asr_train_opts="--max-steps 7000 --num-epochs 30 --max-minutes 90 --cpu-bf16 true --lr-cooldown-steps 1400 --valid-interval 0"
  lm_opts="--cpu-bf16 true"
  fusion_lm_opts="--num-epochs 4 --cpu-bf16 true --lr-schedule cosine --lr 4e-3"
fi
# Speed perturbation (e.g. "0.9 1.1"): stage 2 stores the features of speed-perturbed copies of
# train, stage 6 draws the original or a copy per utterance and epoch (train-asr --speed-cuts).
# On: at equal steps, three trainings with it (two outside the recipe, the fb9fecf default run)
# were better on the held-out engine at most dev checks, not at all (RESULTS.md, Discussion and
# "Augmentation: speed perturbation"); the copies cost +4.8% per step (bench/speed_copies_step.py)
# and ~85 s in stage 2. "" turns it off.
speed_perturb="0.9 1.1"
# The other audio augmentations (train-asr --aug-*: reverb, white/pink/babble noise, narrowband,
# volume) are off: measured on dev (RESULTS.md, "Augmentation: reverb, noise, narrowband,
# volume"), noise and reverb lower the held-out engine's WER but raise dev's, narrowband and
# babble hurt, and volume's dev gain in fine-tuning arms was not repeated by a full training
# (conf/volume_aug.sh).
# Renderings per ASR train sentence (prepare-snips --train-renders; train-asr --render-cuts): 2 =
# each of the 6,000 sentences is also spoken by a voice of the other training engine (espeak-ng
# <-> flite) and stage 6 draws one of 2 renderings x 3 speeds per utterance and epoch. Measured
# in a fresh-clone run of 89f1e21 against the 89f138b run without it (same steps, seed, data
# otherwise): dev loss 1.78 against 1.85 (mean of the last 5 epoch ends), but no better WER
# (test 41.13 against 40.70, held-out engine 52.57 against 51.69, paired bootstrap p(better)
# 0.74 and 0.85: the share of resamples in which it is not better), for +90 s of TTS and +33 s
# of features (RESULTS.md, "Train renders"). Off.
train_renders=1
asr_avg=3
# bench/asr_beam_search.py (dev): 2 symbols per frame beat 1 and 3; a length bonus of 0.5 per token
# beat 0, 0.25, 0.75, 1 on the fb9fecf run's model and beat 0 and 1 on the dfff5be run's model
# (asr/README.md, "Length bonus"). Beam 20 with a score beam of 4 nats beat beam 16 without one on
# all 700 dev utterances with the d9ec6f7 run's model (WER 40.58 against 40.91, 16-best oracle
# 33.86 against 34.65) in 4% less search time (asr/README.md, "Score beam").
decode_opts="--method modified_beam --beam 20 --nbest 16 --max-sym-per-frame 2 --length-bonus 0.5 --score-beam 4"
# LMs (lm/config.py presets)
lm_preset=default  # lm_opts: above, with the RNN-T's training budget
# Rescoring: λ/β grid searched on dev
rescore_jobs=2   # stage 24: two systems / seeds at once, one core each
tune_opts="--lm-scale-min 0 --lm-scale-max 1.5 --lm-scale-step 0.05 --word-bonus-min -1 --word-bonus-max 3 --word-bonus-step 0.25"
# Systems, labels, the headline system, comparisons and targets: conf/systems.toml
# Contextual biasing (stages 17-21): slot lexicons from the training NLU labels
lexicon_opts="--min-count 1 --max-phrases 0"              # every training slot phrase
# The NLU head that predicts each intent and labels the LM text: the first seed's
# pre-trained multitask model (default of recipes/common/run.sh; set context_lm to change it).
# LM seeds (issue 14): every LM system is trained once per seed (exp/lm/<system>/seed<N>);
# RESULTS.md gives seed mean ± sd and tests over seeds and utterances.
lm_seeds="42 43 44"
# Seeds of an LM stage side by side (run_seeds, recipes/common/jobs.sh): up to 2 at once, one
# thread each, only while the RNN-T group's core is idle (it waits for stage 13 or 22, or has
# finished), which it is for a long time where the LM group is the longer one (fp32 hosts): in
# the SNIPS session-37 run (RESULTS.md) stages 11, 12 and 16 took 556, 555 and 735 s so, against
# about 830, 830 and 1,090 s one seed after another.
# Results are unchanged: stages 10, 13 and 16 stop at 3 epochs, 11 and 12 after 4.5 min each,
# on a core of their own either way.
lm_seed_jobs=2
rwm_sample=false   # stage 14 (RWM sampling, measured worse than scaling on 2026-12-02) is left out: time
# Pseudo-labelled NLU data (stage 15): the pre-trained multitask model labels data/lm/pretrain.txt;
# the confidence threshold is the lowest whose dev precision (intent and every tag right) >= 0.9;
# at most this many of the most confident sentences are kept (time: the stage-16 fine-tunings).
# Batches of 256 sentences: 11% faster than 64 on 2026-12-03 (10,631 dev n-best sentences, one thread).
pseudo_opts="--min-precision 0.9 --max-sentences 5000 --batch-size 256"
# Bonus per BPE token, chosen on dev: the scores are tried in this order and the search stops at
# the first score whose dev WER is above the best so far (context_patience=1). The dfff5be run's
# grid 0.25 0.5 0.75 1 rose monotonically from 0.25 for every variant (RESULTS.md); stage 21 (gold
# intent, the bound) uses stage 20's score instead of a grid.
context_scores="0.1 0.2 0.3 0.5 0.75 1"
context_patience=1
