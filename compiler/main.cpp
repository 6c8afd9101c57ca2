// mtlc: the compiler's command-line entry point (see compiler/driver/).
#include "driver/Driver.h"

int main(int argc, char **argv) { return mtlc::driver::main(argc, argv); }
