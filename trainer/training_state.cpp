#include "trainer/training_state.h"

#include <cstring>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <ATen/ops/empty.h>
#include <fmt/core.h>

#include "common/error.h"
#include "feature_cache/cache.h"

namespace uniad::trainer {

namespace {

std::string tensor_bytes(const at::Tensor& t) { return std::string(static_cast<const char*>(t.data_ptr()), t.numel()); }

at::Tensor bytes_tensor(const std::string& bytes) {
  at::Tensor t = at::empty({static_cast<std::int64_t>(bytes.size())}, at::kByte);
  std::memcpy(t.data_ptr(), bytes.data(), bytes.size());
  return t;
}

// Through the context's device-neutral lookup, which LibTorch 1.13 and 2.x both have.
at::Generator cpu_generator() { return at::detail::getDefaultCPUGenerator(); }
at::Generator cuda_generator(const c10::Device& device) { return at::globalContext().defaultGenerator(device); }

}  // namespace

RandomStates random_states(const c10::Device& device) {
  return {tensor_bytes(cpu_generator().get_state()),
          device.is_cuda() ? tensor_bytes(cuda_generator(device).get_state()) : ""};
}

void set_random_states(const RandomStates& states, const c10::Device& device) {
  cpu_generator().set_state(bytes_tensor(states.cpu));
  if (!states.cuda.empty()) cuda_generator(device).set_state(bytes_tensor(states.cuda));
}

void write_training_checkpoint(const std::string& path, const model::ReconstructionNet& model, const nlohmann::json& meta,
                               const FlatAdamW* optimizer, const Position& position,
                               const std::vector<RandomStates>& states) {
  model::save_checkpoint(path, model, meta, [&](torch::serialize::OutputArchive& archive) {
    torch::serialize::OutputArchive trainer, optimizer_archive, rng;
    if (optimizer) {
      optimizer->save(optimizer_archive);
      trainer.write("optimizer", optimizer_archive);
    }
    const nlohmann::json state = {{"epoch", position.epoch},
                                  {"step_in_epoch", position.step_in_epoch},
                                  {"global_step", position.global_step},
                                  {"world_size", static_cast<int>(states.size())}};
    trainer.write("state", c10::IValue(state.dump()));
    for (std::size_t r = 0; r < states.size(); ++r) {
      rng.write(std::to_string(r), bytes_tensor(states[r].cpu));
      if (!states[r].cuda.empty()) rng.write("cuda." + std::to_string(r), bytes_tensor(states[r].cuda));
    }
    trainer.write("rng", rng);
    archive.write("trainer", trainer);
  });
}

ResumedState read_training_state(const model::Checkpoint& checkpoint, const std::string& path, FlatAdamW* optimizer,
                                 int rank, const c10::Device& device) {
  torch::serialize::InputArchive trainer, optimizer_archive, rng;
  checkpoint.archive->read("trainer", trainer);
  if (optimizer) {
    trainer.read("optimizer", optimizer_archive);
    optimizer->load(optimizer_archive);
  }
  trainer.read("rng", rng);
  c10::IValue state_json;
  trainer.read("state", state_json);
  const auto state = nlohmann::json::parse(state_json.toStringRef());

  at::Tensor cpu_state, cuda_state;
  rng.read(std::to_string(rank), cpu_state);
  ResumedState resumed;
  resumed.states.cpu = tensor_bytes(cpu_state);
  if (device.is_cuda()) {
    if (!rng.try_read("cuda." + std::to_string(rank), cuda_state)) {
      throw InputError(path, "was written by a CPU run; its CUDA random state is missing. Resume on the CPU "
                             "(--device cpu) or start another --run-dir");
    }
    resumed.states.cuda = tensor_bytes(cuda_state);
  }
  resumed.position = {state.at("epoch").get<int>(), state.at("step_in_epoch").get<std::int64_t>(),
                      state.at("global_step").get<std::int64_t>()};
  return resumed;
}

void check_resumable(const model::Checkpoint& checkpoint, const std::string& path, nlohmann::json config,
                     const std::vector<std::string>& resumable, const nlohmann::json& cache_identity, int world_size) {
  nlohmann::json saved = checkpoint.meta.at("config");
  if (!saved.contains("precision")) saved["precision"] = "fp32";  // written before --precision existed
  for (const auto& key : resumable) saved.erase(key), config.erase(key);
  // The input shape comes from the cache, checked below by its identity (and checkpoints
  // before this was recorded hold the option's default here).
  for (const char* key : {"in_channels", "grid_h", "grid_w"}) saved["model"].erase(key), config["model"].erase(key);
  const auto differences = feature_cache::identity_differences(saved, config);
  if (!differences.empty()) {
    std::string list;
    for (const auto& d : differences) list += "\n  " + d + " (checkpoint vs request)";
    throw InputError(path, "was written with other settings:" + list + "\nuse another --run-dir, or the same settings");
  }
  const auto cache_differences = feature_cache::identity_differences(checkpoint.meta.at("cache_identity"), cache_identity);
  if (!cache_differences.empty()) {
    throw InputError(path, "was trained on another feature cache (" + cache_differences.front() +
                               "); resume with the cache it was trained on, or use another --run-dir");
  }
  const int saved_world = checkpoint.meta.at("world_size").get<int>();
  if (saved_world != world_size) {
    throw InputError(path, fmt::format("was written by {} ranks; resume with the same number of ranks (this run has {})",
                                       saved_world, world_size));
  }
}

}  // namespace uniad::trainer
