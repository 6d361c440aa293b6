"""Task-weight schedulers move weights in the documented direction on constructed signals."""

import pytest

from lm.schedulers import (
    SCHEDULERS,
    FixedScheduler,
    LinearScheduler,
    RWMScheduler,
    build_scheduler,
    plot_history,
)


def test_registry():
    assert set(SCHEDULERS) == {"fixed", "linear", "rwm"}
    assert isinstance(build_scheduler("rwm", (1, 1, 1), eps=0.1, interval=5), RWMScheduler)
    with pytest.raises(ValueError, match="unknown task-weight scheduler 'nope'"):
        build_scheduler("nope", (1, 1, 1))


def test_fixed_is_constant():
    s = FixedScheduler((1.0, 0.0, 0.0))
    assert all(s.weights(t) == (1.0, 0.0, 0.0) for t in range(0, 1000, 7))
    assert len(s.history) == 1


def test_linear_ramps_nlu_weights_from_zero():
    s = LinearScheduler((1.0, 0.5, 2.0), ramp_steps=100)
    assert s.weights(0) == (1.0, 0.0, 0.0)
    w50 = s.weights(50)
    assert w50 == pytest.approx((1.0, 0.25, 1.0))
    assert s.weights(100) == pytest.approx((1.0, 0.5, 2.0))
    assert s.weights(10_000) == pytest.approx((1.0, 0.5, 2.0))
    ramp = [s.weights(t)[2] for t in range(0, 101, 10)]
    assert ramp == sorted(ramp)  # monotone


def _feed(s: RWMScheduler, n: int) -> None:
    """LM dev loss keeps falling 10% per interval, intent is flat, slot rises 10%."""
    lm, it, sl = 5.0, 1.0, 1.0
    for k in range(n):
        s.update(k * s.interval, {"lm": lm, "intent": it, "slot": sl})
        lm, sl = lm * 0.9, sl * 1.1


def test_rwm_moves_weight_from_stalled_and_worsening_tasks():
    s = RWMScheduler((1.0, 1.0, 1.0), eps=0.2, interval=10, scale=0.05, floor=0.0)
    assert s.weights(0) == pytest.approx((1.0, 1.0, 1.0))
    _feed(s, 6)
    w_lm, w_int, w_slot = s.weights(60)
    assert w_lm > 1.0 > w_int > w_slot
    assert sum(s.probs()) == pytest.approx(1.0)
    # exact rule: 5 updates; losses lm 0 (r=0.1 >= scale), intent 0.5 (r=0), slot 1 (r=-0.1)
    v = [1.0, 0.8**2.5, 0.8**5]
    p = [x / sum(v) for x in v]
    assert s.probs() == pytest.approx(p)
    for row in s.losses:
        assert row[1:] == pytest.approx([0.0, 0.5, 1.0], abs=1e-9)
    assert len(s.losses) == 5


def test_rwm_floor_keeps_tasks_alive_and_zero_base_tasks_out():
    s = RWMScheduler((1.0, 1.0, 1.0), eps=0.5, interval=1, floor=0.05)
    _feed(s, 40)
    assert min(s.probs()) >= 0.05 - 1e-9
    s2 = RWMScheduler((1.0, 0.0, 1.0), eps=0.2, interval=1)
    _feed(s2, 3)
    assert s2.probs()[1] == 0.0 and s2.weights(3)[1] == 0.0


def test_rwm_sample_mode_is_seeded_and_follows_p():
    def draws(seed):
        s = RWMScheduler((1.0, 1.0, 1.0), eps=0.3, interval=1, use="sample", seed=seed, floor=0)
        _feed(s, 4)
        return [s.weights(t) for t in range(600)], s.probs()

    a, p = draws(1)
    b, _ = draws(1)
    assert a == b  # seeded
    assert all(sorted(w) == [0.0, 0.0, 1.0] for w in a)  # one task per step
    freq = [sum(w[k] for w in a) / len(a) for k in range(3)]
    assert freq == pytest.approx(p, abs=0.06)
    assert freq[0] > freq[1] > freq[2]


def test_rwm_state_dict_roundtrip(tmp_path):
    s = RWMScheduler((1.0, 1.0, 1.0), interval=1, use="sample", seed=3)
    _feed(s, 3)
    s.weights(3)
    t = RWMScheduler((1.0, 1.0, 1.0), interval=1, use="sample", seed=99)
    t.load_state_dict(s.state_dict())
    assert [s.weights(k) for k in range(20)] == [t.weights(k) for k in range(20)]
    plot_history(s, tmp_path / "w.png")
    assert (tmp_path / "w.png").read_bytes()[:4] == b"\x89PNG"
