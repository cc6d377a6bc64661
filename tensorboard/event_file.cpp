#include "tensorboard/event_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <boost/crc.hpp>
#include <fmt/core.h>
#include <spdlog/spdlog.h>

#include "common/error.h"

namespace uniad::tensorboard {

namespace fs = std::filesystem;

namespace {

constexpr const char* kPrefix = "events.out.tfevents.";

void put_le(std::string& out, std::uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xFF));
}

// The 16-digit microsecond field of one of our event file names, or 0 for another name.
std::int64_t name_time(const std::string& name) {
  if (name.rfind(kPrefix, 0) != 0) return 0;
  const std::string rest = name.substr(std::strlen(kPrefix));
  const std::size_t dot = rest.find('.');
  const std::string digits = rest.substr(0, dot);
  if (digits.size() != 16 || !std::all_of(digits.begin(), digits.end(), ::isdigit)) return 0;
  return std::stoll(digits);
}

std::string host_name() {
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0 || host[0] == 0) return "localhost";
  return host;
}

}  // namespace

std::uint32_t masked_crc32c(const void* data, std::size_t n) {
  // CRC-32C: polynomial 0x1EDC6F41, reflected, initial and final XOR 0xFFFFFFFF.
  boost::crc_optimal<32, 0x1EDC6F41, 0xFFFFFFFF, 0xFFFFFFFF, true, true> crc;
  crc.process_bytes(data, n);
  const std::uint32_t value = crc.checksum();
  return ((value >> 15) | (value << 17)) + 0xA282EAD8u;
}

std::string tfrecord_frame(const std::string& data) {
  std::string frame;
  frame.reserve(data.size() + 16);
  put_le(frame, data.size(), 8);
  put_le(frame, masked_crc32c(frame.data(), 8), 4);
  frame += data;
  put_le(frame, masked_crc32c(data.data(), data.size()), 4);
  return frame;
}

fs::path new_event_file_path(const fs::path& dir) {
  std::int64_t micros = std::chrono::duration_cast<std::chrono::microseconds>(
                            std::chrono::system_clock::now().time_since_epoch()).count();
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(dir, error)) {
    micros = std::max(micros, name_time(entry.path().filename().string()) + 1);
  }
  return dir / fmt::format("{}{:016d}.{}.{}", kPrefix, micros, host_name(), static_cast<long>(getpid()));
}

void remove_other_event_files(const fs::path& dir, const fs::path& keep) {
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(dir, error)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(kPrefix, 0) == 0 && entry.is_regular_file() && entry.path().filename() != keep.filename()) {
      fs::remove(entry.path(), error);
    }
  }
}

EventFile::EventFile(const fs::path& dir) {
  std::error_code error;
  fs::create_directories(dir, error);
  if (error) throw OutputError(dir.string(), "cannot create the TensorBoard folder: " + error.message());
  path_ = new_event_file_path(dir);
  // O_EXCL: never open a file another writer has.
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd_ < 0) throw OutputError(path_.string(), std::string("cannot create the event file: ") + std::strerror(errno));
  last_flush_ = std::chrono::steady_clock::now();
}

EventFile::~EventFile() {
  if (fd_ < 0) return;
  try {
    flush();
    if (::fsync(fd_) != 0) spdlog::warn("{}: fsync failed: {}", path_.string(), std::strerror(errno));
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
  }
  ::close(fd_);
}

void EventFile::append(const std::string& record) {
  buffer_ += tfrecord_frame(record);
  flush_if_due();
}

void EventFile::flush_if_due() {
  if (std::chrono::steady_clock::now() - last_flush_ >= flush_interval) flush();
}

void EventFile::flush() {
  last_flush_ = std::chrono::steady_clock::now();
  if (buffer_.empty()) return;
  std::size_t done = 0;
  while (done < buffer_.size()) {
    const ssize_t n = ::write(fd_, buffer_.data() + done, buffer_.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string why = n < 0 ? std::strerror(errno) : "no space written";
      buffer_.clear();
      if (::ftruncate(fd_, static_cast<off_t>(size_)) == 0) ::lseek(fd_, static_cast<off_t>(size_), SEEK_SET);
      throw OutputError(path_.string(), "cannot write TensorBoard events: " + why);
    }
    done += static_cast<std::size_t>(n);
  }
  size_ += buffer_.size();
  buffer_.clear();
}

}  // namespace uniad::tensorboard
