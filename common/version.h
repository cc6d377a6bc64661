#pragma once
// The project version and the source revision it was built from, recorded in every output.
namespace uniad {
inline const char* project_version() { return UNIAD_VERSION; }
inline const char* source_revision() { return UNIAD_GIT_REVISION; }
}  // namespace uniad
