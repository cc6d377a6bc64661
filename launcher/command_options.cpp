// The option sets of `uniad train` and `uniad eval` (command_options.h).
#include "launcher/command_options.h"

namespace uniad::commands {

namespace po = cli::po;

void add_train_options(po::options_description& options, trainer::TrainOptions& o) {
  po::options_description group("training options (defaults: the UniAD reference)");
  group.add_options()
      ("cache", po::value<std::string>(&o.cache)->required(), "feature cache written by `uniad extract`")
      ("run-dir", po::value<std::string>(&o.run_dir)->required(), "folder for checkpoints, config and metrics log")
      ("classes", po::value<std::string>()->default_value(""), "train on these classes only (comma-separated)")
      ("setting", po::value<std::string>(&o.setting)->default_value(o.setting), "unified (one model) | separate (one per class)")
      ("epochs", po::value<int>(&o.epochs)->default_value(o.epochs), "epochs")
      ("batch-size", po::value<int>(&o.batch_size)->default_value(o.batch_size), "samples per rank per step")
      ("lr", po::value<double>(&o.lr)->default_value(o.lr, "1e-4"), "AdamW learning rate (for --reference-global-batch)")
      ("weight-decay", po::value<double>(&o.weight_decay)->default_value(o.weight_decay, "1e-4"), "AdamW weight decay")
      ("lr-step-epoch", po::value<int>(&o.lr_step_epoch)->default_value(o.lr_step_epoch), "StepLR: multiply lr by --lr-gamma every this many epochs")
      ("lr-gamma", po::value<double>(&o.lr_gamma)->default_value(o.lr_gamma, "0.1"), "StepLR factor")
      ("clip-grad-norm", po::value<double>(&o.clip_grad_norm)->default_value(o.clip_grad_norm, "0.1"), "gradient-norm clipping (0 = off)")
      ("lr-scaling", po::value<std::string>()->default_value("none"), "scale lr with the global batch: none | linear | sqrt")
      ("reference-global-batch", po::value<int>(&o.reference_global_batch)->default_value(o.reference_global_batch),
       "global batch that --lr is given for")
      ("seed", po::value<std::uint64_t>(&o.seed)->default_value(o.seed), "seed of weights, shuffles, jitter and dropout")
      ("checkpoint-every", po::value<int>(&o.checkpoint_every)->default_value(o.checkpoint_every), "epochs between checkpoints (0 = final only)")
      ("eval-every", po::value<int>(&o.eval_every)->default_value(o.eval_every), "evaluate on the test split every this many epochs (0 = off)")
      ("resume", po::value<bool>(&o.resume)->default_value(o.resume), "continue from --run-dir's checkpoint when present")
      ("tensorboard", po::value<bool>(&o.tensorboard)->default_value(o.tensorboard)->implicit_value(true),
       "write TensorBoard event files into RUN/tb (loss, lr, speed, periodic evaluations with panels)")
      ("no-tensorboard", po::bool_switch(), "same as --tensorboard=false")
      ("tensorboard-every", po::value<int>(&o.tensorboard_every)->default_value(o.tensorboard_every),
       "steps between TensorBoard's train/loss, train/lr and train/grad_norm points")
      ("preload", po::value<bool>(&o.preload)->default_value(o.preload), "keep the training features in memory")
      ("device", po::value<std::string>(&o.device)->default_value(o.device),
       "auto | cpu | cuda (auto: a GPU when the GPU build sees one; one GPU per rank)")
      ("backend", po::value<std::string>()->default_value("auto"), "gradient exchange: auto (nccl on cuda, else mpi) | mpi | nccl")
      ("nccl-timeout", po::value<double>()->default_value(600, "600"),
       "seconds an NCCL exchange may wait for the other ranks before the job is aborted")
      ("overlap-exchange", po::value<bool>(&o.exchange.overlap)->default_value(o.exchange.overlap),
       "average gradient buckets while backward still runs (false: all after backward)")
      ("bucket-bytes", po::value<std::size_t>(&o.exchange.bucket_bytes)->default_value(o.exchange.bucket_bytes),
       "gradient bytes per exchange bucket (as DDP's bucket_cap_mb)")
      ("precision", po::value<std::string>()->default_value("fp32"),
       "fp32 | bf16: the step's forward and backward in float32, or under bfloat16 autocast (float32 master weights)")
      ("resident", po::value<std::string>()->default_value("auto"),
       "auto | on | off: keep the training features on the training device and gather batches there (auto: on a "
       "GPU when they take at most half its free memory)")
      ("threads", po::value<int>()->default_value(0), "compute threads per rank (0 = the CPUs this process may use / ranks on the node)");
  options.add(group);
}

void add_map_and_score_options(po::options_description& options, eval::EvalOptions& o) {
  options.add_options()
      ("image-score", po::value<std::string>()->default_value("avgpool-max"), "avgpool-max | max | mean | std | top-mean")
      ("pool-window", po::value<int>(&o.score.pool_window)->default_value(o.score.pool_window), "avgpool-max window")
      ("top-percent", po::value<double>(&o.score.top_percent)->default_value(o.score.top_percent, "1"), "top-mean: percent of pixels")
      ("smoothing-sigma", po::value<double>(&o.map.smoothing_sigma)->default_value(0, "0"), "Gaussian smoothing of maps in pixels (0 = off, as the reference)");
}

void add_eval_options(po::options_description& options, eval::EvalOptions& o) {
  options.add_options()
      ("run", po::value<std::string>()->required(), "run directory written by `uniad train`")
      ("cache", po::value<std::string>()->required(), "feature cache with the test split")
      ("out", po::value<std::string>()->default_value(""), "report folder (default: RUN/eval)");
  add_map_and_score_options(options, o);
  options.add_options()
      ("max-fpr", po::value<double>(&o.max_fpr)->default_value(o.max_fpr, "0.3"), "AUPRO integration limit")
      ("pixel-metrics", po::value<bool>(&o.pixel_metrics)->default_value(true), "compute pixel metrics")
      ("pictures", po::value<int>()->default_value(4), "images per class in the qualitative panel (0 = none)")
      ("save-maps", po::value<bool>()->implicit_value(true)->default_value(false), "also write every anomaly map (maps.h5)")
      ("tensorboard", po::value<bool>()->default_value(true)->implicit_value(true),
       "write the metrics and panels as TensorBoard events into OUT/tb, at the checkpoint's step")
      ("no-tensorboard", po::bool_switch(), "same as --tensorboard=false")
      ("device", po::value<std::string>()->default_value("auto"), "auto | cpu | cuda: where maps are computed (metrics stay on the CPU)")
      ("threads", po::value<int>()->default_value(0), "compute threads (0 = the CPUs this process may use)");
}

bool tensorboard_requested(const po::variables_map& vm) {
  return vm["tensorboard"].as<bool>() && !vm["no-tensorboard"].as<bool>();
}

}  // namespace uniad::commands
