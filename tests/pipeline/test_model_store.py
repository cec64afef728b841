"""Building the configured model for the prepared data."""

import pytest

from unlearn.config import parse_params
from unlearn.errors import ConfigError
from unlearn_pipeline.model_store import build_model

META = {"shape": [1, 8, 8], "classes": [str(c) for c in range(10)], "mean": [0.3], "std": [0.3]}


def test_a_torchvision_model_too_deep_for_the_input_is_refused_before_training():
    params = parse_params({"model": {"name": "torchvision:vgg11_bn"}, "execution": {"device": "cpu"}})
    with pytest.raises(ConfigError, match=r"model.name = torchvision:vgg11_bn: does not run on 1x8x8 inputs "
                                          r"\(.*\); try model.cifar_stem: true or another builder"):
        build_model(params, META)
    fits = parse_params({"model": {"name": "torchvision:resnet18", "cifar_stem": True}, "execution": {"device": "cpu"}})
    assert build_model(fits, META)[1].fc.out_features == 10
