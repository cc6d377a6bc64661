// `uniad train`: data-parallel training from a feature cache (see docs/training.md).
#include <iostream>

#include <spdlog/spdlog.h>

#include "common/error.h"
#include "data/dataset.h"
#include "launcher/cli.h"
#include "launcher/command_options.h"
#include "launcher/commands.h"
#include "launcher/model_options.h"
#include "launcher/mpi_session.h"
#include "trainer/trainer.h"

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
      ("preload", po::value<bool>(&o.preload)->default_value(o.preload), "keep the training features in memory")
      ("device", po::value<std::string>(&o.device)->default_value(o.device), "auto | cpu | cuda")
      ("backend", po::value<std::string>()->default_value("auto"), "gradient exchange: auto (nccl on cuda, else mpi) | mpi | nccl")
      ("bucket-bytes", po::value<std::size_t>()->default_value(32u << 20),
       "MPI gradient exchange: bytes per allreduce bucket (as DDP's bucket_cap_mb)")
      ("threads", po::value<int>()->default_value(0), "compute threads per rank (0 = cores / ranks on the node)");
  options.add(group);
}

int train(int argc, char** argv) {
  return cli::run_with_mpi(argc, argv, [&](const cli::RankInfo& ranks) {
    const cli::Command command{
        "train", "[mpirun -np N | srun] uniad train --cache CACHE.h5 --run-dir DIR [options]",
        "Trains the reconstruction model on the cache's normal training features, data-parallel over\n"
        "the MPI ranks (gradients averaged by MPI, or NCCL on GPUs). Writes config.json, metrics.jsonl and\n"
        "checkpoint.pt into --run-dir and resumes from it. On SIGTERM or SIGUSR1 it checkpoints after the\n"
        "current step and exits with code 75 (requeue)."};
    trainer::TrainOptions o;
    po::options_description options("train options");
    add_train_options(options, o);
    cli::add_model_options(options, o.model);
    cli::add_logging_options(options);
    const auto vm = cli::parse_command(command, options, argc, argv);
    if (!vm) return 0;
    cli::configure_logging(*vm, ranks.rank);
    cli::finish_model_options(*vm, o.model);
    o.classes = data::split_list((*vm)["classes"].as<std::string>());
    o.lr_scaling = trainer::parse_lr_scaling((*vm)["lr-scaling"].as<std::string>());
    o.progress = cli::show_progress(*vm);
    o.validate();
    const int threads = cli::configure_threads(ranks, (*vm)["threads"].as<int>());
    trainer::install_stop_signal_handlers();

    // NCCL whenever the device resolves to CUDA (also through --device auto).
    const std::string backend =
        trainer::choose_backend((*vm)["backend"].as<std::string>(), trainer::resolve_device(o.device));
    const std::unique_ptr<trainer::Communicator> comm =
        backend == "nccl" ? trainer::make_nccl_communicator(ranks.comm, ranks.local_rank)
                          : trainer::make_mpi_communicator(ranks.comm, (*vm)["bucket-bytes"].as<std::size_t>());
    if (ranks.rank == 0) {
      spdlog::info("training on {} rank(s) x {} thread(s), {} backend, global batch {}, lr {:.3g}", ranks.size, threads,
                   comm->backend(), o.batch_size * ranks.size, o.effective_lr(ranks.size));
    }
    const trainer::TrainResult result = trainer::train(o, *comm);
    if (result.stopped_by_signal) return static_cast<int>(ExitCode::kPreempted);
    if (ranks.rank == 0) {
      std::cout << "trained " << result.epochs_done << " epochs (" << result.steps << " steps), final loss "
                << result.final_loss << "; checkpoint " << trainer::checkpoint_path(o.run_dir) << "\n";
    }
    return 0;
  });
}

}  // namespace uniad::commands
