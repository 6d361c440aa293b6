# The default preset with volume perturbation in training: train-asr --aug-volume-prob 0.5
# (Lhotse's perturb_volume, a gain drawn uniformly in -6..+6 dB per utterance and epoch, fbank
# computed on the fly) from epoch 10 (--aug-from-epoch 10). Of the audio augmentations measured
# on dev (recipes/snips/RESULTS.md, "Augmentation: reverb, noise, narrowband, volume"), volume
# is the only one that lowered dev WER (fine-tuning arms, two seeds); the TTS voices speak at
# levels 15 to 27 dB below full scale and nothing else evens them out. Not yet the default: that
# section says what a full run of it measured.
. "$(dirname "${BASH_SOURCE[0]}")/default.sh"
asr_train_opts="$asr_train_opts --aug-volume-prob 0.5 --aug-from-epoch 10"
