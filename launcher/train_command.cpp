// `uniad train`: data-parallel training from a feature cache (see docs/training.md).
#include <iostream>

#include <spdlog/spdlog.h>

#include "common/device.h"
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

int train(int argc, char** argv) {
  // First of all: a SIGTERM during start-up (MPI, the cache, the model) still ends in a
  // checkpoint and exit 75 after the first step, never in the default handler's death.
  trainer::install_stop_signal_handlers();
  return cli::run_with_mpi(argc, argv, [&](const cli::RankInfo& ranks) {
    const cli::Command command{
        "train", "[mpirun -np N | srun] uniad train --cache CACHE.h5 --run-dir DIR [options]",
        "Trains the reconstruction model on the cache's normal training features, data-parallel over\n"
        "the MPI ranks (gradients averaged by MPI, or NCCL on GPUs). Writes config.json, metrics.jsonl,\n"
        "TensorBoard events (tb/) and checkpoint.pt into --run-dir and resumes from it. On SIGTERM or SIGUSR1 it checkpoints after the\n"
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
    o.precision = trainer::parse_precision((*vm)["precision"].as<std::string>());
    o.resident = trainer::parse_residency((*vm)["resident"].as<std::string>());
    o.progress = cli::show_progress(*vm);
    o.tensorboard = tensorboard_requested(*vm);
    o.validate();
    const int threads = cli::configure_threads(ranks, (*vm)["threads"].as<int>());

    // The trainer's device: this rank's GPU (local rank mod visible GPUs) or the CPU; then the
    // exchange that fits it (NCCL on GPUs, MPI on the CPU).
    const c10::Device device = rank_device(o.device, ranks.comm, ranks.local_rank, ranks.local_size);
    const std::string backend = trainer::choose_backend((*vm)["backend"].as<std::string>(), device);
    const std::unique_ptr<trainer::Communicator> comm =
        backend == "nccl" ? trainer::make_nccl_communicator(ranks.comm, device, (*vm)["nccl-timeout"].as<double>())
                          : trainer::make_mpi_communicator(ranks.comm);
    if (ranks.rank == 0 && o.model.kind != model::ModelKind::kMemoryBank) {
      spdlog::info("training on {} rank(s) x {} thread(s) on {}, {} backend, global batch {}, lr {:.3g}", ranks.size,
                   threads, describe_device(device), comm->backend(), o.batch_size * ranks.size,
                   o.effective_lr(ranks.size));
    }
    const trainer::TrainResult result = trainer::train(o, *comm, device);
    if (result.stopped_by_signal) return static_cast<int>(ExitCode::kPreempted);
    if (ranks.rank == 0 && o.model.kind == model::ModelKind::kMemoryBank) {
      std::cout << "fitted the memory bank (no training); checkpoint " << trainer::checkpoint_path(o.run_dir) << "\n";
    } else if (ranks.rank == 0) {
      std::cout << "trained " << result.epochs_done << " epochs (" << result.steps << " steps), final loss "
                << result.final_loss << "; checkpoint " << trainer::checkpoint_path(o.run_dir) << "\n";
    }
    return 0;
  });
}

}  // namespace uniad::commands
