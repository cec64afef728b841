import torch

from unlearn.config import TrainConfig
from unlearn.data import load_dataset
from unlearn.models import create_model
from unlearn.training import Callback, augment_batch, train_, train_mode


def _setup(seed=0, n=256):
    data = load_dataset("digits")
    model = create_model("small_cnn", in_channels=1, num_classes=10, mean=[0.3], std=[0.3], seed=seed, width=8)
    return model, data.images[:n], data.labels[:n]


def test_training_is_deterministic_given_the_seed():
    cfg = TrainConfig(epochs=2, batch_size=32, augment=True, crop_padding=1)
    states = []
    for _ in range(2):
        model, x, y = _setup()
        history = train_(model, x, y, cfg, generator=torch.Generator().manual_seed(5))
        states.append((model.state_dict(), [h.loss for h in history]))
    (a, loss_a), (b, loss_b) = states
    assert loss_a == loss_b
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_drawing_each_epoch_once_is_bit_identical_to_drawing_batch_by_batch():
    """train_ draws an epoch's permutation, crops and flips up front; the plain per-batch loop
    it replaced (draws interleaved with the steps, from the same generator) gives the same bits."""
    from torch.nn import functional as F

    from unlearn.training import make_optimizer, to_float

    cfg = TrainConfig(epochs=2, batch_size=48, augment=True, crop_padding=2, lr=0.05, schedule="constant")
    planned, x, y = _setup()
    weights = torch.linspace(-1, 1, len(x))
    train_(planned, x, y, cfg, generator=torch.Generator().manual_seed(3), sample_weights=weights)
    stepwise, _, _ = _setup()
    generator, optimizer = torch.Generator().manual_seed(3), make_optimizer(stepwise, cfg)
    stepwise.train()
    for _ in range(cfg.epochs):
        for idx in torch.randperm(len(x), generator=generator).split(cfg.batch_size):
            batch = augment_batch(to_float(x[idx]), cfg.crop_padding, generator)
            loss = (F.cross_entropy(stepwise(batch), y[idx], reduction="none") * weights[idx]).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    for key, value in planned.state_dict().items():
        assert torch.equal(value, stepwise.state_dict()[key]), key


def test_loss_decreases_and_stats_are_reported():
    model, x, y = _setup()
    seen = []
    history = train_(model, x, y, TrainConfig(epochs=4, batch_size=32, lr=0.05), generator=torch.Generator().manual_seed(0),
                     on_epoch=seen.append)
    assert seen == history and [h.epoch for h in history] == [1, 2, 3, 4]
    assert history[-1].loss < history[0].loss
    assert history[-1].accuracy > 80
    assert all(h.images == 256 and h.images_per_s > 0 for h in history)


class _Recorder(Callback):
    def __init__(self):
        self.events = []

    def on_step(self, model, step):
        self.events.append(step)

    def on_train_end(self, model):
        self.events.append("end")


def test_callbacks_run_after_every_step_and_at_the_end():
    model, x, y = _setup(n=100)
    recorder = _Recorder()
    train_(model, x, y, TrainConfig(epochs=2, batch_size=32), generator=torch.Generator().manual_seed(0),
           callbacks=[recorder])
    assert recorder.events == [*range(1, 9), "end"]  # 4 batches (32, 32, 32, 4) per epoch


def test_schedules_set_the_learning_rate_per_epoch():
    model, x, y = _setup(n=64)
    step = train_(model, x, y, TrainConfig(epochs=4, batch_size=64, lr=0.1, schedule="step", step_size=2, gamma=0.5),
                  generator=torch.Generator().manual_seed(0))
    assert [h.lr for h in step] == [0.1, 0.1, 0.05, 0.05]
    cosine = train_(model, x, y, TrainConfig(epochs=2, batch_size=64, lr=0.1, schedule="cosine"),
                    generator=torch.Generator().manual_seed(0))
    assert cosine[0].lr == 0.1 and abs(cosine[1].lr - 0.05) < 1e-9


def test_training_restores_the_mode():
    model, x, y = _setup(n=32)
    model.eval()
    train_(model, x, y, TrainConfig(epochs=1, batch_size=32), generator=torch.Generator().manual_seed(0))
    assert not any(m.training for m in model.modules())
    with train_mode(model):
        assert model.training
    assert not model.training


def test_augment_keeps_shape_and_pixels():
    x = torch.rand(16, 3, 8, 8)
    out = augment_batch(x, padding=2, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    same = augment_batch(x, padding=0, generator=torch.Generator().manual_seed(1))
    for i in range(16):  # without padding, each sample is itself or its mirror image
        assert torch.equal(same[i], x[i]) or torch.equal(same[i], x[i].flip(2))


def test_negative_sample_weights_ascend_the_loss_and_float_images_are_accepted():
    model, x, y = _setup(n=128)
    x = x.float() / 255
    cfg = TrainConfig(epochs=2, batch_size=32, lr=0.01, schedule="constant")

    def ce():
        with torch.no_grad(), train_mode(model, False):
            return torch.nn.functional.cross_entropy(model(x), y).item()

    start = ce()
    descent = train_(model, x, y, cfg, generator=torch.Generator().manual_seed(0))
    assert descent[1].loss < descent[0].loss and ce() < start
    middle = ce()
    ascent = train_(model, x, y, cfg, generator=torch.Generator().manual_seed(0), sample_weights=-torch.ones(128))
    assert ascent[1].loss < ascent[0].loss < 0  # the reported loss is the weighted objective
    assert ce() > middle


def test_penalty_is_added_with_the_epoch_number():
    model, x, y = _setup(n=64)
    epochs_seen = []

    def penalty(net, epoch):
        epochs_seen.append(epoch)
        return 0.0 * sum(p.sum() for p in net.parameters())

    train_(model, x, y, TrainConfig(epochs=2, batch_size=32), generator=torch.Generator().manual_seed(0),
           penalty=penalty)
    assert epochs_seen == [1, 1, 2, 2]


class _SeenBatches(torch.nn.Module):
    """A linear model that records its training inputs."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(3 * 4 * 4, 2)
        self.seen = []

    def forward(self, x):
        if self.training:
            self.seen.append(x.detach().clone())
        return self.linear(x.flatten(1))


def test_no_augment_rows_are_used_as_they_are():
    x = torch.rand(8, 3, 4, 4)
    keep = torch.tensor([True, False] * 4)
    model = _SeenBatches()
    cfg = TrainConfig(epochs=3, batch_size=8, augment=True, crop_padding=1)
    train_(model, x, torch.zeros(8, dtype=torch.int64), cfg, generator=torch.Generator().manual_seed(0),
           no_augment=keep)
    rows = torch.cat(model.seen)
    unchanged = [sum(torch.equal(row, x[i]) for row in rows) for i in range(8)]
    assert all(unchanged[i] == 3 for i in range(8) if keep[i])  # once per epoch, untouched
    assert sum(unchanged[i] for i in range(8) if not keep[i]) < 6


def test_labels_changed_in_place_at_epoch_start_are_trained_on_even_when_moved_to_a_device(monkeypatch):
    """RL redraws its wrong labels in place every epoch; on a GPU train_ reads a copy of the
    labels, so it must copy them after the callbacks ran, every epoch. A copying ``move``
    stands in for the GPU here."""
    from unlearn import training

    model, x, y = _setup()
    train_(model, x, y, TrainConfig(epochs=3, batch_size=32, lr=0.05), generator=torch.Generator().manual_seed(0))
    labels = y.clone()

    class Shift(Callback):
        def on_epoch_start(self, model, epoch):
            if epoch == 2:
                labels.add_(1).remainder_(10)  # in place, as RandomWrongLabels does

    real_move = training.move
    monkeypatch.setattr(training, "move", lambda t, device: real_move(t, device).clone())
    history = train_(model, x, labels, TrainConfig(epochs=2, batch_size=32, lr=1e-9),
                     generator=torch.Generator().manual_seed(1), callbacks=[Shift()])
    assert history[0].accuracy > 80 and history[1].accuracy < 20  # epoch 2 is scored on the shifted labels


def test_an_epoch_after_a_quiet_stretch_logs_a_line_unless_on_epoch_reports(monkeypatch, caplog):
    import unlearn.training as training

    caplog.set_level("INFO", logger="unlearn.training")
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    images, labels = torch.rand(40, 1, 8, 8), torch.randint(0, 10, (40,))
    cfg = TrainConfig(epochs=3, batch_size=16, lr=0.1)
    train_(model, images, labels, cfg, generator=torch.Generator().manual_seed(0))
    assert not caplog.records  # digits-sized epochs stay quiet
    monkeypatch.setattr(training, "QUIET_LIMIT_S", 0.0)
    train_(model, images, labels, cfg, generator=torch.Generator().manual_seed(0))
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    caplog.clear()
    train_(model, images, labels, cfg, generator=torch.Generator().manual_seed(0), on_epoch=lambda stats: None)
    assert not caplog.records  # the caller reports its own epochs
