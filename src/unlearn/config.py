"""Typed, validated parameters: params.yaml -> :class:`Params`.

Every knob of the pipeline lives in params.yaml, one section per stage. The file is
validated once, on load, before any work: the first problem found is raised as a
:class:`~unlearn.errors.ConfigError` whose message is one line naming the key, the
bad value and what is allowed, e.g.
``params.yaml: data.forget.fraction = 1.5: must be in (0, 1)``.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from unlearn.errors import ConfigError
from unlearn.names import MODEL_NAMES, TORCHVISION_PREFIX

DATASETS = ("digits", "cifar10", "cifar100", "mnist", "fashion_mnist")
DATASET_CLASSES = {"digits": 10, "cifar10": 10, "cifar100": 100, "mnist": 10, "fashion_mnist": 10}
# Where the user's own inputs live: each folder is a DVC dependency of the stage that reads it
# (dvc.yaml cannot depend on a path that a param names and may be null).
FORGET_LISTS = "data/user/forget"
CHECKPOINTS = "data/user/models"


def _inside(folder: str, what: str):
    """An AfterValidator: a relative path inside ``folder`` (``what`` names the files in the message)."""

    def check(value):
        if value is None:
            return value
        path = Path(value)
        if path.is_absolute() or ".." in path.parts or not path.as_posix().startswith(folder + "/"):
            raise ValueError(f"{what} are read from {folder}/ (a DVC dependency of the stage that reads "
                             f"them); put the file there and give its path from the project root")
        return path.as_posix()

    return AfterValidator(check)


ForgetListPath = Annotated[str, _inside(FORGET_LISTS, "forget lists")]
CheckpointPath = Annotated[str, _inside(CHECKPOINTS, "checkpoints")]


def _interval(lo: float | None, hi: float | None, lo_open: bool = False, hi_open: bool = False):
    """An AfterValidator checking lo <(=) value <(=) hi, with a readable message."""
    left = "(" if lo_open else "["
    right = ")" if hi_open else "]"
    if lo is not None and hi is not None:
        text = f"must be in {left}{lo}, {hi}{right}"
    elif lo is not None:
        text = f"must be {'>' if lo_open else '>='} {lo}"
    else:
        text = f"must be {'<' if hi_open else '<='} {hi}"

    def check(value):
        if value is None:
            return value
        below = lo is not None and (value <= lo if lo_open else value < lo)
        above = hi is not None and (value >= hi if hi_open else value > hi)
        if below or above:
            raise ValueError(text)
        return value

    return AfterValidator(check)


PositiveInt = Annotated[int, _interval(1, None)]
NonNegInt = Annotated[int, _interval(0, None)]
PositiveFloat = Annotated[float, _interval(0, None, lo_open=True)]
NonNegFloat = Annotated[float, _interval(0, None)]
OpenFraction = Annotated[float, _interval(0, 1, lo_open=True, hi_open=True)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ForgetConfig(_Section):
    """Which training samples are to be forgotten.

    ``random``: a uniformly random subset of train, given as ``fraction`` or ``count``.
    ``class``: every training sample of the listed ``classes``.
    ``list``: the samples named in ``file`` (under data/user/forget/; the format is
    :mod:`unlearn.data.forget_list`'s).
    ``memorized``: a random subset (``fraction`` or ``count`` of train) of a pool of train
    samples picked by memorisation score (computed by ``prepare``, section ``memorization``): the ``pool`` fraction of
    train with the highest scores (``level: high``), the lowest (``low``) or the middle ones
    (``medium``), the three difficulties of Zhao et al. ("What makes unlearning hard", 2024).
    """

    mode: Literal["random", "class", "list", "memorized"] = "random"
    fraction: Optional[OpenFraction] = 0.1
    count: Optional[PositiveInt] = None
    classes: list[NonNegInt] = Field(default_factory=list)
    file: Optional[ForgetListPath] = None
    level: Literal["low", "medium", "high"] = "high"
    pool: OpenFraction = 0.2

    @model_validator(mode="after")
    def _consistent(self) -> "ForgetConfig":
        if (self.mode == "list") != (self.file is not None):
            raise ValueError("list mode needs file (a forget list under data/user/forget/), and only list mode "
                             "reads it; set mode: list or file: null")
        if self.mode == "list":
            if self.classes:
                raise ValueError("classes is only used in class mode; set classes: []")
        elif self.mode in ("random", "memorized"):
            if (self.fraction is None) == (self.count is None):
                raise ValueError(f"{self.mode} mode needs exactly one of fraction or count (set the other to null)")
            if self.classes:
                raise ValueError("classes is only used in class mode; set mode: class or classes: []")
        elif not self.classes:
            raise ValueError("class mode needs a non-empty list of classes")
        elif len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes {self.classes} lists a class twice")
        return self


class DataConfig(_Section):
    """The dataset and its splits.

    ``root`` holds user-provided raw data (torchvision format, an ImageFolder
    directory ``<root>/<dataset>/{train,test}/<class>/``, or a ``.tar.gz`` of one);
    ``path`` points at such a folder or tarball explicitly. ``test_fraction`` is
    used only for datasets without an official test split (digits).
    """

    dataset: Literal[DATASETS] = "digits"  # type: ignore[valid-type]
    root: str = "data/raw"
    path: Optional[str] = None
    download: bool = False
    test_fraction: OpenFraction = 0.25
    forget: ForgetConfig = Field(default_factory=ForgetConfig)


def _model_name(value: str) -> str:
    if value in MODEL_NAMES or (value.startswith(TORCHVISION_PREFIX) and value != TORCHVISION_PREFIX):
        return value
    raise ValueError(f"must be one of: {', '.join(MODEL_NAMES)}, or torchvision:<builder> "
                     f"(e.g. torchvision:resnet50)")


class ModelConfig(_Section):
    """The architecture: a registry name (see :mod:`unlearn.models`) or ``torchvision:<builder>``,
    any classification builder of ``torchvision.models`` (untrained weights; num_classes and
    input channels from the data; ``cifar_stem: true`` gives ResNet-like stems a 3x3 stride-1
    first convolution and no max-pool, for 32x32 inputs). ``width: null`` takes the
    architecture's default; ``batch_norm: false`` builds it without BatchNorm (registry
    models only). A trained model of one's own is ``original.checkpoint``."""

    name: Annotated[str, AfterValidator(_model_name)] = "small_cnn"
    width: Optional[PositiveInt] = None
    batch_norm: bool = True
    cifar_stem: bool = False

    @model_validator(mode="before")
    @classmethod
    def _moved(cls, data):
        if isinstance(data, dict) and "checkpoint" in data:
            raise ValueError("checkpoint moved to original.checkpoint (its own section: stage import_model alone "
                             "reads it, so a moved checkpoint re-runs nothing else)")
        return data

    @model_validator(mode="after")
    def _consistent(self) -> "ModelConfig":
        if self.name.startswith(TORCHVISION_PREFIX):
            if self.width is not None:
                raise ValueError("width is for the registry models; torchvision builders take their own widths "
                                 "(set width: null)")
            if not self.batch_norm:
                raise ValueError("batch_norm: false is for the registry models; pick a torchvision builder "
                                 "without BatchNorm instead (set batch_norm: true)")
        elif self.cifar_stem:
            raise ValueError(f"cifar_stem is for torchvision:<builder> models; {self.name} already fits "
                             f"small inputs (set cifar_stem: false)")
        return self


class MemorizationConfig(_Section):
    """The memorisation scores ``prepare`` computes (only with ``data.forget.mode: memorized``):
    ``references`` models of the ``train`` recipe (``epochs: null`` = ``train.epochs``), each on
    a random half of train, their own (never the reference models that later judge the unlearning); a sample's
    score is its mean true-class confidence over the models that trained on it minus over
    those that did not (Feldman and Zhang's memorisation, with confidence for accuracy)."""

    references: Annotated[int, _interval(2, None)] = 8
    epochs: Optional[PositiveInt] = None


class OriginalConfig(_Section):
    """Where the original model comes from: ``checkpoint: null`` trains it (stage ``train``, the
    ``train`` recipe); else an existing model, a state_dict ``.pt``/``.pth`` or a
    ``.safetensors`` file under data/user/models/, that stage ``import_model`` checks and
    imports instead (its architecture is ``model``)."""

    checkpoint: Optional[CheckpointPath] = None


class RetrainConfig(_Section):
    """The gold standard. ``enabled: false`` skips retraining (the stage writes an empty
    placeholder); reports then score each method against the attacks' own reference point
    (RMIA and U-LiRA AUC of 50) and say so."""

    enabled: bool = True


class RequestsConfig(_Section):
    """Sequential deletion requests after the first (``data.forget``): each file (a forget
    list under data/user/forget/) is applied, in order, to the model that the previous
    request left, by each of ``methods``; after request i, the model is scored against a
    model retrained without the union of requests 1..i."""

    files: list[ForgetListPath] = Field(default_factory=list)
    methods: list[str] = Field(default_factory=lambda: ["amun", "ft"])


class AuditConfig(_Section):
    """``reports/audit.html``: the deletion audit of ``method``'s model. Its verdict
    "forgotten" needs the RMIA AUC (forget vs test) within ``max_auc_gap`` points of the
    reference (retrain's AUC, or 50 without retrain) and the accuracy on the kept data
    within ``max_retain_drop`` points of the original model's."""

    method: str = "amun"
    max_auc_gap: NonNegFloat = 5.0
    max_retain_drop: NonNegFloat = 5.0


class TrainConfig(_Section):
    """The training recipe of the original model (and of retrain, its gold standard).

    The learning rate follows ``schedule`` per epoch: ``constant``; ``step``
    (multiply by ``gamma`` every ``step_size`` epochs); ``cosine`` (to 0 at the end).
    ``augment`` applies a random crop (``crop_padding`` pixels, zero padded) and a
    horizontal flip to each training batch.
    """

    epochs: PositiveInt = 20
    batch_size: PositiveInt = 64
    lr: PositiveFloat = 0.05
    momentum: Annotated[float, _interval(0, 1, hi_open=True)] = 0.9
    weight_decay: NonNegFloat = 5e-4
    schedule: Literal["constant", "step", "cosine"] = "cosine"
    step_size: PositiveInt = 10
    gamma: Annotated[float, _interval(0, 1, lo_open=True)] = 0.1
    augment: bool = False
    crop_padding: NonNegInt = 4


class LipschitzConfig(_Section):
    """Smooth-model training with FastClip (:mod:`unlearn.lipschitz`), read by train and retrain.

    ``method: fastclip`` clips every Linear / Conv layer's spectral norm to at most
    ``target`` every ``clip_every`` optimiser steps (and once at the end), with
    ``iters`` warm-started power iterations per clip. ``bn`` says how BatchNorm is
    treated: ``ignore`` (clip convs alone; BatchNorm unbounded), ``composite`` (clip
    each conv alone and clamp the BatchNorm after it, after every step, so that its
    per-channel gain ``|gamma| / sqrt(running_var + eps)`` is at most ``target``, as
    the FastClip code does; a conv + BN pair is then at most ``target ** 2``) or
    ``remove`` (needs ``model.batch_norm: false``). ``two_sided`` also raises a
    layer's largest singular value to ``target`` when it is below (the FastClip code's
    default), so every layer ends at ``target`` instead of at most ``target``.
    """

    method: Literal["none", "fastclip"] = "none"
    target: PositiveFloat = 1.0
    clip_every: PositiveInt = 50
    bn: Literal["ignore", "remove", "composite"] = "ignore"
    iters: PositiveInt = 20
    two_sided: bool = False


class TransferConfig(_Section):
    """The smoothness / transferability study (studies/dvc.yaml: ``transfer@<seed>``; finding F3).

    For every model seed in ``seeds`` and Lipschitz target in ``targets`` (``null`` = no
    clipping) a source and a target model are trained (seeds ``10 * seed`` and
    ``10 * seed + 1``) with the ``train`` recipe for ``epochs`` epochs, BatchNorm removed
    and FastClip with ``bn: remove`` (so that each model's bound is the product of its
    clipped layers; the other ``lipschitz`` settings apply). PGD examples crafted on each
    source for ``samples`` test samples (null: the whole test split) are scored on every target: L2 (``eps``, ``steps``
    steps of eps / 10, as AMUN's attack) and L-infinity as the LOTOS study ran it
    (``eps_linf``, ``steps_linf`` steps of eps / 10 from a uniform random start).
    """

    targets: list[Optional[PositiveFloat]] = Field(default_factory=lambda: [None, 2.0, 1.5, 1.0])
    seeds: list[NonNegInt] = Field(default_factory=lambda: [0, 1, 2])
    epochs: PositiveInt = 10
    eps: PositiveFloat = 0.5
    steps: PositiveInt = 20
    eps_linf: PositiveFloat = 0.1
    steps_linf: PositiveInt = 50
    samples: Optional[PositiveInt] = None

    @model_validator(mode="after")
    def _distinct(self) -> "TransferConfig":
        for key in ("targets", "seeds"):
            values = getattr(self, key)
            if not values:
                raise ValueError(f"{key} must list at least one value")
            if len(set(values)) != len(values):
                raise ValueError(f"{key} {values} lists a value twice")
        return self


class AdversarialConfig(_Section):
    """AMUN's adversarial set D_A of the forget set (stage ``adversarial``).

    Each sample starts at the L2 budget ``eps_init`` (pixels in [0, 1], the distance over
    all C x H x W values) and runs ``steps`` PGD steps per budget, doubling it up to
    ``max_doublings`` times, and never beyond the input space's diameter, until it is
    misclassified; a sample still correct there gets no D_A row (``capped``,
    :func:`unlearn.attacks.adversarial_set`). The default 0.04 is the fixed
    starting budget of AMUN's code (``PGDL2(eps=0.04)`` on [0, 1] images), so that the
    doubling grid is what makes each example the closest one found.
    ``eps_init: null`` calibrates it instead on ``calibration_samples`` forget samples so
    that a fraction ``calibration_success`` of them are misclassified within it
    (``calibration_steps`` PGD steps per budget on a doubling grid from 0.01: fewer steps
    than the attack, since every sample runs all the budgets below its own); most samples
    then succeed at the first budget (faster, but farther than the grid's closest).
    """

    eps_init: Optional[PositiveFloat] = 0.04
    calibration_samples: PositiveInt = 100
    calibration_success: OpenFraction = 0.95
    calibration_steps: PositiveInt = 10
    steps: PositiveInt = 50
    max_doublings: NonNegInt = 10
    batch_size: PositiveInt = 512


class FinetuneConfig(TrainConfig):
    """The fine-tuning recipe every unlearning method shares (section ``unlearn.<method>``):
    the keys of ``train`` (SGD with momentum and weight decay, a per-epoch schedule),
    starting from the original model, with unlearning's defaults."""

    epochs: PositiveInt = 10
    lr: PositiveFloat = 0.01
    schedule: Literal["constant", "step", "cosine"] = "step"
    step_size: PositiveInt = 5


class RemainOptionalConfig(FinetuneConfig):
    """A method that can run without the remain set: ``use_remain: false`` fine-tunes on
    what it builds from the forget set alone (the "no remain access" rows of the report)."""

    use_remain: bool = True


class SalUnConfig(RemainOptionalConfig):
    """``mask_fraction``: the fraction of weights (largest |gradient of the forget loss|,
    one global threshold) that may change; the others stay bit-identical."""

    mask_fraction: OpenFraction = 0.5


class GradientAscentConfig(RemainOptionalConfig):
    """Gradient ascent on the forget loss; by default on the forget set alone (with
    ``use_remain: true``, descent on remain at the same time: "NegGrad+")."""

    lr: PositiveFloat = 1e-3
    use_remain: bool = False


class L1SparseConfig(FinetuneConfig):
    """``alpha``: the L1 penalty weight in the first epoch; ``alpha_schedule`` how it changes
    per epoch t = 1..epochs (see :func:`unlearn.unlearning.methods.l1_weight`):
    ``linear``, ``alpha * (1 - (t - 1) / epochs)`` (l1-sparse's paper and SalUn's code);
    ``compounding``, multiplied by ``2 - 2 (t - 1) / epochs`` after every epoch t (AMUN's
    code, whose l1-sparse numbers the thesis's tables report; with 10 epochs the weight
    rises to about 9.7 alpha in epochs 6-7 and ends at about 1.9 alpha)."""

    alpha: PositiveFloat = 5e-4
    alpha_schedule: Literal["linear", "compounding"] = "compounding"


class BoundaryShrinkConfig(RemainOptionalConfig):
    """``fgsm_eps``: the L-infinity FGSM step (pixels in [0, 1]) that finds each forget
    sample's neighbouring class."""

    fgsm_eps: PositiveFloat = 0.1


class _MethodSections(_Section):
    """One section per method; the methods that run are those given a section."""

    @property
    def methods(self) -> list[str]:
        """The methods with a section in the params file, in the order of the fields (dvc.yaml's
        ``foreach: ${unlearn}`` and ``${unlearn_class}`` iterate the same sections)."""
        return [name for name in type(self).model_fields if name in self.model_fields_set]


class ScrubConfig(FinetuneConfig):
    """SCRUB: ``max_epochs`` of the ``epochs`` also run the forget-set "max" pass (in batches of
    ``forget_batch_size``; null = ``batch_size``); the remain loss is ``gamma`` * CE +
    ``alpha`` * KL to the original model at ``kd_temperature`` (times T^2 when
    ``kd_t_squared``, as SCRUB's code scales it). ``presets/scrub-official.yaml`` sets the
    authors' CIFAR settings."""

    epochs: PositiveInt = 8
    batch_size: PositiveInt = 64
    forget_batch_size: Optional[PositiveInt] = None
    lr: PositiveFloat = 0.05
    schedule: Literal["constant", "step", "cosine"] = "constant"
    max_epochs: NonNegInt = 5
    alpha: NonNegFloat = 1.0
    gamma: NonNegFloat = 1.0
    kd_temperature: PositiveFloat = 2.0
    kd_t_squared: bool = False


class NegGradPlusConfig(FinetuneConfig):
    """NegGrad+: each step minimises ``alpha`` * CE(a remain batch) - (1 - ``alpha``) * CE(a forget
    batch of ``forget_batch_size``; null = ``batch_size``); the authors' small-scale CIFAR
    settings are alpha 0.95, 10 epochs, lr 0.01, batches 128 and 64."""

    schedule: Literal["constant", "step", "cosine"] = "constant"
    alpha: Annotated[float, _interval(0, 1)] = 0.95
    forget_batch_size: Optional[PositiveInt] = 64


class SsdConfig(_Section):
    """SSD (training-free): dampen the parameters whose forget-set importance exceeds ``alpha``
    times their whole-training-set importance, by ``dampening`` * that ratio's inverse (at
    most 1); importances from batches of ``batch_size``. The authors' ResNet-18 settings:
    alpha 10, dampening 1, batch 64 (class) or 128 (random)."""

    alpha: PositiveFloat = 10.0
    dampening: PositiveFloat = 1.0
    batch_size: PositiveInt = 128


class UnsirConfig(FinetuneConfig):
    """UNSIR (class track): ``noise_samples`` error-maximising noise inputs per forgotten class
    (Adam at ``noise_lr`` for ``noise_steps`` steps, L2 weight ``noise_l2``), ``noise_copies``
    copies of them mixed with up to ``remain_per_class`` remain samples per kept class for the
    impair epochs (the keys of ``train``), then ``repair_epochs`` on those remain samples at
    ``repair_lr``. The authors' notebook: 256, 0.1, 40, 0.1, 20, 1000, one epoch each."""

    epochs: PositiveInt = 1
    schedule: Literal["constant", "step", "cosine"] = "constant"
    lr: PositiveFloat = 0.02
    noise_samples: PositiveInt = 256
    noise_steps: PositiveInt = 40
    noise_lr: PositiveFloat = 0.1
    noise_l2: NonNegFloat = 0.1
    noise_copies: PositiveInt = 20
    remain_per_class: PositiveInt = 1000
    repair_epochs: PositiveInt = 1
    repair_lr: PositiveFloat = 0.01


class UnlearnConfig(_MethodSections):
    """One section per unlearning method (stage ``unlearn@<method>``); editing one
    re-runs only that method. The registry of methods is :mod:`unlearn.unlearning`."""

    amun: FinetuneConfig = Field(default_factory=FinetuneConfig)
    amun_no_remain: FinetuneConfig = Field(default_factory=FinetuneConfig)
    amun_salun: SalUnConfig = Field(default_factory=SalUnConfig)
    ft: FinetuneConfig = Field(default_factory=FinetuneConfig)
    rl: RemainOptionalConfig = Field(default_factory=RemainOptionalConfig)
    ga: GradientAscentConfig = Field(default_factory=GradientAscentConfig)
    l1_sparse: L1SparseConfig = Field(default_factory=L1SparseConfig)
    salun: SalUnConfig = Field(default_factory=SalUnConfig)
    bs: BoundaryShrinkConfig = Field(default_factory=BoundaryShrinkConfig)
    neggrad_plus: NegGradPlusConfig = Field(default_factory=NegGradPlusConfig)  # beyond the thesis: the field's
    scrub: ScrubConfig = Field(default_factory=ScrubConfig)
    ssd: SsdConfig = Field(default_factory=SsdConfig)


class TrwConfig(RemainOptionalConfig):
    """TRW (:mod:`unlearn.unlearning.trw`). ``target: maxent`` (default): the maximum-entropy
    tilt of the renormalised output by the cosine similarity of the head's weight rows
    (after PCA onto ``pca_dim`` components; null: none), its strength solving the
    similarity constraint estimated on held-out inputs (``strength: null``, searched in
    [-``max_strength``, ``max_strength``]) or fixed (``strength``: a number; 0 = plain
    renormalisation). ``target: softmax``: the earlier reading, a fixed tilt ``beta`` of a
    softmax at ``temperature`` of the cosine similarities (kept for comparison)."""

    epochs: PositiveInt = 5
    schedule: Literal["constant", "step", "cosine"] = "constant"
    target: Literal["maxent", "softmax"] = "maxent"
    strength: Optional[float] = None
    max_strength: PositiveFloat = 100.0
    beta: NonNegFloat = 10.0
    pca_dim: Optional[PositiveInt] = None
    temperature: PositiveFloat = 0.1


class UnlearnClassConfig(_MethodSections):
    """One section per class-unlearning method (stage ``unlearn_class@<method>``), each a
    fine-tuning recipe from the original model (the keys of ``train``)."""

    trw: TrwConfig = Field(default_factory=TrwConfig)
    trw_maxent: TrwConfig = Field(default_factory=TrwConfig)
    ft: FinetuneConfig = Field(default_factory=FinetuneConfig)
    rl: RemainOptionalConfig = Field(default_factory=RemainOptionalConfig)
    ga: GradientAscentConfig = Field(default_factory=GradientAscentConfig)
    bs: BoundaryShrinkConfig = Field(default_factory=BoundaryShrinkConfig)
    be: RemainOptionalConfig = Field(default_factory=RemainOptionalConfig)
    salun: SalUnConfig = Field(default_factory=SalUnConfig)
    scrub: ScrubConfig = Field(default_factory=ScrubConfig)
    neggrad_plus: NegGradPlusConfig = Field(default_factory=NegGradPlusConfig)  # beyond the thesis: the field's
    ssd: SsdConfig = Field(default_factory=SsdConfig)
    unsir: UnsirConfig = Field(default_factory=UnsirConfig)


class ClassTrackConfig(_Section):
    """The class track: forget every training sample of ``forget_class`` (independently of
    ``data.forget``, which defines the random track); ``retrain_seeds`` models are retrained
    without it (the gold standard, and the reference of MIA-NN and the TV distance)."""

    forget_class: NonNegInt = 1
    retrain_seeds: Annotated[int, _interval(2, None)] = 3


class MiaNnConfig(_Section):
    """MIA-NN (:mod:`unlearn.evaluation.mia_nn`): the SVM's input per sample is the model's
    probabilities on the forget class's ``neighbours`` nearest classes (``features:
    neighbours``) or its whole probability vector sorted (``sorted``); AUC by ``folds``-fold
    cross-validation."""

    features: Literal["neighbours", "sorted"] = "neighbours"
    neighbours: PositiveInt = 3
    folds: Annotated[int, _interval(2, None)] = 5


class ReferencesConfig(_Section):
    """The reference models of RMIA and LiRA (stage ``references``): ``K`` models with the
    target's recipe (``epochs: null`` = ``train.epochs``), each on a random half of all samples."""

    K: PositiveInt = 8
    epochs: Optional[PositiveInt] = None


class UliraConfig(_Section):
    """U-LiRA (:mod:`unlearn.evaluation.ulira`; stages ``ulira_shadows``, ``unlearn@<method>``,
    ``unlearn_class@<method>``, ``evaluate``, ``evaluate_class``): ``shadows`` shadow models
    per track, each unlearned by every method (0: no U-LiRA); ``fixed_variance``: one
    pooled variance instead of one per candidate; null: pooled below 16 shadows (a
    per-candidate variance from fewer than 8 shadows per side is too noisy), per candidate
    from 16 on (:attr:`pooled_variance`)."""

    shadows: NonNegInt = 4
    fixed_variance: Optional[bool] = None

    @property
    def pooled_variance(self) -> bool:
        return self.shadows < 16 if self.fixed_variance is None else self.fixed_variance

    @model_validator(mode="after")
    def _enough(self) -> "UliraConfig":
        if 0 < self.shadows < 4:
            raise ValueError(f"shadows {self.shadows}: U-LiRA needs 0 (off) or >= 4 (2 that unlearned and 2 that "
                             f"never saw each candidate)")
        return self


class MiaConfig(_Section):
    """The membership-inference attacks every model faces (stages ``evaluate``, ``evaluate_class``).

    RMIA's signal is ``signal`` (``taylor_soft_margin``: temperature, margin, Taylor
    ``order``, as in the RMIA code and the thesis; or ``softmax``); ``gamma`` is its
    likelihood-ratio threshold, ``a`` the offline correction, ``population`` the number of
    test samples used as the z population. ``online`` applies to RMIA and LiRA;
    ``fixed_variance`` makes LiRA use one pooled variance. AUC and TPR are averaged over
    ``repeats`` balanced subsamples (forget vs test, remain vs test). SalUn's SVC attack
    fits on at most ``svc_samples`` members and as many non-members (bounded cost).
    """

    signal: Literal["taylor_soft_margin", "softmax"] = "taylor_soft_margin"
    temperature: PositiveFloat = 2.0
    margin: NonNegFloat = 0.6
    order: Annotated[int, _interval(2, None)] = 4
    gamma: PositiveFloat = 2.0
    a: Annotated[float, _interval(0, 1)] = 0.33
    online: bool = True
    fixed_variance: bool = False
    population: Annotated[int, _interval(2, None)] = 1000
    repeats: PositiveInt = 3
    svc_samples: PositiveInt = 5000


RANDOM_TRACK_METHODS = tuple(UnlearnConfig.model_fields)


class SweepConfig(_Section):
    """Multi-seed results (studies/dvc.yaml: ``sweep_cell@<cell>``, ``tuning_cell``,
    ``sweep_method@<method>``, ``sweep_report``).

    Every (``seeds`` x ``forget_seeds``) cell trains its own original and retrained model
    (model seed) on its own split (forget-set seed) and runs ``methods``. A method with a
    learning-rate grid in ``lr_grid`` first has its rate (and, with ``step_grid``, its
    StepLR step: every tuning point then uses the step schedule) chosen, by the smallest
    ``select_by`` (``avg_gap``: the thesis's, with RMIA; ``avg_gap_svc``: SalUn's) on a
    separate tuning cell (``tuning_seed``, ``tuning_forget_seed``); the cells then use
    the chosen rate. Every cell, the tuning cell included, trains its own ``references``
    reference models (each on a random half of all samples, ``references.epochs``) for
    RMIA and LiRA. The report gives mean, std and 95% interval over cells, and each
    method's paired difference from AMUN.
    """

    seeds: list[NonNegInt] = Field(default_factory=lambda: [0, 1, 2])
    forget_seeds: list[NonNegInt] = Field(default_factory=lambda: [0])
    methods: list[Literal[RANDOM_TRACK_METHODS]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: list(RANDOM_TRACK_METHODS))
    lr_grid: dict[Literal[RANDOM_TRACK_METHODS], list[PositiveFloat]] = Field(  # type: ignore[valid-type]
        default_factory=dict)
    step_grid: list[PositiveInt] = Field(default_factory=list)
    tuning_seed: NonNegInt = 0
    tuning_forget_seed: NonNegInt = 100
    references: Annotated[int, _interval(2, None)] = 8
    select_by: Literal["avg_gap", "avg_gap_svc"] = "avg_gap"

    @model_validator(mode="after")
    def _consistent(self) -> "SweepConfig":
        _distinct_lists(self, ("seeds", "forget_seeds", "methods"))
        if self.tuning_forget_seed in self.forget_seeds:
            raise ValueError(f"tuning_forget_seed {self.tuning_forget_seed} is also an evaluation forget seed; "
                             f"tune on a separate forget set")
        empty = [m for m, grid in self.lr_grid.items() if not grid]
        if empty:
            raise ValueError(f"lr_grid.{empty[0]} is empty")
        return self


MEMORIZATION_LEVELS = ("low", "medium", "high")  # from the easiest forget set to the hardest


class MemorizedStudyConfig(_Section):
    """Does AMUN's advantage (finding F1) hold on forget sets of memorised samples?
    (studies/dvc.yaml: ``memorized_scores``, ``memorized_level@<level>``; F1-memorised, a
    question the thesis does not ask.)

    ``memorized_scores`` scores every sample of the dataset with ``memorization.references``
    models of its own, each on a seeded random half of all samples. For each of ``levels`` and
    each cell (``seeds`` x ``sweep.forget_seeds``) of the seed study, ``memorized_level@<level>``
    draws the cell's forget set (``data.forget``'s size) from the ``pool`` fraction of the
    cell's train set at that level (:func:`unlearn.data.splits.memorized_pool`), trains its
    original and retrained model, builds D_A, and runs ``methods`` at the rates the seed study
    chose (tuned on its random tuning forget set: not re-tuned per level). The cell's RMIA and
    LiRA reference models are the seed study's of the same cell: trained on random halves of
    all samples, they do not depend on the forget set. ``seeds`` must be seed-study seeds
    and ``methods`` seed-study methods."""

    levels: list[Literal[MEMORIZATION_LEVELS]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: list(MEMORIZATION_LEVELS))
    seeds: list[NonNegInt] = Field(default_factory=lambda: [0, 1, 2])
    pool: OpenFraction = 0.2
    methods: list[Literal[RANDOM_TRACK_METHODS]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["amun", "amun_no_remain", "ft", "rl", "ga", "l1_sparse", "salun", "bs"])

    @model_validator(mode="after")
    def _distinct(self) -> "MemorizedStudyConfig":
        _distinct_lists(self, ("levels", "seeds", "methods"))
        return self


CLASS_TRACK_METHODS = tuple(UnlearnClassConfig.model_fields)


class ClassSweepConfig(_Section):
    """Multi-seed results of the class track (studies/dvc.yaml: ``class_cell@<seed>-<class>``,
    ``class_tuning_cell``, ``class_method@<method>``, ``class_report``; findings F5, F6).

    Every (``seeds`` x ``classes``) cell trains its own original model, ``class_track.retrain_seeds``
    models retrained without the class and ``ulira.shadows`` U-LiRA shadows (and as many
    retrained shadows). Each method of ``methods`` first has its learning rate chosen from
    ``lr_grid`` by the smallest ``select_by`` on the tuning cell (``tuning_seed``,
    ``tuning_class``: a class that is not evaluated); the cells then use that rate. The
    report gives mean and 95% interval over cells of the MIA-NN gap, the U-LiRA gap, the TV
    distance to retrain and the Avg Gap, with retrain's seed-to-seed MIA-NN noise floor.
    """

    seeds: list[NonNegInt] = Field(default_factory=lambda: [0, 1, 2])
    classes: list[NonNegInt] = Field(default_factory=lambda: [1, 7])
    methods: list[Literal[CLASS_TRACK_METHODS]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: list(CLASS_TRACK_METHODS))
    lr_grid: dict[Literal[CLASS_TRACK_METHODS], list[PositiveFloat]] = Field(  # type: ignore[valid-type]
        default_factory=dict)
    tuning_seed: NonNegInt = 0
    tuning_class: NonNegInt = 4
    select_by: Literal["avg_gap", "mia_nn_gap", "tv_to_retrain"] = "avg_gap"

    @model_validator(mode="after")
    def _consistent(self) -> "ClassSweepConfig":
        _distinct_lists(self, ("seeds", "classes", "methods"))
        if self.tuning_class in self.classes:
            raise ValueError(f"tuning_class {self.tuning_class} is also an evaluated class; tune on another class")
        empty = [m for m, grid in self.lr_grid.items() if not grid]
        if empty:
            raise ValueError(f"lr_grid.{empty[0]} is empty")
        return self


class SmoothnessConfig(_Section):
    """Smoothness vs AMUN's gap (studies/dvc.yaml: ``smoothness@<seed>``; finding F2).

    For each model seed in ``seeds`` and Lipschitz target in ``targets`` (``null`` = no
    clipping): an original and a retrained model on forget-set seed ``forget_seed``'s
    split, trained with the ``train`` recipe, BatchNorm removed and FastClip with
    ``bn: remove`` (so each model's bound is the product of its clipped layers, recorded),
    ``sweep.references`` reference models with the same recipe, D_A, and each of
    ``methods`` with its ``unlearn`` section; every model is scored with RMIA.
    ``clip_unlearning``: FastClip stays on at the target (every ``lipschitz.clip_every``
    steps and at the end) while each method unlearns, so the unlearned model stays in the
    smooth class, as the official smooth-model runs of AMUN do.
    """

    targets: list[Optional[PositiveFloat]] = Field(default_factory=lambda: [None, 2.0, 1.0])
    clip_unlearning: bool = True
    seeds: list[NonNegInt] = Field(default_factory=lambda: [0, 1, 2])
    forget_seed: NonNegInt = 0
    methods: list[Literal[RANDOM_TRACK_METHODS]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["amun", "amun_no_remain"])

    @model_validator(mode="after")
    def _distinct(self) -> "SmoothnessConfig":
        _distinct_lists(self, ("targets", "seeds", "methods"))
        return self


FINDINGS = ("F1", "F2", "F3", "F4", "F5", "F6")


class FindingsConfig(_Section):
    """How the studies' findings are judged (stage ``findings``, :mod:`unlearn.findings`),
    fixed before the studies run. ``alpha``: the family-wise error of each finding's
    simultaneous (Bonferroni) intervals. ``margins``: per finding, the smallest difference
    that matters, in the unit of its differences (Avg Gap points for F1 and F2, transfer-rate
    points for F3, AUC points for F4-F6); an interval inside +-margin refutes the claim as a
    tie. ``max_accuracy_drop``: F2 and F3 compare the unclipped models with the smoothest
    Lipschitz target whose models' mean test accuracy is at most this many points below the
    unclipped models' (the whole curve is reported beside it)."""

    alpha: Annotated[float, _interval(0.0, 0.5, lo_open=True)] = 0.05
    margins: dict[Literal[FINDINGS], PositiveFloat] = Field(  # type: ignore[valid-type]
        default_factory=lambda: {"F1": 0.5, "F2": 0.5, "F3": 5.0, "F4": 2.0, "F5": 2.0, "F6": 2.0})
    max_accuracy_drop: NonNegFloat = 2.0

    @model_validator(mode="after")
    def _every_margin(self) -> "FindingsConfig":
        missing = [key for key in FINDINGS if key not in self.margins]
        if missing:
            raise ValueError(f"margins.{missing[0]} is missing; every finding {', '.join(FINDINGS)} needs a margin")
        return self


def _distinct_lists(section: _Section, keys: tuple[str, ...]) -> None:
    """Each of the section's list ``keys`` is non-empty and without repeats (a ValueError otherwise)."""
    for key in keys:
        values = getattr(section, key)
        if not values or len(set(values)) != len(values):
            raise ValueError(f"{key} {values} must be non-empty, without repeats")


def _scheduler_address(value: Optional[str]) -> Optional[str]:
    if value is not None and not re.fullmatch(r"(tcp|tls|inproc)://\S+", value):
        raise ValueError("must be a Dask scheduler address such as tcp://127.0.0.1:8786 (or null: run locally)")
    return value


def _device(value: str) -> str:
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
        raise ValueError(f"{value!r} must be auto, cpu, cuda or cuda:N")
    return value


class ExecutionConfig(_Section):
    """Where the work runs. Independent jobs (reference models, the class track's retrained
    seeds) run in ``workers`` local processes (1 = in the stage's own process), or on the
    Dask cluster whose scheduler is at ``address``; a failed job is retried ``retries`` times.
    Every stage computes on ``device`` (``auto``: CUDA when available, else the CPU; several
    jobs share one GPU when ``workers`` > 1), its forward passes in ``precision`` (``bf16``:
    autocast, weights stay float32; attacks and targets still read float32 logits, see
    :func:`unlearn.device.exact`). ``deterministic`` (CUDA only; CPU runs are deterministic
    anyway) picks deterministic cuDNN / cuBLAS kernels, so two GPU runs give identical bits;
    false lets cuDNN autotune, faster but not repeatable. Training saves a resumable
    checkpoint every ``checkpoint_every`` epochs (and after the last): a ResNet-18's is
    about 90 MB, more than a GPU epoch's work is worth writing. DVC tracks ``precision`` only: it
    changes results; the rest does not (beyond floating-point noise between devices)."""

    workers: PositiveInt = 1
    retries: NonNegInt = 1
    address: Annotated[Optional[str], AfterValidator(_scheduler_address)] = None
    device: Annotated[str, AfterValidator(_device)] = "auto"
    precision: Literal["fp32", "bf16"] = "fp32"
    deterministic: bool = True
    checkpoint_every: PositiveInt = 1


class EvaluateConfig(_Section):
    batch_size: PositiveInt = 1024


class FlowConfig(_Section):
    """The Prefect flow: how many stages run at once and how often a failed one is retried."""

    concurrency: PositiveInt = 2
    retries: NonNegInt = 1
    retry_delay_s: NonNegFloat = 2.0


class Params(_Section):
    """The whole params.yaml."""

    seed: NonNegInt = 0
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    original: OriginalConfig = Field(default_factory=OriginalConfig)
    memorization: MemorizationConfig = Field(default_factory=MemorizationConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    retrain: RetrainConfig = Field(default_factory=RetrainConfig)
    lipschitz: LipschitzConfig = Field(default_factory=LipschitzConfig)
    transfer: TransferConfig = Field(default_factory=TransferConfig)
    adversarial: AdversarialConfig = Field(default_factory=AdversarialConfig)
    unlearn: UnlearnConfig = Field(default_factory=UnlearnConfig)
    class_track: ClassTrackConfig = Field(default_factory=ClassTrackConfig)
    unlearn_class: UnlearnClassConfig = Field(default_factory=UnlearnClassConfig)
    mia_nn: MiaNnConfig = Field(default_factory=MiaNnConfig)
    sweep: SweepConfig = Field(default_factory=SweepConfig)
    smoothness: SmoothnessConfig = Field(default_factory=SmoothnessConfig)
    memorized_study: MemorizedStudyConfig = Field(default_factory=MemorizedStudyConfig)
    findings: FindingsConfig = Field(default_factory=FindingsConfig)
    class_sweep: ClassSweepConfig = Field(default_factory=ClassSweepConfig)
    references: ReferencesConfig = Field(default_factory=ReferencesConfig)
    mia: MiaConfig = Field(default_factory=MiaConfig)
    ulira: UliraConfig = Field(default_factory=UliraConfig)
    execution: ExecutionConfig = Field(default_factory=ExecutionConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    flow: FlowConfig = Field(default_factory=FlowConfig)
    requests: RequestsConfig = Field(default_factory=RequestsConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)

    @model_validator(mode="after")
    def _consistent(self) -> "Params":
        clip = self.lipschitz
        if clip.method == "fastclip" and clip.bn == "remove" and self.model.batch_norm:
            # not a ValueError: pydantic would wrap it; ConfigError passes through as is
            raise ConfigError("params.yaml: lipschitz.bn = remove: needs model.batch_norm: false "
                              "(or bn: ignore | composite)")
        classes = DATASET_CLASSES[self.data.dataset]
        if self.data.path is None:
            sweep = self.class_sweep
            for key, value, largest in (
                    ("class_track.forget_class", self.class_track.forget_class, self.class_track.forget_class),
                    ("class_sweep.classes", sweep.classes, max(sweep.classes, default=0)),
                    ("class_sweep.tuning_class", sweep.tuning_class, sweep.tuning_class)):
                if largest >= classes:
                    raise ConfigError(f"params.yaml: {key} = {value}: {self.data.dataset} has classes "
                                      f"0..{classes - 1}")
        if self.mia_nn.neighbours > classes - 1:
            raise ConfigError(f"params.yaml: mia_nn.neighbours = {self.mia_nn.neighbours}: must be at most "
                              f"{classes - 1} (the classes of {self.data.dataset} other than the forgotten one)")
        for key, models in (("references.K", self.references.K), ("sweep.references", self.sweep.references)):
            _check_reference_count(key, models, self.mia)
        methods = self.unlearn.methods
        checked = [("requests.methods", self.requests.methods)] if self.requests.files else []
        checked += [("audit.method", [self.audit.method])] if methods else []
        for key, names in checked:
            unknown = [name for name in names if name not in methods]
            if unknown:
                raise ConfigError(f"params.yaml: {key} = {_show(names if key == 'requests.methods' else names[0])}: "
                                  f"{unknown[0]!r} is not a method of unlearn (one of: {', '.join(methods)})")
        if self.requests.files and self.audit.method not in self.requests.methods:
            raise ConfigError(f"params.yaml: audit.method = {self.audit.method}: not in requests.methods "
                              f"{self.requests.methods}, so it would not apply the later requests the audit covers")
        return self


def _check_reference_count(key: str, models: int, mia: MiaConfig) -> None:
    """Enough reference models for the attacks of ``mia`` (a ConfigError naming ``key`` otherwise)."""
    in_per_sample = models // 2
    if mia.online and (in_per_sample < 1 or models - in_per_sample < 1):
        raise ConfigError(f"params.yaml: {key} = {models}: online attacks need an IN and an OUT model for every "
                          f"sample (>= 2 models), or set mia.online: false")
    if not mia.fixed_variance and min(in_per_sample if mia.online else 2, models - in_per_sample) < 2:
        raise ConfigError(f"params.yaml: {key} = {models}: LiRA with per-sample variances needs 2 OUT (and "
                          f"online: 2 IN) models per sample (>= 4 models), or set mia.fixed_variance: true")


class _YamlLoader(yaml.SafeLoader):
    """SafeLoader that also reads ``5e-4`` as a float (YAML 1.2 does; PyYAML's 1.1 does not)."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


_TYPE_MESSAGES = {
    "int_type": "must be an integer",
    "float_type": "must be a number",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "model_type": "must be a mapping of keys to values",
    "dict_type": "must be a mapping of keys to values",
    "missing": "required key is missing",
}


def _describe(error: dict[str, Any], model: type[BaseModel]) -> str:
    """One readable line for one pydantic error."""
    kind = error["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, error["loc"][:-1])
        close = difflib.get_close_matches(str(error["loc"][-1]), allowed, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"unknown key; {hint}allowed: {', '.join(allowed)}"
    if kind == "literal_error":
        return f"must be one of: {error['ctx']['expected']}"
    if kind in _TYPE_MESSAGES:
        return _TYPE_MESSAGES[kind]
    message = error["msg"]
    return message.removeprefix("Value error, ")


def _allowed_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    for part in loc:
        model = model.model_fields[part].annotation
    return list(model.model_fields)


def format_error(exc: ValidationError, source: str = "params.yaml") -> str:
    """The first validation error as ``source: key = value: what is allowed``."""
    error = exc.errors()[0]
    key = ".".join(str(part) for part in error["loc"])
    value = error.get("input")
    message = _describe(error, Params)
    parts = [str(part) for part in error["loc"]]
    if "[key]" in parts:  # a mapping's key (e.g. a method name in an lr_grid) that is not allowed
        at = parts.index("[key]")
        return f"{source}: {'.'.join(parts[:at - 1])}: unknown key {parts[at - 1]!r}; {message}"
    if error["type"] in ("missing", "extra_forbidden") or isinstance(value, dict):
        return f"{source}: {key or '<top level>'}: {message}"
    return f"{source}: {key} = {_show(value)}: {message}"


def _show(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def parse_params(raw: Any, source: str = "params.yaml") -> Params:
    """Validate an already-parsed mapping (e.g. from tests) into :class:`Params`."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: top level must be a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_error(exc, source)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml; raise :class:`ConfigError` with one clear line."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found (run from the project root)") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a text file (byte {exc.start} is not UTF-8)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    if not text.strip():
        raise ConfigError(f"{path}: is empty; it must hold the params sections ({', '.join(Params.model_fields)})")
    try:
        raw = yaml.load(text, Loader=_YamlLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    return parse_params(raw, source=path.name)
