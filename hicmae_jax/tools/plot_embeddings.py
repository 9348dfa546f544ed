r"""Plots exported features in 2-D (t-SNE or PCA), coloured by label, one panel per folder.

  python -m hicmae_jax.tools.plot_embeddings --features=features/random_test,features/pre_test \
      --titles="random init,pre-trained" --output=embeddings.png [--config.method=pca]

--features: folders written by `python -m hicmae_jax.tools.export_features`. Settings are
`embedding_plot_config()` (hicmae_jax/representations/settings.py; --config.<name>). Each
panel's title adds the leave-one-out 5-nearest-neighbour accuracy of the labels in the feature
space itself (not the picture): a number for how well the classes cluster.
"""
from __future__ import annotations

from absl import flags

from hicmae_jax import cli, runtime
from hicmae_jax.representations.embedding import plot_feature_dirs
from hicmae_jax.representations.settings import embedding_plot_config

_CONFIG = cli.define_config_dict("config", embedding_plot_config(), "Embedding settings.")
_FEATURES = flags.DEFINE_list("features", None, "Feature folders, one panel each.")
_TITLES = flags.DEFINE_list("titles", [], "Panel titles (default: the folder names).")
_ARRAY = flags.DEFINE_string("array", "feature", "Which exported array: feature, or with "
                             "--per_layer exports video_hff, audio_hff, fused_video, ...")
_OUTPUT = flags.DEFINE_string("output", None, "PNG path.")
_TITLE = flags.DEFINE_string("title", "", "Figure title.")
flags.mark_flags_as_required(["features", "output"])


def main(argv):
  del argv
  cli.check_output_file(_OUTPUT.value, "--output")
  return runtime.json_command(lambda: plot_feature_dirs(
      _FEATURES.value, _OUTPUT.value, _CONFIG.value, titles=_TITLES.value, array=_ARRAY.value,
      title=_TITLE.value), errors=(FileNotFoundError, ValueError, KeyError))


if __name__ == "__main__":
  cli.run(main)
