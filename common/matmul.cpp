#include "common/matmul.h"

#include <array>
#include <cstring>
#include <map>
#include <stdexcept>
#include <string>
#include <unordered_map>

#include <oneapi/dnnl/dnnl.hpp>

namespace uniad::matmul {

namespace {

using dims = dnnl::memory::dims;
using f32 = float;

dnnl::engine& cpu_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// The shape and layout of a product: everything a primitive depends on (pointers aside).
using Key = std::array<std::int64_t, 18>;

Key key_of(const Product& p) {
  std::uint32_t scale_bits;
  std::memcpy(&scale_bits, &p.scale, sizeof scale_bits);
  return {p.batch, p.m, p.k, p.n,
          p.a.batch_stride, p.a.row_stride, p.a.col_stride,
          p.b.batch_stride, p.b.row_stride, p.b.col_stride,
          p.c_batch_stride, p.c_row_stride,
          p.bias != nullptr,
          p.addend.data != nullptr, p.addend.row_stride, p.addend.col_stride, p.relu,
          scale_bits};
}

// A memory descriptor of a [batch, rows, cols] operand; 2-D when the product has no batch
// (oneDNN picks its plain GEMM kernels then), batch 1 where the operand is broadcast.
dnnl::memory::desc describe(bool batched, std::int64_t batch, std::int64_t rows, std::int64_t cols,
                            std::int64_t batch_stride, std::int64_t row_stride, std::int64_t col_stride) {
  if (!batched) return {dims{rows, cols}, dnnl::memory::data_type::f32, dims{row_stride, col_stride}};
  if (batch_stride == 0) return {dims{1, rows, cols}, dnnl::memory::data_type::f32, dims{rows * row_stride, row_stride, col_stride}};
  return {dims{batch, rows, cols}, dnnl::memory::data_type::f32, dims{batch_stride, row_stride, col_stride}};
}

// A built primitive with its memory objects (data handles are set per call) and its own
// scratchpad, so two threads never share one.
struct Prepared {
  dnnl::matmul primitive;
  dnnl::memory a, b, c, bias, addend, scratchpad;
};

Prepared prepare(const Product& p) {
  const dnnl::engine& engine = cpu_engine();
  const bool batched = p.batch > 1;
  const auto a = describe(batched, p.batch, p.m, p.k, p.a.batch_stride, p.a.row_stride, p.a.col_stride);
  const auto b = describe(batched, p.batch, p.k, p.n, p.b.batch_stride, p.b.row_stride, p.b.col_stride);
  const auto c = describe(batched, p.batch, p.m, p.n, p.c_batch_stride, p.c_row_stride, 1);
  dnnl::memory::desc bias;
  if (p.bias) bias = describe(batched, 1, 1, p.n, 0, p.n, 1);
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  if (p.scale != 1.0f) attr.set_output_scales(0, {p.scale});
  dnnl::memory::desc addend;
  dnnl::post_ops ops;
  if (p.addend.data) {
    addend = describe(batched, 1, p.m, p.n, 0, p.addend.row_stride, p.addend.col_stride);
    ops.append_binary(dnnl::algorithm::binary_add, addend);
  }
  if (p.relu) ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f);
  attr.set_post_ops(ops);
  const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a, b, bias, c), attr, engine);
  Prepared prepared{dnnl::matmul(pd), dnnl::memory(a, engine, nullptr), dnnl::memory(b, engine, nullptr),
                    dnnl::memory(c, engine, nullptr), {}, {}, dnnl::memory(pd.scratchpad_desc(), engine)};
  if (p.bias) prepared.bias = dnnl::memory(bias, engine, nullptr);
  if (p.addend.data) prepared.addend = dnnl::memory(addend, engine, nullptr);
  return prepared;
}

}  // namespace

void run(const Product& p) {
  thread_local std::map<Key, Prepared> prepared_by_shape;
  thread_local dnnl::stream stream(cpu_engine());
  try {
    const Key key = key_of(p);
    auto it = prepared_by_shape.find(key);
    if (it == prepared_by_shape.end()) it = prepared_by_shape.emplace(key, prepare(p)).first;
    Prepared& x = it->second;
    x.a.set_data_handle(const_cast<f32*>(p.a.data));
    x.b.set_data_handle(const_cast<f32*>(p.b.data));
    x.c.set_data_handle(p.c);
    std::unordered_map<int, dnnl::memory> args = {
        {DNNL_ARG_SRC, x.a}, {DNNL_ARG_WEIGHTS, x.b}, {DNNL_ARG_DST, x.c}, {DNNL_ARG_SCRATCHPAD, x.scratchpad}};
    if (p.bias) {
      x.bias.set_data_handle(const_cast<f32*>(p.bias));
      args.emplace(DNNL_ARG_BIAS, x.bias);
    }
    if (p.addend.data) {
      x.addend.set_data_handle(const_cast<f32*>(p.addend.data));
      args.emplace(DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1, x.addend);
    }
    x.primitive.execute(stream, args);
    stream.wait();
  } catch (const dnnl::error& e) {
    throw std::runtime_error("oneDNN matmul " + std::to_string(p.batch) + " x [" + std::to_string(p.m) + " x " +
                             std::to_string(p.k) + "] by [" + std::to_string(p.k) + " x " + std::to_string(p.n) +
                             "]: " + e.what() + " (status " + std::to_string(static_cast<int>(e.status)) + ")");
  }
}

const char* library_version() {
  static const std::string version = [] {
    const dnnl_version_t* v = dnnl_version();
    return std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
  }();
  return version.c_str();
}

}  // namespace uniad::matmul
