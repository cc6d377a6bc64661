#include "common/fs.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>

#include "common/error.h"

namespace uniad {

fs::path temporary_path_for(const fs::path& path) {
  return path.parent_path() / ("." + path.filename().string() + ".tmp." + std::to_string(getpid()));
}

// A process that exists and is not a zombie (a killed writer can linger as one until reaped).
static bool process_alive(const std::string& pid) {
  std::ifstream stat("/proc/" + pid + "/stat");
  std::string text;
  if (!std::getline(stat, text)) return false;
  const auto close = text.rfind(')');  // "pid (name) state ..."
  const char state = close != std::string::npos && close + 2 < text.size() ? text[close + 2] : '?';
  return state != 'Z' && state != 'X';
}

int remove_stale_temporaries(const fs::path& path) {
  const fs::path dir = path.parent_path().empty() ? fs::path(".") : path.parent_path();
  const std::string prefix = "." + path.filename().string() + ".tmp.";
  int removed = 0;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(dir, error)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    const std::string pid = name.substr(prefix.size());
    if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) continue;
    if (process_alive(pid)) continue;  // its writer is still running
    std::error_code ignored;
    removed += fs::remove_all(entry.path(), ignored) > 0;
  }
  return removed;
}

static void fsync_path(const fs::path& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) return;  // best effort for directories on filesystems that refuse
  ::fsync(fd);
  ::close(fd);
}

void atomic_write(const fs::path& path, const std::function<void(const fs::path& tmp)>& write_to) {
  const fs::path tmp = temporary_path_for(path);
  auto remove_tmp = [&] {
    std::error_code ignored;
    fs::remove(tmp, ignored);
  };
  try {
    write_to(tmp);
    fsync_path(tmp, false);
    fs::rename(tmp, path);
  } catch (const Error&) {
    remove_tmp();
    throw;
  } catch (const std::exception& e) {
    // A library's own error (LibTorch's archive writer, the file system): an output error
    // naming the file the user asked for.
    remove_tmp();
    throw OutputError(path.string(), std::string("cannot write (disk full or not writable?): ") + e.what());
  }
  const fs::path dir = path.parent_path().empty() ? fs::path(".") : path.parent_path();
  fsync_path(dir, true);
}

std::string read_file_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw InputError(path.string(), fs::exists(path) ? "cannot open the file (permissions?)" : "file does not exist");
  }
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void atomic_write_bytes(const fs::path& path, const std::string& bytes) {
  atomic_write(path, [&](const fs::path& tmp) {
    std::ofstream out(tmp, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.close();
    if (!out) throw OutputError(path.string(), std::string("cannot write: ") + std::strerror(errno));
  });
}

static std::vector<fs::path> list_entries(const fs::path& dir, bool want_dirs) {
  std::vector<fs::path> out;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name[0] == '.') continue;
    if (want_dirs ? entry.is_directory() : entry.is_regular_file()) out.push_back(entry.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<fs::path> list_files(const fs::path& dir) { return list_entries(dir, false); }
std::vector<fs::path> list_dirs(const fs::path& dir) { return list_entries(dir, true); }

std::string lower_extension(const fs::path& path) {
  std::string ext = path.extension().string();
  if (!ext.empty() && ext[0] == '.') ext.erase(0, 1);
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext;
}

}  // namespace uniad
