#include "common/hdf5.h"

#include <algorithm>
#include <filesystem>
#include <sstream>

#include "common/error.h"

namespace uniad::h5 {

Handle& Handle::operator=(Handle&& other) noexcept {
  if (this != &other) {
    reset();
    id_ = other.id_;
    close_ = other.close_;
    other.id_ = -1;
  }
  return *this;
}

void Handle::reset() {
  if (id_ >= 0 && close_) close_(id_);
  id_ = -1;
}

template <> hid_t native_type<float>() { return H5T_NATIVE_FLOAT; }
template <> hid_t native_type<double>() { return H5T_NATIVE_DOUBLE; }
template <> hid_t native_type<std::int32_t>() { return H5T_NATIVE_INT32; }
template <> hid_t native_type<std::int64_t>() { return H5T_NATIVE_INT64; }
template <> hid_t native_type<std::uint8_t>() { return H5T_NATIVE_UINT8; }

hid_t half_type() {
  // Built once: 1 sign bit, 5 exponent bits (bias 15), 10 mantissa bits, little endian.
  static const hid_t type = [] {
    const hid_t t = H5Tcopy(H5T_IEEE_F32LE);
    H5Tset_fields(t, 15, 10, 5, 0, 10);
    H5Tset_size(t, 2);
    H5Tset_ebias(t, 15);
    H5Tset_precision(t, 16);
    return t;
  }();
  return type;
}

// HDF5 registers an at-exit shutdown that closes every file still open. A file whose write
// failed (a full disk) cannot be closed - its H5Fclose fails and leaves the file half torn
// down - and that shutdown then crashes the process (exit 139 instead of the documented
// code). Every file here is closed by its owner, so the at-exit pass has nothing to do;
// turning it off must happen before the library's first call, hence a static initialiser.
[[maybe_unused]] static const bool kNoAtExitShutdown = [] { return H5dont_atexit() >= 0; }();

void silence_library_errors() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

static Handle check(hid_t id, herr_t (*close)(hid_t)) { return Handle(id, close); }

File File::open(const std::string& path, bool writable) {
  silence_library_errors();
  if (!std::filesystem::exists(path)) throw InputError(path, "file does not exist");
  if (H5Fis_hdf5(path.c_str()) <= 0) {
    throw InputError(path, "not an HDF5 file (or its header is damaged)");
  }
  const hid_t id = H5Fopen(path.c_str(), writable ? H5F_ACC_RDWR : H5F_ACC_RDONLY, H5P_DEFAULT);
  if (id < 0) throw InputError(path, "cannot open HDF5 file (truncated or damaged?)");
  return File(path, check(id, H5Fclose));
}

File File::create(const std::string& path) {
  silence_library_errors();
  const hid_t id = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (id < 0) throw OutputError(path, "cannot create HDF5 file (folder missing or not writable?)");
  return File(path, check(id, H5Fclose));
}

void File::fail(const std::string& what) const { throw InputError(path_, what); }
void File::fail_write(const std::string& what) const { throw OutputError(path_, what); }

void File::flush() const {
  if (H5Fflush(id(), H5F_SCOPE_GLOBAL) < 0) fail_write("cannot flush HDF5 file");
}

bool File::exists(const std::string& name) const {
  if (name == "/" || name.empty()) return true;
  std::string partial;
  std::stringstream parts(name);
  std::string part;
  while (std::getline(parts, part, '/')) {
    if (part.empty()) continue;
    partial += "/" + part;
    if (H5Lexists(id(), partial.c_str(), H5P_DEFAULT) <= 0) return false;
  }
  return true;
}

std::vector<std::string> File::list(const std::string& group) const {
  Handle g = check(H5Gopen2(id(), group.c_str(), H5P_DEFAULT), H5Gclose);
  if (!g.valid()) fail("missing group '" + group + "'");
  std::vector<std::string> names;
  H5Literate(g.get(), H5_INDEX_NAME, H5_ITER_INC, nullptr,
             [](hid_t, const char* name, const H5L_info_t*, void* data) -> herr_t {
               static_cast<std::vector<std::string>*>(data)->push_back(name);
               return 0;
             },
             &names);
  std::sort(names.begin(), names.end());
  return names;
}

Handle File::open_dataset(const std::string& name) const {
  if (!exists(name)) fail("missing dataset '" + name + "' (not written by this program, or another version?)");
  Handle d = check(H5Dopen2(id(), name.c_str(), H5P_DEFAULT), H5Dclose);
  if (!d.valid()) fail("cannot open dataset '" + name + "'");
  return d;
}

Handle File::open_object(const std::string& name) const {
  if (!exists(name)) fail("missing object '" + name + "'");
  Handle o = check(H5Oopen(id(), name.c_str(), H5P_DEFAULT), H5Oclose);
  if (!o.valid()) fail("cannot open object '" + name + "'");
  return o;
}

std::vector<hsize_t> File::shape(const std::string& dataset) const {
  Handle d = open_dataset(dataset);
  Handle space = check(H5Dget_space(d.get()), H5Sclose);
  const int rank = H5Sget_simple_extent_ndims(space.get());
  if (rank < 0) fail("cannot read the shape of '" + dataset + "'");
  std::vector<hsize_t> dims(rank);
  H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  return dims;
}

void File::read_whole(const std::string& dataset, hid_t memory_type, void* out) const {
  Handle d = open_dataset(dataset);
  if (H5Dread(d.get(), memory_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0) {
    fail("cannot read dataset '" + dataset + "' (truncated or damaged file?)");
  }
}

// Moves rows [first, first + count) along dimension 0 between an open dataset and memory.
static bool transfer_rows(hid_t dataset, const std::vector<hsize_t>& dims, hsize_t first, hsize_t count,
                          hid_t memory_type, void* buffer, bool write) {
  Handle file_space(H5Dget_space(dataset), H5Sclose);
  std::vector<hsize_t> start(dims.size(), 0), size = dims;
  start[0] = first;
  size[0] = count;
  H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start.data(), nullptr, size.data(), nullptr);
  Handle memory_space(H5Screate_simple(static_cast<int>(size.size()), size.data(), nullptr), H5Sclose);
  const herr_t status =
      write ? H5Dwrite(dataset, memory_type, memory_space.get(), file_space.get(), H5P_DEFAULT, buffer)
            : H5Dread(dataset, memory_type, memory_space.get(), file_space.get(), H5P_DEFAULT, buffer);
  return status >= 0;
}

void File::check_rows(const std::string& dataset, const std::vector<hsize_t>& dims, hsize_t first, hsize_t count) const {
  if (dims.empty() || first + count > dims[0]) {
    fail("rows " + std::to_string(first) + ".." + std::to_string(first + count) + " out of range in '" + dataset + "'");
  }
}

void File::read_rows(const std::string& dataset, hsize_t first, hsize_t count, hid_t memory_type, void* out) const {
  const std::vector<hsize_t> dims = shape(dataset);
  check_rows(dataset, dims, first, count);
  Handle d = open_dataset(dataset);
  if (!transfer_rows(d.get(), dims, first, count, memory_type, out, false)) {
    fail("cannot read rows of '" + dataset + "' (truncated or damaged file?)");
  }
}

void File::read_row_list(const std::string& dataset, const std::vector<hsize_t>& rows, hid_t memory_type,
                         void* out) const {
  // Row by row into consecutive memory: HDF5 point/union selections return rows in file
  // order, not request order, so the simple loop is the correct one.
  const std::vector<hsize_t> dims = shape(dataset);
  std::size_t row_elements = 1;
  for (std::size_t i = 1; i < dims.size(); ++i) row_elements *= dims[i];
  const std::size_t row_bytes = row_elements * H5Tget_size(memory_type);
  Handle d = open_dataset(dataset);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    check_rows(dataset, dims, rows[i], 1);
    if (!transfer_rows(d.get(), dims, rows[i], 1, memory_type, static_cast<char*>(out) + i * row_bytes, false)) {
      fail("cannot read rows of '" + dataset + "' (truncated or damaged file?)");
    }
  }
}

static void create_groups_for(hid_t file, const std::string& name) {
  std::string partial;
  std::stringstream parts(name);
  std::string part;
  std::vector<std::string> pieces;
  while (std::getline(parts, part, '/')) if (!part.empty()) pieces.push_back(part);
  for (std::size_t i = 0; i + 1 < pieces.size(); ++i) {
    partial += "/" + pieces[i];
    if (H5Lexists(file, partial.c_str(), H5P_DEFAULT) <= 0) {
      Handle g(H5Gcreate2(file, partial.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
    }
  }
}

void File::create_dataset(const std::string& name, const std::vector<hsize_t>& shape, hid_t file_type,
                          const Chunking& chunking) {
  create_groups_for(id(), name);
  Handle space(H5Screate_simple(static_cast<int>(shape.size()), shape.data(), nullptr), H5Sclose);
  Handle properties(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  if (!chunking.chunk.empty()) {
    H5Pset_chunk(properties.get(), static_cast<int>(chunking.chunk.size()), chunking.chunk.data());
    if (chunking.shuffle) H5Pset_shuffle(properties.get());
    if (chunking.deflate > 0) H5Pset_deflate(properties.get(), chunking.deflate);
  }
  Handle d(H5Dcreate2(id(), name.c_str(), file_type, space.get(), H5P_DEFAULT, properties.get(), H5P_DEFAULT),
           H5Dclose);
  if (!d.valid()) fail_write("cannot create dataset '" + name + "' (disk full?)");
}

void File::write_rows(const std::string& dataset, hsize_t first, hsize_t count, hid_t memory_type, const void* data) {
  const std::vector<hsize_t> dims = shape(dataset);
  check_rows(dataset, dims, first, count);
  Handle d = open_dataset(dataset);
  if (!transfer_rows(d.get(), dims, first, count, memory_type, const_cast<void*>(data), true)) {
    fail_write("cannot write dataset '" + dataset + "' (disk full?)");
  }
}

static Handle string_type() {
  Handle t(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(t.get(), H5T_VARIABLE);
  H5Tset_cset(t.get(), H5T_CSET_UTF8);
  return t;
}

void File::write_strings(const std::string& name, const std::vector<std::string>& values) {
  Handle type = string_type();
  create_dataset(name, {values.size()}, type.get());
  std::vector<const char*> pointers;
  for (const auto& v : values) pointers.push_back(v.c_str());
  if (!values.empty()) write_rows(name, 0, values.size(), type.get(), pointers.data());
}

std::vector<std::string> File::read_strings(const std::string& name) const {
  const auto dims = shape(name);
  Handle d = open_dataset(name);
  Handle type = string_type();
  std::vector<char*> pointers(dims.empty() ? 0 : dims[0]);
  if (!pointers.empty() && H5Dread(d.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, pointers.data()) < 0) {
    fail("cannot read strings '" + name + "'");
  }
  std::vector<std::string> out;
  for (char* p : pointers) out.emplace_back(p ? p : "");
  if (!pointers.empty()) {
    Handle space(H5Dget_space(d.get()), H5Sclose);
    H5Dvlen_reclaim(type.get(), space.get(), H5P_DEFAULT, pointers.data());
  }
  return out;
}

void File::write_attribute(const std::string& object, const std::string& key, hid_t type, const void* value) {
  Handle o = open_object(object);
  if (H5Aexists(o.get(), key.c_str()) > 0) H5Adelete(o.get(), key.c_str());
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle a(H5Acreate2(o.get(), key.c_str(), type, space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  if (!a.valid() || H5Awrite(a.get(), type, value) < 0) fail_write("cannot write attribute '" + key + "'");
}

void File::set_attribute(const std::string& object, const std::string& key, const std::string& value) {
  Handle type = string_type();
  const char* p = value.c_str();
  write_attribute(object, key, type.get(), &p);
}
void File::set_attribute(const std::string& object, const std::string& key, std::int64_t value) {
  write_attribute(object, key, H5T_NATIVE_INT64, &value);
}
void File::set_attribute(const std::string& object, const std::string& key, double value) {
  write_attribute(object, key, H5T_NATIVE_DOUBLE, &value);
}

bool File::has_attribute(const std::string& object, const std::string& key) const {
  if (!exists(object)) return false;
  Handle o = open_object(object);
  return H5Aexists(o.get(), key.c_str()) > 0;
}

static hssize_t attribute_elements(hid_t attribute) {
  Handle space(H5Aget_space(attribute), H5Sclose);
  return H5Sget_simple_extent_npoints(space.get());
}

void File::read_attribute(const std::string& object, const std::string& key, hid_t type, void* out) const {
  if (!has_attribute(object, key)) fail("missing attribute '" + key + "' on '" + object + "'");
  Handle o = open_object(object);
  Handle a(H5Aopen(o.get(), key.c_str(), H5P_DEFAULT), H5Aclose);
  if (!a.valid() || attribute_elements(a.get()) != 1) fail("attribute '" + key + "' is not a single value");
  if (H5Aread(a.get(), type, out) < 0) fail("cannot read attribute '" + key + "'");
}

std::vector<std::int64_t> File::int_array_attribute(const std::string& object, const std::string& key) const {
  if (!has_attribute(object, key)) fail("missing attribute '" + key + "' on '" + object + "'");
  Handle o = open_object(object);
  Handle a(H5Aopen(o.get(), key.c_str(), H5P_DEFAULT), H5Aclose);
  std::vector<std::int64_t> values(a.valid() ? attribute_elements(a.get()) : 0);
  if (!a.valid() || H5Aread(a.get(), H5T_NATIVE_INT64, values.data()) < 0) fail("cannot read attribute '" + key + "'");
  return values;
}

std::string File::string_attribute(const std::string& object, const std::string& key) const {
  if (!has_attribute(object, key)) fail("missing attribute '" + key + "' on '" + object + "'");
  Handle o = open_object(object);
  Handle a(H5Aopen(o.get(), key.c_str(), H5P_DEFAULT), H5Aclose);
  Handle stored(H5Aget_type(a.get()), H5Tclose);
  if (H5Tget_class(stored.get()) != H5T_STRING) fail("attribute '" + key + "' is not a string");
  if (H5Tis_variable_str(stored.get()) > 0) {
    Handle type = string_type();
    char* p = nullptr;
    if (H5Aread(a.get(), type.get(), &p) < 0) fail("cannot read attribute '" + key + "'");
    std::string value = p ? p : "";
    H5free_memory(p);
    return value;
  }
  std::string value(H5Tget_size(stored.get()), '\0');  // fixed-length string (e.g. from h5py)
  if (H5Aread(a.get(), stored.get(), value.data()) < 0) fail("cannot read attribute '" + key + "'");
  value.erase(std::find(value.begin(), value.end(), '\0'), value.end());
  return value;
}

std::int64_t File::int_attribute(const std::string& object, const std::string& key) const {
  std::int64_t value = 0;
  read_attribute(object, key, H5T_NATIVE_INT64, &value);
  return value;
}

double File::double_attribute(const std::string& object, const std::string& key) const {
  double value = 0;
  read_attribute(object, key, H5T_NATIVE_DOUBLE, &value);
  return value;
}

}  // namespace uniad::h5
