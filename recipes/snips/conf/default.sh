# Default preset of the SNIPS recipe: every size, count and weight of the data stages lives here.
# (Sourced by run.sh; later stages append their settings.)
max_per_split=0          # 0 = all SNIPS rows
asr_train_subset=6000    # train utterances with audio for the RNN-T (limited paired data)
bpe_sizes="128 256"      # data/lang_bpe_N for each N
rare_threshold=5         # K: a word seen < K times in the ASR transcripts is rare
tts_backend=espeak-ng
seed=13
nj=2                     # processes for TTS / fbank
