# The default preset with volume perturbation in training: train-asr --aug-volume-prob 0.5
# (Lhotse's perturb_volume, a gain drawn uniformly in -6..+6 dB per utterance and epoch, fbank
# computed on the fly) from epoch 10 (--aug-from-epoch 10). Of the audio augmentations measured
# on dev (recipes/snips/RESULTS.md, "Augmentation: reverb, noise, narrowband, volume"), volume
# is the only one that lowered dev WER in the fine-tuning arms (-0.78, two seeds); the TTS
# voices speak at levels 15 to 27 dB below full scale and nothing else evens them out. Its
# full-budget training (this preset's RNN-T) did not repeat that on dev (+0.02; test -0.76,
# held-out engine -0.28), so it is not the default.
. "$(dirname "${BASH_SOURCE[0]}")/default.sh"
asr_train_opts="$asr_train_opts --aug-volume-prob 0.5 --aug-from-epoch 10"
