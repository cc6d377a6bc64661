"""The TensorBoard oracle: reads a log folder with the real `tensorboard` package (pip) as
TensorBoard itself discovers and loads it (EventMultiplexer: one run per folder holding event
files, named by its path below the root; EventAccumulator per run, with TensorBoard's purge of
orphaned steps) and prints what it holds as JSON:

  {"RUN": {"scalars": {TAG: [[step, value], ...]},
           "images": {TAG: [[step, width, height, base64 PNG], ...]},
           "text": {TAG: [[step, markdown], ...]},
           "hparams": {TAG: HParamsPluginData as JSON}}}

Usage: read_tensorboard.py LOGDIR [--no-purge]   (run with the Python that has `tensorboard`)
  --no-purge: every record as written, without TensorBoard's purge of orphaned steps
"""
import base64
import json
import sys

from google.protobuf import json_format
from tensorboard.backend.event_processing import event_accumulator, event_multiplexer
from tensorboard.plugins.hparams import metadata as hparams_metadata
from tensorboard.util import tensor_util

PARTS = {hparams_metadata.EXPERIMENT_TAG: "experiment",
         hparams_metadata.SESSION_START_INFO_TAG: "session_start_info",
         hparams_metadata.SESSION_END_INFO_TAG: "session_end_info"}
ALL = {kind: 0 for kind in (event_accumulator.SCALARS, event_accumulator.IMAGES, event_accumulator.TENSORS)}


def plugin_tags(acc, plugin):
    try:
        return acc.PluginTagToContent(plugin)
    except KeyError:  # no value of that plugin in this run
        return {}


def read_run(acc):
    tags = acc.Tags()
    out = {"scalars": {}, "images": {}, "text": {}, "hparams": {}}
    for tag in tags["scalars"]:
        out["scalars"][tag] = [[e.step, e.value] for e in acc.Scalars(tag)]
    for tag in tags["images"]:
        out["images"][tag] = [[e.step, e.width, e.height, base64.b64encode(e.encoded_image_string).decode()]
                              for e in acc.Images(tag)]
    for tag in plugin_tags(acc, "text"):
        out["text"][tag] = [[e.step, tensor_util.make_ndarray(e.tensor_proto).item().decode()] for e in acc.Tensors(tag)]
    for tag, content in plugin_tags(acc, hparams_metadata.PLUGIN_NAME).items():
        # The plugin's own parser (it also checks the data's version).
        data = hparams_metadata._parse_plugin_data_as(content, PARTS[tag])
        out["hparams"][tag] = json_format.MessageToDict(data, preserving_proto_field_name=True)
    return out


def main():
    purge = "--no-purge" not in sys.argv[2:]
    mux = event_multiplexer.EventMultiplexer(size_guidance=ALL, purge_orphaned_data=purge)
    mux.AddRunsFromDirectory(sys.argv[1])
    mux.Reload()
    runs = {run: read_run(mux.GetAccumulator(run)) for run in sorted(mux.Runs())}
    print(json.dumps(runs, sort_keys=True))


if __name__ == "__main__":
    main()
