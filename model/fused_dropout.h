#pragma once
// Dropout fused into the operation before or after it, for the training step on the CPU.
//
// Why: LibTorch's dropout draws one Mersenne-Twister number per element on one thread and keeps
// a float mask of the tensor's size until backward; in the reference's profile the random
// numbers alone were 28% of a training step. Here the decision for element i is a pure function
// of (key, i): Philox4x32-10, a counter-based generator (Salmon et al., SC 2011, the one
// cuRAND and PyTorch's CUDA dropout use), so it is drawn in parallel, in any order, and
// regenerated in backward instead of being stored.
//
// Meaning, unchanged: every element is kept with probability 1 - p (to 2^-32) and scaled by
// 1 / (1 - p), independently. Each call draws a fresh 64-bit key from LibTorch's default CPU
// generator, so masks are fresh every call and step, differ between ranks (each rank's
// generator is seeded apart), and a resumed run draws the same ones (the generator's state is
// in the checkpoint). The result does not depend on the number of threads.
//
// Off the CPU, for other dtypes or non-contiguous tensors, each op is the plain LibTorch
// expression it stands for (no fused kernel exists there).
#include <array>
#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

namespace uniad::model {

// softmax(logits + mask, -1) followed by dropout(p): the attention probabilities. mask: an
// additive [Tq, Tk] matrix shared by every head ([..., Tq, Tk] logits), or undefined.
at::Tensor softmax_dropout(const at::Tensor& logits, double p, bool train, const at::Tensor& mask = {});

// dropout(relu(x), p): the feed-forward block's hidden activation.
at::Tensor relu_dropout(const at::Tensor& x, double p, bool train);

// x + dropout(y, p): a residual connection around a sublayer.
at::Tensor add_dropout(const at::Tensor& x, const at::Tensor& y, double p, bool train);

namespace fused {

// The same operators with the key given, and the mask they apply as a tensor (0 or
// 1 / (1 - p) per element), for the tests that compare them with the unfused expressions.
at::Tensor softmax_dropout(const at::Tensor& logits, double p, std::uint64_t key, const at::Tensor& mask = {});
at::Tensor relu_dropout(const at::Tensor& x, double p, std::uint64_t key);
at::Tensor add_dropout(const at::Tensor& x, const at::Tensor& y, double p, std::uint64_t key);
at::Tensor dropout_mask(at::IntArrayRef shape, double p, std::uint64_t key);

// Philox4x32-10 of one counter block, written plainly (the reference for the vectorised
// generator; Random123's known answers hold for it).
std::array<std::uint32_t, 4> philox4x32_10(std::array<std::uint32_t, 4> counter, std::array<std::uint32_t, 2> key);

// The 32 random bits of elements first .. first + count - 1 under `key`, as the kernels draw
// them: element i gets word i % 4 of block (low, high 32 bits of i / 4, 0, 0).
std::vector<std::uint32_t> random_words(std::int64_t first, std::int64_t count, std::uint64_t key);

// True where the fused kernels apply: a float32, contiguous CPU tensor.
bool supported(const at::Tensor& t);

// The next dropout key from LibTorch's default CPU generator.
std::uint64_t next_key();

}  // namespace fused
}  // namespace uniad::model
