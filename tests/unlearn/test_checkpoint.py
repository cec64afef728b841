import logging

import pytest
import torch

from unlearn.checkpoint import EpochCheckpoint
from unlearn.config import TrainConfig
from unlearn.data import load_dataset
from unlearn.lipschitz import FastClip
from unlearn.models import create_model
from unlearn.training import train_

CFG = TrainConfig(epochs=4, batch_size=32, lr=0.05, augment=True, crop_padding=1, schedule="cosine")


class Stop(Exception):
    pass


def _train(checkpoint=None, stop_after=None):
    """Train a fresh tiny model with FastClip; returns (state_dict, history, epochs reported)."""
    data = load_dataset("digits")
    model = create_model("small_cnn", in_channels=1, num_classes=10, mean=[0.3], std=[0.3], seed=0, width=8)
    reported = []

    def on_epoch(stats):
        reported.append(stats.epoch)
        if stats.epoch == stop_after:
            raise Stop

    clip = FastClip(model, (1, 8, 8), target=1.5, clip_every=3, seed=0)
    history = train_(model, data.images[:200], data.labels[:200], CFG, generator=torch.Generator().manual_seed(1),
                     callbacks=[clip], on_epoch=on_epoch, checkpoint=checkpoint)
    return model.state_dict(), history, reported


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_an_interrupted_training_resumes_bit_identical(tmp_path):
    reference, history, _ = _train()
    checkpoint = EpochCheckpoint(tmp_path / "ckpt.pt", "fp")
    with pytest.raises(Stop):
        _train(checkpoint, stop_after=2)
    state, resumed, reported = _train(checkpoint)
    assert reported == [3, 4]  # epochs 1 and 2 came from the checkpoint
    assert [h.resumed for h in resumed] == [True, True, False, False]
    assert [h.loss for h in resumed] == [h.loss for h in history] and resumed[0].seconds > 0
    _assert_same(state, reference)


def test_checkpointing_every_second_epoch_resumes_from_the_last_saved_one(tmp_path):
    reference, _, _ = _train()
    checkpoint = EpochCheckpoint(tmp_path / "ckpt.pt", "fp", every=2)
    with pytest.raises(Stop):
        _train(checkpoint, stop_after=3)  # epoch 3 was not saved: training resumes after epoch 2
    state, resumed, reported = _train(checkpoint)
    assert reported == [3, 4] and [h.resumed for h in resumed] == [True, True, False, False]
    _assert_same(state, reference)
    with pytest.raises(ValueError, match="must be >= 1"):
        EpochCheckpoint(tmp_path / "x.pt", "fp", every=0)


def test_a_checkpoint_of_other_params_or_an_unreadable_one_is_ignored(tmp_path, caplog):
    reference, _, _ = _train()
    path = tmp_path / "ckpt.pt"
    with pytest.raises(Stop):
        _train(EpochCheckpoint(path, "old params"), stop_after=2)
    state, _, reported = _train(EpochCheckpoint(path, "new params"))
    assert reported == [1, 2, 3, 4]
    _assert_same(state, reference)

    caplog.set_level(logging.INFO)
    path.write_bytes(b"truncated")
    assert EpochCheckpoint(path, "new params").load() is None
    assert "ckpt.pt: not a valid tensor file" in caplog.text and "starting over" in caplog.text


class _Payload:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('pwned').write_text('x')",))


def test_a_malicious_checkpoint_is_refused_not_executed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "ckpt.pt"
    torch.save({"fingerprint": "fp", "payload": _Payload()}, path)
    assert EpochCheckpoint(path, "fp").load() is None
    assert not (tmp_path / "pwned").exists()
