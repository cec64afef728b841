import pytest
import torch

from unlearn.unlearning.trw import (class_similarity, cosine_similarity, expected_similarity, final_linear,
                                   holdout_level, maxent_targets, renormalised, trw_targets)


def test_similarity_prefers_the_class_whose_weights_point_the_same_way():
    weight = torch.tensor([[1.0, 0.0, 0.0], [0.9, 0.1, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    s = class_similarity(weight, 0, temperature=0.1)
    assert s[0] == 0 and s.sum().item() == pytest.approx(1.0)
    assert s.argmax().item() == 1
    assert class_similarity(weight, 0, pca_dim=2).argmax().item() == 1
    with pytest.raises(ValueError, match="not one of the model's 4 classes"):
        class_similarity(weight, 4)


def test_targets_remove_the_forget_class_and_tilt_towards_similar_classes():
    probs = torch.tensor([[0.7, 0.1, 0.1, 0.1], [0.2, 0.2, 0.5, 0.1]])
    similarity = torch.tensor([0.0, 0.8, 0.1, 0.1])
    plain = trw_targets(probs, 0, similarity, beta=0.0)
    torch.testing.assert_close(plain, torch.tensor([[0.0, 1 / 3, 1 / 3, 1 / 3], [0.0, 0.25, 0.625, 0.125]]))
    tilted = trw_targets(probs, 0, similarity, beta=10.0)
    assert (tilted[:, 0] == 0).all()
    torch.testing.assert_close(tilted.sum(1), torch.ones(2))
    assert (tilted[:, 1] > plain[:, 1]).all()  # mass moves to the class most similar to the forgotten one
    expected = torch.tensor([0.25 * torch.e ** 8, 0.625 * torch.e, 0.125 * torch.e])
    torch.testing.assert_close(tilted[1, 1:], (expected / expected.sum()).float())


def test_targets_are_a_distribution_for_every_input_even_when_the_forget_class_takes_everything():
    generator = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(200, 6, generator=generator) * 5, dim=1)
    probs[0] = torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0, 0.0])  # p_f = 1 exactly
    probs[1] = torch.softmax(torch.tensor([0.0, 0.0, 900.0, 0.0, 0.0, 0.0]), dim=0)  # p_f = 1 after rounding
    similarity = torch.softmax(torch.randn(6, generator=generator), dim=0)
    similarity[2] = 0
    for beta in (0.0, 1.0, 10.0, 1e4):  # 1e4: exp(beta * s) alone would overflow
        q = trw_targets(probs, 2, similarity, beta)
        assert torch.isfinite(q).all() and (q >= 0).all() and (q[:, 2] == 0).all()
        torch.testing.assert_close(q.sum(1), torch.ones(200))
    uniform = trw_targets(probs[:1], 2, similarity, 0.0)  # p~ taken uniform over the other classes
    torch.testing.assert_close(uniform, torch.tensor([[0.2, 0.2, 0.0, 0.2, 0.2, 0.2]]))
    with pytest.raises(ValueError, match="beta must be >= 0"):
        trw_targets(probs, 2, similarity, -1.0)


def test_larger_beta_moves_more_mass_to_the_most_similar_class():
    probs = torch.softmax(torch.randn(50, 5, generator=torch.Generator().manual_seed(1)), dim=1)
    similarity = torch.tensor([0.0, 0.5, 0.3, 0.15, 0.05])
    masses = [trw_targets(probs, 0, similarity, beta)[:, 1].mean().item() for beta in (0.0, 2.0, 5.0, 10.0, 50.0)]
    assert masses == sorted(masses) and masses[-1] > 0.99


def test_maxent_tilt_meets_its_similarity_constraint():
    generator = torch.Generator().manual_seed(2)
    probs = torch.softmax(torch.randn(100, 6, generator=generator) * 3, dim=1)
    similarity = torch.tensor([1.0, 0.6, -0.2, 0.1, 0.3, -0.5])
    plain = renormalised(probs, 0)
    s = similarity.double().clone()
    s[0] = 0
    for level in (expected_similarity(plain, s) - 0.1, expected_similarity(plain, s) + 0.2, 0.55):
        q, strength = maxent_targets(probs, 0, similarity, level=level)
        assert expected_similarity(q.double(), s) == pytest.approx(level, abs=1e-5)
        assert (q[:, 0] == 0).all() and torch.allclose(q.sum(1), torch.ones(100))
        assert (strength > 0) == (level > expected_similarity(plain, s))
    unreachable, strength = maxent_targets(probs, 0, similarity, level=0.7, bound=50.0)
    assert strength == 50.0 and unreachable[:, 1].mean() > 0.99  # the constraint caps at the nearest end


def test_zero_strength_is_plain_renormalisation_and_the_maximum_entropy_solution_is_closest_to_it():
    probs = torch.softmax(torch.randn(40, 5, generator=torch.Generator().manual_seed(3)), dim=1)
    similarity = torch.tensor([1.0, 0.5, 0.3, 0.15, 0.05])
    q0, strength = maxent_targets(probs, 0, similarity, strength=0.0)
    torch.testing.assert_close(q0, renormalised(probs, 0).float())
    level = 0.3
    q, _ = maxent_targets(probs, 0, similarity, level=level)
    s = similarity.double().clone()
    s[0] = 0

    def kl(a, b):
        mask = a > 0
        return (a[mask] * (a[mask] / b[mask]).log()).sum()

    base = renormalised(probs, 0)
    # moving mass along a direction that keeps both the row sums and the constraint moves q away from p~
    direction = torch.linalg.cross(torch.ones(3, dtype=torch.float64), s[1:4], dim=0)
    for eps in (1e-3, -1e-3):
        other = q.double().clone()
        other[:, 1:4] += eps * direction
        assert expected_similarity(other, s) == pytest.approx(level, abs=1e-6)
        assert kl(q.double(), base) < kl(other, base)
    with pytest.raises(ValueError, match="either the constraint's level or a fixed strength"):
        maxent_targets(probs, 0, similarity)


def test_holdout_level_is_the_expected_similarity_of_held_out_confusion():
    probs = torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.5, 0.0, 0.25, 0.25]])
    similarity = torch.tensor([1.0, 0.8, 0.2, -0.4])
    assert holdout_level(probs, 0, similarity) == pytest.approx((0.8 + (0.2 - 0.4) / 2) / 2)


def test_cosine_similarity_is_one_for_the_class_itself():
    weight = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    torch.testing.assert_close(cosine_similarity(weight, 0), torch.tensor([1.0, 2 ** -0.5, 0.0], dtype=torch.float64))


def test_final_linear_is_the_classifier_head():
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    assert final_linear(model) is model[2]
    with pytest.raises(ValueError, match="nn.Linear"):
        final_linear(torch.nn.Sequential(torch.nn.ReLU()))


def test_trw_forgets_the_class_and_sends_it_to_the_most_similar_one():
    from unlearn.config import TrainConfig, TrwConfig
    from unlearn.data import load_dataset
    from unlearn.models import create_model
    from unlearn.training import to_float, train_
    from unlearn.unlearning import ForgetTask
    from unlearn.unlearning.trw import trw_unlearn

    data = load_dataset("digits")
    images, labels = data.images[:900], data.labels[:900]  # the model trains on the first 600
    model = create_model("small_cnn", in_channels=1, num_classes=10, mean=[0.3], std=[0.3], seed=0, width=8)
    train_(model, images[:600], labels[:600], TrainConfig(epochs=6, batch_size=32),
           generator=torch.Generator().manual_seed(0))
    forget = torch.nonzero(labels[:600] == 3).squeeze(1)
    remain = torch.nonzero(labels[:600] != 3).squeeze(1)
    task = ForgetTask(images, labels, forget, remain, 10, holdout=torch.arange(600, 900))
    similarity = class_similarity(final_linear(model).weight, 3)
    trw_unlearn(model, task, TrwConfig(epochs=3, batch_size=64, lr=0.01), torch.Generator().manual_seed(0))
    with torch.no_grad():
        predicted = model.eval()(to_float(images[forget])).argmax(1)
        remain_acc = (model(to_float(images[remain])).argmax(1) == labels[remain]).float().mean().item()
    assert (predicted != 3).float().mean().item() > 0.95
    assert remain_acc > 0.9
    assert (predicted == similarity.argmax()).float().mean().item() > 0.5  # most go to the nearest class
    with pytest.raises(ValueError, match="one whole class"):
        trw_unlearn(model, ForgetTask(images, labels, torch.arange(10), remain, 10), TrwConfig(), torch.Generator())


def test_the_constraint_needs_held_out_inputs_of_the_class_unless_the_strength_is_fixed():
    from unlearn.config import TrwConfig
    from unlearn.unlearning import ForgetTask
    from unlearn.unlearning.trw import targets_for

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    images = torch.randint(0, 255, (6, 1, 2, 2), dtype=torch.uint8)
    labels = torch.tensor([0, 0, 1, 2, 1, 2])
    task = ForgetTask(images, labels, torch.tensor([0, 1]), torch.tensor([2, 3]), 3, holdout=torch.tensor([4, 5]))
    with pytest.raises(ValueError, match="held-out inputs of class 0.*unlearn_class.trw.strength"):
        targets_for(model, task, TrwConfig())
    q, strength = targets_for(model, task, TrwConfig(strength=2.0))
    assert strength == 2.0 and (q[:, 0] == 0).all()
