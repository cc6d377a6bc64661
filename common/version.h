#pragma once
// The project version and the source revision it was built from (git describe at build time,
// common/version.cmake), recorded in every output.
namespace uniad {
const char* project_version();
const char* source_revision();
}  // namespace uniad
