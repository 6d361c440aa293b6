# EXPERIMENTAL, not measured yet: the default preset with espeak-ng drawn twice as often as each
# other training engine (TTS plan engine weights, data_prep/tts_plan.py: 2/5 of the training
# sentences from espeak-ng instead of 1/4). The lever for espeak-ng's own voices, which lost
# 3.5-4.7 points when the default went from two training engines to four (recipes/snips/RESULTS.md,
# "Discussion of the bcb7271 run"); the question is how much of the unseen-voice gain it keeps.
# Same dev, test and held-out-engine audio and every other option as the default.
. "$(dirname "${BASH_SOURCE[0]}")/default.sh"
tts_plan="train=espeak-ng*2,flite:awb,flite:rms,mbrola,pico;dev=espeak-ng,flite:slt;test=espeak-ng,flite:kal16;test_unseen_engine=festival"
