# EXPERIMENTAL, measured once (RESULTS.md, "Training voices"): the default preset with
# espeak-ng drawn twice as often as each other training engine (TTS plan engine weights,
# data_prep/tts_plan.py: 2/5 of the training sentences from espeak-ng instead of 1/4). The
# lever for espeak-ng's own voices, which lost 3.5-4.7 points when the default went from two
# training engines to four. A training of it step-matched to the report run (6,471 steps, one
# seed, 2026-12-05): espeak-ng's voices -1.32 on dev and -2.47 on test, the unseen voices worse
# (dev flite:slt +2.40, held-out engine +0.53), dev as a whole +0.38 (34.94 against 34.56):
# not the default. Same dev, test and held-out-engine audio and every other option.
. "$(dirname "${BASH_SOURCE[0]}")/default.sh"
tts_plan="train=espeak-ng*2,flite:awb,flite:rms,mbrola,pico;dev=espeak-ng,flite:slt;test=espeak-ng,flite:kal16;test_unseen_engine=festival"
