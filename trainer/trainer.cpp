#include "trainer/trainer.h"

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <fmt/core.h>
#include <spdlog/spdlog.h>
#include <torch/types.h>
#include <torch/serialize/archive.h>
#include <xxhash.h>

#include "common/device.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/progress.h"
#include "common/rng.h"
#include "common/version.h"
#include "eval/evaluate.h"
#include "feature_cache/cache.h"
#include "model/checkpoint.h"
#include "model/memory_bank.h"
#include "trainer/step.h"

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
          {"device", o.device}};
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

// Where training stands: the next epoch to run and the next step within it.
struct Position {
  int epoch = 0;
  std::int64_t step_in_epoch = 0;
  std::int64_t global_step = 0;
};

std::string tensor_bytes(const at::Tensor& t) { return std::string(static_cast<const char*>(t.data_ptr()), t.numel()); }

at::Tensor bytes_tensor(const std::string& bytes) {
  at::Tensor t = at::empty({static_cast<std::int64_t>(bytes.size())}, at::kByte);
  std::memcpy(t.data_ptr(), bytes.data(), bytes.size());
  return t;
}

// The generators training draws from: the CPU one (shuffles aside, everything on a CPU run)
// and, on a GPU, that GPU's CUDA generator (jitter and dropout run there). Through the
// context's device-neutral lookup, which LibTorch 1.13 and 2.x both have.
at::Generator cpu_generator() { return at::detail::getDefaultCPUGenerator(); }
at::Generator cuda_generator(const c10::Device& device) { return at::globalContext().defaultGenerator(device); }

// This rank's random states: the CPU generator's, and the CUDA generator's on a GPU (else empty).
struct RandomStates {
  std::string cpu, cuda;
};

RandomStates random_states(const c10::Device& device) {
  return {tensor_bytes(cpu_generator().get_state()),
          device.is_cuda() ? tensor_bytes(cuda_generator(device).get_state()) : ""};
}

void set_random_states(const RandomStates& states, const c10::Device& device) {
  cpu_generator().set_state(bytes_tensor(states.cpu));
  if (!states.cuda.empty()) cuda_generator(device).set_state(bytes_tensor(states.cuda));
}

// Appends one line to the metrics log. A failed write is an OutputError; a partly written
// line is cut off again so the log stays valid JSON lines.
void append_line(const fs::path& path, const std::string& line) {
  std::error_code error;
  const auto size_before = fs::exists(path) ? fs::file_size(path, error) : 0;
  std::ofstream out(path, std::ios::app);
  out << line << "\n";
  out.close();
  if (!out) {
    fs::resize_file(path, size_before, error);
    throw OutputError(path.string(), std::string("cannot append to the metrics log: ") + std::strerror(errno));
  }
}

// Keeps the metrics log lines up to `epoch` (a resumed run rewrites what came after).
void truncate_log(const fs::path& path, int epoch) {
  if (!fs::exists(path)) return;
  std::ifstream in(path);
  std::string line, kept;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    if (nlohmann::json::parse(line).value("epoch", 0) <= epoch) kept += line + "\n";
  }
  atomic_write_bytes(path, kept);
}

class Run {
 public:
  Run(const TrainOptions& o, Communicator& comm, c10::Device device)
      : o_(o), comm_(comm), cache_(feature_cache::FeatureCache::open(o.cache)), device_(device) {}

  TrainResult go() {
    prepare();
    return memory_bank() ? fit_memory_bank() : loop();
  }

 private:
  // The nearest-neighbour reference is fitted in one pass, without an optimizer.
  bool memory_bank() const { return o_.model.kind == model::ModelKind::kMemoryBank; }

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

    for (const auto& name : o_.classes) {
      const auto& classes = cache_.classes();
      const auto it = std::find(classes.begin(), classes.end(), name);
      if (it == classes.end()) throw UsageError("--classes: '" + name + "' is not a class of " + o_.cache);
      class_indices_.push_back(static_cast<int>(it - classes.begin()));
    }
    for (std::int64_t r = 0; r < cache_.split(Split::kTrain).size(); ++r) {
      const int c = cache_.split(Split::kTrain).class_index[r];
      if (class_indices_.empty() || std::count(class_indices_.begin(), class_indices_.end(), c)) rows_.push_back(r);
    }
    if (rows_.empty()) throw InputError(o_.cache, "no training samples for the selected classes");
    if (o_.preload) cache_.preload(Split::kTrain);

    run_dir_ = o_.run_dir;
    if (comm_.rank() == 0) fs::create_directories(run_dir_);
    const bool have_checkpoint = fs::exists(checkpoint_path(o_.run_dir));
    if (o_.resume && have_checkpoint) {
      resume();
    } else {
      std::vector<at::Tensor> parameters;
      for (auto& p : model_->parameters()) parameters.push_back(p.data());
      comm_.broadcast(parameters);
      if (comm_.rank() == 0) fs::remove(run_dir_ / "metrics.jsonl");
    }
    if (comm_.rank() == 0) write_config();
  }

  nlohmann::ordered_json checkpoint_meta() const {
    return {{"config", to_json(o_)},
            {"cache_identity", cache_.identity()},
            {"cache_metadata", cache_.attributes()},
            {"classes", class_names()},
            {"world_size", comm_.size()},
            {"backend", comm_.backend()},
            {"epoch", position_.epoch},
            {"global_step", position_.global_step},
            {"project_version", project_version()},
            {"source_revision", source_revision()}};
  }

  std::vector<std::string> class_names() const {
    std::vector<std::string> names;
    for (std::size_t c = 0; c < cache_.classes().size(); ++c)
      if (class_indices_.empty() || std::count(class_indices_.begin(), class_indices_.end(), int(c)))
        names.push_back(cache_.classes()[c]);
    return names;
  }

  void write_config() const {
    nlohmann::ordered_json config = checkpoint_meta();
    config["effective_lr"] = o_.effective_lr(comm_.size());
    config["global_batch"] = o_.batch_size * comm_.size();
    config["device"] = describe_device(device_);
    config["threads_per_rank"] = at::get_num_threads();
    config["exchange"] = {{"backend", comm_.backend()},
                          {"overlap", o_.exchange.overlap},
                          {"bucket_bytes", o_.exchange.bucket_bytes},
                          {"buckets", exchange_ ? exchange_->buckets() : 0}};
    atomic_write_bytes(run_dir_ / "config.json", config.dump(2) + "\n");
  }

  // A checksum of this rank's parameters (bit patterns), to prove the ranks agree.
  std::string parameter_checksum() const {
    XXH64_state_t* state = XXH64_createState();
    XXH64_reset(state, 0);
    for (const auto& p : model_->parameters()) {
      const at::Tensor t = p.detach().cpu().contiguous();
      XXH64_update(state, t.data_ptr(), t.numel() * t.element_size());
    }
    const auto digest = XXH64_digest(state);
    XXH64_freeState(state);
    return fmt::format("{:016x}", digest);
  }

  // Every rank hands its random state and parameter checksum to rank 0, which checks that
  // the replicas are bitwise identical and writes the checkpoint.
  void save_checkpoint() {
    const RandomStates mine = random_states(device_);
    const auto cpu_states = comm_.gather(mine.cpu), cuda_states = comm_.gather(mine.cuda);
    const auto checksums = comm_.gather(parameter_checksum());
    if (comm_.rank() != 0) return;
    for (const auto& c : checksums) {
      if (c != checksums.front()) {
        throw RuntimeError("model replicas differ between ranks (parameter checksums " + checksums.front() + " vs " + c +
                           "); the gradient exchange is broken");
      }
    }
    nlohmann::ordered_json meta = checkpoint_meta();
    meta["parameter_checksum"] = checksums.front();
    meta["ranks_identical"] = true;
    model::save_checkpoint(checkpoint_path(o_.run_dir), *model_, meta, [&](torch::serialize::OutputArchive& archive) {
      torch::serialize::OutputArchive trainer, optimizer, rng;
      if (optimizer_) {
        optimizer_->save(optimizer);
        trainer.write("optimizer", optimizer);
      }
      const nlohmann::json state = {{"epoch", position_.epoch},
                                    {"step_in_epoch", position_.step_in_epoch},
                                    {"global_step", position_.global_step},
                                    {"world_size", comm_.size()}};
      trainer.write("state", c10::IValue(state.dump()));
      for (std::size_t r = 0; r < cpu_states.size(); ++r) {
        rng.write(std::to_string(r), bytes_tensor(cpu_states[r]));
        if (!cuda_states[r].empty()) rng.write("cuda." + std::to_string(r), bytes_tensor(cuda_states[r]));
      }
      trainer.write("rng", rng);
      archive.write("trainer", trainer);
    });
  }

  void resume() {
    const std::string path = checkpoint_path(o_.run_dir);
    model::Checkpoint checkpoint = model::load_checkpoint(path);
    // The settings must be the run's own (a few may change, e.g. more epochs).
    nlohmann::json saved = checkpoint.meta.at("config"), now = to_json(o_);
    for (const auto& key : kResumableChanges) saved.erase(key), now.erase(key);
    // The input shape comes from the cache, checked below by its identity (and checkpoints
    // before this was recorded hold the option's default here).
    for (const char* key : {"in_channels", "grid_h", "grid_w"}) saved["model"].erase(key), now["model"].erase(key);
    const auto differences = feature_cache::identity_differences(saved, now);
    if (!differences.empty()) {
      std::string list;
      for (const auto& d : differences) list += "\n  " + d + " (checkpoint vs request)";
      throw InputError(path, "was written with other settings:" + list + "\nuse another --run-dir, or the same settings");
    }
    const auto cache_differences = feature_cache::identity_differences(checkpoint.meta.at("cache_identity"), cache_.identity());
    if (!cache_differences.empty()) {
      throw InputError(path, "was trained on another feature cache (" + cache_differences.front() +
                                 "); resume with the cache it was trained on, or use another --run-dir");
    }
    if (checkpoint.meta.at("world_size").get<int>() != comm_.size()) {
      throw InputError(path, fmt::format("was written by {} ranks; resume with the same number of ranks (this run has {})",
                                         checkpoint.meta.at("world_size").get<int>(), comm_.size()));
    }
    torch::serialize::InputArchive trainer, optimizer, rng;
    checkpoint.archive->read("trainer", trainer);
    if (optimizer_) trainer.read("optimizer", optimizer);
    trainer.read("rng", rng);
    c10::IValue state_json;
    trainer.read("state", state_json);
    const auto state = nlohmann::json::parse(state_json.toStringRef());
    if (memory_bank()) {
      model_ = checkpoint.model;  // the fitted bank has its own size
      model_->to(device_);
    } else {
      torch::NoGradGuard no_grad;
      const auto saved_weights = model::named_parameters(*checkpoint.model);
      for (auto& item : model_->named_parameters()) item.value().copy_(saved_weights.at(item.key()));
    }
    if (optimizer_) optimizer_->load(optimizer);
    at::Tensor cpu_state, cuda_state;
    rng.read(std::to_string(comm_.rank()), cpu_state);
    RandomStates states{tensor_bytes(cpu_state), ""};
    if (device_.is_cuda()) {
      if (!rng.try_read("cuda." + std::to_string(comm_.rank()), cuda_state)) {
        throw InputError(path, "was written by a CPU run; its CUDA random state is missing. Resume on the CPU "
                               "(--device cpu) or start another --run-dir");
      }
      states.cuda = tensor_bytes(cuda_state);
    }
    set_random_states(states, device_);
    position_ = {state.at("epoch").get<int>(), state.at("step_in_epoch").get<std::int64_t>(),
                 state.at("global_step").get<std::int64_t>()};
    if (comm_.rank() == 0) {
      truncate_log(run_dir_ / "metrics.jsonl", position_.epoch);
      if (position_.epoch >= o_.epochs) {
        spdlog::info("{} has finished all {} epochs; nothing to train", path, o_.epochs);
      } else {
        spdlog::info("resuming {} at epoch {} step {} (of {} epochs)", path, position_.epoch + 1,
                     position_.step_in_epoch, o_.epochs);
      }
    }
  }

  TrainResult loop() {
    TrainResult result;
    model_->train();
    const auto start = std::chrono::steady_clock::now();
    const int first_epoch = position_.epoch;
    for (int epoch = position_.epoch; epoch < o_.epochs; ++epoch) {
      const double lr = learning_rate(o_, comm_.size(), epoch);
      optimizer_->set_learning_rate(lr);
      const std::vector<std::int64_t> shard = epoch_shard(rows_, o_.seed, epoch, comm_.rank(), comm_.size());
      const std::int64_t steps = (static_cast<std::int64_t>(shard.size()) + o_.batch_size - 1) / o_.batch_size;
      EpochTotals totals;
      const auto epoch_start = std::chrono::steady_clock::now();
      for (std::int64_t step = position_.step_in_epoch; step < steps; ++step) {
        const std::int64_t begin = step * o_.batch_size, end = std::min<std::int64_t>(begin + o_.batch_size, shard.size());
        const std::vector<std::int64_t> batch(shard.begin() + begin, shard.begin() + end);
        const at::Tensor x = cache_.read_features(Split::kTrain, batch).to(device_);
        const StepResult stepped = train_step(*model_, *optimizer_, *exchange_, x, o_.clip_grad_norm, stop_requested());
        if (!stepped.finite) {
          throw RuntimeError(fmt::format(
              "loss is not finite ({}) at epoch {} step {}; training stopped. The last good checkpoint ({}) is kept; "
              "lower --lr or check the features",
              stepped.loss, epoch + 1, step + 1,
              fs::exists(checkpoint_path(o_.run_dir)) ? checkpoint_path(o_.run_dir) : "none yet"));
        }
        totals.add(stepped, exchange_->buckets());
        ++position_.global_step;
        position_.epoch = epoch;
        position_.step_in_epoch = step + 1;
        if (stepped.stop) {
          save_checkpoint();
          if (comm_.rank() == 0) spdlog::warn("stop signal: checkpoint written at epoch {} step {}; exiting to be requeued",
                                              epoch + 1, step + 1);
          result.stopped_by_signal = true;
          result.epochs_done = epoch;
          result.steps = position_.global_step;
          return result;
        }
      }
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - epoch_start).count();
      position_ = {epoch + 1, 0, position_.global_step};
      result.final_loss = totals.steps ? totals.loss_sum / totals.steps : result.final_loss;
      end_of_epoch(epoch, lr, result.final_loss, seconds, totals, start, first_epoch);
      const bool last = epoch + 1 == o_.epochs;
      if (last || (o_.checkpoint_every > 0 && (epoch + 1) % o_.checkpoint_every == 0)) save_checkpoint();
    }
    result.epochs_done = o_.epochs;
    result.steps = position_.global_step;
    return result;
  }

  // Fits the memory bank on every training sample of the selected classes (each rank the
  // same, so the replicas agree) and writes the checkpoint: the run's one "epoch".
  TrainResult fit_memory_bank() {
    TrainResult result;
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
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      const std::int64_t patches = features.size(0) * features.size(2) * features.size(3);
      if (comm_.rank() == 0) {
        spdlog::info("memory bank: kept {} of {} training patches ({} coreset) in {}", bank.options().bank_size, patches,
                     model::to_string(o_.model.coreset), format_duration(seconds));
        nlohmann::ordered_json line = {{"epoch", o_.epochs},      {"step", 1},
                                       {"bank_size", bank.options().bank_size}, {"training_patches", patches},
                                       {"seconds", seconds}};
        if (o_.eval_every > 0) line["eval"] = periodic_evaluation();
        append_line(run_dir_ / "metrics.jsonl", line.dump());
      }
      save_checkpoint();
    }
    result.epochs_done = o_.epochs;
    result.steps = position_.global_step;
    return result;
  }

  // What one epoch's steps add up to, for the metrics log.
  struct EpochTotals {
    double loss_sum = 0, exchange_seconds = 0, overlap_sum = 0;
    std::int64_t steps = 0;
    void add(const StepResult& step, std::size_t buckets) {
      loss_sum += step.loss;
      exchange_seconds += step.exchange_seconds;
      overlap_sum += static_cast<double>(step.buckets_started_during_backward) / std::max<std::size_t>(buckets, 1);
      ++steps;
    }
  };

  void end_of_epoch(int epoch, double lr, double loss, double seconds, const EpochTotals& totals,
                    std::chrono::steady_clock::time_point start, int first_epoch) {
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
    const bool evaluate_now = o_.eval_every > 0 && ((epoch + 1) % o_.eval_every == 0 || epoch + 1 == o_.epochs);
    if (comm_.rank() == 0) {
      if (evaluate_now) line["eval"] = periodic_evaluation();
      append_line(run_dir_ / "metrics.jsonl", line.dump());
      const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      const double eta = elapsed / (epoch + 1 - first_epoch) * (o_.epochs - epoch - 1);
      if (o_.progress) {
        std::string eval_text;
        if (evaluate_now) {
          eval_text = fmt::format(", image AUROC {:.3f}, pixel AUROC {:.3f}", line["eval"]["mean"].value("image_auroc", NAN),
                                  line["eval"]["mean"].value("pixel_auroc", NAN));
        }
        spdlog::info("epoch {}/{} step {} loss {:.5f} lr {:.3g} {:.1f} samples/s ETA {}{}", epoch + 1, o_.epochs,
                     position_.global_step, loss, lr, line["samples_per_s"].get<double>(), format_duration(eta),
                     eval_text);
      }
    }
  }

  nlohmann::ordered_json periodic_evaluation() {
    eval::EvalOptions options;
    options.map.size = cache_.shape().mask_size;  // maps at the masks' resolution
    options.classes = class_indices_;
    options.pixel_metrics = o_.eval_pixel_metrics;
    const eval::Evaluation evaluation =
        eval::evaluate([this](int) -> model::ReconstructionNet& { return *model_; }, cache_, options);
    model_->train();
    nlohmann::ordered_json per_class;
    for (const auto& c : evaluation.classes) {
      per_class[c.name] = {{"image_auroc", std::isnan(c.image.auroc) ? nlohmann::ordered_json() : nlohmann::ordered_json(c.image.auroc)},
                           {"pixel_auroc", std::isnan(c.pixel.binary.auroc) ? nlohmann::ordered_json() : nlohmann::ordered_json(c.pixel.binary.auroc)}};
    }
    return {{"mean", evaluation.mean()}, {"classes", per_class}};
  }

  TrainOptions o_;  // the request, with the model's input shape taken from the cache (prepare)
  Communicator& comm_;
  feature_cache::FeatureCache cache_;
  c10::Device device_;  // this rank's (common/device.h: rank_device)
  std::shared_ptr<model::ReconstructionNet> model_;
  std::unique_ptr<FlatAdamW> optimizer_;
  std::unique_ptr<GradientExchange> exchange_;
  std::vector<int> class_indices_;
  std::vector<std::int64_t> rows_;
  fs::path run_dir_;
  Position position_;
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
