# EXPERIMENTAL, no full training yet: the default preset with more recorded diphone speakers in
# training. Half of MBROLA's share of the training sentences (1/8 of them) goes to the engine
# mbrola-accented: English through MBROLA's 16 voices of nine other languages (espeak-ng's
# mb-*-en; data_prep/tts.py), so the diphone family has 20 speakers instead of 4 while every
# engine keeps its share (espeak-ng, flite and pico 1/4 each, as in the default). The question:
# does speaker variety within a synthesis method lower the held-out engine's WER (festival's
# kal / ked are diphone voices too) the way a new engine did (RESULTS.md, "Number of training
# engines")? Same dev, test and held-out-engine audio and every other option as the default.
# What the accented voices are to the default's RNN-T (the 1ffc5e2 run's avg.pt, the preset's
# decoding; 320 SNIPS test sentences, prepare-snips --max-per-split 320 --tts-plan
# "train=espeak-ng;dev=flite:slt;test=mbrola-accented,mbrola", bench/asr_per_voice.py;
# 2026-12-05): WER 30.87 on MBROLA's four native voices (its training voices, new sentences),
# 57.25 on the 16 accented ones (32.4-77.9 per voice): new speakers to that model, not noise.
# Fine-tuning arms (that model resumed from epoch 17 for three epochs on this preset's training
# audio against the default plan re-rendered with the same engine per sentence, three seeds
# each; RESULTS.md, "Training voices"): dev -0.36 (p = 0.23), test -0.68 (p = 0.14), held-out
# engine -0.03 (p = 0.47; its male diphone voice ked -1.93, p = 0.057). Nothing measurable:
# not the default.
. "$(dirname "${BASH_SOURCE[0]}")/default.sh"
tts_plan="train=espeak-ng,flite:awb,flite:rms,mbrola*0.5,mbrola-accented*0.5,pico;dev=espeak-ng,flite:slt;test=espeak-ng,flite:kal16;test_unseen_engine=festival"
