#pragma once
// The arithmetic of a training step's forward and backward: float32 throughout (the reference's,
// and the parity tests'), or bfloat16 mixed precision: the forward under LibTorch's autocast, so
// that matrix products (linear, bmm) run in bfloat16 with float32 accumulation while
// reductions, norms, softmax and the loss stay float32; the master weights, their gradients and
// AdamW's moments stay float32 (the flat buffers of flat_adamw.h). bfloat16 has float32's
// exponent range, so no loss scaling is needed (unlike float16).
#include <string>

#include <c10/core/DeviceType.h>
#include <c10/core/ScalarType.h>

namespace uniad::trainer {

enum class Precision { kFloat32, kBFloat16 };
Precision parse_precision(const std::string& text);  // "fp32" | "bf16"
std::string to_string(Precision precision);

// Autocast to bfloat16 on `device` for this scope (nothing for kFloat32); restores the previous
// autocast state and empties autocast's cast cache on exit. Both LibTorch lines (1.13: the
// per-device setters; 2.x: the device-typed ones).
class AutocastScope {
 public:
  AutocastScope(c10::DeviceType device, Precision precision);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool active_ = false;
  c10::DeviceType device_;
  bool previous_enabled_ = false;
  c10::ScalarType previous_dtype_ = c10::ScalarType::Undefined;
};

}  // namespace uniad::trainer
