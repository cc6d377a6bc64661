// The gradient exchange on two real MPI ranks (ctest starts this program with mpirun -np 2):
// buckets averaged while backward runs give exactly the mean of the ranks' own gradients,
// as averaging after backward does, and a parameter without a gradient is an error.
#include <mpi.h>

#include <algorithm>
#include <vector>

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/types.h>

#include "common/error.h"
#include "model/reconstruction.h"
#include "tests/trainer/mpi_environment.h"
#include "trainer/gradient_exchange.h"

namespace uniad::trainer {
namespace {

const auto* const kMpi = ::testing::AddGlobalTestEnvironment(new test::MpiEnvironment);

int world_rank() {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

// A small UniAD model without jitter or dropout, so a rank's gradient is a function of its
// batch alone; the same initial weights on every rank.
std::shared_ptr<model::ReconstructionNet> small_model() {
  model::ModelOptions o;
  o.in_channels = 24;
  o.grid_h = o.grid_w = 6;
  o.hidden = 32;
  o.heads = 4;
  o.feedforward = 64;
  o.encoder_layers = 1;
  o.decoder_layers = 2;
  o.neighbor_window = 3;
  o.dropout = 0;
  o.jitter_scale = 0;
  torch::manual_seed(7);
  auto net = model::make_model(o);
  net->train();
  return net;
}

// Each rank's own batch.
at::Tensor rank_batch(int step) {
  torch::manual_seed(1000 + 10 * world_rank() + step);
  return torch::randn({3, 24, 6, 6});
}

// The oracle: each rank's gradient by plain LibTorch (no exchange), gathered over MPI and
// averaged here in rank order - what the exchange must produce.
at::Tensor mean_of_rank_gradients(model::ReconstructionNet& net, const at::Tensor& batch) {
  net.zero_grad();
  at::mse_loss(net.forward(batch), batch).backward();
  std::vector<at::Tensor> parts;
  for (const auto& p : net.parameters()) parts.push_back(p.grad().reshape({-1}));
  const at::Tensor mine = at::cat(parts).contiguous();
  int ranks = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  at::Tensor all = at::empty({ranks, mine.numel()});
  MPI_Allgather(mine.data_ptr<float>(), static_cast<int>(mine.numel()), MPI_FLOAT, all.data_ptr<float>(),
                static_cast<int>(mine.numel()), MPI_FLOAT, MPI_COMM_WORLD);
  at::Tensor sum = all[0].clone();
  for (int r = 1; r < ranks; ++r) sum += all[r];
  return sum / ranks;
}

// Two steps through the exchange (the first with no .grad() defined yet, the second after an
// update): each step's flat gradient against the oracle, bitwise. `started_early`: the fewest
// buckets of a step that started before backward returned.
void expect_exchange_averages(const ExchangeOptions& options, std::size_t* buckets, std::size_t* started_early) {
  auto net = small_model();
  auto reference_net = small_model();
  FlatAdamW optimizer(net->parameters(), {});
  FlatAdamW reference_optimizer(reference_net->parameters(), {});
  const auto comm = make_mpi_communicator(MPI_COMM_WORLD);
  GradientExchange exchange(*comm, optimizer, options);
  *buckets = exchange.buckets();
  for (int step = 0; step < 2; ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    const at::Tensor batch = rank_batch(step);
    const at::Tensor expected = mean_of_rank_gradients(*reference_net, batch);

    optimizer.zero_grad();
    exchange.begin_step();
    at::mse_loss(net->forward(batch), batch).backward();
    exchange.finish_step();
    const at::Tensor& averaged = optimizer.flat_gradient();
    ASSERT_EQ(averaged.numel(), expected.numel());
    EXPECT_TRUE(at::equal(averaged, expected)) << "largest difference " << (averaged - expected).abs().max().item<float>();
    EXPECT_GT(averaged.abs().max().item<float>(), 0.f) << "a real gradient";
    *started_early = step == 0 ? exchange.started_during_backward() : std::min(*started_early, exchange.started_during_backward());

    // Both replicas take the same update, so the next step starts from equal weights again.
    reference_optimizer.flat_gradient().copy_(expected);
    optimizer.step();
    reference_optimizer.step();
  }
}

TEST(GradientExchange, BucketsAveragedDuringBackwardEqualTheMeanOfTheRanksGradients) {
  int ranks = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  ASSERT_EQ(ranks, 2) << "run under mpirun -np 2 (ctest does)";
  std::size_t buckets = 0, started_early = 0;
  expect_exchange_averages({/*overlap=*/true, /*bucket_bytes=*/2048}, &buckets, &started_early);
  EXPECT_GT(buckets, 10u) << "2 KiB buckets cut the gradient many times";
  EXPECT_EQ(started_early, buckets) << "every bucket started from a hook, before backward returned";
}

TEST(GradientExchange, AfterBackwardGivesTheSameAverage) {
  std::size_t buckets = 0, started_early = 0;
  expect_exchange_averages({/*overlap=*/false, /*bucket_bytes=*/2048}, &buckets, &started_early);
  EXPECT_EQ(started_early, 0u);
  expect_exchange_averages({/*overlap=*/true, /*bucket_bytes=*/std::size_t{1} << 30}, &buckets, &started_early);
  EXPECT_EQ(buckets, 1u) << "one bucket for the whole gradient";
}

TEST(GradientExchange, AParameterWithoutAGradientIsAnError) {
  auto net = small_model();
  std::vector<at::Tensor> parameters = net->parameters();
  parameters.push_back(torch::zeros({5}, torch::requires_grad()));  // not part of the loss
  FlatAdamW optimizer(parameters, {});
  const auto comm = make_mpi_communicator(MPI_COMM_WORLD);
  GradientExchange exchange(*comm, optimizer, {true, 2048});
  const at::Tensor batch = rank_batch(0);
  optimizer.zero_grad();
  exchange.begin_step();
  at::mse_loss(net->forward(batch), batch).backward();
  try {
    exchange.finish_step();
    FAIL() << "an unused parameter must be refused";
  } catch (const RuntimeError& e) {
    EXPECT_NE(std::string(e.what()).find("received no gradient"), std::string::npos) << e.what();
  }
}

TEST(GradientExchange, HooksGoWithTheExchange) {
  auto net = small_model();
  FlatAdamW optimizer(net->parameters(), {});
  const auto comm = make_mpi_communicator(MPI_COMM_WORLD);
  const at::Tensor batch = rank_batch(0);
  { GradientExchange exchange(*comm, optimizer, {true, 2048}); }
  // Without hooks left behind, backward runs alone and only this rank's gradient is there.
  optimizer.zero_grad();
  at::mse_loss(net->forward(batch), batch).backward();
  auto reference_net = small_model();
  reference_net->zero_grad();
  at::mse_loss(reference_net->forward(batch), batch).backward();
  std::vector<at::Tensor> parts;
  for (const auto& p : reference_net->parameters()) parts.push_back(p.grad().reshape({-1}));
  EXPECT_TRUE(at::equal(optimizer.flat_gradient(), at::cat(parts)));
}

}  // namespace
}  // namespace uniad::trainer
