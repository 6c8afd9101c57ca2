// Without libFuzzer (builds other than -DMTLC_FUZZ=ON, any compiler): a harness linked with this
// main runs LLVMFuzzerTestOneInput once on each file named, or on each file of a folder named, as
// libFuzzer does when given files. A finding aborts, so the CTest test replaying a folder of
// regression inputs fails on it. Prints how many inputs ran.
#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

namespace {

std::vector<std::string> inputsOf(const std::string &path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return {};
  if (!S_ISDIR(st.st_mode)) return {path};
  std::vector<std::string> files;
  if (DIR *dir = opendir(path.c_str())) {
    while (const dirent *e = readdir(dir))
      if (e->d_name[0] != '.') files.push_back(path + "/" + e->d_name);
    closedir(dir);
  }
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace

int main(int argc, char **argv) {
  int ran = 0;
  for (int a = 1; a < argc; ++a) {
    std::vector<std::string> files = inputsOf(argv[a]);
    if (files.empty()) {
      std::fprintf(stderr, "%s: no input in %s\n", argv[0], argv[a]);
      return 2;
    }
    for (const std::string &f : files) {
      std::ifstream in(f, std::ios::binary);
      std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      std::fprintf(stderr, "%s\n", f.c_str());
      LLVMFuzzerTestOneInput(bytes.data(), bytes.size());
      ++ran;
    }
  }
  std::printf("%d inputs, no finding\n", ran);
  return 0;
}
