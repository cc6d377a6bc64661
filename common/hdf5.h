#pragma once
// A thin RAII layer over the HDF5 C library: open/create files, read and write whole or
// partial (row-range) datasets, and attributes. Every failure becomes an InputError that
// names the file and the object, instead of HDF5's own error-stack print-out.
//
// HDF5 is the format of the feature cache and of imported reference weights; this layer
// keeps those stages free of the C API's bookkeeping.
#include <hdf5.h>

#include <cstdint>
#include <string>
#include <vector>

namespace uniad::h5 {

// Owns one HDF5 identifier and closes it with the right function.
class Handle {
 public:
  Handle() = default;
  Handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  Handle(Handle&& other) noexcept { *this = std::move(other); }
  Handle& operator=(Handle&& other) noexcept;
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { reset(); }
  void reset();
  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }

 private:
  hid_t id_ = -1;
  herr_t (*close_)(hid_t) = nullptr;
};

// Memory/file element types.
template <typename T>
hid_t native_type();
// IEEE binary16 ("half"), stored as h5py's float16 so Python reads it directly.
hid_t half_type();

struct Chunking {
  std::vector<hsize_t> chunk;  // empty: contiguous
  int deflate = 0;             // gzip level, 0 = none
  bool shuffle = false;
};

class File {
 public:
  // Opens an existing file. A missing, truncated or non-HDF5 file is an InputError.
  static File open(const std::string& path, bool writable = false);
  // Creates (truncates) a file.
  static File create(const std::string& path);

  const std::string& path() const { return path_; }
  hid_t id() const { return file_.get(); }
  void flush() const;
  void close() { file_.reset(); }

  bool exists(const std::string& name) const;                          // "a/b/c": every link on the way
  std::vector<std::string> list(const std::string& group) const;       // member names, sorted
  std::vector<hsize_t> shape(const std::string& dataset) const;

  // Reads a whole dataset, converting to T. Optionally returns its shape.
  template <typename T>
  std::vector<T> read(const std::string& dataset, std::vector<hsize_t>* shape = nullptr) const;
  // Reads rows [first, first + count) along dimension 0 into `out` as `memory_type`.
  void read_rows(const std::string& dataset, hsize_t first, hsize_t count, hid_t memory_type, void* out) const;
  // Reads the rows listed in `rows` (any order) as one selection into `out`, in that order.
  void read_row_list(const std::string& dataset, const std::vector<hsize_t>& rows, hid_t memory_type,
                     void* out) const;

  // Creates a dataset (groups on the way are created).
  void create_dataset(const std::string& name, const std::vector<hsize_t>& shape, hid_t file_type,
                      const Chunking& chunking = {});
  // Writes rows [first, first + count) along dimension 0 from `data` (of `memory_type`).
  void write_rows(const std::string& dataset, hsize_t first, hsize_t count, hid_t memory_type, const void* data);
  // Creates and fills a dataset in one go.
  template <typename T>
  void write(const std::string& name, const std::vector<hsize_t>& shape, const std::vector<T>& data,
             const Chunking& chunking = {});
  // A 1-D dataset of variable-length UTF-8 strings.
  void write_strings(const std::string& name, const std::vector<std::string>& values);
  std::vector<std::string> read_strings(const std::string& name) const;

  // Attributes on an object ("/" for the file). Reading a missing attribute is an InputError.
  void set_attribute(const std::string& object, const std::string& key, const std::string& value);
  void set_attribute(const std::string& object, const std::string& key, std::int64_t value);
  void set_attribute(const std::string& object, const std::string& key, double value);
  bool has_attribute(const std::string& object, const std::string& key) const;
  std::string string_attribute(const std::string& object, const std::string& key) const;
  std::int64_t int_attribute(const std::string& object, const std::string& key) const;
  double double_attribute(const std::string& object, const std::string& key) const;
  // A numeric attribute of any length (a scalar gives one element), converted to int64.
  std::vector<std::int64_t> int_array_attribute(const std::string& object, const std::string& key) const;

 private:
  File(std::string path, Handle file) : path_(std::move(path)), file_(std::move(file)) {}
  [[noreturn]] void fail(const std::string& what) const;        // InputError: reading
  [[noreturn]] void fail_write(const std::string& what) const;  // OutputError: writing
  Handle open_dataset(const std::string& name) const;
  void check_rows(const std::string& dataset, const std::vector<hsize_t>& dims, hsize_t first, hsize_t count) const;
  Handle open_object(const std::string& name) const;
  void read_attribute(const std::string& object, const std::string& key, hid_t type, void* out) const;
  void write_attribute(const std::string& object, const std::string& key, hid_t type, const void* value);
  void read_whole(const std::string& dataset, hid_t memory_type, void* out) const;

  std::string path_;
  Handle file_;
};

// Quietens HDF5's automatic error printing (errors are reported by exceptions instead).
void silence_library_errors();

template <typename T>
std::vector<T> File::read(const std::string& dataset, std::vector<hsize_t>* shape_out) const {
  std::vector<hsize_t> dims = shape(dataset);
  std::size_t n = 1;
  for (hsize_t d : dims) n *= d;
  std::vector<T> out(n);
  read_whole(dataset, native_type<T>(), out.data());
  if (shape_out) *shape_out = dims;
  return out;
}

template <typename T>
void File::write(const std::string& name, const std::vector<hsize_t>& shape, const std::vector<T>& data,
                 const Chunking& chunking) {
  create_dataset(name, shape, native_type<T>(), chunking);
  if (!shape.empty() && shape[0] > 0) write_rows(name, 0, shape[0], native_type<T>(), data.data());
}

}  // namespace uniad::h5
