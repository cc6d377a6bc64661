#pragma once
// An event file: TensorBoard's on-disk log (docs/tensorboard.md). A sequence of records in
// TFRecord framing, each one serialised tensorflow.Event:
//   uint64 length | uint32 masked crc32c(length) | bytes data | uint32 masked crc32c(data)
// (little endian). One process writes one file, never shared: a new writer (a resumed run,
// another command) starts its own file, named so that it sorts after every event file
// already in the folder, because readers take a folder's files in name order.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

namespace uniad::tensorboard {

// CRC-32C (Castagnoli) of `n` bytes, masked as TFRecord does (rotated and offset, so that a
// CRC stored inside the data it covers does not check itself).
std::uint32_t masked_crc32c(const void* data, std::size_t n);

// One TFRecord frame around `data`.
std::string tfrecord_frame(const std::string& data);

class EventFile {
 public:
  // Creates a new file in `dir` (and `dir`). OutputError when it cannot.
  explicit EventFile(const std::filesystem::path& dir);
  ~EventFile();  // flushes and syncs; errors are logged (a destructor cannot report them)
  EventFile(const EventFile&) = delete;
  EventFile& operator=(const EventFile&) = delete;

  // Buffers one record; writes the buffer out when the last write is `flush_interval` old.
  void append(const std::string& record);
  // Writes the buffer out if the last write is `flush_interval` old (a writer that appends
  // rarely calls this often: the trainer at every step, logged or not).
  void flush_if_due();
  // Writes out what is buffered. A failed write (a full disk) is cut off again, so the file
  // keeps only whole records, and is an OutputError. A reader never sees half a record unless
  // the process dies in the middle of a write, which readers take as the file's end.
  void flush();

  const std::filesystem::path& path() const { return path_; }

  // Readers see a record at most this long after it was appended, as long as append() or
  // flush_if_due() keep being called (the trainer: every step, and a flush at every epoch's end).
  static constexpr std::chrono::seconds flush_interval{2};

 private:
  std::filesystem::path path_;
  int fd_ = -1;
  std::string buffer_;
  std::uint64_t size_ = 0;  // bytes of whole records in the file
  std::chrono::steady_clock::time_point last_flush_;
};

// The name a new event file in `dir` gets: events.out.tfevents.<microseconds>.<host>.<pid>,
// the time raised if needed to sort after every event file already there (a clock that
// differs between the nodes of a shared file system must not put a resumed run's file first).
std::filesystem::path new_event_file_path(const std::filesystem::path& dir);

// Removes the event files in `dir` other than `keep` (not below it): for a folder whose every
// record a new file supersedes (a sweep's experiment and leaderboard, a run's HParams session).
// Readers drop a restarted session's scalars and images by step (SessionLog START), but keep
// every text and HParams record, which would then be shown twice.
void remove_other_event_files(const std::filesystem::path& dir, const std::filesystem::path& keep);

}  // namespace uniad::tensorboard
