"""Datasets as compact uint8 tensors, and the train / test / forget / remain splits."""

from unlearn.data.datasets import ImageData, load_dataset
from unlearn.data.forget_list import ForgetList, read_forget_list, read_requests
from unlearn.data.splits import Splits, check_splits, class_splits, make_splits, memorized_pool, train_test_split

__all__ = ["ImageData", "load_dataset", "ForgetList", "read_forget_list", "read_requests", "Splits", "check_splits",
           "class_splits", "make_splits", "memorized_pool", "train_test_split"]
