# The default preset with ONE training engine: train=espeak-ng instead of the default's four
# engines (espeak-ng, flite awb/rms, mbrola, pico). The same 6,000 training sentences, the same
# dev, test and held-out-engine sets (espeak-ng's voices are split the same way), the same
# RNN-T options, seed and learning-rate schedule (Noam: a function of the step alone), so its
# monitored greedy WERs (exp/asr/conformer_rnnt/log/{valid,monitor}.csv) compare with the
# default run's at the same steps: issue 13's held-out-engine WER against the number of
# training engines. Meant for stages 0-6 (`./run.sh --preset one_train_engine --stop-stage
# 6`); --max-steps is a budget, not a recipe default (recipes/snips/RESULTS.md, "Number of
# training engines").
. "$(dirname "${BASH_SOURCE[0]}")/default.sh"
tts_plan="train=espeak-ng;dev=espeak-ng,flite:slt;test=espeak-ng,flite:kal16;test_unseen_engine=festival"
asr_train_opts="$asr_train_opts --max-steps 2400"
