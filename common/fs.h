#pragma once
// Filesystem helpers: atomic writes and sorted directory listings.
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace uniad {

namespace fs = std::filesystem;

// Writes `path` atomically: `write_to(tmp)` fills a temporary file beside it, which is
// fsync'ed and renamed over `path` only when complete. A crash leaves either the old
// file or none, never a half-written one (the temporary is removed on error).
void atomic_write(const fs::path& path, const std::function<void(const fs::path& tmp)>& write_to);

// Same, for a byte buffer.
void atomic_write_bytes(const fs::path& path, const std::string& bytes);

// The whole file as bytes; an InputError names a missing or unreadable file.
std::string read_file_bytes(const fs::path& path);

// The name of the temporary file atomic_write uses for `path` (unique per process).
fs::path temporary_path_for(const fs::path& path);

// Removes temporaries that atomic_write left for `path` in processes that no longer run
// (killed mid-write). Returns how many were removed.
int remove_stale_temporaries(const fs::path& path);

// Regular files directly in `dir` (not recursive), sorted by name; hidden files skipped.
std::vector<fs::path> list_files(const fs::path& dir);
// Sub-directories directly in `dir`, sorted by name; hidden ones skipped.
std::vector<fs::path> list_dirs(const fs::path& dir);

// Lower-case extension without the dot ("jpg" for "a/B.JPG").
std::string lower_extension(const fs::path& path);

}  // namespace uniad
