import math

import numpy as np

from geodino.config.schema import DinoConfig, OptimConfig
from geodino.runs.schedules import Schedules, cosine_schedule, teacher_temperature_schedule


def test_cosine_endpoints_and_length():
    s = cosine_schedule(1.0, 0.0, epochs=4, steps_per_epoch=5)
    assert len(s) == 20 and s[0] == 1.0
    # the last value is final + (base-final)/2 (1 + cos(pi * 19/20)), not exactly final
    assert math.isclose(s[-1], 0.5 * (1 + math.cos(math.pi * 19 / 20)))
    assert np.all(np.diff(s) <= 0)


def test_warmup_is_linear_from_start_to_base():
    s = cosine_schedule(2.0, 0.1, epochs=3, steps_per_epoch=4, warmup_epochs=1, warmup_start=0.0)
    np.testing.assert_allclose(s[:4], [0.0, 2 / 3, 4 / 3, 2.0])
    assert s[4] == 2.0  # cosine part starts at base
    assert len(s) == 12


def test_teacher_temperature_per_epoch():
    t = teacher_temperature_schedule(0.04, 0.07, warmup_epochs=3, epochs=5)
    np.testing.assert_allclose(t, [0.04, 0.055, 0.07, 0.07, 0.07])


def test_run_schedules_scale_lr_with_global_batch_and_reach_momentum_one():
    optim = OptimConfig(epochs=10, lr=5e-4, warmup_epochs=2)
    s = Schedules(optim, DinoConfig(warmup_teacher_temp_epochs=2, teacher_temp=0.07), steps_per_epoch=3,
                  global_batch=512)
    assert s.total_steps == 30
    assert math.isclose(s.lr[5], 5e-4 * 2)  # end of warm-up = lr * 512 / 256
    assert math.isclose(s.weight_decay[0], 0.04) and 0.39 < s.weight_decay[-1] < 0.4
    assert math.isclose(s.momentum[0], 0.996) and 0.9999 < s.momentum[-1] < 1.0
    assert s.teacher_temperature(0) == 0.04 and s.teacher_temperature(29) == 0.07
