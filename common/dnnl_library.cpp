// oneDNN's C functions that common/matmul.cpp calls, each forwarding to Debian's libdnnl,
// loaded on first use with RTLD_DEEPBIND | RTLD_LOCAL instead of linked.
//
// Why: pip's LibTorch links its own oneDNN (3.x) statically and leaves some of its template
// instances visible (std::call_once thunks of dnnl::impl::cpu::x64::gemm_info_t<...>::jit_init,
// among others). A linked libdnnl.so.2 (2.6) binds its references to those copies, since
// LibTorch comes first in the process's lookup order: its JIT GEMM kernels then stay
// uninitialised and every product fails ("could not execute a primitive", status 3). Loaded
// with RTLD_DEEPBIND, libdnnl binds to itself first, and RTLD_LOCAL keeps its symbols out of
// LibTorch's way. With Debian's LibTorch, which links the same libdnnl.so.2 itself, dlopen
// returns that very library: nothing changes there.
#include <dlfcn.h>

#include <stdexcept>
#include <string>

#include <oneapi/dnnl/dnnl.h>

namespace {

void* dnnl_library() {
  static void* const handle = [] {
    const std::string name = "libdnnl.so." + std::to_string(DNNL_VERSION_MAJOR);
    constexpr int kFlags = RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND;
    void* h = dlopen(name.c_str(), kFlags);
    if (!h) h = dlopen(UNIAD_DNNL_LIBRARY, kFlags);
    if (!h) {
      throw std::runtime_error("cannot load oneDNN (" + name + " or " + UNIAD_DNNL_LIBRARY + "): " + dlerror() +
                               "; install Debian's libdnnl2 (bash scripts/setup.sh)");
    }
    return h;
  }();
  return handle;
}

void* dnnl_symbol(const char* name) {
  void* symbol = dlsym(dnnl_library(), name);
  if (!symbol) throw std::runtime_error(std::string("oneDNN has no ") + name + "; is libdnnl older than its headers?");
  return symbol;
}

}  // namespace

// Defines NAME with the header's signature, forwarding to the loaded library's NAME.
#define UNIAD_DNNL_FORWARD(RESULT, NAME, PARAMETERS, ARGUMENTS)                               \
  extern "C" RESULT NAME PARAMETERS {                                                         \
    static const auto function = reinterpret_cast<decltype(&NAME)>(dnnl_symbol(#NAME));      \
    return function ARGUMENTS;                                                                \
  }

UNIAD_DNNL_FORWARD(dnnl_status_t, dnnl_engine_create, (dnnl_engine_t* engine, dnnl_engine_kind_t kind, size_t index),
                   (engine, kind, index))
UNIAD_DNNL_FORWARD(dnnl_status_t, dnnl_engine_destroy, (dnnl_engine_t engine), (engine))
UNIAD_DNNL_FORWARD(dnnl_status_t, dnnl_matmul_desc_init,
                   (dnnl_matmul_desc_t * matmul_desc, const dnnl_memory_desc_t* src_desc,
                    const dnnl_memory_desc_t* weights_desc, const dnnl_memory_desc_t* bias_desc,
                    const dnnl_memory_desc_t* dst_desc),
                   (matmul_desc, src_desc, weights_desc, bias_desc, dst_desc))
UNIAD_DNNL_FORWARD(dnnl_status_t, dnnl_memory_create,
                   (dnnl_memory_t * memory, const dnnl_memory_desc_t* memory_desc, dnnl_engine_t engine, void* handle),
                   (memory, memory_desc, engine, handle))
UNIAD_DNNL_FORWARD(dnnl_status_t, dnnl_memory_desc_init_by_strides,
                   (dnnl_memory_desc_t * memory_desc, int ndims, const dnnl_dims_t dims, dnnl_data_type_t data_type,
                    const dnnl_dims_t strides),
                   (memory_desc, ndims, dims, data_type, strides))
UNIAD_DNNL_FORWARD(dnnl_status_t, dnnl_memory_destroy, (dnnl_memory_t memory), (memory))
UNIAD_DNNL_FORWARD(dnnl_status_t, dnnl_memory_set_data_handle_v2, (dnnl_memory_t memory, void* handle, dnnl_stream_t stream),
                   (memory, handle, stream))
UNIAD_DNNL_FORWARD(dnnl_status_t, dnnl_post_ops_append_binary,
                   (dnnl_post_ops_t post_ops, dnnl_alg_kind_t alg_kind, const dnnl_memory_desc_t* src1_desc),
                   (post_ops, alg_kind, src1_desc))
UNIAD_DNNL_FORWARD(dnnl_status_t, dnnl_post_ops_append_eltwise,
                   (dnnl_post_ops_t post_ops, float scale, dnnl_alg_kind_t alg_kind, float alpha, float beta),
                   (post_ops, scale, alg_kind, alpha, beta))
UNIAD_DNNL_FORWARD(dnnl_status_t, dnnl_post_ops_create, (dnnl_post_ops_t * post_ops), (post_ops))
UNIAD_DNNL_FORWARD(dnnl_status_t, dnnl_post_ops_destroy, (dnnl_post_ops_t post_ops), (post_ops))
UNIAD_DNNL_FORWARD(dnnl_status_t, dnnl_primitive_attr_create, (dnnl_primitive_attr_t * attr), (attr))
UNIAD_DNNL_FORWARD(dnnl_status_t, dnnl_primitive_attr_destroy, (dnnl_primitive_attr_t attr), (attr))
UNIAD_DNNL_FORWARD(dnnl_status_t, dnnl_primitive_attr_set_output_scales,
                   (dnnl_primitive_attr_t attr, dnnl_dim_t count, int mask, const float* scales),
                   (attr, count, mask, scales))
UNIAD_DNNL_FORWARD(dnnl_status_t, dnnl_primitive_attr_set_post_ops, (dnnl_primitive_attr_t attr, const_dnnl_post_ops_t post_ops),
                   (attr, post_ops))
UNIAD_DNNL_FORWARD(dnnl_status_t, dnnl_primitive_attr_set_scratchpad_mode,
                   (dnnl_primitive_attr_t attr, dnnl_scratchpad_mode_t mode), (attr, mode))
UNIAD_DNNL_FORWARD(dnnl_status_t, dnnl_primitive_create,
                   (dnnl_primitive_t * primitive, const_dnnl_primitive_desc_t primitive_desc), (primitive, primitive_desc))
UNIAD_DNNL_FORWARD(dnnl_status_t, dnnl_primitive_desc_destroy, (dnnl_primitive_desc_t primitive_desc), (primitive_desc))
UNIAD_DNNL_FORWARD(dnnl_status_t, dnnl_primitive_desc_iterator_create,
                   (dnnl_primitive_desc_iterator_t * iterator, const_dnnl_op_desc_t op_desc,
                    const_dnnl_primitive_attr_t attr, dnnl_engine_t engine,
                    const_dnnl_primitive_desc_t hint_forward_primitive_desc),
                   (iterator, op_desc, attr, engine, hint_forward_primitive_desc))
UNIAD_DNNL_FORWARD(dnnl_status_t, dnnl_primitive_desc_iterator_destroy, (dnnl_primitive_desc_iterator_t iterator), (iterator))
UNIAD_DNNL_FORWARD(dnnl_primitive_desc_t, dnnl_primitive_desc_iterator_fetch,
                   (const_dnnl_primitive_desc_iterator_t iterator), (iterator))
UNIAD_DNNL_FORWARD(const dnnl_memory_desc_t*, dnnl_primitive_desc_query_md,
                   (const_dnnl_primitive_desc_t primitive_desc, dnnl_query_t what, int index),
                   (primitive_desc, what, index))
UNIAD_DNNL_FORWARD(dnnl_status_t, dnnl_primitive_destroy, (dnnl_primitive_t primitive), (primitive))
UNIAD_DNNL_FORWARD(dnnl_status_t, dnnl_primitive_execute,
                   (const_dnnl_primitive_t primitive, dnnl_stream_t stream, int nargs, const dnnl_exec_arg_t* args),
                   (primitive, stream, nargs, args))
UNIAD_DNNL_FORWARD(dnnl_status_t, dnnl_stream_create, (dnnl_stream_t * stream, dnnl_engine_t engine, unsigned flags),
                   (stream, engine, flags))
UNIAD_DNNL_FORWARD(dnnl_status_t, dnnl_stream_destroy, (dnnl_stream_t stream), (stream))
UNIAD_DNNL_FORWARD(dnnl_status_t, dnnl_stream_wait, (dnnl_stream_t stream), (stream))
UNIAD_DNNL_FORWARD(const dnnl_version_t*, dnnl_version, (void), ())
