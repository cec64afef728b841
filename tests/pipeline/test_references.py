import numpy as np

from pipeline.references import keep_matrix


def test_keep_matrix_puts_every_sample_in_half_of_the_models_at_random():
    keep = keep_matrix(8, 500, seed=0)
    assert keep.shape == (8, 500) and keep.dtype == bool
    assert (keep.sum(0) == 4).all()
    assert abs(keep.sum(1).mean() - 250) < 1e-9 and keep.sum(1).std() > 0  # each model about half
    assert np.array_equal(keep, keep_matrix(8, 500, seed=0)) and not np.array_equal(keep, keep_matrix(8, 500, seed=1))
    assert (keep_matrix(5, 100, seed=0).sum(0) == 2).all()
