// The `mtlc` command: parses the command line and runs the stages it asks for.
#pragma once

namespace mtlc::driver {

int main(int argc, char **argv);

}  // namespace mtlc::driver
