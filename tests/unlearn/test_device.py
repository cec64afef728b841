"""Devices and precision: names, bf16 on the CPU end to end, nothing moved back to the CPU,
and (where CUDA exists) training on the GPU."""

import copy

import pytest
import torch

from unlearn.config import AdversarialConfig, FinetuneConfig, TrainConfig
from unlearn.data import load_dataset
from unlearn.device import forward, model_device, precision, resolve_device
from unlearn.errors import ConfigError
from unlearn.models import create_model
from unlearn.training import train_
from unlearn.unlearning import METHODS, ForgetTask

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(scope="module")
def digits():
    data = load_dataset("digits")
    return data.images[:600], data.labels[:600]


def _model(width: int = 8):
    return create_model("small_cnn", in_channels=1, num_classes=10, mean=[0.3], std=[0.3], seed=0, width=width)


def test_device_names_are_resolved_or_refused():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="must be auto, cpu, cuda or cuda:N"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available here"):
            resolve_device("cuda:0")
    with pytest.raises(ConfigError, match="precision 'fp16'"):
        with precision("fp16"):
            pass


def test_bf16_on_the_cpu_trains_attacks_and_unlearns(digits):
    from unlearn.attacks import adversarial_set
    from unlearn.evaluation import predict

    images, labels = digits
    model = _model()
    with precision("bf16"):
        history = train_(model, images, labels, TrainConfig(epochs=4, batch_size=32, lr=0.05),
                         generator=torch.Generator().manual_seed(0))
        logits = predict(model, images)
        forget = torch.arange(40)
        found = adversarial_set(model, images[forget].float() / 255, labels[forget], eps_init=0.5, steps=5)
        task = ForgetTask(images, labels, forget, torch.arange(40, 600), 10, found)
        METHODS.get("amun").run(model, task, FinetuneConfig(epochs=1, batch_size=64), torch.Generator().manual_seed(0))
    assert history[-1].accuracy > 80 and logits.dtype == torch.float32 and torch.isfinite(logits).all()
    assert (logits.argmax(1) == labels).float().mean() > 0.8
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast leaves the weights in fp32
    assert found.images.dtype == torch.float32 and not found.capped.any()


def test_a_bf16_stage_reads_the_same_float32_logits_and_metrics_as_an_fp32_one(digits):
    """Attacks read float32 logits whatever execution.precision says: a model trained under
    bf16 gives the same logits, split metrics and D_A labels under either precision."""
    from unlearn.attacks import adversarial_set
    from unlearn.evaluation import predict, split_metrics

    images, labels = digits
    model = _model()
    with precision("bf16"):
        train_(model, images, labels, TrainConfig(epochs=2, batch_size=32, lr=0.05),
               generator=torch.Generator().manual_seed(0))
        in_bf16 = predict(model, images)
        with torch.no_grad():
            raw_bf16 = forward(model.eval(), images.float() / 255)
    in_fp32 = predict(model, images)
    assert torch.equal(in_bf16, in_fp32)
    assert not torch.equal(raw_bf16, in_fp32)  # the training path itself does round: the test can fail
    splits = {"forget": torch.arange(50).numpy(), "remain": torch.arange(50, 400).numpy(),
              "test": torch.arange(400, 600).numpy()}
    assert split_metrics(in_bf16, labels, splits) == split_metrics(in_fp32, labels, splits)


def test_exact_turns_tf32_off_inside_and_restores_it(digits):
    from unlearn.device import exact, tf32_flags
    from unlearn.lipschitz import top_singular

    def tf32_on(flags):
        return any(value in ("tf32", "True") for value in flags.values())

    before = tf32_flags()
    assert tf32_on(before)  # torch's default: cuDNN convolutions may use TF32
    seen = []
    layer = torch.nn.Linear(4, 3)
    layer.register_forward_pre_hook(lambda module, args: seen.append(tf32_flags()))
    with precision("bf16"):
        top_singular(layer, (4,), 1, 3)
    with exact():
        assert not tf32_on(tf32_flags())
    assert tf32_flags() == before
    assert seen and not any(tf32_on(flags) for flags in seen)


def test_fp32_is_bit_identical_to_no_precision_context(digits):
    images, labels = digits
    cfg = TrainConfig(epochs=1, batch_size=64, augment=True)
    plain, inside = _model(), _model()
    train_(plain, images, labels, cfg, generator=torch.Generator().manual_seed(1))
    with precision("fp32"):
        train_(inside, images, labels, cfg, generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), inside.state_dict().values()))


@pytest.fixture
def no_way_back(monkeypatch):
    """A spy: any move of a tensor to the CPU (``.cpu()``, ``.to("cpu")``, ``.numpy()``) fails."""
    calls = []

    def refuse(name, original):
        def spy(self, *args, **kwargs):
            target = args[0] if args else kwargs.get("device")
            if name != "to" or (isinstance(target, (str, torch.device)) and torch.device(target).type == "cpu"):
                calls.append(name)
                raise AssertionError(f"Tensor.{name} moved a tensor to the CPU")
            return original(self, *args, **kwargs)
        return spy

    for name in ("cpu", "to", "numpy"):
        monkeypatch.setattr(torch.Tensor, name, refuse(name, getattr(torch.Tensor, name)))
    return calls


@pytest.mark.parametrize("method", METHODS.names())
def test_no_library_function_moves_a_batch_back_to_the_cpu(method, digits, no_way_back):
    """Training, PGD, D_A and every method, spied on: no tensor goes back to the CPU."""
    from unlearn.attacks import adversarial_set
    from unlearn.config import UnlearnClassConfig, UnlearnConfig

    images, labels = digits
    model = _model()
    forget = torch.nonzero(labels == 3).squeeze(1)
    remain = torch.nonzero(labels != 3).squeeze(1)
    found = adversarial_set(model, images[forget].float() / 255, labels[forget], eps_init=0.5, steps=2,
                            max_doublings=1)
    task = ForgetTask(images, labels, forget, remain, 10, found, holdout=forget[:20])  # TRW's constraint reads it
    section = UnlearnConfig if method in UnlearnConfig.model_fields else UnlearnClassConfig
    kind = section.model_fields[method].annotation
    small = {"epochs": 1, "max_epochs": 1, "noise_samples": 4, "noise_steps": 2, "noise_copies": 1}
    cfg = kind(**{key: value for key, value in small.items() if key in kind.model_fields})
    METHODS.get(method).run(copy.deepcopy(model), task, cfg, torch.Generator().manual_seed(0))
    assert no_way_back == []


def test_choose_eps_init_stays_on_the_device(digits, no_way_back):
    from unlearn.attacks import choose_eps_init

    images, labels = digits
    x = images[:50].float() / 255
    assert choose_eps_init(_model(), x, labels[:50], AdversarialConfig(eps_init=None, calibration_samples=20,
                                                                       calibration_steps=2),
                           0) > 0


@needs_cuda
def test_training_and_prediction_run_on_the_gpu(digits):
    from unlearn.device import prepare_model
    from unlearn.evaluation import predict

    images, labels = digits
    device = torch.device("cuda")
    model = prepare_model(_model(), device)
    with precision("bf16"):
        train_(model, images.to(device), labels, TrainConfig(epochs=2, batch_size=64, augment=True),
               generator=torch.Generator().manual_seed(0))
        logits = predict(model, images.to(device))
    assert model_device(model).type == "cuda" and (logits.argmax(1) == labels).float().mean() > 0.5
