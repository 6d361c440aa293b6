# The default preset with TWO training engines, espeak-ng and flite (awb, rms), as the default
# was up to 2026-12-05: the same 6,000 training sentences, the same dev, test and held-out-engine
# audio, the same options. Only Debian's main component is needed (no MBROLA, no Pico). Issue
# 13's held-out-engine WER against the number of training engines (recipes/snips/RESULTS.md,
# "Number of training engines"); the 89f138b report run used this plan.
. "$(dirname "${BASH_SOURCE[0]}")/default.sh"
tts_plan="train=espeak-ng,flite:awb,flite:rms;dev=espeak-ng,flite:slt;test=espeak-ng,flite:kal16;test_unseen_engine=festival"
