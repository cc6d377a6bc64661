#pragma once
// AdamW over one flat buffer: every parameter of the model, its gradient and its two moments
// live in four contiguous tensors, and the parameters and gradients the model sees are views
// of them. That turns the per-step bookkeeping into a few passes over memory instead of a
// dozen small operators per tensor:
//  * zero_grad is one memset, and backward accumulates into the views in place;
//  * the gradient exchange reduces the flat gradient in place (no concatenation copies);
//  * clipping is one norm, and its coefficient is applied inside the update;
//  * the update is one fused loop on the CPU (decoupled weight decay, both moments, bias
//    correction, the step), the same arithmetic as torch.optim.AdamW (1.13) element by element.
// On CUDA (LibTorch 2.x) the update is LibTorch's own fused AdamW kernel over the same four
// tensors; elsewhere, or with `fused = false`, LibTorch operators on the flat tensors (the
// reference path the tests compare the fused kernels with).
//
// The flat-buffer rule, which FlatAdamW and GradientExchange (gradient_exchange.h) both rely on:
//  1. A parameter's value is a view of the flat parameter buffer for the optimizer's whole
//     life: nobody moves, replaces or re-types the tensors (to(), set_data()) after it is made.
//  2. A gradient counts where it lies in its slice of the flat gradient, nowhere else.
//     attach_gradients() points every .grad() at its slice before backward so that backward
//     accumulates there; autograd may still hand a parameter a tensor of its own (its first
//     gradient, an out-of-place accumulation), which gradient_in_buffer() reveals and
//     flat_gradient() copies into the slice after backward.
//  3. Hence the exchange may average a slice while backward runs only as long as every
//     gradient seen in that step is in place; otherwise it averages after flat_gradient().
//  4. zero_grad() zeroes the buffer in place; the .grad() views stay attached.
#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>
#include <torch/serialize/archive.h>

namespace uniad::trainer {

// Which code runs the update (FlatAdamW::step); one place decides (FlatAdamW::kernel()).
enum class AdamWKernel {
  kAuto,          // the CPU loop on the CPU (float, double); LibTorch's fused kernel on CUDA with
                  // LibTorch 2.x; the operators otherwise
  kCpuLoop,       // this file's one-pass loop (CPU, float or double)
  kLibraryFused,  // at::_fused_adamw_ over the four flat tensors: one kernel (LibTorch >= 2.4)
  kOperators,     // LibTorch operators on the flat tensors, the reference path of the tests
};

struct FlatAdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9, beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;
  bool fused = true;  // false: always the operators (as kernel = kOperators)
  AdamWKernel kernel = AdamWKernel::kAuto;
};

class FlatAdamW {
 public:
  // Moves the parameters' values into one flat buffer and makes each parameter a view of it.
  // The parameters must share one dtype and device, and must not be moved afterwards.
  FlatAdamW(std::vector<at::Tensor> parameters, FlatAdamWOptions options);

  void set_learning_rate(double lr) { options_.lr = lr; }
  double learning_rate() const { return options_.lr; }
  std::int64_t steps() const { return steps_; }
  std::int64_t numel() const { return flat_parameters_.numel(); }

  // Zeroes the gradient (one pass); backward then accumulates into it in place.
  void zero_grad();

  // Points every parameter's .grad() at its slice of the flat gradient, so that backward
  // accumulates there from the very first step (an undefined .grad() would be replaced by a
  // tensor of autograd's own, copied in later by flat_gradient()). The gradient exchange
  // needs this to reduce a slice while backward runs; a parameter that then receives no
  // gradient keeps zeros, and it is the exchange that notices.
  void attach_gradients();

  // The flat gradient as it is, without flat_gradient()'s checks (for use during backward).
  const at::Tensor& gradient_buffer() const { return flat_gradient_; }
  // Whether parameter i's .grad() is its slice of the flat gradient (where backward then adds).
  bool gradient_in_buffer(std::size_t i) const;

  // The parameters, in the order of the flat buffers: parameter i is flat[offset(i), offset(i + 1)).
  const std::vector<at::Tensor>& parameters() const { return parameters_; }
  std::int64_t offset(std::size_t i) const { return offsets_.at(i); }

  // The gradient of every parameter as one flat tensor, after backward. The first call (or
  // any call after autograd replaced a gradient) copies the gradients into the flat buffer and
  // points each parameter's .grad() at its slice. Throws if a parameter received no gradient:
  // torch.optim.AdamW would skip it, this optimizer would decay it.
  const at::Tensor& flat_gradient();

  // The 2-norm of the gradient, as torch.nn.utils.clip_grad_norm_ returns it; the next step()
  // scales the gradient by min(1, max_norm / (norm + 1e-6)) as that function does. max_norm
  // <= 0 or infinite: measure only.
  double clip_grad_norm(double max_norm);

  // One AdamW update with the current learning rate (and the clipping coefficient of the last
  // clip_grad_norm, which it then resets to 1).
  void step();
  // The kernel step() runs here (never kAuto); a kernel that cannot run here is a RuntimeError.
  AdamWKernel kernel() const;
  // Whether this LibTorch has at::_fused_adamw_ (kLibraryFused).
  static bool library_fused_available();

  // The optimizer's state in a checkpoint. load() also reads the per-parameter state that
  // torch::optim::AdamW wrote (checkpoints of uniad before the flat optimizer).
  void save(torch::serialize::OutputArchive& archive) const;
  void load(torch::serialize::InputArchive& archive);

 private:
  void adopt_gradients();
  at::Tensor gradient_slice(std::size_t i) const;  // parameter i's slice of the flat gradient, in its shape
  void fused_step(double gradient_scale);
  void library_fused_step(double gradient_scale);
  void operator_step(double gradient_scale);

  std::vector<at::Tensor> parameters_;
  std::vector<std::int64_t> offsets_;  // parameter i is flat[offsets_[i], offsets_[i + 1])
  at::Tensor flat_parameters_, flat_gradient_, exp_avg_, exp_avg_sq_;
  FlatAdamWOptions options_;
  std::int64_t steps_ = 0;
  double clip_coefficient_ = 1.0;
};

}  // namespace uniad::trainer
