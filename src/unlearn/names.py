"""Names shared by the params schema and the library, in a module that imports nothing (the
library's training and attack code runs without pydantic, e.g. on a bare GPU image)."""

# The names registered in unlearn.models (a test keeps the two equal). Listed here so
# that validating params.yaml does not import torch (about 2 s) in stages that need none.
MODEL_NAMES = ("resnet18", "small_cnn")
TORCHVISION_PREFIX = "torchvision:"
