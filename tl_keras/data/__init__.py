"""Reading converted TFRecord slice shards with tf.data."""
from tl_keras.data.dataset import (build_dataset, list_shards, select_subjects,
                                   split_subjects, to_model_input)

__all__ = ["build_dataset", "list_shards", "select_subjects", "split_subjects",
           "to_model_input"]
