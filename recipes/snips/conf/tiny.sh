# Tiny preset: the whole recipe in minutes on 2 CPU cores (CI).
max_per_split=40
asr_train_subset=30
bpe_sizes="64"
rare_threshold=2
tts_backend=espeak-ng
seed=13
nj=2
