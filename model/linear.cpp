#include "model/linear.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "common/matmul.h"

namespace uniad::model {

bool fused_linear_applies(const at::Tensor& x) {
  return !c10::GradMode::is_enabled() && x.device().is_cpu() && x.scalar_type() == at::kFloat;
}

at::Tensor linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, const at::Tensor& residual,
                  bool relu) {
  if (!fused_linear_applies(x) || !weight.is_contiguous() || !bias.defined()) {
    at::Tensor y = at::linear(x, weight, bias);
    if (residual.defined()) y = residual + y.view(residual.sizes());
    return relu ? at::relu(y) : y;
  }
  const int64_t k = x.size(-1), n = weight.size(0), m = x.numel() / k;
  const at::Tensor a = x.reshape({m, k}).contiguous();
  const at::Tensor added = residual.defined() ? residual.reshape({m, n}).contiguous() : residual;
  std::vector<int64_t> shape = x.sizes().vec();
  shape.back() = n;
  at::Tensor y = at::empty(residual.defined() ? residual.sizes() : at::IntArrayRef(shape), x.options());
  const at::Tensor b = bias.contiguous();
  matmul::Product p;
  p.m = m, p.k = k, p.n = n;
  p.a = {a.data_ptr<float>(), 0, k, 1};
  p.b = {weight.data_ptr<float>(), 0, 1, k};  // W^T: element (k, n) at n * K + k
  p.c = y.data_ptr<float>(), p.c_row_stride = n;
  p.bias = b.data_ptr<float>();
  if (added.defined()) p.addend = {added.data_ptr<float>(), 0, n, 1};
  p.relu = relu;
  matmul::run(p);
  return y;
}

}  // namespace uniad::model
