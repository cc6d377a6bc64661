#include "trainer/trainer.h"

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>

#include <ATen/ATen.h>
#include <fmt/core.h>
#include <spdlog/spdlog.h>
#include <torch/types.h>
#include <xxhash.h>

#include "common/device.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/progress.h"
#include "common/rng.h"
#include "common/version.h"
#include "feature_cache/cache.h"
#include "model/checkpoint.h"
#include "model/memory_bank.h"
#include "trainer/metrics_log.h"
#include "trainer/step.h"
#include "trainer/training_events.h"
#include "trainer/training_state.h"

namespace uniad::trainer {

using data::Split;

// ---------------------------------------------------------------------------------------
// Options

std::string to_string(LrScaling scaling) {
  switch (scaling) {
    case LrScaling::kNone: return "none";
    case LrScaling::kLinear: return "linear";
    case LrScaling::kSqrt: return "sqrt";
  }
  return "?";
}

LrScaling parse_lr_scaling(const std::string& text) {
  if (text == "none") return LrScaling::kNone;
  if (text == "linear") return LrScaling::kLinear;
  if (text == "sqrt") return LrScaling::kSqrt;
  throw UsageError("--lr-scaling must be none, linear or sqrt, not '" + text + "'");
}

double TrainOptions::effective_lr(int world_size) const {
  const double ratio = double(batch_size) * world_size / reference_global_batch;
  switch (lr_scaling) {
    case LrScaling::kNone: return lr;
    case LrScaling::kLinear: return lr * ratio;
    case LrScaling::kSqrt: return lr * std::sqrt(ratio);
  }
  return lr;
}

void TrainOptions::validate() const {
  if (epochs < 1) throw UsageError("--epochs must be at least 1");
  if (batch_size < 1) throw UsageError("--batch-size must be at least 1");
  if (lr <= 0) throw UsageError("--lr must be positive");
  if (lr_step_epoch < 1) throw UsageError("--lr-step-epoch must be at least 1");
  if (checkpoint_every < 0 || eval_every < 0) throw UsageError("--checkpoint-every and --eval-every must be >= 0");
  if (tensorboard_every < 1) throw UsageError("--tensorboard-every must be >= 1 (steps)");
  if (setting != "unified" && setting != "separate") throw UsageError("--setting must be unified or separate");
  check_device_option(device);
  if (reference_global_batch < 1) throw UsageError("--reference-global-batch must be at least 1");
}

nlohmann::ordered_json to_json(const TrainOptions& o) {
  return {{"cache", o.cache},
          {"run_dir", o.run_dir},
          {"model", model::to_json(o.model)},
          {"classes", o.classes},
          {"setting", o.setting},
          {"epochs", o.epochs},
          {"batch_size", o.batch_size},
          {"lr", o.lr},
          {"weight_decay", o.weight_decay},
          {"betas", {o.beta1, o.beta2}},
          {"lr_step_epoch", o.lr_step_epoch},
          {"lr_gamma", o.lr_gamma},
          {"clip_grad_norm", o.clip_grad_norm},
          {"lr_scaling", to_string(o.lr_scaling)},
          {"reference_global_batch", o.reference_global_batch},
          {"seed", o.seed},
          {"checkpoint_every", o.checkpoint_every},
          {"eval_every", o.eval_every},
          {"device", o.device},
          {"precision", to_string(o.precision)}};
}

// ---------------------------------------------------------------------------------------
// Signals: Slurm sends SIGTERM (or the --signal of the job, e.g. SIGUSR1) before it stops a job.

namespace {
std::atomic<bool> g_stop{false};
extern "C" void on_stop_signal(int) { g_stop = true; }
}  // namespace

void install_stop_signal_handlers() {
  std::signal(SIGTERM, on_stop_signal);
  std::signal(SIGUSR1, on_stop_signal);
}

bool stop_requested() { return g_stop.load(); }

std::string choose_backend(const std::string& requested, const c10::Device& device) {
  if (requested != "auto" && requested != "mpi" && requested != "nccl") {
    throw UsageError("--backend must be auto, mpi or nccl, not '" + requested + "'");
  }
  const std::string backend = requested != "auto" ? requested : device.is_cuda() ? "nccl" : "mpi";
  if (backend == "mpi" && device.is_cuda()) {
    throw UsageError("--backend mpi exchanges CPU tensors, but this rank trains on " + device.str() +
                     ": use --backend nccl (or auto) on GPUs, or --device cpu");
  }
  if (backend == "nccl" && !device.is_cuda()) {
    throw UsageError("--backend nccl exchanges CUDA tensors, but this rank trains on the CPU: use --backend mpi (or "
                     "auto), or --device cuda");
  }
  return backend;
}

std::vector<std::int64_t> epoch_shard(const std::vector<std::int64_t>& rows, std::uint64_t seed, int epoch, int rank,
                                      int size) {
  std::vector<std::int64_t> order = rows;
  Rng rng = Rng::derive(seed, 0x5348554646ull /* "SHUFF" */, static_cast<std::uint64_t>(epoch));
  for (std::size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng.next() % i]);
  const std::size_t padded = (order.size() + size - 1) / size * size;
  for (std::size_t i = 0; order.size() < padded; ++i) order.push_back(order[i]);
  std::vector<std::int64_t> shard;
  for (std::size_t i = rank; i < order.size(); i += size) shard.push_back(order[i]);
  return shard;
}

std::string checkpoint_path(const std::string& run_dir) { return (fs::path(run_dir) / "checkpoint.pt").string(); }

namespace {

// Settings that may change when a run is resumed; everything else must match.
const std::vector<std::string> kResumableChanges = {"epochs", "checkpoint_every", "eval_every", "cache", "run_dir"};

// The classes a run trains on (--classes; empty: all of the cache's), decided once.
struct ClassSelection {
  std::vector<int> indices;         // into the cache's classes; empty: all
  std::vector<std::string> names;   // every class trained, in the cache's order
  bool contains(int c) const { return indices.empty() || std::count(indices.begin(), indices.end(), c) > 0; }
};

ClassSelection select_classes(const feature_cache::FeatureCache& cache, const TrainOptions& o) {
  ClassSelection selection;
  const auto& classes = cache.classes();
  for (const auto& name : o.classes) {
    const auto it = std::find(classes.begin(), classes.end(), name);
    if (it == classes.end()) throw UsageError("--classes: '" + name + "' is not a class of " + o.cache);
    selection.indices.push_back(static_cast<int>(it - classes.begin()));
  }
  for (std::size_t c = 0; c < classes.size(); ++c)
    if (selection.contains(static_cast<int>(c))) selection.names.push_back(classes[c]);
  return selection;
}

// The training split's rows of the selected classes.
std::vector<std::int64_t> training_rows(const feature_cache::FeatureCache& cache, const ClassSelection& selection,
                                        const std::string& cache_path) {
  std::vector<std::int64_t> rows;
  const auto& train = cache.split(Split::kTrain);
  for (std::int64_t r = 0; r < train.size(); ++r)
    if (selection.contains(train.class_index[r])) rows.push_back(r);
  if (rows.empty()) throw InputError(cache_path, "no training samples for the selected classes");
  return rows;
}

// A checksum of these parameters' bit patterns, to prove the ranks agree.
std::string parameter_checksum(const model::ReconstructionNet& model) {
  XXH64_state_t* state = XXH64_createState();
  XXH64_reset(state, 0);
  for (const auto& p : model.parameters()) {
    const at::Tensor t = p.detach().cpu().contiguous();
    XXH64_update(state, t.data_ptr(), t.numel() * t.element_size());
  }
  const auto digest = XXH64_digest(state);
  XXH64_freeState(state);
  return fmt::format("{:016x}", digest);
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// One training run (one model) on every rank: prepare (model, optimizer, data, resume),
// then the epoch loop, or the memory bank's one pass. Rank 0 writes the run's files.
class Run {
 public:
  Run(const TrainOptions& o, Communicator& comm, c10::Device device)
      : o_(o), comm_(comm), cache_(feature_cache::FeatureCache::open(o.cache)), device_(device), run_dir_(o.run_dir) {}

  TrainResult go() {
    prepare();
    return memory_bank() ? fit_memory_bank() : loop();
  }

 private:
  // The nearest-neighbour reference is fitted in one pass, without an optimizer.
  bool memory_bank() const { return o_.model.kind == model::ModelKind::kMemoryBank; }
  std::string checkpoint() const { return checkpoint_path(o_.run_dir); }

  void prepare() {
    // The model's input shape is the cache's; recorded so (config.json, checkpoints).
    const auto& shape = cache_.shape();
    o_.model.in_channels = shape.channels;
    o_.model.grid_h = shape.grid_h;
    o_.model.grid_w = shape.grid_w;
    // Same initial weights everywhere (and rank 0's are broadcast anyway).
    torch::manual_seed(o_.seed);
    model_ = model::make_model(o_.model);
    model_->to(device_);
    if (!memory_bank()) {
      optimizer_ = make_optimizer(*model_, o_, comm_.size());
      exchange_ = std::make_unique<GradientExchange>(comm_, *optimizer_, o_.exchange);
    }
    // Each rank its own stream for jitter and dropout.
    torch::manual_seed(Rng::derive(o_.seed, 0x4A4954544552ull /* "JITTER" */, comm_.rank()).next());

    classes_ = select_classes(cache_, o_);
    rows_ = training_rows(cache_, classes_, o_.cache);
    if (!memory_bank()) batches_ = std::make_unique<TrainingBatches>(cache_, rows_, device_, o_.resident);
    // Resident features were copied to the device; otherwise keep the host copy.
    if (o_.preload && !(batches_ && batches_->resident())) cache_.preload(Split::kTrain);

    if (comm_.rank() == 0) fs::create_directories(run_dir_);
    if (o_.resume && fs::exists(checkpoint())) {
      resume();
    } else {
      std::vector<at::Tensor> parameters;
      for (auto& p : model_->parameters()) parameters.push_back(p.data());
      comm_.broadcast(parameters);
      if (comm_.rank() == 0) fs::remove(run_dir_ / "metrics.jsonl");
    }
    if (comm_.rank() == 0 && o_.tensorboard && position_.epoch < o_.epochs) {
      events_ = std::make_unique<TrainingEvents>(run_dir_, position_.global_step, o_.tensorboard_every);
    }
    if (comm_.rank() == 0) write_config();
  }

  nlohmann::ordered_json checkpoint_meta() const {
    return {{"config", to_json(o_)},
            {"cache_identity", cache_.identity()},
            {"cache_metadata", cache_.attributes()},
            {"classes", classes_.names},
            {"world_size", comm_.size()},
            {"backend", comm_.backend()},
            {"epoch", position_.epoch},
            {"global_step", position_.global_step},
            {"project_version", project_version()},
            {"source_revision", source_revision()}};
  }

  void write_config() const {
    nlohmann::ordered_json config = checkpoint_meta();
    config["effective_lr"] = o_.effective_lr(comm_.size());
    config["global_batch"] = o_.batch_size * comm_.size();
    config["device"] = describe_device(device_);
    config["threads_per_rank"] = at::get_num_threads();
    config["batches"] = {{"resident", batches_ && batches_->resident()},
                         {"resident_bytes", batches_ ? batches_->resident_bytes() : 0},
                         {"requested", to_string(o_.resident)}};
    config["exchange"] = {{"backend", comm_.backend()},
                          {"overlap", o_.exchange.overlap},
                          {"bucket_bytes", o_.exchange.bucket_bytes},
                          {"buckets", exchange_ ? exchange_->buckets() : 0}};
    config["tensorboard"] = {{"enabled", o_.tensorboard}, {"every_steps", o_.tensorboard_every}};
    atomic_write_bytes(run_dir_ / "config.json", config.dump(2) + "\n");
  }

  // Every rank hands its random states and parameter checksum to rank 0, which checks that
  // the replicas are bitwise identical and writes the checkpoint.
  void save_checkpoint() {
    const RandomStates mine = random_states(device_);
    const auto cpu_states = comm_.gather(mine.cpu), cuda_states = comm_.gather(mine.cuda);
    const auto checksums = comm_.gather(parameter_checksum(*model_));
    if (comm_.rank() != 0) return;
    for (const auto& c : checksums) {
      if (c != checksums.front()) {
        throw RuntimeError("model replicas differ between ranks (parameter checksums " + checksums.front() + " vs " + c +
                           "); the gradient exchange is broken");
      }
    }
    std::vector<RandomStates> states;
    for (std::size_t r = 0; r < cpu_states.size(); ++r) states.push_back({cpu_states[r], cuda_states[r]});
    nlohmann::ordered_json meta = checkpoint_meta();
    meta["parameter_checksum"] = checksums.front();
    meta["ranks_identical"] = true;
    write_training_checkpoint(checkpoint(), *model_, meta, optimizer_.get(), position_, states);
  }

  // Continues from the run's checkpoint, which must have been written with the same
  // settings (a few may change, e.g. more epochs), cache and number of ranks.
  void resume() {
    const std::string path = checkpoint();
    const model::Checkpoint saved = model::load_checkpoint(path);
    check_resumable(saved, path, to_json(o_), kResumableChanges, cache_.identity(), comm_.size());
    if (memory_bank()) {
      model_ = saved.model;  // the fitted bank has its own size
      model_->to(device_);
    } else {
      torch::NoGradGuard no_grad;
      const auto saved_weights = model::named_parameters(*saved.model);
      for (auto& item : model_->named_parameters()) item.value().copy_(saved_weights.at(item.key()));
    }
    const ResumedState resumed = read_training_state(saved, path, optimizer_.get(), comm_.rank(), device_);
    set_random_states(resumed.states, device_);
    position_ = resumed.position;
    if (comm_.rank() != 0) return;
    truncate_metrics_log(run_dir_ / "metrics.jsonl", position_.epoch);
    if (position_.epoch >= o_.epochs) {
      spdlog::info("{} has finished all {} epochs; nothing to train", path, o_.epochs);
    } else {
      spdlog::info("resuming {} at epoch {} step {} (of {} epochs)", path, position_.epoch + 1, position_.step_in_epoch,
                   o_.epochs);
    }
  }

  TrainResult loop() {
    model_->train();
    loop_start_ = std::chrono::steady_clock::now();
    first_epoch_ = position_.epoch;
    double loss = 0;
    for (int epoch = position_.epoch; epoch < o_.epochs; ++epoch) {
      const double lr = learning_rate(o_, comm_.size(), epoch);
      optimizer_->set_learning_rate(lr);
      const auto epoch_start = std::chrono::steady_clock::now();
      const Epoch totals = run_epoch(epoch);
      if (totals.stopped) return stopped_by_signal(epoch, loss);
      const double seconds = seconds_since(epoch_start);
      position_ = {epoch + 1, 0, position_.global_step};
      loss = totals.steps ? totals.loss_sum / totals.steps : loss;
      end_of_epoch(epoch, lr, loss, seconds, totals);
      const bool last = epoch + 1 == o_.epochs;
      if (last || (o_.checkpoint_every > 0 && (epoch + 1) % o_.checkpoint_every == 0)) save_checkpoint();
    }
    return {o_.epochs, position_.global_step, loss, false};
  }

  // The epoch's steps from where the position stands; stops early (totals.stopped) after the
  // step in which some rank was asked to stop.
  struct Epoch : EpochTotals {
    bool stopped = false;
  };
  Epoch run_epoch(int epoch) {
    const std::vector<std::int64_t> shard = epoch_shard(rows_, o_.seed, epoch, comm_.rank(), comm_.size());
    const std::int64_t steps = (static_cast<std::int64_t>(shard.size()) + o_.batch_size - 1) / o_.batch_size;
    batches_->begin_epoch(shard);
    Epoch totals;
    for (std::int64_t step = position_.step_in_epoch; step < steps && !totals.stopped; ++step) {
      const std::int64_t begin = step * o_.batch_size, end = std::min<std::int64_t>(begin + o_.batch_size, shard.size());
      const StepResult stepped = train_step(*model_, *optimizer_, *exchange_, batches_->batch(begin, end),
                                            o_.clip_grad_norm, stop_requested(), o_.precision);
      if (!stepped.finite) throw_not_finite(stepped.loss, epoch, step);
      totals.add(stepped, exchange_->buckets());
      position_ = {epoch, step + 1, position_.global_step + 1};
      if (events_) events_->step(position_.global_step, stepped.loss, optimizer_->learning_rate(), stepped.grad_norm);
      totals.stopped = stepped.stop;
    }
    return totals;
  }

  [[noreturn]] void throw_not_finite(double loss, int epoch, std::int64_t step) const {
    throw RuntimeError(fmt::format(
        "loss is not finite ({}) at epoch {} step {}; training stopped. The last good checkpoint ({}) is kept; lower --lr "
        "or check the features",
        loss, epoch + 1, step + 1, fs::exists(checkpoint()) ? checkpoint() : "none yet"));
  }

  // A stop signal reached some rank: checkpoint where the step left off and end the run, to
  // be requeued (ExitCode::kPreempted).
  TrainResult stopped_by_signal(int epoch, double loss) {
    save_checkpoint();
    if (comm_.rank() == 0) {
      spdlog::warn("stop signal: checkpoint written at epoch {} step {}; exiting to be requeued", epoch + 1,
                   position_.step_in_epoch);
    }
    return {epoch, position_.global_step, loss, true};
  }

  // Fits the memory bank on every training sample of the selected classes (each rank the
  // same, so the replicas agree) and writes the checkpoint: the run's one "epoch".
  TrainResult fit_memory_bank() {
    if (position_.epoch < o_.epochs) {
      const auto start = std::chrono::steady_clock::now();
      std::vector<at::Tensor> parts;
      for (std::size_t first = 0; first < rows_.size(); first += 256) {
        const std::vector<std::int64_t> batch(rows_.begin() + first, rows_.begin() + std::min(rows_.size(), first + 256));
        parts.push_back(cache_.read_features(Split::kTrain, batch));
      }
      const at::Tensor features = at::cat(parts).to(device_);
      auto& bank = dynamic_cast<model::MemoryBank&>(*model_);
      bank.fit(features, Rng::derive(o_.seed, 0x42414E4Bull /* "BANK" */).next());
      position_ = {o_.epochs, 0, 1};
      const double seconds = seconds_since(start);
      const std::int64_t patches = features.size(0) * features.size(2) * features.size(3);
      if (comm_.rank() == 0) {
        spdlog::info("memory bank: kept {} of {} training patches ({} coreset) in {}", bank.options().bank_size, patches,
                     model::to_string(o_.model.coreset), format_duration(seconds));
        nlohmann::ordered_json line = {{"epoch", o_.epochs},      {"step", 1},
                                       {"bank_size", bank.options().bank_size}, {"training_patches", patches},
                                       {"seconds", seconds}};
        if (o_.eval_every > 0) line["eval"] = evaluate_now();
        append_metrics_line(run_dir_ / "metrics.jsonl", line.dump());
      }
      save_checkpoint();
    }
    return {o_.epochs, position_.global_step, 0.0, false};
  }

  // The epoch's line in the metrics log (with a periodic evaluation when due) and the
  // progress line.
  void end_of_epoch(int epoch, double lr, double loss, double seconds, const EpochTotals& totals) {
    const std::int64_t steps = totals.steps;
    // Time waiting for the average after backward, as a share of the epoch (mean over ranks),
    // and the share of buckets whose average started while backward still ran.
    const double exchange_share = comm_.sum({totals.exchange_seconds / std::max(seconds, 1e-9)})[0] / comm_.size();
    const double exchange_overlap = steps ? totals.overlap_sum / steps : 0.0;
    nlohmann::ordered_json line = {{"epoch", epoch + 1},
                                   {"step", position_.global_step},
                                   {"loss", loss},
                                   {"lr", lr},
                                   {"samples_per_s", steps * o_.batch_size * comm_.size() / std::max(seconds, 1e-9)},
                                   {"exchange_share", exchange_share},
                                   {"exchange_overlap", exchange_overlap},
                                   {"seconds", seconds}};
    if (comm_.rank() != 0) return;
    const bool evaluate = o_.eval_every > 0 && ((epoch + 1) % o_.eval_every == 0 || epoch + 1 == o_.epochs);
    if (events_) events_->epoch(line);
    if (evaluate) line["eval"] = evaluate_now();
    append_metrics_line(run_dir_ / "metrics.jsonl", line.dump());
    if (!o_.progress) return;
    const std::string eval_text =
        evaluate ? fmt::format(", image AUROC {:.3f}, pixel AUROC {:.3f}", line["eval"]["mean"].value("image_auroc", NAN),
                               line["eval"]["mean"].value("pixel_auroc", NAN))
                 : "";
    spdlog::info("epoch {}/{} step {} loss {:.5f} lr {:.3g} {:.1f} samples/s ETA {}{}", epoch + 1, o_.epochs,
                 position_.global_step, loss, lr, line["samples_per_s"].get<double>(),
                 format_duration(eta(epoch)), eval_text);
  }

  // The time the epochs after `epoch` will take at this process's pace so far.
  double eta(int epoch) const { return seconds_since(loop_start_) / (epoch + 1 - first_epoch_) * (o_.epochs - epoch - 1); }

  // The metrics log's "eval" field; the metrics and panels go to TensorBoard too.
  nlohmann::ordered_json evaluate_now() {
    const PeriodicEvaluation evaluation =
        periodic_evaluation(*model_, cache_, classes_.indices, o_.eval_pixel_metrics, events_ != nullptr);
    if (events_) events_->evaluation(position_.global_step, evaluation, cache_);
    return evaluation.summary;
  }

  TrainOptions o_;  // the request, with the model's input shape taken from the cache (prepare)
  Communicator& comm_;
  feature_cache::FeatureCache cache_;
  c10::Device device_;  // this rank's (common/device.h: rank_device)
  fs::path run_dir_;
  std::shared_ptr<model::ReconstructionNet> model_;
  std::unique_ptr<FlatAdamW> optimizer_;
  std::unique_ptr<GradientExchange> exchange_;
  std::unique_ptr<TrainingBatches> batches_;  // not for the memory bank, which reads rows_ once
  std::unique_ptr<TrainingEvents> events_;    // rank 0 with --tensorboard, while epochs remain
  ClassSelection classes_;
  std::vector<std::int64_t> rows_;
  Position position_;
  std::chrono::steady_clock::time_point loop_start_;  // for the ETA: when this process's epochs began,
  int first_epoch_ = 0;                              // and at which epoch
};

}  // namespace

TrainResult train(const TrainOptions& requested, Communicator& comm, c10::Device device) {
  requested.validate();
  TrainOptions options = requested;
  if (options.model.kind == model::ModelKind::kMemoryBank && options.epochs != 1) {
    if (comm.rank() == 0) spdlog::info("memory bank: fitted in one pass over the training data (epochs = 1)");
    options.epochs = 1;
  }
  if (options.setting == "unified") return Run(options, comm, device).go();
  // Separate setting: one model per class, each in its own run directory.
  std::vector<std::string> classes = options.classes;
  if (classes.empty()) classes = feature_cache::FeatureCache::open(options.cache).classes();
  TrainResult total;
  for (const auto& name : classes) {
    TrainOptions one = options;
    one.setting = "unified";
    one.classes = {name};
    one.run_dir = (fs::path(options.run_dir) / name).string();
    if (comm.rank() == 0) spdlog::info("separate setting: training the model of class {}", name);
    const TrainResult r = Run(one, comm, device).go();
    total.steps += r.steps;
    total.final_loss = r.final_loss;
    total.epochs_done = r.epochs_done;
    if (r.stopped_by_signal) {
      total.stopped_by_signal = true;
      return total;
    }
  }
  if (comm.rank() == 0) {
    atomic_write_bytes(fs::path(options.run_dir) / "separate.json",
                       nlohmann::ordered_json({{"setting", "separate"}, {"classes", classes}, {"config", to_json(options)}}).dump(2) + "\n");
  }
  return total;
}

}  // namespace uniad::trainer
