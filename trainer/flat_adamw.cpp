#include "trainer/flat_adamw.h"

#include <cmath>
#include <sstream>
#include <string>
#include <type_traits>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/irange.h>
#include <torch/optim/adamw.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>
#include <torch/version.h>

#include "common/error.h"

namespace uniad::trainer {
namespace {

constexpr const char* kFormat = "flat-adamw/1";

// One AdamW update of n elements, with torch.optim.AdamW's arithmetic (1.13, C++) element by
// element, so that the two agree to the last bit where LibTorch's vectorised kernels run:
//   p <- p * (1 - lr wd)                         mul_
//   m <- fma(g, 1 - b1, m * b1)                  mul_, add_(g, alpha) (an fmadd in ATen)
//   v <- fma((1 - b2) g, g, v * b2)              mul_, addcmul_ (contracted by the compiler)
//   p <- p + (-lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps)        addcdiv_: (c t1) / t2, then +
// with bc_i = 1 - b_i^step, g the gradient times the clipping coefficient, and every scalar
// rounded to T first as LibTorch does with a double scalar on a T tensor. Memory-bound: 7
// values move per element, so a single pass matters more than the instruction set; the
// clones give the compiler AVX-512 and AVX2 + FMA versions to vectorise (the default one
// calls fma() from libm).
template <typename T>
struct AdamWUpdate {
  T gradient_scale, decay, beta1, one_minus_beta1, beta2, one_minus_beta2, sqrt_bias_correction2, eps, negative_step;
};

template <typename T>
__attribute__((target_clones("avx512f", "avx2,fma", "default"))) void adamw_update(
    const AdamWUpdate<T>& u, T* __restrict p, const T* __restrict grad, T* __restrict m, T* __restrict v,
    std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) {
    const T g = grad[i] * u.gradient_scale;
    const T decayed = p[i] * u.decay;
    const T m_next = std::fma(g, u.one_minus_beta1, m[i] * u.beta1);
    const T v_next = std::fma(u.one_minus_beta2 * g, g, v[i] * u.beta2);
    const T denominator = std::sqrt(v_next) / u.sqrt_bias_correction2 + u.eps;
    m[i] = m_next;
    v[i] = v_next;
    p[i] = decayed + u.negative_step * m_next / denominator;
  }
}

std::string describe(const at::Tensor& t) { return std::string(c10::toString(t.scalar_type())) + " on " + t.device().str(); }

}  // namespace

FlatAdamW::FlatAdamW(std::vector<at::Tensor> parameters, FlatAdamWOptions options)
    : parameters_(std::move(parameters)), options_(options) {
  if (parameters_.empty()) throw RuntimeError("FlatAdamW: the model has no parameters");
  const auto dtype = parameters_.front().scalar_type();
  const auto device = parameters_.front().device();
  offsets_.push_back(0);
  for (const auto& p : parameters_) {
    if (p.scalar_type() != dtype || p.device() != device) {
      throw RuntimeError("FlatAdamW: parameters of mixed dtype or device (" + describe(parameters_.front()) + " and " +
                         describe(p) + "); move the whole model with .to() before making the optimizer");
    }
    offsets_.push_back(offsets_.back() + p.numel());
  }
  const auto tensor_options = at::TensorOptions().dtype(dtype).device(device);
  flat_parameters_ = at::empty({offsets_.back()}, tensor_options);
  flat_gradient_ = at::zeros({offsets_.back()}, tensor_options);
  exp_avg_ = at::zeros({offsets_.back()}, tensor_options);
  exp_avg_sq_ = at::zeros({offsets_.back()}, tensor_options);
  for (const auto i : c10::irange(parameters_.size())) {
    at::Tensor slice = flat_parameters_.narrow(0, offsets_[i], parameters_[i].numel()).view(parameters_[i].sizes());
    slice.copy_(parameters_[i].detach());
    parameters_[i].set_data(slice);  // the module's parameter now lives in the flat buffer
  }
}

void FlatAdamW::zero_grad() { flat_gradient_.zero_(); }

bool FlatAdamW::gradient_in_buffer(std::size_t i) const {
  const at::Tensor& grad = parameters_.at(i).grad();
  const char* slice = static_cast<const char*>(flat_gradient_.data_ptr()) + offsets_[i] * flat_gradient_.element_size();
  return grad.defined() && grad.data_ptr() == slice;
}

at::Tensor FlatAdamW::gradient_slice(std::size_t i) const {
  return flat_gradient_.narrow(0, offsets_[i], parameters_[i].numel()).view(parameters_[i].sizes());
}

void FlatAdamW::attach_gradients() {
  for (const auto i : c10::irange(parameters_.size())) {
    if (!gradient_in_buffer(i)) parameters_[i].mutable_grad() = gradient_slice(i);
  }
}

void FlatAdamW::adopt_gradients() {
  for (const auto i : c10::irange(parameters_.size())) {
    if (gradient_in_buffer(i)) continue;
    at::Tensor& grad = parameters_[i].mutable_grad();
    if (!grad.defined()) {
      throw RuntimeError("FlatAdamW: parameter " + std::to_string(i) + " (shape " + c10::str(parameters_[i].sizes()) +
                         ") received no gradient; every parameter of the model must take part in the loss");
    }
    const at::Tensor slice = gradient_slice(i);
    slice.copy_(grad);
    grad = slice;
  }
}

const at::Tensor& FlatAdamW::flat_gradient() {
  adopt_gradients();
  return flat_gradient_;
}

double FlatAdamW::clip_grad_norm(double max_norm) {
  adopt_gradients();
  const at::Tensor norm = flat_gradient_.norm();
  // As clip_grad_norm_: the coefficient computed in the gradient's dtype, clamped at 1.
  const bool clipping = max_norm > 0 && std::isfinite(max_norm);
  clip_coefficient_ = clipping ? (max_norm / (norm + 1e-6)).clamp_max(1.0).item<double>() : 1.0;
  return norm.item<double>();
}

bool FlatAdamW::library_fused_available() {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  return true;
#else
  return false;
#endif
}

AdamWKernel FlatAdamW::kernel() const {
  const bool cpu_loop_applies = flat_parameters_.device().is_cpu() && (flat_parameters_.scalar_type() == at::kFloat ||
                                                                       flat_parameters_.scalar_type() == at::kDouble);
  if (!options_.fused) return AdamWKernel::kOperators;
  switch (options_.kernel) {
    case AdamWKernel::kAuto:
      if (cpu_loop_applies) return AdamWKernel::kCpuLoop;
      if (flat_parameters_.is_cuda() && library_fused_available()) return AdamWKernel::kLibraryFused;
      return AdamWKernel::kOperators;
    case AdamWKernel::kCpuLoop:
      if (!cpu_loop_applies) throw RuntimeError("FlatAdamW: the CPU loop needs float or double parameters on the CPU");
      return AdamWKernel::kCpuLoop;
    case AdamWKernel::kLibraryFused:
      if (!library_fused_available()) throw RuntimeError("FlatAdamW: at::_fused_adamw_ needs LibTorch 2.4 or later");
      return AdamWKernel::kLibraryFused;
    case AdamWKernel::kOperators:
      return AdamWKernel::kOperators;
  }
  return AdamWKernel::kOperators;
}

void FlatAdamW::step() {
  adopt_gradients();
  ++steps_;
  switch (kernel()) {
    case AdamWKernel::kCpuLoop: fused_step(clip_coefficient_); break;
    case AdamWKernel::kLibraryFused: library_fused_step(clip_coefficient_); break;
    default: operator_step(clip_coefficient_); break;
  }
  clip_coefficient_ = 1.0;
}

void FlatAdamW::library_fused_step(double gradient_scale) {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  // torch.optim.AdamW(fused=True)'s kernel: decoupled decay, both moments and the bias-corrected
  // step in one pass; the step count is a float32 tensor on the parameters' device, as there.
  at::NoGradGuard no_grad;
  const at::Tensor grad = gradient_scale == 1.0 ? flat_gradient_ : flat_gradient_ * gradient_scale;
  const at::Tensor step = at::full({}, static_cast<double>(steps_), flat_parameters_.options().dtype(at::kFloat));
  at::_fused_adamw_({flat_parameters_}, {grad}, {exp_avg_}, {exp_avg_sq_}, {}, {step}, options_.lr, options_.beta1,
                    options_.beta2, options_.weight_decay, options_.eps, /*amsgrad=*/false, /*maximize=*/false);
#else
  (void)gradient_scale;
  throw RuntimeError("FlatAdamW: at::_fused_adamw_ needs LibTorch 2.4 or later");
#endif
}

void FlatAdamW::fused_step(double gradient_scale) {
  const double bias_correction1 = 1 - std::pow(options_.beta1, static_cast<double>(steps_));
  const double bias_correction2 = 1 - std::pow(options_.beta2, static_cast<double>(steps_));
  AT_DISPATCH_FLOATING_TYPES(flat_parameters_.scalar_type(), "flat_adamw", [&] {
    const AdamWUpdate<scalar_t> u{static_cast<scalar_t>(gradient_scale),
                                       static_cast<scalar_t>(1 - options_.lr * options_.weight_decay),
                                       static_cast<scalar_t>(options_.beta1),
                                       static_cast<scalar_t>(1 - options_.beta1),
                                       static_cast<scalar_t>(options_.beta2),
                                       static_cast<scalar_t>(1 - options_.beta2),
                                       static_cast<scalar_t>(std::sqrt(bias_correction2)),
                                       static_cast<scalar_t>(options_.eps),
                                       static_cast<scalar_t>(-options_.lr / bias_correction1)};
    scalar_t* p = flat_parameters_.data_ptr<scalar_t>();
    const scalar_t* g = flat_gradient_.data_ptr<scalar_t>();
    scalar_t* m = exp_avg_.data_ptr<scalar_t>();
    scalar_t* v = exp_avg_sq_.data_ptr<scalar_t>();
    at::parallel_for(0, flat_parameters_.numel(), 1 << 16, [&](std::int64_t begin, std::int64_t end) {
      adamw_update(u, p + begin, g + begin, m + begin, v + begin, end - begin);
    });
  });
}

void FlatAdamW::operator_step(double gradient_scale) {
  // torch.optim.AdamW's step (1.13, C++), operator by operator, on the flat tensors.
  at::NoGradGuard no_grad;
  const at::Tensor grad = gradient_scale == 1.0 ? flat_gradient_ : flat_gradient_ * gradient_scale;
  const double bias_correction1 = 1 - std::pow(options_.beta1, static_cast<double>(steps_));
  const double bias_correction2 = 1 - std::pow(options_.beta2, static_cast<double>(steps_));
  flat_parameters_.mul_(1 - options_.lr * options_.weight_decay);
  exp_avg_.mul_(options_.beta1).add_(grad, 1 - options_.beta1);
  exp_avg_sq_.mul_(options_.beta2).addcmul_(grad, grad, 1 - options_.beta2);
  const at::Tensor denominator = (exp_avg_sq_.sqrt() / std::sqrt(bias_correction2)).add_(options_.eps);
  flat_parameters_.addcdiv_(exp_avg_, denominator, -options_.lr / bias_correction1);
}

void FlatAdamW::save(torch::serialize::OutputArchive& archive) const {
  archive.write("format", c10::IValue(std::string(kFormat)));
  archive.write("step", c10::IValue(steps_));
  // On the CPU whatever device trains: checkpoints load anywhere (model/checkpoint.h).
  archive.write("exp_avg", exp_avg_.cpu());
  archive.write("exp_avg_sq", exp_avg_sq_.cpu());
}

namespace {

// torch::optim's per-parameter state: keyed by the TensorImpl's address printed as a string
// in LibTorch 1.13, by the address itself in 2.x.
template <class StateMap>
auto find_state(StateMap& state, const at::Tensor& parameter) {
  using Key = typename StateMap::key_type;
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream key;
    key << parameter.unsafeGetTensorImpl();
    return state.find(key.str());
  } else {
    return state.find(parameter.unsafeGetTensorImpl());
  }
}

}  // namespace

void FlatAdamW::load(torch::serialize::InputArchive& archive) {
  at::NoGradGuard no_grad;
  c10::IValue format;
  if (archive.try_read("format", format)) {
    if (format.toStringRef() != kFormat) {
      throw RuntimeError("optimizer state of format '" + format.toStringRef() + "'; this uniad reads '" + kFormat + "'");
    }
    c10::IValue step;
    at::Tensor exp_avg, exp_avg_sq;
    archive.read("step", step);
    archive.read("exp_avg", exp_avg);
    archive.read("exp_avg_sq", exp_avg_sq);
    if (exp_avg.numel() != numel() || exp_avg_sq.numel() != numel()) {
      throw RuntimeError("optimizer state holds " + std::to_string(exp_avg.numel()) + " values per moment; the model has " +
                         std::to_string(numel()) + " parameters");
    }
    steps_ = step.toInt();
    exp_avg_.copy_(exp_avg);
    exp_avg_sq_.copy_(exp_avg_sq);
    return;
  }
  // Written by torch::optim::AdamW: one state per parameter, matched by position.
  std::vector<at::Tensor> stand_ins;
  for (const auto& p : parameters_) stand_ins.push_back(at::zeros_like(p).requires_grad_(true));
  torch::optim::AdamW legacy(stand_ins, torch::optim::AdamWOptions(options_.lr));
  legacy.load(archive);
  steps_ = 0;
  for (const auto i : c10::irange(stand_ins.size())) {
    const auto found = find_state(legacy.state(), stand_ins[i]);
    if (found == legacy.state().end()) continue;  // never stepped: zero moments
    const auto& state = static_cast<const torch::optim::AdamWParamState&>(*found->second);
    exp_avg_.narrow(0, offsets_[i], stand_ins[i].numel()).copy_(state.exp_avg().reshape({-1}));
    exp_avg_sq_.narrow(0, offsets_[i], stand_ins[i].numel()).copy_(state.exp_avg_sq().reshape({-1}));
    steps_ = std::max(steps_, state.step());
  }
}

}  // namespace uniad::trainer
