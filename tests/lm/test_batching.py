"""Length-bucketed LM batches: the count train-lm's progress bar shows is the count it trains."""

import random

import pytest

from lm.data import Example, iterate_batches, num_batches


@pytest.mark.parametrize("batch_tokens,max_sentences", [(40, 256), (200, 8), (7, 3)])
def test_num_batches_is_the_count_of_every_shuffled_epoch(batch_tokens, max_sentences):
    rng = random.Random(0)
    examples = []
    for _ in range(300):
        n = rng.randint(1, 30)
        examples.append(Example(list(range(1, n + 1)), [0], None, None))
    n = num_batches(examples, batch_tokens, max_sentences)
    assert n > 1
    for seed in range(5):
        batches = list(iterate_batches(examples, batch_tokens, max_sentences, True, seed))
        assert len(batches) == n
        assert sum(b.inputs.shape[0] for b in batches) == len(examples)
