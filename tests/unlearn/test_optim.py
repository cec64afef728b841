import subprocess
import sys

import pytest
import torch
from torch import nn

from unlearn.optim import SGD, Constant, Cosine, StepDecay


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"))]


def _model(seed: int, device: str = "cpu") -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    model[0].bias.requires_grad_(False)  # a parameter that never has a gradient
    return model.to(device)


def _epochs(model, optimizer, scheduler, epochs: int, generator: torch.Generator) -> list[float]:
    """Train ``epochs`` epochs of 3 random batches drawn from ``generator``; returns each epoch's rate."""
    device = next(model.parameters()).device
    lrs = []
    for _ in range(epochs):
        lrs.append(optimizer.param_groups[0]["lr"] if hasattr(optimizer, "param_groups") else optimizer.lr)
        for _ in range(3):
            x = torch.randn(8, 6, generator=generator).to(device)
            y = torch.randint(0, 3, (8,), generator=generator).to(device)
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
        scheduler.step()
    return lrs


def _data(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


SCHEDULES = {
    "constant": (lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda epoch: 1.0), Constant),
    "step": (lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.1),
             lambda o: StepDecay(o, step_size=3, gamma=0.1)),
    "cosine": (lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=7), lambda o: Cosine(o, t_max=7)),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
@pytest.mark.parametrize("momentum,weight_decay", [(0.9, 5e-4), (0.0, 0.0), (0.5, 0.0)])
def test_training_is_bit_identical_to_torch_sgd(schedule, momentum, weight_decay, device):
    """On CUDA both take torch's multi-tensor (foreach) update, on CPU the single-tensor one."""
    theirs, ours = _model(1, device), _model(1, device)
    reference = torch.optim.SGD(theirs.parameters(), lr=0.07, momentum=momentum, weight_decay=weight_decay)
    optimizer = SGD(ours.parameters(), lr=0.07, momentum=momentum, weight_decay=weight_decay)
    make_theirs, make_ours = SCHEDULES[schedule]
    lrs_theirs = _epochs(theirs, reference, make_theirs(reference), 9, _data())
    lrs_ours = _epochs(ours, optimizer, make_ours(optimizer), 9, _data())
    assert lrs_ours == lrs_theirs
    for a, b in zip(theirs.parameters(), ours.parameters(), strict=True):
        assert torch.equal(a, b)
    assert len(set(lrs_ours)) == (1 if schedule == "constant" else len(set(lrs_theirs)))


def test_a_restored_state_continues_exactly():
    straight = _model(2)
    optimizer = SGD(straight.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    _epochs(straight, optimizer, Cosine(optimizer, t_max=6), 6, _data())

    first, data = _model(2), _data()
    optimizer = SGD(first.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    scheduler = Cosine(optimizer, t_max=6)
    _epochs(first, optimizer, scheduler, 3, data)
    saved = {"model": first.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}

    resumed = _model(99)
    resumed.load_state_dict(saved["model"])
    optimizer = SGD(resumed.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    scheduler = Cosine(optimizer, t_max=6)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    lrs = _epochs(resumed, optimizer, scheduler, 3, data)  # the data of epochs 4-6
    assert lrs[0] < 0.05
    for a, b in zip(straight.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)


def test_a_state_for_another_model_is_refused():
    optimizer = SGD(_model(0).parameters(), lr=0.1)
    with pytest.raises(ValueError, match="optimiser state has 1 parameters, the model 4"):
        optimizer.load_state_dict({"lr": 0.1, "buffers": [None]})


def test_training_does_not_import_torch_dynamo():
    """The reason the module exists: torch.optim's Optimizer imports torch._dynamo (1.3 s)."""
    code = ("import sys, torch\n"
            "from unlearn.config import TrainConfig\n"
            "from unlearn.training import train_\n"
            "model = torch.nn.Linear(4, 2)\n"
            "train_(model, torch.rand(16, 4), torch.randint(0, 2, (16,)), TrainConfig(epochs=2, batch_size=8),"
            " generator=torch.Generator().manual_seed(0))\n"
            "print('torch._dynamo' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
