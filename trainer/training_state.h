#pragma once
// The trainer's state in a checkpoint, beside the model (model/checkpoint.h): where training
// stands, the optimizer's moments and every rank's random states, so that a resumed run
// continues bit for bit (jitter, dropout and shuffles included). The "trainer" sub-archive:
//   state      JSON {epoch, step_in_epoch, global_step, world_size}
//   optimizer  FlatAdamW::save (absent for the memory bank)
//   rng        "<rank>": the CPU generator's state; "cuda.<rank>": the GPU's, on GPU runs
#include <cstdint>
#include <string>
#include <vector>

#include <c10/core/Device.h>
#include <nlohmann/json.hpp>

#include "model/checkpoint.h"
#include "trainer/flat_adamw.h"

namespace uniad::trainer {

// Where training stands: the next epoch to run and the next step within it.
struct Position {
  int epoch = 0;
  std::int64_t step_in_epoch = 0;
  std::int64_t global_step = 0;
};

// One rank's random states: the CPU generator's (shuffles aside, everything on a CPU run)
// and, on a GPU, that GPU's CUDA generator's (jitter and dropout run there; else empty).
struct RandomStates {
  std::string cpu, cuda;
};
RandomStates random_states(const c10::Device& device);
void set_random_states(const RandomStates& states, const c10::Device& device);

// Writes the checkpoint atomically: the model, `meta`, and the trainer's sub-archive with
// `optimizer` (may be null), `position` and `states` (one per rank, in rank order).
void write_training_checkpoint(const std::string& path, const model::ReconstructionNet& model, const nlohmann::json& meta,
                               const FlatAdamW* optimizer, const Position& position,
                               const std::vector<RandomStates>& states);

// What a rank resumes from: the position and its own random states. `optimizer` (may be
// null) is loaded from the checkpoint. A GPU run resuming a CPU run's checkpoint (no CUDA
// state) is an InputError naming `path`.
struct ResumedState {
  Position position;
  RandomStates states;
};
ResumedState read_training_state(const model::Checkpoint& checkpoint, const std::string& path, FlatAdamW* optimizer,
                                 int rank, const c10::Device& device);

// Refuses (InputError naming `path`) to resume a checkpoint written with other settings than
// `config` (except those in `resumable`), another feature cache, or another number of ranks.
void check_resumable(const model::Checkpoint& checkpoint, const std::string& path, nlohmann::json config,
                     const std::vector<std::string>& resumable, const nlohmann::json& cache_identity, int world_size);

}  // namespace uniad::trainer
